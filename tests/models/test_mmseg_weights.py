"""Torch checkpoints are read without torch and without running their pickle code;
``open-mmlab://`` names download once into the cache and fail offline in one line.

Reading real ``torch.save`` files (both formats) is tested against torch itself in
test_mmseg_parity.py.
"""
import io
import os
import pickle
import socket
import zipfile

import pytest

from gcseg.errors import CheckpointError
from gcseg.models import resolve_pretrained
from gcseg.models import hub
from gcseg.models.torch_checkpoint import read_torch_file, torch_state_dict

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class RunsCode:
    """Unpickling this calls os.system: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def zip_checkpoint(path, content):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/data.pkl", pickle.dumps(content, protocol=2))
        archive.writestr("model/byteorder", "little")


def legacy_checkpoint(path, content):
    stream = io.BytesIO()
    for header in (LEGACY_MAGIC, 1001, {"little_endian": True}):
        pickle.dump(header, stream, protocol=2)
    pickle.dump(content, stream, protocol=2)
    pickle.dump([], stream, protocol=2)  # no storages
    path.write_bytes(stream.getvalue())


@pytest.mark.parametrize("write", [zip_checkpoint, legacy_checkpoint])
def test_pickle_code_never_runs(tmp_path, write):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    write(path, {"state_dict": {"conv.weight": RunsCode(marker)}, "meta": {"iter": 7}})
    content = read_torch_file(str(path))
    assert not marker.exists()
    assert content["meta"] == {"iter": 7}
    assert repr(content["state_dict"]["conv.weight"]) == f"<{os.system.__module__}.system>"
    with pytest.raises(CheckpointError) as error:
        torch_state_dict(str(path))
    assert str(error.value) == f"{path}: entries that are not tensors among the weights: " \
                               "conv.weight"
    assert not marker.exists()


def test_files_that_are_not_torch_checkpoints(tmp_path):
    paddle_pickle = tmp_path / "paddle_pickle.pth"  # e.g. a .pdparams renamed
    paddle_pickle.write_bytes(pickle.dumps({"conv.weight": [1.0]}, protocol=2))
    with pytest.raises(CheckpointError, match=f"^{paddle_pickle}: not a torch checkpoint "
                                              r"\(neither zip nor legacy\)$"):
        read_torch_file(str(paddle_pickle))
    truncated = tmp_path / "truncated.pth"
    legacy_checkpoint(truncated, {"a": 1})
    truncated.write_bytes(truncated.read_bytes()[:30])
    with pytest.raises(CheckpointError, match=f"^{truncated}: cannot read the torch checkpoint, "
                                              "the file is truncated or corrupt"):
        read_torch_file(str(truncated))
    other_zip = tmp_path / "other.pth"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match=f"^{other_zip}: a zip file but not a torch "
                                              r"checkpoint \(no data.pkl\)$"):
        read_torch_file(str(other_zip))


def test_open_mmlab_name_downloads_once_into_the_cache(http_root, monkeypatch):  # noqa: F811
    root, base, served = http_root
    (root / "resnet18_v1c-b5776b93.pth").write_bytes(b"weights")
    monkeypatch.setitem(hub.OPENMMLAB_URLS, "resnet18_v1c",
                        f"{base}/resnet18_v1c-b5776b93.pth")
    path = resolve_pretrained("open-mmlab://resnet18_v1c")
    assert path.endswith("resnet18_v1c-b5776b93.pth") and open(path, "rb").read() == b"weights"
    assert resolve_pretrained("open-mmlab://resnet18_v1c") == path
    assert served == ["/resnet18_v1c-b5776b93.pth"]


def test_open_mmlab_offline_and_unknown_names_fail_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("GCSEG_HOME", str(tmp_path))
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/resnet50_v1c-2cccc1ad.pth"
    monkeypatch.setitem(hub.OPENMMLAB_URLS, "resnet50_v1c", url)
    with pytest.raises(CheckpointError) as error:
        resolve_pretrained("open-mmlab://resnet50_v1c")
    message = str(error.value)
    assert message.startswith(f"open-mmlab://resnet50_v1c: cannot download {url} (")
    assert message.endswith("pass the local file via `pretrained: "
                            "/path/to/resnet50_v1c-2cccc1ad.pth`")
    assert "\n" not in message
    with pytest.raises(CheckpointError, match="^open-mmlab://resnet50: unknown open-mmlab "
                                              "model; expected one of open-mmlab://resnet18_v1c, "):
        resolve_pretrained("open-mmlab://resnet50")
