"""PaddleSeg's command lines run unchanged: its val/predict/export flags, its --device values, and
no download of weights that --model_path replaces.

Every run here is offline: the config's backbone weights are an unreachable URL (a closed local
port), as they are on a machine without internet, so a script that tried to fetch them fails.
"""
import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from gcseg import cli
from gcseg.config import Config
from gcseg.data.palettes import CITYSCAPES_COLORS
from gcseg.engine.evaluator import evaluate
from gcseg.engine.inference import InferenceSettings
from gcseg.errors import UsageError
from gcseg.models.weights import load_weights
from conftest import ROOT, assert_one_line_error, expected_prediction, write_run

UNREACHABLE = "http://127.0.0.1:9/resnet18_vd_ssld.tar.gz"  # port 9 (discard) refuses connections


@pytest.fixture(scope="module")
def run_files(tmp_path_factory):
    """An offline config (a tiny GCNet whose backbone weights are the unreachable URL), its val
    images (61x37) and trained weights."""
    root = tmp_path_factory.mktemp("paddleseg_flags")
    base_path, model_path = write_run(root, num_val=2)
    config_path = root / "gcnet_offline.yml"
    config_path.write_text(f"_base_: {base_path.name}\n"
                           f"model: {{backbone: {{pretrained: '{UNREACHABLE}'}}}}\n"
                           "global: {device: cpu}\n")
    images = sorted((root / "data" / "leftImg8bit" / "val").rglob("*.png"))
    return config_path, model_path, images


def script(name: str, *args, tmp_path: Path, expect: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "GCSEG_HOME": str(tmp_path / "gcseg_home")}  # an empty weights cache
    env.pop("GCSEG_DEBUG", None)
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / name), *map(str, args)],
                            capture_output=True, text=True, timeout=300, env=env)
    if expect == 0:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


# ----------------------------------------------------------------------------- export
def test_export_with_model_path_downloads_nothing_and_for_fd_writes_fastdeploy_names(
        run_files, tmp_path):
    config_path, model_path, images = run_files
    save_dir = tmp_path / "fd"
    script("export.py", "--config", config_path, "--model_path", model_path, "--save_dir",
           save_dir, "--for_fd", "--input_shape", "1", "3", "32", "48", tmp_path=tmp_path)
    names = sorted(os.listdir(save_dir))
    assert "inference.yml" in names and "inference.pdiparams" in names, names
    assert {"inference.json", "inference.pdmodel"} & set(names), names
    assert not any(name.startswith("model") or name == "deploy.yaml" for name in names), names
    deploy = yaml.safe_load((save_dir / "inference.yml").read_text())["Deploy"]
    assert deploy["input_shape"] == [1, 3, 32, 48]
    assert deploy["model"].startswith("inference.") and deploy["params"] == "inference.pdiparams"

    out_dir = tmp_path / "infer"
    script("infer.py", "--model_dir", save_dir, "--image_path", images[0], "--save_dir", out_dir,
           tmp_path=tmp_path)
    assert np.asarray(Image.open(out_dir / images[0].name)).shape == (37, 61)  # the image's size


def test_export_input_shape_other_than_n_3_h_w_is_one_line(run_files, tmp_path):
    config_path, model_path, _ = run_files
    result = script("export.py", "--config", config_path, "--model_path", model_path,
                    "--save_dir", tmp_path / "bad", "--input_shape", "1", "3", "64",
                    tmp_path=tmp_path, expect=2)
    line = assert_one_line_error(result, "--input_shape", "N 3 H W", "1 3 64")
    assert line.endswith("got 1 3 64")


def test_export_without_model_path_offline_says_how_to_do_without_the_weights(
        run_files, tmp_path):
    """Without --model_path the config's weights are the model: export needs them, and the one
    error line says how to go on offline; PaddleSeg's spelling of that (None) then works, as
    does its -1 for a dynamic size in --input_shape."""
    config_path, _, _ = run_files
    result = script("export.py", "--config", config_path, "--save_dir", tmp_path / "a",
                    tmp_path=tmp_path, expect=2)
    assert_one_line_error(result, config_path.resolve(), "model.backbone.pretrained",
                          f"cannot download {UNREACHABLE}",
                          "--opts model.backbone.pretrained=null")
    script("export.py", "--config", config_path, "--save_dir", tmp_path / "b",
           "--opts", "model.backbone.pretrained=None", "--input_shape", "-1", "3", "-1", "-1",
           tmp_path=tmp_path)
    deploy = yaml.safe_load((tmp_path / "b" / "deploy.yaml").read_text())["Deploy"]
    assert deploy["input_shape"] == [-1, 3, -1, -1]  # PaddleSeg's -1: a dynamic size

    # PaddleSeg's deploy/python/infer.py spelling: --config <export dir>/deploy.yaml
    _, _, images = run_files
    script("infer.py", "--config", tmp_path / "b" / "deploy.yaml", "--image_path", images[0],
           "--save_dir", tmp_path / "infer", tmp_path=tmp_path)
    assert np.asarray(Image.open(tmp_path / "infer" / images[0].name)).shape == (37, 61)
    missing = script("infer.py", "--config", tmp_path / "none" / "deploy.yaml", "--image_path",
                     images[0], tmp_path=tmp_path, expect=2)
    assert_one_line_error(missing, "--config", "no such deploy file")


# ----------------------------------------------------------------------------- val
def test_val_takes_paddleseg_flags_and_reports_its_views_and_auc_roc(run_files, tmp_path):
    config_path, model_path, _ = run_files
    save_dir = tmp_path / "val"
    result = script("val.py", "--config", config_path, "--model_path", model_path,
                    "--aug_eval", "--scales", "0.75", "1.0", "--flip_horizontal",
                    "--auc_roc", "True", "--data_format", "NCHW", "--device", "cpu",
                    "--num_workers", "0", "--save_dir", save_dir, "--engine", "dygraph",
                    tmp_path=tmp_path)
    assert ("[EVAL] test-time augmentation: scales 0.75, 1.0; flips: none, horizontal "
            "(4 views per image, logits averaged)") in result.stdout
    written = json.loads((save_dir / "eval_results.json").read_text())

    cfg = Config(config_path, load_pretrained=False)
    model = cfg.model
    load_weights(model, str(model_path))
    settings = InferenceSettings(aug_eval=True, scales=[0.75, 1.0], flip_horizontal=True)
    expected = evaluate(model, cfg.val_dataset, settings, auc_roc=True, backend="dygraph",
                        print_detail=False)
    assert 0.0 < written["auc_roc"] < 1.0
    # the subprocess's float rounding may move a pixel across one of the 16384 probability bins
    assert written["auc_roc"] == pytest.approx(expected["auc_roc"], abs=1e-4)
    printed = float(re.search(r"AUC-ROC: ([0-9.]+)", result.stdout).group(1))
    assert printed == pytest.approx(expected["auc_roc"], abs=2e-4)


@pytest.mark.parametrize("flags, names", [
    (["--data_format", "NHWC"], ["--data_format NHWC", "not supported for GCNet"]),
    (["--use_multilabel"], ["--use_multilabel", "not supported for GCNet"]),
    (["--auc_roc", "maybe"], ["--auc_roc", "expected True or False", "'maybe'"])])
def test_val_refuses_what_gcnet_cannot_do_in_one_line(run_files, tmp_path, flags, names):
    config_path, model_path, _ = run_files
    result = script("val.py", "--config", config_path, "--model_path", model_path, *flags,
                    tmp_path=tmp_path, expect=2)
    assert_one_line_error(result, *names)


# ----------------------------------------------------------------------------- predict
def test_predict_takes_aug_pred_custom_color_and_device_id(run_files, tmp_path):
    config_path, model_path, images = run_files
    save_dir = tmp_path / "pred"
    script("predict.py", "--config", config_path, "--model_path", model_path, "--image_path",
           images[0], "--save_dir", save_dir, "--aug_pred", "--flip_horizontal",
           "--custom_color", "255", "0", "0", "0", "255", "0", "--device", "cpu",
           "--device_id", "0", tmp_path=tmp_path)
    pseudo = Image.open(save_dir / "pseudo_color_prediction" / images[0].name)
    palette = np.asarray(pseudo.getpalette()[:9]).reshape(3, 3)
    np.testing.assert_array_equal(palette, [[255, 0, 0], [0, 255, 0], CITYSCAPES_COLORS[2]])
    # --aug_pred is --aug_eval: the same flipped views
    np.testing.assert_array_equal(np.asarray(pseudo),
                                  expected_prediction(config_path, model_path, images[0]))


def test_custom_color_must_be_rgb_triples(run_files, tmp_path):
    config_path, model_path, images = run_files
    result = script("predict.py", "--config", config_path, "--model_path", model_path,
                    "--image_path", images[0], "--save_dir", tmp_path / "p",
                    "--custom_color", "255", "0", tmp_path=tmp_path, expect=2)
    assert_one_line_error(result, "--custom_color", "three per class", "got 255 0")


# ----------------------------------------------------------------------------- --device
def select(**flags) -> str:
    return cli.select_device(argparse.Namespace(**flags))


@pytest.mark.parametrize("kind", ["gpu", "xpu", "npu", "mlu"])
def test_device_this_paddle_lacks_is_one_plain_line(kind):
    if cli.device_available(kind):
        pytest.skip(f"this Paddle has {kind}")
    with pytest.raises(UsageError, match=rf"^--device {kind}: this Paddle has no {kind} "
                                         r"support \(install .+, or use --device cpu\)$"):
        select(device=kind)


@pytest.mark.parametrize("device", ["tpu", "gpu:x", "cuda"])
def test_device_names_paddleseg_does_not_know_are_refused(device):
    with pytest.raises(UsageError, match=rf"^--device {device}: expected one of cpu, gpu, xpu, "
                                         r"npu, mlu, optionally with :N \(gpu:1\)$"):
        select(device=device)


def test_device_id_joins_the_device_and_cpu_ignores_it():
    assert select(device="cpu", device_id=3) == "cpu"
    if cli.device_available("gpu"):
        assert select(device="gpu", device_id=0) == "gpu:0"


def test_config_device_this_paddle_lacks_falls_back(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("global: {device: xpu}\n")
    if not cli.device_available("xpu"):
        assert select(device=None) in ("cpu", "gpu")
        assert cli.select_device(argparse.Namespace(device=None), Config(path)) in ("cpu", "gpu")
    path.write_text("global: {device: tpu}\n")
    with pytest.raises(UsageError, match=r"^global\.device tpu: expected one of cpu, gpu"):
        cli.select_device(argparse.Namespace(device=None), Config(path))
