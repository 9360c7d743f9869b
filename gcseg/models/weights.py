"""The one place that reads, writes and fetches model weights.

Formats are chosen by extension: ``.pdparams`` (Paddle's pickle, PaddleSeg's checkpoints) and
``.safetensors``; ``.pth`` / ``.pt`` (PyTorch checkpoints: MMSegmentation's models, MMCV's ImageNet
backbones) are read without torch (:mod:`gcseg.models.torch_checkpoint`) and their keys renamed
(:mod:`gcseg.models.mmseg_keys`). ``pretrained:`` values may be URLs or ``open-mmlab://NAME``;
they are downloaded once into ``$GCSEG_HOME/pretrained`` (default ``~/.cache/gcseg/pretrained``).
Archives (PaddleSeg's ImageNet ``.tar.gz``, also ``.tgz``, ``.tar``, ``.zip``), downloaded or
local, are unpacked there once.
"""
import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from typing import Callable, Dict, List, Mapping, Optional, Union
from urllib.parse import urlparse

import numpy as np
import paddle
import paddle.nn as nn
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

from gcseg.errors import CheckpointError, DownloadError
from gcseg.models.mmseg_keys import mmseg_to_gcseg
from gcseg.models.torch_checkpoint import torch_state_dict
from gcseg.staging import make_staging_dir, staging_path

logger = logging.getLogger(__name__)

WEIGHT_EXTENSIONS = (".pdparams", ".safetensors")  # what gcseg writes
TORCH_EXTENSIONS = (".pth", ".pt")
READABLE_EXTENSIONS = WEIGHT_EXTENSIONS + TORCH_EXTENSIONS
# MMCV's ImageNet backbones by their open-mmlab:// names (mmengine's hub/openmmlab.json)
OPENMMLAB_URLS = {
    "resnet18_v1c": "https://download.openmmlab.com/pretrain/third_party/resnet18_v1c-b5776b93.pth",
    "resnet50_v1c": "https://download.openmmlab.com/pretrain/third_party/resnet50_v1c-2cccc1ad.pth",
    "resnet101_v1c":
        "https://download.openmmlab.com/pretrain/third_party/resnet101_v1c-e67eebb6.pth",
}
_OPENMMLAB = "open-mmlab://"
_ARCHIVE_EXTENSIONS = (".tar.gz", ".tgz", ".tar", ".zip")
_SHOWN_KEYS = 3


def _extension(path: str, allowed: tuple = WEIGHT_EXTENSIONS) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in allowed:
        raise CheckpointError(f"{path}: unsupported weights format '{ext}'; expected "
                              f"{', '.join(allowed)}")
    return ext


def _check_weights_file(path: str) -> None:
    """A weights path must be a file; a directory gets the file to pass inside it named."""
    if os.path.isdir(path):
        inside = os.path.join(path, "model.pdparams")
        if os.path.isfile(inside):
            raise CheckpointError(f"{path} is a directory; pass {inside}")
        raise CheckpointError(f"{path} is a directory; pass a {' or '.join(WEIGHT_EXTENSIONS)} "
                              f"file (there is no model.pdparams in it)")
    if not os.path.isfile(path):
        raise CheckpointError(f"weights file not found: {path}")


def _to_numpy(value: object) -> np.ndarray:
    return value.numpy() if isinstance(value, paddle.Tensor) else np.asarray(value)


def load_state_dict_file(path: str) -> Dict[str, np.ndarray]:
    """Read a ``.pdparams``, ``.safetensors`` or torch ``.pth``/``.pt`` file into
    ``{key: array}`` with gcseg's keys.

    Entries that are not arrays (old Paddle files carry a ``StructuredToParameterName@@``
    table) are dropped. Torch files are read without torch or running pickle code, and
    MMSeg/MMCV keys are renamed.
    """
    _check_weights_file(path)
    ext = _extension(path, READABLE_EXTENSIONS)
    if ext in TORCH_EXTENSIONS:
        return mmseg_to_gcseg(torch_state_dict(path))
    try:
        if ext == ".safetensors":
            raw = load_file(path)
        else:
            raw = paddle.load(path, return_numpy=True)
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


def load_weights(layer: nn.Layer, path_or_url: str, *, what: str = "model") -> None:
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
    state = load_state_dict_file(path)
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


def cache_dir() -> str:
    """Where downloaded and unpacked weights live: ``$GCSEG_HOME/pretrained`` or
    ``~/.cache/gcseg/pretrained``."""
    home = os.environ.get("GCSEG_HOME") or os.path.join(os.path.expanduser("~"), ".cache",
                                                        "gcseg")
    return os.path.join(home, "pretrained")


def openmmlab_url(name: str) -> str:
    """The download URL of ``open-mmlab://NAME`` (MMCV's ImageNet backbones)."""
    model = name[len(_OPENMMLAB):]
    if model not in OPENMMLAB_URLS:
        raise CheckpointError(f"{name}: unknown open-mmlab model; expected one of "
                              f"{', '.join(_OPENMMLAB + known for known in OPENMMLAB_URLS)}")
    return OPENMMLAB_URLS[model]


def resolve_pretrained(path_or_url: str) -> str:
    """Return a local weights file for a path (checked), a local archive (unpacked once into the
    cache) or a URL or ``open-mmlab://NAME`` (downloaded once, cached)."""
    if path_or_url.startswith(_OPENMMLAB):
        url = openmmlab_url(path_or_url)
        try:
            return _resolve_url(url)
        except CheckpointError as error:
            raise CheckpointError(f"{path_or_url}: {error}") from None
    if urlparse(path_or_url).scheme in ("http", "https"):
        return _resolve_url(path_or_url)
    _check_weights_file(path_or_url)
    return _resolve_archive(path_or_url) if _is_archive(path_or_url) else path_or_url


def _resolve_url(url: str) -> str:
    name = os.path.basename(urlparse(url).path) or "weights"
    entry = _cached(_cache_entry(name, url), lambda staging: _download(url, name, staging))
    return _find_weights(entry, url)


def _resolve_archive(archive: str) -> str:
    stat = os.stat(archive)  # keyed by path, size and time: a replaced archive is unpacked afresh
    key = f"{os.path.abspath(archive)}:{stat.st_size}:{stat.st_mtime_ns}"
    entry = _cached(_cache_entry(os.path.basename(archive), key),
                    lambda staging: _unpack(archive, staging, archive))
    return _find_weights(entry, archive)


def _is_archive(name: str) -> bool:
    return name.lower().endswith(_ARCHIVE_EXTENSIONS)


def _cache_entry(name: str, key: str) -> str:
    """The cache directory for ``name``: readable, and unique per ``key`` (a URL or file)."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return os.path.join(cache_dir(), f"{_strip_archive_ext(name)}-{digest}")


def _strip_archive_ext(name: str) -> str:
    for ext in _ARCHIVE_EXTENSIONS + READABLE_EXTENSIONS:
        if name.lower().endswith(ext):
            return name[:-len(ext)]
    return name


def _cached(target: str, fill: Callable[[str], None]) -> str:
    """Create the cache entry ``target`` once: ``fill`` writes a temp dir renamed to ``target``,
    so an interrupted download or unpacking leaves no half entry."""
    if os.path.isdir(target):
        return target
    os.makedirs(cache_dir(), exist_ok=True)
    staging = make_staging_dir(cache_dir(), ".tmp-")
    try:
        fill(staging)
        try:
            os.replace(staging, target)
        except OSError:
            if not os.path.isdir(target):  # not just another process finishing first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _download(url: str, name: str, staging: str) -> None:
    """Download ``url`` into ``staging`` as ``name``, unpacking (and dropping) an archive."""
    file_path = os.path.join(staging, name)
    _fetch(url, file_path)
    if _is_archive(name):
        _unpack(file_path, staging, url)
        os.remove(file_path)


def _fetch(url: str, file_path: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(file_path, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=os.path.basename(file_path),
                      leave=False) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        if isinstance(exc, urllib.error.HTTPError):
            reason = f"HTTP {exc.code} {exc.reason}"
        else:
            reason = getattr(exc, "reason", None) or exc
        raise DownloadError(
            f"cannot download {url} ({reason}); fetch it on a machine with internet access "
            f"and pass the local file via `pretrained: /path/to/{os.path.basename(file_path)}`"
        ) from exc


def _unpack(archive: str, destination: str, source: str) -> None:
    """Extract a tar or zip ``archive`` into ``destination``; errors name ``source``."""
    try:
        if archive.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(destination)  # zipfile drops absolute paths and '..' itself
        else:
            with tarfile.open(archive) as tar:
                _extract_tar(tar, destination, source)
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise CheckpointError(f"{source}: the archive is corrupt ({exc})") from exc


def _extract_tar(tar: tarfile.TarFile, destination: str, source: str) -> None:
    if not hasattr(tarfile, "data_filter"):  # before Python 3.9.17, 3.10.12, 3.11.4
        _extract_checked(tar, destination, source)
        return
    try:
        tar.extractall(destination, filter="data")
    except tarfile.FilterError as exc:
        raise _unsafe_archive(source, str(exc)) from exc


def _extract_checked(tar: tarfile.TarFile, destination: str, source: str) -> None:
    """What ``filter="data"`` guarantees, for Pythons without it: one member at a time (so a
    link extracted earlier is followed when checking later paths), nothing lands outside."""
    root = os.path.realpath(destination)
    for member in tar:
        reason = _unsafe_reason(member, root)
        if reason:
            raise _unsafe_archive(source, f"{member.name!r} {reason}")
        tar.extract(member, destination, set_attrs=False)  # permissions from the umask


def _unsafe_reason(member: tarfile.TarInfo, root: str) -> Optional[str]:
    """Why extracting ``member`` under ``root`` is unsafe, or None when it is safe."""
    if os.path.isabs(member.name) or ".." in member.name.split("/"):
        return "has an absolute path or a '..' component"
    if member.isdev():
        return "is a device file or pipe"
    path = os.path.join(root, member.name)
    if not _inside(root, path):
        return "would be extracted outside the destination through a link"
    if member.issym() or member.islnk():
        base = os.path.dirname(path) if member.issym() else root  # hard links name from the top
        if os.path.isabs(member.linkname) or not _inside(root, os.path.join(base, member.linkname)):
            return f"links outside the destination ({member.linkname})"
    return None


def _inside(root: str, path: str) -> bool:
    return os.path.commonpath([root, os.path.realpath(path)]) == root


def _unsafe_archive(source: str, reason: str) -> CheckpointError:
    return CheckpointError(f"{source}: refusing to unpack the archive, member {reason}")


def _find_weights(directory: str, source: str) -> str:
    """The weights file in a cache entry: ``model.pdparams`` if present, else the only one."""
    found = sorted(os.path.join(root, file) for root, _, files in os.walk(directory)
                   for file in files if file.lower().endswith(READABLE_EXTENSIONS))
    preferred = [path for path in found if os.path.basename(path) == "model.pdparams"]
    if len(preferred) == 1:
        return preferred[0]
    if len(found) == 1:
        return found[0]
    raise CheckpointError(f"{source}: expected one weights file "
                          f"({', '.join(READABLE_EXTENSIONS)}) in it, found "
                          f"{len(found)} (cached in {directory})")
