"""Read PyTorch checkpoints (``torch.save`` files) into numpy arrays without torch.

Both formats torch writes are read: the zip archive of torch >= 1.6 (``<name>/data.pkl`` plus
one raw file per storage under ``<name>/data/``) and the legacy stream of earlier versions
(magic number, protocol, system info, the object pickle, the storage keys, then each storage as
an int64 element count followed by its bytes), which MMSegmentation's 2020 checkpoints use.

The pickle is read with a restricted unpickler: it rebuilds tensors (``_rebuild_tensor_v2``,
``_rebuild_parameter``), storages (through ``persistent_load``) and ``OrderedDict``, and never
imports or calls anything the file names. Any other class becomes an inert :class:`Opaque`
record, which is fine in a checkpoint's ``meta`` and an error among the weights.
"""
import collections
import pickle
import struct
import zipfile
from typing import Any, BinaryIO, Dict, List, Tuple

import numpy as np

from gcseg.errors import CheckpointError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class Opaque:
    """What the restricted unpickler makes of a class it does not rebuild (``name``): the data
    the pickle gives it is kept, nothing of the class is imported or executed."""

    name = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.items = args, []

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))

    def append(self, value: Any) -> None:
        self.items.append(value)

    def extend(self, values: Any) -> None:
        self.items.extend(values)

    def __repr__(self) -> str:
        return f"<{self.name}>"


class _Storage:
    """A storage's dtype and, once read, its elements."""

    def __init__(self, dtype_name: str, numel: int) -> None:
        self.dtype_name, self.numel = dtype_name, numel
        self.itemsize = 2 if dtype_name == "bfloat16" else np.dtype(dtype_name).itemsize
        self.data = None  # 1-D array, filled from the file

    def fill(self, raw: bytes) -> None:
        if self.dtype_name == "bfloat16":  # numpy has none: widen to float32 exactly
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            self.data = bits.view(np.float32)
        else:
            self.data = np.frombuffer(raw, dtype=np.dtype(self.dtype_name).newbyteorder("<"))


class _TensorRef:
    """A tensor to cut out of a storage once its bytes have been read."""

    def __init__(self, storage: _Storage, offset: int, size: Tuple[int, ...],
                 stride: Tuple[int, ...]) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def array(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise CheckpointError("a tensor's storage is missing from the file")
        if int(np.prod(self.size)) == 0:
            return np.zeros(self.size, dtype=data.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if last >= data.size or self.offset < 0:
            raise CheckpointError("a tensor reaches past the end of its storage")
        strides = [s * data.itemsize for s in self.stride]
        view = np.lib.stride_tricks.as_strided(data[self.offset:], self.size, strides)
        return np.array(view, dtype=data.dtype.newbyteorder("="))


def _rebuild_tensor(storage: _Storage, offset: int, size: Tuple[int, ...],
                    stride: Tuple[int, ...], *unused: Any) -> _TensorRef:
    if not isinstance(storage, _Storage):
        raise CheckpointError(f"a tensor built on {storage!r}, not on a storage")
    return _TensorRef(storage, int(offset), tuple(size), tuple(stride))


def _rebuild_parameter(data: Any, *unused: Any) -> Any:
    return data


_REBUILDERS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a torch checkpoint's object tree without importing anything it names."""

    def __init__(self, file: BinaryIO, storages: Dict[str, _Storage]) -> None:
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _REBUILDERS:
            return _REBUILDERS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        return type("Opaque", (Opaque,), {"name": f"{module}.{name}"})

    def persistent_load(self, saved_id: Any) -> _Storage:
        # ('storage', storage_type, key, location, numel[, view_metadata (legacy only)])
        kind, storage_type, key = saved_id[0], saved_id[1], str(saved_id[2])
        if kind != "storage" or storage_type not in _STORAGE_DTYPES:
            raise CheckpointError(f"unsupported torch storage {saved_id[:2]!r}")
        if len(saved_id) > 5 and saved_id[5] is not None:
            raise CheckpointError("storage views (torch < 0.4 files) are not supported")
        if key not in self.storages:
            self.storages[key] = _Storage(_STORAGE_DTYPES[storage_type], int(saved_id[4]))
        return self.storages[key]


def _read_zip(path: str) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [name for name in names if name.endswith("/data.pkl") or name == "data.pkl"]
        if len(pickles) != 1:
            raise CheckpointError(f"{path}: a zip file but not a torch checkpoint (no data.pkl)")
        prefix = pickles[0][:-len("data.pkl")]
        byteorder = archive.read(prefix + "byteorder") if prefix + "byteorder" in names else b""
        if byteorder.strip() == b"big":
            raise CheckpointError(f"{path}: big-endian torch checkpoints are not supported")
        storages: Dict[str, _Storage] = {}
        with archive.open(pickles[0]) as file:
            result = _RestrictedUnpickler(file, storages).load()
        for key, storage in storages.items():
            storage.fill(archive.read(f"{prefix}data/{key}"))
    return result


def _read_legacy(path: str) -> Any:
    with open(path, "rb") as file:
        if _RestrictedUnpickler(file, {}).load() != _LEGACY_MAGIC:
            raise CheckpointError(f"{path}: not a torch checkpoint (neither zip nor legacy)")
        _protocol, system = (_RestrictedUnpickler(file, {}).load() for _ in range(2))
        if isinstance(system, dict) and not system.get("little_endian", True):
            raise CheckpointError(f"{path}: big-endian torch checkpoints are not supported")
        storages: Dict[str, _Storage] = {}
        result = _RestrictedUnpickler(file, storages).load()
        keys: List[str] = [str(key) for key in _RestrictedUnpickler(file, {}).load()]
        for key in keys:
            storage = storages[key]
            (numel,) = struct.unpack("<q", file.read(8))
            raw = file.read(numel * storage.itemsize)
            if len(raw) != numel * storage.itemsize:
                raise EOFError(f"storage {key}: {len(raw)} of {numel * storage.itemsize} bytes")
            storage.fill(raw)
    return result


def _materialise(value: Any) -> Any:
    """Replace every tensor reference in a tree of dicts, lists and tuples by its array."""
    if isinstance(value, _TensorRef):
        return value.array()
    if isinstance(value, dict):
        return {key: _materialise(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_materialise(item) for item in value)
    return value


def read_torch_file(path: str) -> Any:
    """The object ``torch.save`` wrote to ``path``, tensors as numpy arrays."""
    try:
        result = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
        return _materialise(result)
    except CheckpointError as error:
        message = str(error)
        raise CheckpointError(message if message.startswith(path) else f"{path}: {message}") \
            from None
    except Exception as error:  # noqa: BLE001 - a corrupt pickle or zip raises many types
        raise CheckpointError(f"{path}: cannot read the torch checkpoint, the file is truncated "
                              f"or corrupt ({type(error).__name__}: {str(error)[:120]})") from None


def torch_state_dict(path: str) -> Dict[str, np.ndarray]:
    """The weights of a torch checkpoint: its ``state_dict`` entry (MMSeg/MMCV segmentor and
    training checkpoints) or the file's own dict of tensors (plain ``model.state_dict()``
    saves, MMCV's ImageNet backbones). A ``module.`` prefix (DataParallel) is dropped."""
    content = read_torch_file(path)
    if isinstance(content, dict) and isinstance(content.get("state_dict"), dict):
        content = content["state_dict"]
    if not isinstance(content, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(content).__name__}")
    not_arrays = [key for key, value in content.items() if not isinstance(value, np.ndarray)]
    if not_arrays:
        raise CheckpointError(f"{path}: entries that are not tensors among the weights: "
                              f"{', '.join(map(str, not_arrays[:3]))}")
    return {(key[len("module."):] if key.startswith("module.") else key): value
            for key, value in content.items()}
