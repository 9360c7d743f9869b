"""A bad checkpoint given to val.py (--model_path) or train.py (--resume_model) ends as one
``error:`` line naming the file, and the key and shapes when the architecture differs;
scripts/convert_weights.py converts both ways exactly and refuses pickles that run code."""
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from gcseg.config import Config
from gcseg.engine.checkpoint import Checkpointer
from gcseg.models import GCNet, ResNet18_vd, load_state_dict_file, save_weights
from conftest import assert_one_line_error, run_script


@pytest.fixture(scope="module")
def weights(config, tmp_path_factory) -> Path:
    """good.pdparams for the config's model, and a checkpoint directory iter_1."""
    root = tmp_path_factory.mktemp("weights")
    cfg = Config(config)
    save_weights(cfg.model, str(root / "good.pdparams"))
    Checkpointer(str(root), cfg.model, cfg.optimizer).save(1, {"position": (0, 1), "seed": 0})
    return root


def truncated_copy(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[:len(data) // 2])
    return target


def val(config, model_path):
    return run_script("val.py", "--config", config, "--model_path", model_path)


def test_missing_weights(config, tmp_path):
    missing = tmp_path / "nope.pdparams"
    line = assert_one_line_error(val(config, missing), f"weights file not found: {missing}")
    assert "pretrained" not in line  # a trained checkpoint is not pretrained weights


def test_a_checkpoint_directory_names_its_weights_file(config, weights):
    checkpoint = weights / "iter_1"
    assert_one_line_error(val(config, checkpoint),
                          f"{checkpoint} is a directory; pass {checkpoint / 'model.pdparams'}")


def test_truncated_weights(config, weights, tmp_path):
    cut = truncated_copy(weights / "good.pdparams", tmp_path / "cut.pdparams")
    assert_one_line_error(val(config, cut), cut, "truncated or corrupt")


def test_corrupt_safetensors(config, tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    assert_one_line_error(val(config, junk), junk, "truncated or corrupt")


def test_wrong_architecture_names_the_key_and_shapes(config, tmp_path):
    other = tmp_path / "gc8.pdparams"
    save_weights(GCNet(19, ResNet18_vd(output_stride=8), gc_channels=8), str(other))
    assert_one_line_error(val(config, other), other, "head.conv_bn_relu1._conv.weight",
                          "checkpoint [8,512,3,3] vs model [16,512,3,3]")


def test_wrong_number_of_classes(config, tmp_path):
    other = tmp_path / "five.pdparams"
    save_weights(GCNet(5, ResNet18_vd(output_stride=8), gc_channels=16), str(other))
    assert_one_line_error(val(config, other), other, "head.", "[5,",
                          "different number of classes")


def resume(config, checkpoint, save_dir):
    return run_script("train.py", "--config", config, "--resume_model", checkpoint, "--save_dir",
               save_dir, "--iters", "2")


def test_resume_from_a_missing_directory(config, tmp_path):
    missing = tmp_path / "iter_7"
    assert_one_line_error(resume(config, missing, tmp_path), missing, "not a checkpoint")


def test_resume_from_a_directory_without_model_weights(config, weights, tmp_path):
    checkpoint = tmp_path / "iter_1"
    shutil.copytree(weights / "iter_1", checkpoint)
    (checkpoint / "model.pdparams").unlink()
    line = assert_one_line_error(resume(config, checkpoint, tmp_path / "out"),
                                 f"weights file not found: {checkpoint / 'model.pdparams'}")
    assert "pretrained" not in line


@pytest.mark.parametrize("damaged, expected", [("model.pdopt", "cannot restore the optimizer"),
                                               ("train_state.pkl", "cannot read training state")])
def test_resume_from_a_damaged_checkpoint(config, weights, tmp_path, damaged,
                                          expected):
    checkpoint = tmp_path / "iter_1"
    shutil.copytree(weights / "iter_1", checkpoint)
    truncated_copy(weights / "iter_1" / damaged, checkpoint / damaged)
    assert_one_line_error(resume(config, checkpoint, tmp_path / "out"), checkpoint / damaged,
                          expected)


# ----------------------------------------------------------------------------- convert_weights
def convert(*args):
    return run_script("convert_weights.py", *args)


def test_convert_weights_both_ways_keeps_every_tensor(weights, tmp_path):
    original = weights / "good.pdparams"
    safetensors, back = tmp_path / "good.safetensors", tmp_path / "back.pdparams"
    for src, out in ((original, safetensors), (safetensors, back)):
        result = convert(src, out)
        assert result.returncode == 0, result.stderr[-2000:]
        assert f"verified against {src}" in result.stdout
    expected = load_state_dict_file(str(original))
    for path in (safetensors, back):
        converted = load_state_dict_file(str(path))
        assert converted.keys() == expected.keys()
        for key, value in expected.items():
            assert converted[key].dtype == value.dtype
            np.testing.assert_array_equal(converted[key], value, err_msg=key)


def test_convert_weights_never_overwrites_without_force(weights, tmp_path):
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"keep me")
    assert_one_line_error(convert(weights / "good.pdparams", out), out, "--force")
    assert out.read_bytes() == b"keep me"
    assert convert(weights / "good.pdparams", out, "--force").returncode == 0
    assert load_state_dict_file(str(out))


class RunsCode:
    """What a malicious pickle holds: unpickling it calls a function of the attacker's."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_convert_weights_refuses_a_pickle_that_would_run_code(tmp_path):
    evil, marker = tmp_path / "evil.pdparams", tmp_path / "pwned"
    with open(evil, "wb") as file:
        pickle.dump({"head.conv.weight": np.zeros(3, np.float32), "x": RunsCode(marker)}, file)
    assert_one_line_error(convert(evil, tmp_path / "evil.safetensors"), evil,
                          "refuses to unpickle", "mkdir")
    assert not marker.exists() and not (tmp_path / "evil.safetensors").exists()
