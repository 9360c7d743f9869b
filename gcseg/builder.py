"""Components built from ``{type: Name, arg: ...}`` specs, with their arguments checked
against the constructor's signature before it runs.

Every error names the file that set the offending key (bases included) and the dotted key.
"""
import collections.abc
import inspect
import types
import typing
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from gcseg.errors import CheckpointError, ConfigError, DownloadError, GcsegError
from gcseg.registry import (BACKBONES, DATASETS, LOSSES, LR_SCHEDULERS, MODELS, OPTIMIZERS,
                            TRANSFORMS, Registry)

# The registry a nested ``{type: ...}`` entry is looked up in, by the key that holds it.
REGISTRY_BY_KEY = {
    "model": MODELS, "backbone": BACKBONES, "train_dataset": DATASETS, "val_dataset": DATASETS,
    "transforms": TRANSFORMS, "types": LOSSES, "losses": LOSSES, "optimizer": OPTIMIZERS,
    "lr_scheduler": LR_SCHEDULERS, "learning_rate": LR_SCHEDULERS,
}
# Of those, the keys holding a list of components, and the keys that may hold a plain value (a
# number) instead of a component; every other one must hold a ``{type: ...}`` mapping.
COMPONENT_LIST_KEYS = {"transforms", "types", "losses"}
COMPONENT_OR_VALUE_KEYS = {"learning_rate"}

# ``X | Y`` annotations have their own origin from Python 3.10 on.
_UNION_ORIGINS = (Union, getattr(types, "UnionType", Union))


def _type_matches(value: Any, expected: Any) -> bool:
    """A loose check of a YAML value against a constructor annotation: simple types, sequences,
    mappings and classes; any other annotation accepts every value."""
    origin = typing.get_origin(expected)
    if expected in (inspect.Parameter.empty, Any) or isinstance(expected, (str, typing.TypeVar)):
        return True
    if origin in _UNION_ORIGINS:
        return any(_type_matches(value, arg) for arg in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is str:
        return isinstance(value, str)
    if origin in (list, tuple, collections.abc.Sequence) or expected in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict or expected is dict:
        return isinstance(value, dict)
    if inspect.isclass(expected):
        return isinstance(value, expected)
    return True


def _describe(expected: Any) -> str:
    text = getattr(expected, "__name__", None) or str(expected)
    return text.replace("typing.", "")


_ANNOTATION_NAMES = {"int": int, "float": float, "bool": bool, "str": str, "None": None,
                     "list": list, "tuple": tuple, "dict": dict, "List": List, "Dict": Dict,
                     "Sequence": Sequence, "Optional": Optional, "Union": Union, "Any": Any}


def _resolve_annotation(annotation: Any) -> Any:
    """String annotations (``from __future__ import annotations``) of simple types, evaluated;
    anything naming other classes is left unchecked."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, {"__builtins__": {}}, dict(_ANNOTATION_NAMES))  # noqa: S307
    except Exception:
        return inspect.Parameter.empty


def _signature_of(target: Any):
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None, {}
    hints = {name: _resolve_annotation(param.annotation)
             for name, param in signature.parameters.items()}
    return signature, hints


# Where the arguments gcseg passes itself come from, for the error when a config sets one too.
_SOURCE_OF_PROVIDED = {"learning_rate": " (it is the lr_scheduler section)",
                       "total_iters": " (it is `iters`)",
                       "parameters": " (they are the model's)"}


def check_arguments(target: Any, kwargs: Dict[str, Any], where: str,
                    provided: Sequence[str] = ()) -> None:
    """Unknown, missing and wrongly typed constructor arguments, as one-line ConfigErrors.

    ``provided`` names arguments the caller supplies itself (not from YAML).
    """
    signature, hints = _signature_of(target)
    if signature is None:
        return
    for key in kwargs:
        if key in provided:
            raise ConfigError(f"{where}.{key}: set by gcseg, not by the config"
                              f"{_SOURCE_OF_PROVIDED.get(key, '')}; remove it")
    params = signature.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = {name: p for name, p in params.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    for key, value in kwargs.items():
        if key not in named:
            if not takes_any:
                raise ConfigError(f"{where}.{key}: unknown argument for "
                                  f"{target.__name__} (accepted: {', '.join(named)})")
            continue
        expected = hints.get(key, inspect.Parameter.empty)
        if not _type_matches(value, expected):
            raise ConfigError(f"{where}.{key}: expected {_describe(expected)}, got {value!r}")
    for name, param in named.items():
        if param.default is param.empty and name not in kwargs and name not in provided:
            raise ConfigError(f"{where}: missing required argument '{name}' "
                              f"for {target.__name__}")


class ComponentBuilder:
    """Turns ``{type: Name, arg: ...}`` specs into objects, naming the file and key on error."""

    def __init__(self, origins: Dict[str, str], config_path: Path) -> None:
        self.origins = origins
        self.config_path = config_path

    def origin(self, dotted: str) -> str:
        parts = dotted.split(".")
        for end in range(len(parts), 0, -1):
            found = self.origins.get(".".join(p for p in parts[:end] if not p.isdigit()))
            if found:
                return found
        return str(self.config_path)

    def fail(self, dotted: str, message: str) -> ConfigError:
        return ConfigError(f"{self.origin(dotted)}: {message}")

    def not_a_mapping(self, spec: Any, registry: Registry, where: str) -> ConfigError:
        hint = (f"; did you mean {{type: {spec}}}?"
                if isinstance(spec, str) and spec in registry else "")
        return self.fail(where, f"{where}: expected a mapping with type: and the "
                                f"{registry.kind}'s arguments, got {spec!r}{hint}")

    def build(self, spec: Any, registry: Registry, where: str, **extra: Any) -> Any:
        if not isinstance(spec, dict):
            raise self.not_a_mapping(spec, registry, where)
        spec = dict(spec)
        name = spec.pop("type", None)
        if name is None:
            raise self.fail(where, f"{where}.type: missing (which {registry.kind} to build)")
        try:
            target = registry.get(name)
        except ConfigError as error:
            raise self.fail(f"{where}.type", f"{where}.type: {error}") from None
        kwargs = {key: self.build_value(value, key, f"{where}.{key}")
                  for key, value in spec.items()}
        try:
            check_arguments(target, kwargs, where, provided=extra)
        except ConfigError as error:
            raise self.fail(str(error).split(":")[0], str(error)) from None
        return self.construct(target, {**kwargs, **extra}, where)

    def construct(self, target: Any, kwargs: Dict[str, Any], where: str) -> Any:
        try:
            return target(**kwargs)
        except GcsegError as error:
            if isinstance(error, ConfigError) and str(error).startswith(str(self.origin(where))):
                raise
            raise self.locate(error, kwargs, where) from None
        except (TypeError, ValueError, AssertionError, ArithmeticError) as error:
            raise self.fail(where, f"{where}: cannot build {getattr(target, '__name__', target)}:"
                                   f" {error}") from None

    def locate(self, error: GcsegError, kwargs: Dict[str, Any], where: str) -> GcsegError:
        """The error of a constructor, prefixed with the file and key; a message that starts
        with one of the constructor's arguments (``weight_decay: ...``) is placed at it, a
        weights error at ``pretrained`` (so an ``--opts`` value is blamed on ``--opts``)."""
        message = str(error)
        key, sep, rest = message.partition(":")
        if sep and key in kwargs:
            where, message = f"{where}.{key}", rest.lstrip()
        elif isinstance(error, CheckpointError) and kwargs.get("pretrained"):
            where = f"{where}.pretrained"  # the only weights a constructor reads
        if isinstance(error, DownloadError) and where.endswith(".pretrained"):
            message += f", or do without them: --opts {where}=null"
        return type(error)(f"{self.origin(where)}: {where}: {message}")

    def build_value(self, value: Any, key: str, where: str) -> Any:
        """An argument's value, with the components under ``REGISTRY_BY_KEY``'s keys built."""
        registry = REGISTRY_BY_KEY.get(key)
        if registry is None or (key in COMPONENT_OR_VALUE_KEYS and not isinstance(value, dict)):
            return value
        if key not in COMPONENT_LIST_KEYS:
            return self.build(value, registry, where)
        if not isinstance(value, list):
            raise self.fail(where, f"{where}: expected a list of {registry.kind}s, each a mapping "
                                   f"with type:, got {value!r}")
        return [self.build(item, registry, f"{where}.{i}") for i, item in enumerate(value)]


def register_components() -> None:
    """Import the modules whose definitions register themselves in the registries."""
    import gcseg.data  # noqa: F401
    import gcseg.losses  # noqa: F401
    import gcseg.models  # noqa: F401
    import gcseg.optim  # noqa: F401
