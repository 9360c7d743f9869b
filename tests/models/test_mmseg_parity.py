"""MMSegmentation's GCNet weights in gcseg give mmsegmentation's own outputs.

mmsegmentation 1.2.2 builds its GCNet from its own config in a separate environment (see
tests/mmseg_oracle.py), with random non-trivial weights saved by ``torch.save`` in the zip and
the legacy format; gcseg reads those files without torch and must reproduce mmseg's logits to
1e-4 of the largest logit: whole image, sliding windows (a scaled-down 769/513 row with
``align_corners=True``) and ms+flip (softmax averaged over six scales and flips).
"""
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest

from gcseg.config import Config
from gcseg.engine.inference import InferenceSettings, infer_logits
from gcseg.errors import CheckpointError
from gcseg.models import GCNet, ResNet18_v1c, ResNet18_vd, ResNet50_v1c, load_weights
from gcseg.models.hub import OPENMMLAB_URLS
from mmseg_oracle import (ROOT, cached_oracle_outputs, require_oracle_python, run_gcnet_oracle,
                          run_oracle)

MS_SCALES = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
# a 769x769-window, stride-513 Cityscapes row scaled down: align_corners True, ragged windows
R18_SLIDE = dict(depth=18, num_classes=5, align_corners=True, size=[56, 88], crop=[41, 41],
                 stride=[27, 27], scales=MS_SCALES)
# a 512x1024 / ADE / VOC row: whole-image inference, align_corners False
R50_WHOLE = dict(depth=50, num_classes=7, align_corners=False, size=[64, 96], scales=MS_SCALES)
FORMATS = ["gcnet_zip.pth", "gcnet_legacy.pth"]


def oracle_outputs(settings: dict) -> Path:
    """The oracle's files for ``settings``, computed once per machine."""
    return cached_oracle_outputs("mmseg_gcnet.py", settings,
                                 lambda folder: run_gcnet_oracle(folder, **settings))


@pytest.fixture(scope="module")
def r18():
    return oracle_outputs(R18_SLIDE)


@pytest.fixture(scope="module")
def r50():
    return oracle_outputs(R50_WHOLE)


def gcnet_like(settings: dict, head_style: str = "mmseg") -> GCNet:
    small = settings["depth"] == 18
    backbone = ResNet18_v1c() if small else ResNet50_v1c()
    return GCNet(settings["num_classes"], backbone, gc_channels=128 if small else 512,
                 align_corners=settings["align_corners"], head_style=head_style)


def loaded(settings: dict, path: Path) -> GCNet:
    model = gcnet_like(settings)
    load_weights(model, str(path))
    model.eval()
    return model


def assert_close(actual: np.ndarray, expected: np.ndarray, tolerance: float = 1e-4) -> None:
    assert actual.shape == expected.shape
    error = np.abs(actual - expected).max() / np.abs(expected).max()
    assert error <= tolerance, f"max |diff| is {error:.2e} of the largest value"


def image_of(outputs: Path) -> paddle.Tensor:
    return paddle.to_tensor(np.load(outputs / "oracle.npz")["image"])


@pytest.mark.parametrize("checkpoint", FORMATS)
def test_whole_image_logits_equal_mmseg(r18, r50, checkpoint):
    for settings, outputs in ((R18_SLIDE, r18), (R50_WHOLE, r50)):
        oracle = np.load(outputs / "oracle.npz")
        model = loaded(settings, outputs / checkpoint)
        with paddle.no_grad():
            features = model.backbone(image_of(outputs))
            logits = model(image_of(outputs))[0].numpy()
        for index, feature in enumerate(features):
            assert_close(feature.numpy(), oracle[f"c{index + 1}"])
        assert np.abs(oracle["whole"]).max() > 1.0  # non-trivial logits...
        assert len(np.unique(oracle["whole"].argmax(1))) > 1  # ...that disagree across pixels
        assert_close(logits, oracle["whole"])


def test_sliding_window_logits_equal_mmseg(r18):
    model = loaded(R18_SLIDE, r18 / "gcnet_legacy.pth")
    settings = InferenceSettings(is_slide=True, crop_size=R18_SLIDE["crop"],
                                 stride=R18_SLIDE["stride"], align_corners=True)
    logits = infer_logits(model, image_of(r18), settings).numpy()
    assert_close(logits, np.load(r18 / "oracle.npz")["slide"])


@pytest.mark.parametrize("which", ["r18_slide", "r50_whole"])
def test_ms_flip_probabilities_equal_mmseg(r18, r50, which):
    settings, outputs = (R18_SLIDE, r18) if which == "r18_slide" else (R50_WHOLE, r50)
    model = loaded(settings, outputs / "gcnet_zip.pth")
    slide = dict(is_slide=True, crop_size=settings["crop"], stride=settings["stride"]) \
        if "crop" in settings else {}
    inference = InferenceSettings(aug_eval=True, scales=MS_SCALES, flip_horizontal=True,
                                  tta_average="probs", align_corners=settings["align_corners"],
                                  **slide)
    probs = infer_logits(model, image_of(outputs), inference).numpy()
    oracle = np.load(outputs / "oracle.npz")
    assert_close(probs, oracle["msflip_probs"])
    np.testing.assert_array_equal(probs.argmax(1)[0], oracle["msflip_label"][0])


def test_mmcv_imagenet_backbone_loads_without_prefix(r18, caplog):
    oracle = np.load(r18 / "oracle.npz")
    with caplog.at_level(logging.INFO, logger="gcseg.models.weights"):
        backbone = ResNet18_v1c(pretrained=str(r18 / "backbone_legacy.pth"))
    assert "skipped 2 tensors that are not part of the backbone (fc.weight, fc.bias)" \
        in caplog.text
    backbone.eval()
    with paddle.no_grad():
        features = backbone(image_of(r18))
    for index, feature in enumerate(features):
        assert_close(feature.numpy(), oracle[f"c{index + 1}"])


def test_checkpoints_that_do_not_fit_fail_in_one_line(r18):
    path = str(r18 / "gcnet_zip.pth")
    cases = [
        (gcnet_like(R18_SLIDE, head_style="paddleseg"),
         f"{path}: 4 model tensors are missing from the checkpoint: "
         "head.conv_bn_relu1._conv.bias, head.conv_bn_relu2._conv.bias, "
         "head.conv_bn_relu3._conv.bias (+1 more) (MMSeg checkpoints need a ResNet*_v1c "
         "backbone and head_style: mmseg)"),
        (GCNet(6, ResNet18_v1c(), gc_channels=128, head_style="mmseg"),
         f"{path}: 4 tensors do not fit the model: head.conv.weight: checkpoint [5,128,1,1] vs "
         "model [6,128,1,1] (different number of classes?), head.conv.bias: checkpoint [5] vs "
         "model [6] (different number of classes?), head.auxlayer.conv.weight: checkpoint "
         "[5,64,1,1] vs model [6,64,1,1] (different number of classes?) (+1 more)"),
        (GCNet(5, ResNet18_vd(), gc_channels=128, head_style="mmseg"),
         f"{path}: MMSeg/MMCV weights need a ResNet*_v1c backbone, not ResNet_vd (same keys, "
         "different network)"),
    ]
    for model, message in cases:
        with pytest.raises(CheckpointError) as error:
            load_weights(model, path)
        assert str(error.value) == message


def test_convert_weights_turns_a_pth_into_gcseg_weights(r18, tmp_path):
    out = tmp_path / "gcnet.safetensors"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_weights.py"),
                             str(r18 / "gcnet_legacy.pth"), str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote 142 tensors to {out} (verified against " \
                                    f"{r18 / 'gcnet_legacy.pth'})"
    model = loaded(R18_SLIDE, out)
    with paddle.no_grad():
        logits = model(image_of(r18))[0].numpy()
    assert_close(logits, np.load(r18 / "oracle.npz")["whole"])


def test_open_mmlab_names_are_mmengines():
    """gcseg's open-mmlab:// table agrees with the one mmengine (MMSeg's loader) ships."""
    require_oracle_python()
    table = json.loads(run_oracle("mmengine_urls.py"))
    assert {name: table[name] for name in OPENMMLAB_URLS} == OPENMMLAB_URLS


def test_config_pretrained_and_val_model_path_take_an_mmseg_pth(r18, tmp_path):
    from datagen import make_file_list_tree
    checkpoint = r18 / "gcnet_legacy.pth"
    root = make_file_list_tree(tmp_path / "data", num_classes=5, n_train=1, n_val=1,
                               size=(48, 40))
    config = tmp_path / "gcnet_mmseg.yml"
    config.write_text(f"""
model:
  type: GCNet
  num_classes: 5
  backbone: {{type: ResNet18_v1c, output_stride: 8}}
  gc_channels: 128
  head_style: mmseg
  align_corners: True
  pretrained: {checkpoint}
val_dataset:
  type: Dataset
  dataset_root: {root}
  val_path: {root / 'val_list.txt'}
  num_classes: 5
  mode: val
  transforms: [{{type: Normalize}}]
""")
    model = Config(str(config)).model
    model.eval()
    with paddle.no_grad():
        logits = model(image_of(r18))[0].numpy()
    assert_close(logits, np.load(r18 / "oracle.npz")["whole"])
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "val.py"), "--config",
                             str(config), "--model_path", str(checkpoint), "--engine", "predictor"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mIoU" in result.stdout + result.stderr
