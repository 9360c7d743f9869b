"""Where weights files come from: a local path (checked), a local archive or a URL.

``pretrained:`` values may be URLs or ``open-mmlab://NAME``; they are downloaded once into ``$GCSEG_HOME/pretrained``
(default ``~/.cache/gcseg/pretrained``). Archives (PaddleSeg's ImageNet ``.tar.gz``, also
``.tgz``, ``.tar``, ``.zip``), downloaded or local, are unpacked there once.
"""
import hashlib
import http.client
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from typing import Callable, Optional
from urllib.parse import urlparse

from tqdm import tqdm

from gcseg.errors import CheckpointError, DownloadError
from gcseg.staging import make_staging_dir

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


def check_weights_file(path: str) -> None:
    """A weights path must be a file; a directory gets the file to pass inside it named."""
    if os.path.isdir(path):
        inside = os.path.join(path, "model.pdparams")
        if os.path.isfile(inside):
            raise CheckpointError(f"{path} is a directory; pass {inside}")
        raise CheckpointError(f"{path} is a directory; pass a {' or '.join(WEIGHT_EXTENSIONS)} "
                              f"file (there is no model.pdparams in it)")
    if not os.path.isfile(path):
        raise CheckpointError(f"weights file not found: {path}")

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
    check_weights_file(path_or_url)
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
