"""YAML configs in PaddleSeg's format: ``_base_`` inheritance, ``--opts`` overrides, and the
``Config`` whose components :mod:`gcseg.builder` builds by ``type:``.

Inheritance follows PaddleSeg exactly: ``_base_`` is a path or a list of paths relative to the
file; a file's own keys win over its bases, and for a list of bases an earlier base wins over a
later one; nested dicts merge key by key, anything else (lists included) is replaced;
``_inherited_: False`` in a section stops the merge for that section.

Every error names the file that set the offending key (bases included) and the dotted key.
"""
import ast
import copy
import difflib
import functools
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import yaml

from gcseg.builder import ComponentBuilder, register_components
from gcseg.errors import ConfigError
from gcseg.registry import DATASETS, LOSSES, LR_SCHEDULERS, MODELS, OPTIMIZERS

BASE_KEY = "_base_"
INHERIT_KEY = "_inherited_"
OPTS_ORIGIN = "--opts"

# The top-level keys PaddleSeg 2.8 reads (cvlibs/config.py, its tools and configs), old-style
# ``learning_rate`` and ``test_config`` included; anything else is a misspelling.
TOP_LEVEL_KEYS = (
    "batch_size", "iters", "model", "train_dataset", "val_dataset", "test_dataset", "optimizer",
    "lr_scheduler", "learning_rate", "loss", "distill_loss", "export", "global", "train", "test",
    "test_config", "to_static_training", BASE_KEY, INHERIT_KEY)

# PaddleSeg's runtime.yml: the defaults of the script flags, by section. The test: section's
# are also the defaults of the InferenceSettings fields of the same names
# (gcseg.engine.inference reads them here).
RUNTIME_DEFAULTS = {
    "global": {"data_format": "NCHW", "device": None, "num_workers": 0},
    "train": {"save_dir": "./output", "do_eval": False, "resume_model": None,
              "save_interval": 1000, "log_iters": 10, "keep_checkpoint_max": 5, "seed": None,
              "precision": "fp32", "amp_level": "O1", "use_vdl": False, "repeats": 1},
    "test": {"aug_eval": False, "scales": 1.0, "flip_horizontal": False,
             "flip_vertical": False, "is_slide": False, "crop_size": None, "stride": None,
             "auc_roc": False},
}


# ----------------------------------------------------------------------------- loading
def _read_yaml(path: Path) -> Dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config file ({error})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, "
                          f"got {type(data).__name__}")
    return data


def _record_origins(dic: Dict[str, Any], origin: str, origins: Dict[str, str],
                    prefix: str = "") -> None:
    for key, value in dic.items():
        dotted = f"{prefix}{key}"
        origins[dotted] = origin
        if isinstance(value, dict):
            _record_origins(value, origin, origins, dotted + ".")


def merge_dicts(child: Dict[str, Any], base: Dict[str, Any]) -> Dict[str, Any]:
    """Merge ``child`` over ``base``: nested dicts key by key, any other value replaced."""
    if not child.get(INHERIT_KEY, True):
        return {key: value for key, value in child.items() if key != INHERIT_KEY}
    merged = dict(base)
    for key, value in child.items():
        if key == INHERIT_KEY:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_dicts(value, merged[key])
        else:
            merged[key] = value
    return merged


def _base_paths(path: Path, dic: Dict[str, Any]) -> List[Path]:
    bases = dic.pop(BASE_KEY, None)
    if bases is None:
        return []
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(base, str) for base in bases):
        raise ConfigError(f"{path}: {BASE_KEY}: expected a path or a list of paths, got {bases!r}")
    resolved = []
    for base in bases:
        try:
            base_path = (path.parent / base).resolve()
        except (OSError, ValueError) as error:
            raise ConfigError(f"{path}: {BASE_KEY}: invalid path {base!r} ({error})") from None
        if not base_path.is_file():
            raise ConfigError(f"{path}: {BASE_KEY}: file '{base}' not found "
                              f"(looked for {base_path})")
        resolved.append(base_path)
    return resolved


def load_yaml_with_bases(path: Union[str, Path], origins: Optional[Dict[str, str]] = None,
                         _chain: Sequence[Path] = ()) -> Dict[str, Any]:
    """Read ``path`` and everything it inherits into one dict (PaddleSeg's merge order).

    ``origins`` receives, for every dotted key, the file whose value won.
    """
    path = Path(path).resolve()
    if path in _chain:
        cycle = " -> ".join(p.name for p in (*_chain, path))
        raise ConfigError(f"{_chain[-1]}: {BASE_KEY} cycle: {cycle}")
    dic = _read_yaml(path)
    bases = _base_paths(path, dic)
    own_origins: Dict[str, str] = {}
    _record_origins(dic, str(path), own_origins)
    inherited_origins: Dict[str, str] = {}
    for base_path in bases:
        base_origins: Dict[str, str] = {}
        dic = merge_dicts(dic, load_yaml_with_bases(base_path, base_origins, (*_chain, path)))
        inherited_origins = {**base_origins, **inherited_origins}
    if origins is not None:
        origins.update({**inherited_origins, **own_origins})
    return dic


# ----------------------------------------------------------------------------- overrides
def parse_opt_value(raw: str) -> Any:
    """An ``--opts`` value in either spelling users bring: Python literals as PaddleSeg reads
    them (``None``, ``True``, ``[1, 2]``, ``0.75,1.0`` -> a list, ``1e-4``), else YAML
    (``null``, ``true``, ``[a, b]``, ``{k: v}``), else the text itself."""
    if not raw.strip():
        return None
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError:
            return raw
    return _tuples_as_lists(value)


def _tuples_as_lists(value: Any) -> Any:
    """Python tuples become lists, as YAML would have written them."""
    if isinstance(value, (list, tuple)):
        return [_tuples_as_lists(item) for item in value]
    if isinstance(value, dict):
        return {key: _tuples_as_lists(item) for key, item in value.items()}
    return value


def parse_opts(opts: Optional[Sequence[str]]) -> List[tuple]:
    """``["a.b=1", "c=[1, 2]"]`` -> ``[(["a", "b"], 1), (["c"], [1, 2])]`` (values as
    :func:`parse_opt_value` reads them)."""
    parsed = []
    for item in opts or []:
        key, sep, raw = str(item).partition("=")
        if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
            raise ConfigError(f"{OPTS_ORIGIN}: {str(item)!r}: expected key=value, e.g. "
                              "batch_size=4 or model.backbone.output_stride=16")
        parsed.append((key.strip().split("."), parse_opt_value(raw)))
    return parsed


def apply_opts(dic: Dict[str, Any], opts: Optional[Sequence[str]],
               origins: Dict[str, str]) -> None:
    for keys, value in parse_opts(opts):
        node = dic
        for depth, key in enumerate(keys[:-1]):
            if key not in node:
                origins[".".join(keys[:depth + 1])] = OPTS_ORIGIN
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                where = ".".join(keys[:depth + 1])
                raise ConfigError(f"{OPTS_ORIGIN}: {'.'.join(keys)}: '{where}' holds "
                                  f"{child!r}, not a section that could contain '{keys[-1]}'")
            node = child
        node[keys[-1]] = value
        origins[".".join(keys)] = OPTS_ORIGIN


# ----------------------------------------------------------------------------- Config
class Config:
    """A training/evaluation setup read from a PaddleSeg-format YAML file.

    Components are built on first access and cached, so reading ``cfg.model`` never touches the
    dataset files, and ``cfg.optimizer`` reuses the same model and lr scheduler.
    """

    def __init__(self, path: Union[str, Path], opts: Optional[Sequence[str]] = None,
                 load_pretrained: bool = True) -> None:
        """``load_pretrained=False`` skips the model's and backbone's ``pretrained`` weights: for
        evaluation, prediction and export, where a trained checkpoint replaces them anyway (and
        an offline machine could not download them)."""
        register_components()
        self.load_pretrained = load_pretrained
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"{self.path}: config file not found")
        self.origins: Dict[str, str] = {}
        self.dic = load_yaml_with_bases(self.path, self.origins)
        apply_opts(self.dic, opts, self.origins)
        self._builder = ComponentBuilder(self.origins, self.path)
        self._check_top_level_keys()
        self._check_schedule()

    # -- plain values
    def _positive_int(self, key: str) -> int:
        value = self.dic.get(key)
        if value is None:
            raise self._builder.fail(key, f"{key}: missing (a positive integer is required)")
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self._builder.fail(key, f"{key}: expected a positive integer, got {value!r}")
        return value

    def _check_top_level_keys(self) -> None:
        for key in self.dic:
            if key in TOP_LEVEL_KEYS:
                continue
            close = difflib.get_close_matches(str(key), TOP_LEVEL_KEYS, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(TOP_LEVEL_KEYS)}"
            shown = key if str(key).isprintable() else repr(key)  # the message stays one line
            raise self._builder.fail(str(key), f"{shown}: unknown top-level key ({hint})")

    def _check_schedule(self) -> None:
        for key in ("batch_size", "iters"):
            if key in self.dic:
                self._positive_int(key)

    @property
    def batch_size(self) -> int:
        return self._positive_int("batch_size")

    @property
    def iters(self) -> int:
        return self._positive_int("iters")

    def section(self, key: str) -> Dict[str, Any]:
        value = self.dic.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self._builder.fail(key, f"{key}: expected a mapping, got {value!r}")
        return copy.deepcopy(value)

    def runtime(self, section: str) -> Dict[str, Any]:
        """PaddleSeg runtime.yml defaults (``global``/``train``/``test``) merged with the file's.

        The older top-level ``test_config:`` section counts as ``test:``.
        """
        if section not in RUNTIME_DEFAULTS:
            raise KeyError(section)
        values = dict(RUNTIME_DEFAULTS[section])
        if section == "test":
            values.update(self.section("test_config"))
        values.update(self.section(section))
        return values

    # -- components (built on first access, then cached)
    def _required_section(self, key: str) -> Dict[str, Any]:
        spec = self.section(key)
        if not spec:
            raise self._builder.fail(key, f"{key}: missing (a required section)")
        return spec

    def _dataset_class(self, key: str) -> Any:
        spec = self.section(key)
        if "type" not in spec:
            return None
        try:
            return DATASETS.get(spec["type"])
        except ConfigError as error:
            raise self._builder.fail(f"{key}.type", f"{key}.type: {error}") from None

    def dataset_num_classes(self) -> Optional[int]:
        """The class count the datasets declare, without reading any dataset file."""
        for key in ("train_dataset", "val_dataset"):
            spec = self.section(key)
            if "num_classes" in spec:
                return spec["num_classes"]
            declared = getattr(self._dataset_class(key), "NUM_CLASSES", None)
            if declared is not None:
                return declared
        return None

    @functools.cached_property
    def model(self):
        spec = self._required_section("model")
        if not self.load_pretrained:
            spec.pop("pretrained", None)
            if isinstance(spec.get("backbone"), dict):
                spec["backbone"].pop("pretrained", None)
        num_classes = self.dataset_num_classes()
        if "num_classes" not in spec:
            if num_classes is None:
                raise self._builder.fail("model", "model.num_classes: missing, and no dataset "
                                                  "declares its number of classes")
            spec["num_classes"] = num_classes
        elif num_classes is not None and spec["num_classes"] != num_classes:
            raise self._builder.fail("model.num_classes", f"model.num_classes: "
                                     f"{spec['num_classes']} differs from the dataset's "
                                     f"{num_classes}")
        return self._builder.build(spec, MODELS, "model")

    @functools.cached_property
    def train_dataset(self):
        return self._builder.build(self._required_section("train_dataset"), DATASETS,
                                   "train_dataset")

    @functools.cached_property
    def val_dataset(self):
        return self._builder.build(self._required_section("val_dataset"), DATASETS,
                                   "val_dataset")

    @property
    def has_val_dataset(self) -> bool:
        return bool(self.section("val_dataset"))

    @functools.cached_property
    def loss(self) -> Dict[str, list]:
        spec = self.section("loss")
        types, coef = spec.get("types"), spec.get("coef")
        if not isinstance(types, list) or not types:
            raise self._builder.fail("loss.types", "loss.types: expected a list of losses, "
                                                   f"got {types!r}")
        if not isinstance(coef, list) or not all(isinstance(c, (int, float)) for c in coef):
            raise self._builder.fail("loss.coef", f"loss.coef: expected a list of numbers, "
                                                  f"got {coef!r}")
        from gcseg.losses import one_type_per_coef
        try:
            types = one_type_per_coef(types, coef)
        except ConfigError as error:
            raise self._builder.fail("loss.coef", str(error)) from None
        built = [self._builder.build(item, LOSSES, f"loss.types.{i}")
                 for i, item in enumerate(types)]
        return {"types": built, "coef": [float(c) for c in coef]}

    @functools.cached_property
    def lr_scheduler(self):
        return self._builder.build(self._required_section("lr_scheduler"), LR_SCHEDULERS,
                                   "lr_scheduler", total_iters=self.iters)

    @functools.cached_property
    def optimizer(self):
        return self._builder.build(self._required_section("optimizer"), OPTIMIZERS, "optimizer",
                                   parameters=self.model.named_parameters(),
                                   learning_rate=self.lr_scheduler)

    def __repr__(self) -> str:
        return f"Config({str(self.path)!r})"

    def dump(self) -> str:
        return yaml.safe_dump(self.dic, sort_keys=False)
