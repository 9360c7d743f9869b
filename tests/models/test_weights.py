"""Weights files: round trips, fitting checks with readable messages, the download cache."""
import datetime
import io
import logging
import os
import pickle
import socket
import tarfile
import zipfile

import numpy as np
import paddle
import pytest

from gcseg.errors import CheckpointError
from gcseg.models import GCNet, load_state_dict_file, load_weights, resolve_pretrained, save_weights
from gcseg.models.layers import ConvBNReLU
from gcseg.models.resnet_vd import ResNet18_vd


def small_layer(seed=0):
    paddle.seed(seed)
    return ConvBNReLU(3, 4, 3)


def random_state(layer, seed):
    rng = np.random.default_rng(seed)
    return {key: rng.normal(size=value.shape).astype("float32")
            for key, value in layer.state_dict().items()}


def arrays(layer):
    return {key: value.numpy() for key, value in layer.state_dict().items()}


def assert_same_arrays(actual, expected):
    assert sorted(actual) == sorted(expected)  # safetensors stores keys sorted
    for key in expected:
        np.testing.assert_array_equal(actual[key], expected[key])


@pytest.mark.parametrize("ext", [".pdparams", ".safetensors"])
def test_round_trip(tmp_path, ext):
    source = small_layer()
    source.set_state_dict(random_state(source, 1))
    path = str(tmp_path / f"sub/weights{ext}")
    save_weights(source, path)
    assert os.listdir(tmp_path / "sub") == [f"weights{ext}"]  # no temp file left behind
    assert_same_arrays(load_state_dict_file(path), arrays(source))
    target = small_layer(seed=5)
    load_weights(target, path)
    assert_same_arrays(arrays(target), arrays(source))


def test_pdparams_is_readable_by_paddle_load(tmp_path):
    source = small_layer()
    path = str(tmp_path / "model.pdparams")
    save_weights(source.state_dict(), path)
    loaded = paddle.load(path)
    np.testing.assert_array_equal(np.asarray(loaded["_conv.weight"]),
                                  source._conv.weight.numpy())


def test_number_of_classes_mismatch_is_named(tmp_path):
    path = str(tmp_path / "cityscapes.pdparams")
    save_weights(GCNet(19, ResNet18_vd()), path)
    model = GCNet(21, ResNet18_vd())
    with pytest.raises(CheckpointError) as error:
        load_weights(model, path)
    message = str(error.value)
    assert message.startswith(f"{path}: 4 tensors do not fit the model: ")
    assert ("head.conv.weight: checkpoint [19,512,1,1] vs model [21,512,1,1] "
            "(different number of classes?)") in message
    assert "\n" not in message


def test_missing_and_unexpected_keys_are_named(tmp_path):
    layer = small_layer()
    state = random_state(layer, 0)
    path = str(tmp_path / "partial.safetensors")
    save_weights({k: v for k, v in state.items() if k != "_batch_norm._mean"}, path)
    with pytest.raises(CheckpointError, match="1 model tensors are missing from the "
                                              "checkpoint: _batch_norm._mean$"):
        load_weights(layer, path)
    save_weights({**state, "extra.weight": np.zeros(2, "float32")}, path)
    with pytest.raises(CheckpointError, match="do not belong to the model: extra.weight$"):
        load_weights(layer, path)


def test_backbone_skips_classifier_and_accepts_whole_model(tmp_path, caplog):
    layer = small_layer()
    state = random_state(layer, 2)
    imagenet = str(tmp_path / "imagenet.pdparams")
    classifier = {"fc.weight": np.zeros((4, 10), "float32"), "fc.bias": np.zeros(10, "float32")}
    save_weights({**state, **classifier}, imagenet)
    with caplog.at_level(logging.INFO, logger="gcseg.models.weights"):
        load_weights(layer, imagenet, what="backbone")
    assert "skipped 2 tensors that are not part of the backbone (fc.weight, fc.bias)" in caplog.text
    assert_same_arrays(arrays(layer), state)

    whole = str(tmp_path / "gcnet.safetensors")
    head = {"head.conv.weight": np.zeros((3, 4, 1, 1), "float32")}
    save_weights({**{f"backbone.{k}": v * 2 for k, v in state.items()}, **head}, whole)
    load_weights(layer, whole, what="backbone")
    assert_same_arrays(arrays(layer), {k: v * 2 for k, v in state.items()})


def test_constructors_load_pretrained(tmp_path):
    paddle.seed(7)
    source = GCNet(2, ResNet18_vd())
    path = str(tmp_path / "gcnet.pdparams")
    save_weights(source, path)
    assert_same_arrays(arrays(GCNet(2, ResNet18_vd(), pretrained=path)), arrays(source))
    backbone = ResNet18_vd(pretrained=path)
    np.testing.assert_array_equal(backbone.conv1_1._conv.weight.numpy(),
                                  source.backbone.conv1_1._conv.weight.numpy())


@pytest.mark.parametrize("ext", [".pdparams", ".safetensors"])
def test_truncated_file_is_a_checkpoint_error(tmp_path, ext):
    path = str(tmp_path / f"weights{ext}")
    save_weights(small_layer(), path)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"^{path}: cannot read weights, the file is "
                                              "truncated or corrupt"):
        load_state_dict_file(path)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(CheckpointError, match="weights file not found: .*nope.pdparams"):
        load_state_dict_file(str(tmp_path / "nope.pdparams"))
    with pytest.raises(CheckpointError, match=r"unsupported weights format '\.pt'"):
        save_weights({}, str(tmp_path / "w.pt"))
    with pytest.raises(CheckpointError, match="^weights file not found: .*nope.pdparams$"):
        resolve_pretrained(str(tmp_path / "nope.pdparams"))


def test_a_directory_names_the_file_to_pass(tmp_path):
    directory = tmp_path / "iter_1"
    directory.mkdir()
    with pytest.raises(CheckpointError, match=f"^{directory} is a directory; pass a .pdparams "
                                              r"or .safetensors file \(there is no model"):
        load_weights(small_layer(), str(directory))
    save_weights(small_layer(), str(directory / "model.pdparams"))
    for read in (resolve_pretrained, load_state_dict_file):
        with pytest.raises(CheckpointError) as error:
            read(str(directory))
        assert str(error.value) == f"{directory} is a directory; pass {directory}/model.pdparams"


def pdparams_bytes(state):
    buffer = io.BytesIO()
    paddle.save(state, buffer)
    return buffer.getvalue()


def file_member(name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    return info, io.BytesIO(payload)


def link_member(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def tar_bytes(*members, mode="w:gz"):
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode=mode) as tar:
        for info, payload in members:
            tar.addfile(info, payload)
    return archive.getvalue()


def archive_bytes(state, mode="w:gz"):
    """A PaddleSeg-style ImageNet archive: ``resnet_test/model.pdparams`` inside a tar.gz."""
    return tar_bytes(file_member("resnet_test/model.pdparams", pdparams_bytes(state)), mode=mode)


def zip_bytes(state):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("resnet_test/model.pdparams", pdparams_bytes(state))
    return archive.getvalue()


def test_download_unpacks_archive_once_into_cache(http_root, tmp_path):
    root, base, served = http_root
    layer = small_layer()
    state = random_state(layer, 3)
    (root / "resnet_test.tar.gz").write_bytes(archive_bytes(state))
    url = f"{base}/resnet_test.tar.gz"
    path = resolve_pretrained(url)
    assert path.startswith(str(tmp_path / "home" / "pretrained"))
    assert path.endswith(os.path.join("resnet_test", "model.pdparams"))
    assert resolve_pretrained(url) == path
    assert served == ["/resnet_test.tar.gz"]  # the second call used the cache
    cache = tmp_path / "home" / "pretrained"
    assert [p.name for p in cache.iterdir() if p.name.startswith(".tmp")] == []
    load_weights(layer, url, what="backbone")
    assert_same_arrays(arrays(layer), state)


def test_download_failures_name_the_url(http_root):
    root, base, _ = http_root
    with pytest.raises(CheckpointError, match=f"cannot download {base}/absent.pdparams "
                                              r"\(HTTP 404 "):
        resolve_pretrained(f"{base}/absent.pdparams")
    (root / "broken.tar.gz").write_bytes(b"not a tar archive")
    with pytest.raises(CheckpointError, match=f"{base}/broken.tar.gz: the archive is corrupt"):
        resolve_pretrained(f"{base}/broken.tar.gz")


def test_offline_error_says_how_to_proceed(tmp_path, monkeypatch):
    monkeypatch.setenv("GCSEG_HOME", str(tmp_path))
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/resnet50_vd_ssld_v2.tar.gz"
    with pytest.raises(CheckpointError) as error:
        resolve_pretrained(url)
    message = str(error.value)
    assert message.startswith(f"cannot download {url} (")
    assert "pass the local file via `pretrained: " in message
    assert "\n" not in message


@pytest.mark.parametrize("name", ["resnet_test.tar.gz", "resnet_test.tgz", "resnet_test.tar",
                                  "resnet_test.zip"])
def test_local_archive_is_unpacked_once_into_cache(tmp_path, monkeypatch, name):
    monkeypatch.setenv("GCSEG_HOME", str(tmp_path / "home"))
    layer = small_layer()
    state = random_state(layer, 4)
    archive = tmp_path / "downloads" / name
    archive.parent.mkdir()
    archive.write_bytes(zip_bytes(state) if name.endswith(".zip")
                        else archive_bytes(state, "w" if name.endswith(".tar") else "w:gz"))
    load_weights(layer, str(archive), what="backbone")
    assert_same_arrays(arrays(layer), state)
    path = resolve_pretrained(str(archive))
    assert path.startswith(str(tmp_path / "home" / "pretrained" / "resnet_test-"))
    assert path.endswith(os.path.join("resnet_test", "model.pdparams"))
    assert archive.exists()  # the user's file is read, never moved or deleted
    assert len(os.listdir(tmp_path / "home" / "pretrained")) == 1  # one entry, no temp dir left


def test_a_replaced_local_archive_is_unpacked_afresh(tmp_path, monkeypatch):
    monkeypatch.setenv("GCSEG_HOME", str(tmp_path / "home"))
    layer = small_layer()
    archive = tmp_path / "resnet_test.tar.gz"
    archive.write_bytes(archive_bytes(random_state(layer, 5)))
    first = resolve_pretrained(str(archive))
    newer = random_state(layer, 6)
    archive.write_bytes(archive_bytes(newer))
    os.utime(archive, ns=(1, 1))  # the same size is possible; the modification time differs
    assert resolve_pretrained(str(archive)) != first
    load_weights(layer, str(archive), what="backbone")
    assert_same_arrays(arrays(layer), newer)


def test_a_corrupt_local_archive_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("GCSEG_HOME", str(tmp_path / "home"))
    for name in ("broken.tgz", "broken.zip"):
        (tmp_path / name).write_bytes(b"not an archive")
        with pytest.raises(CheckpointError, match=f"^{tmp_path / name}: the archive is corrupt"):
            resolve_pretrained(str(tmp_path / name))
    assert os.listdir(tmp_path / "home" / "pretrained") == []


@pytest.fixture
def tarfile_without_filters(monkeypatch):
    """``tarfile`` as on Python before 3.9.17/3.10.12/3.11.4: no ``filter=`` keyword."""
    monkeypatch.delattr(tarfile, "data_filter")
    for method in ("extract", "extractall"):
        original = getattr(tarfile.TarFile, method)

        def without_filter(self, *args, _original=original, _method=method, **kwargs):
            if "filter" in kwargs:
                raise TypeError(f"{_method}() got an unexpected keyword argument 'filter'")
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(tarfile.TarFile, method, without_filter)


def test_archives_unpack_on_pythons_without_extraction_filters(tmp_path, monkeypatch,
                                                               tarfile_without_filters):
    monkeypatch.setenv("GCSEG_HOME", str(tmp_path / "home"))
    layer = small_layer()
    state = random_state(layer, 7)
    archive = tmp_path / "resnet_test.tar.gz"
    archive.write_bytes(tar_bytes(file_member("resnet_test/model.pdparams", pdparams_bytes(state)),
                                  link_member("resnet_test/latest", "model.pdparams")))
    load_weights(layer, str(archive), what="backbone")
    assert_same_arrays(arrays(layer), state)


OUTSIDE = "../../outside.pdparams"  # from <cache>/pretrained/.tmp-x/ to tmp_path/home/


def unsafe_archives(tmp_path):
    """Archives whose members would write outside the extraction directory, by how they try."""
    payload = b"x"
    return {
        "dotdot": tar_bytes(file_member(OUTSIDE, payload)),
        "symlink": tar_bytes(link_member("escape", "../../outside"),
                             file_member("escape/w.pdparams", payload)),
        "hardlink": tar_bytes(link_member("w.pdparams", str(tmp_path / "victim"), tarfile.LNKTYPE)),
        "chained links": tar_bytes(link_member("a/b/up", "../.."),
                                   link_member("a/b/escape", "up/../.."),
                                   file_member("a/b/escape/outside.pdparams", payload)),
    }


@pytest.mark.parametrize("python", ["with filters", "without filters"])
@pytest.mark.parametrize("how", ["dotdot", "symlink", "hardlink", "chained links"])
def test_archive_members_cannot_escape(tmp_path, monkeypatch, request, python, how):
    if python == "without filters":
        request.getfixturevalue("tarfile_without_filters")
    monkeypatch.setenv("GCSEG_HOME", str(tmp_path / "home"))
    (tmp_path / "victim").write_bytes(b"keep")
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(unsafe_archives(tmp_path)[how])
    with pytest.raises(CheckpointError, match=f"^{archive}: refusing to unpack the archive, "
                                              "member '"):
        resolve_pretrained(str(archive))
    assert sorted(p.name for p in (tmp_path / "home").iterdir()) == ["pretrained"]
    assert os.listdir(tmp_path / "home" / "pretrained") == []
    assert (tmp_path / "victim").read_bytes() == b"keep"


def test_absolute_members_are_refused_without_filters(tmp_path, monkeypatch,
                                                      tarfile_without_filters):
    monkeypatch.setenv("GCSEG_HOME", str(tmp_path / "home"))
    target = tmp_path / "absolute.pdparams"
    archive = tmp_path / "evil.tar"
    archive.write_bytes(tar_bytes(file_member(str(target), b"x"), mode="w"))
    with pytest.raises(CheckpointError, match="has an absolute path or a '..' component"):
        resolve_pretrained(str(archive))
    assert not target.exists()


class RunsCode:
    """Unpickling this calls ``os.mkdir(marker)``: the way a malicious .pdparams runs code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_every_pdparams_is_read_without_running_its_code(tmp_path):
    """``load_weights`` (``pretrained:``, ``--model_path``) unpickles arrays only; the refusal
    names the file, the class and the explicit way to trust it."""
    evil, marker = tmp_path / "evil.pdparams", tmp_path / "pwned"
    layer = small_layer()
    with open(evil, "wb") as file:
        pickle.dump({**arrays(layer), "x": RunsCode(marker)}, file)
    with pytest.raises(CheckpointError, match=r"evil\.pdparams: refuses to unpickle .*mkdir.*"
                                              r"--trust_pickle"):
        load_weights(layer, str(evil))
    assert not marker.exists()


def test_trust_pickle_reads_what_the_restricted_reader_refuses(tmp_path):
    path = tmp_path / "dated.pdparams"
    layer = small_layer()
    with open(path, "wb") as file:
        pickle.dump({**arrays(layer), "saved_on": datetime.date(2026, 11, 26)}, file)
    with pytest.raises(CheckpointError, match="datetime.date"):
        load_state_dict_file(str(path))
    assert_same_arrays(load_state_dict_file(str(path), trust_pickle=True), arrays(layer))
