"""One registry mechanism for every component kind a config can name by ``type:``."""
import difflib
from typing import Callable, Dict, Iterator, Optional

from gcseg.errors import ConfigError


class Registry:
    """Maps a ``type:`` name to a class or factory function.

    ``@MODELS.register`` at the definition keeps the registry in step with the code.
    Look-ups are exact first, then case-insensitive (PaddleSeg configs write both ``SGD``
    and ``sgd``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: Dict[str, Callable] = {}

    def register(self, obj: Optional[Callable] = None, *, name: Optional[str] = None):
        def add(target: Callable) -> Callable:
            key = name or target.__name__
            if key in self._entries and self._entries[key] is not target:
                raise KeyError(f"{self.kind} '{key}' is registered twice")
            self._entries[key] = target
            return target

        return add(obj) if obj is not None else add

    def get(self, name: str) -> Callable:
        if not isinstance(name, str):
            raise ConfigError(f"expected a name, got {name!r} "
                              f"(known {self.kind} types: {', '.join(sorted(self._entries))})")
        if name in self._entries:
            return self._entries[name]
        by_lower = {key.lower(): value for key, value in self._entries.items()}
        if name.lower() in by_lower:
            return by_lower[name.lower()]
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        shown = f"'{name}'" if name.isprintable() else repr(name)  # the message stays one line
        raise ConfigError(
            f"unknown {self.kind} type {shown}{hint} (known: {', '.join(sorted(self._entries))})")

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


MODELS = Registry("model")
BACKBONES = Registry("backbone")
DATASETS = Registry("dataset")
TRANSFORMS = Registry("transform")
LOSSES = Registry("loss")
OPTIMIZERS = Registry("optimizer")
LR_SCHEDULERS = Registry("lr_scheduler")
