"""The one place that reads and writes model weights and fits them into a model.

Formats are chosen by extension: ``.pdparams`` (Paddle's pickle, PaddleSeg's checkpoints) and
``.safetensors``; ``.pth`` / ``.pt`` (PyTorch checkpoints: MMSegmentation's models, MMCV's ImageNet
backbones) are read without torch (:mod:`gcseg.models.torch_checkpoint`) and their keys renamed
(:mod:`gcseg.models.mmseg_keys`). Where the file comes from (a path, an archive, a URL,
``open-mmlab://NAME``) is :mod:`gcseg.models.hub`.

A ``.pdparams`` file is a Python pickle, and unpickling can run arbitrary code. Every weights file
is read with a restricted unpickler that rebuilds numpy arrays and plain containers only and
refuses anything else; ``trust_pickle=True`` (``scripts/convert_weights.py --trust_pickle``)
reads with ``paddle.load`` instead, for files one trusts that the restricted reader refuses.
"""
import logging
import os
import pickle
from typing import Any, Dict, List, Mapping, Union

import numpy as np
import paddle
import paddle.nn as nn
from safetensors.numpy import load_file, save_file

from gcseg.errors import CheckpointError, UsageError
from gcseg.models.hub import (READABLE_EXTENSIONS, TORCH_EXTENSIONS, WEIGHT_EXTENSIONS,
                              check_weights_file, resolve_pretrained)
from gcseg.models.mmseg_keys import mmseg_to_gcseg
from gcseg.models.torch_checkpoint import torch_state_dict
from gcseg.staging import staging_path

logger = logging.getLogger(__name__)

_SHOWN_KEYS = 3

# What a state dict pickled by paddle.save (Paddle 2.x/3.x, numpy 1.x/2.x) needs to rebuild.
SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
}


class ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays; any other class or function
    (the way a malicious pickle runs code) is refused."""

    def __init__(self, file, path: str) -> None:
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in SAFE_GLOBALS:
            raise CheckpointError(
                f"{self.path}: refuses to unpickle {module}.{name} (not a plain array; a "
                f".pdparams pickle can run code). Only if you trust where the file came from: "
                f"python scripts/convert_weights.py --trust_pickle {self.path} OUT.safetensors")
        return super().find_class(module, name)


def _extension(path: str, allowed: tuple = WEIGHT_EXTENSIONS) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in allowed:
        raise CheckpointError(f"{path}: unsupported weights format '{ext}'; expected "
                              f"{', '.join(allowed)}")
    return ext


def _to_numpy(value: object) -> np.ndarray:
    return value.numpy() if isinstance(value, paddle.Tensor) else np.asarray(value)


def _read_raw(path: str, ext: str, trust_pickle: bool) -> Any:
    if ext == ".safetensors":
        return load_file(path)
    if trust_pickle:
        return paddle.load(path, return_numpy=True)
    with open(path, "rb") as file:
        return ArraysOnlyUnpickler(file, path).load()


def load_state_dict_file(path: str, *, trust_pickle: bool = False) -> Dict[str, np.ndarray]:
    """Read a ``.pdparams``, ``.safetensors`` or torch ``.pth``/``.pt`` file into
    ``{key: array}`` with gcseg's keys.

    Entries that are not arrays (old Paddle files carry a ``StructuredToParameterName@@``
    table) are dropped. Torch files are read without torch or running pickle code, and
    MMSeg/MMCV keys are renamed. ``trust_pickle``: read ``.pdparams`` with ``paddle.load``,
    which runs any code the pickle holds.
    """
    check_weights_file(path)
    ext = _extension(path, READABLE_EXTENSIONS)
    if ext in TORCH_EXTENSIONS:
        return mmseg_to_gcseg(torch_state_dict(path))
    try:
        raw = _read_raw(path, ext, trust_pickle)
    except CheckpointError:
        raise
    except Exception as exc:  # the readers raise many types for truncated/corrupt files
        raise CheckpointError(f"{path}: cannot read weights, the file is truncated or corrupt "
                              f"({type(exc).__name__}: {str(exc)[:120]})") from exc
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(raw).__name__}")
    state = {key: _to_numpy(value) for key, value in raw.items()
             if isinstance(value, (np.ndarray, paddle.Tensor))}
    if not state:
        raise CheckpointError(f"{path}: the file holds no tensors")
    return state


def save_weights(state_dict_or_layer: Union[nn.Layer, Mapping], path: str) -> None:
    """Write weights to ``path`` (format by extension) atomically: a crash leaves no half file."""
    ext = _extension(path)
    state = (state_dict_or_layer.state_dict() if isinstance(state_dict_or_layer, nn.Layer)
             else state_dict_or_layer)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = staging_path(directory, ".tmp-", ext)
    try:
        if ext == ".safetensors":
            save_file({k: np.ascontiguousarray(_to_numpy(v)) for k, v in state.items()}, tmp)
        else:
            paddle.save(dict(state), tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _shape(shape: object) -> str:
    return "[" + ",".join(str(int(d)) for d in shape) + "]"


def _strip_backbone_prefix(state: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Let a whole-model checkpoint serve as backbone weights (``backbone.x`` -> ``x``)."""
    prefix = "backbone."
    if not any(key.startswith(prefix) for key in state):
        return state
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def _shape_mismatches(layer: nn.Layer, state: Mapping[str, np.ndarray],
                      model_state: Mapping[str, paddle.Tensor]) -> List[str]:
    num_classes = getattr(layer, "num_classes", None)
    found = []
    for key, tensor in model_state.items():
        if key not in state or list(state[key].shape) == list(tensor.shape):
            continue
        ours, theirs = list(tensor.shape), list(state[key].shape)
        hint = (" (different number of classes?)"
                if ours[0] == num_classes and ours[1:] == theirs[1:] else "")
        found.append(f"{key}: checkpoint {_shape(theirs)} vs model {_shape(ours)}{hint}")
    return found


def _first(items: List[str]) -> str:
    more = f" (+{len(items) - _SHOWN_KEYS} more)" if len(items) > _SHOWN_KEYS else ""
    return ", ".join(items[:_SHOWN_KEYS]) + more


def _check_keys(layer: nn.Layer, state: Mapping[str, np.ndarray],
                model_state: Mapping[str, paddle.Tensor], what: str, source: str) -> None:
    mismatched = _shape_mismatches(layer, state, model_state)
    if mismatched:
        raise CheckpointError(f"{source}: {len(mismatched)} tensors do not fit the {what}: "
                              f"{_first(mismatched)}")
    missing = [key for key in model_state if key not in state]
    if missing:
        hint = (" (MMSeg checkpoints need a ResNet*_v1c backbone and head_style: mmseg)"
                if source.lower().endswith(TORCH_EXTENSIONS) else "")
        raise CheckpointError(f"{source}: {len(missing)} {what} tensors are missing from the "
                              f"checkpoint: {_first(missing)}{hint}")
    unexpected = [key for key in state if key not in model_state]
    if unexpected and what == "model":
        raise CheckpointError(f"{source}: {len(unexpected)} checkpoint tensors do not belong "
                              f"to the model: {_first(unexpected)}")
    if unexpected:
        logger.info("%s: skipped %d tensors that are not part of the %s (%s)",
                    source, len(unexpected), what, _first(unexpected))


def load_weights(layer: nn.Layer, path_or_url: str, *, what: str = "model",
                 trust_pickle: bool = False) -> None:
    """Load a checkpoint into ``layer``, requiring every key of ``layer`` with its shape.

    ``what="model"``: the checkpoint must hold exactly the layer's keys. ``what="backbone"``:
    extra entries (an ImageNet classifier ``fc``, or a whole model's head when the keys carry a
    ``backbone.`` prefix) are skipped and counted in the log.
    """
    if what not in ("model", "backbone"):
        raise ValueError(f"what must be 'model' or 'backbone', got {what!r}")
    path = resolve_pretrained(path_or_url)
    if path.lower().endswith(TORCH_EXTENSIONS):
        _check_mmseg_backbone(layer, path)
    state = load_state_dict_file(path, trust_pickle=trust_pickle)
    if what == "backbone":
        state = _strip_backbone_prefix(state)
    model_state = layer.state_dict()
    _check_keys(layer, state, model_state, what, path)
    layer.set_state_dict({key: state[key].astype(_numpy_dtype(tensor), copy=False)
                          for key, tensor in model_state.items()})
    logger.info("loaded %d tensors into the %s from %s", len(model_state), what, path)


def _check_mmseg_backbone(layer: nn.Layer, source: str) -> None:
    """MMSeg's ResNetV1c weights fit ResNet-vd's keys and shapes but not its computation
    (shortcut pooling, dilations): refuse them there instead of giving wrong outputs."""
    backbone = getattr(layer, "backbone", layer)
    if getattr(backbone, "mmseg_layout", True) is False:
        raise CheckpointError(f"{source}: MMSeg/MMCV weights need a ResNet*_v1c backbone, not "
                              f"{type(backbone).__name__} (same keys, different network)")


def _numpy_dtype(tensor: paddle.Tensor) -> np.dtype:
    # str(dtype) is 'paddle.float32' on Paddle 2.6 and 3.x alike
    return np.dtype(str(tensor.dtype).split(".")[-1])


def _verify_round_trip(source: Dict[str, np.ndarray], out: str) -> None:
    """``out`` read back holds exactly ``source``: same keys, dtypes, shapes and bytes."""
    written = load_state_dict_file(out)
    if written.keys() != source.keys():
        differ = sorted(written.keys() ^ source.keys())[:3]
        raise CheckpointError(f"{out}: round trip changed the keys (e.g. {differ})")
    for key, value in source.items():
        back = written[key]
        if back.dtype != value.dtype or back.shape != value.shape or \
                back.tobytes() != np.ascontiguousarray(value).tobytes():
            raise CheckpointError(f"{out}: round trip changed {key} ({value.dtype}"
                                  f"{list(value.shape)} -> {back.dtype}{list(back.shape)})")


def convert_weights(source: str, out: str, *, force: bool = False,
                    trust_pickle: bool = False) -> int:
    """Write ``source``'s tensors to ``out`` (formats by extension); returns how many. ``out`` is
    read back and compared tensor by tensor, and removed if it differs."""
    for path, allowed in ((source, READABLE_EXTENSIONS), (out, WEIGHT_EXTENSIONS)):
        if not path.lower().endswith(allowed):
            raise UsageError(f"{path}: expected a {', '.join(allowed)} file name")
    if os.path.abspath(source) == os.path.abspath(out):
        raise UsageError(f"{out}: the output is the input")
    if os.path.exists(out) and not force:
        raise UsageError(f"{out} exists; pass --force to overwrite it")
    state = load_state_dict_file(source, trust_pickle=trust_pickle)
    save_weights(state, out)
    try:
        _verify_round_trip(state, out)
    except CheckpointError:
        os.remove(out)
        raise
    return len(state)
