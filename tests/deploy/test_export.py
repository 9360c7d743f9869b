"""Export for Paddle Inference.

The matmul bilinear resize used in exported graphs equals ``F.interpolate``; the exported
program, run by ``paddle.inference`` with its DEFAULT CPU configuration (oneDNN on), matches the
dygraph model at two sizes through one dynamic-shape program; deploy.yaml carries the
preprocessing, and the deployed model reads images as evaluation does; scripts/infer.py writes
label PNGs.
"""
import subprocess
import sys

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
import yaml
from PIL import Image

from gcseg.data.transforms import Compose, Normalize
from gcseg.deploy.export import export_model
from gcseg.deploy.runtime import DeployedModel, create_predictor
from gcseg.models import GCNet, ResNet18_vd
from gcseg.models.layers import resize
from gcseg.models.resize import deploy_resize_mode, matmul_resize
from conftest import ROOT, run_predictor


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("in_size,out_size", [
    ((7, 9), (64, 96)),     # up
    ((64, 96), (13, 17)),   # down, odd
    ((33, 31), (65, 97)),   # odd up
    ((8, 12), (8, 12)),     # identity
    ((1, 3), (4, 1)),       # length-1 edges
    ((10, 5), (3, 11)),     # down one axis, up the other
])
def test_matmul_resize_equals_interpolate(align_corners, in_size, out_size):
    paddle.seed(0)
    x = paddle.randn([2, 3, *in_size])
    expected = F.interpolate(x, size=list(out_size), mode="bilinear",
                             align_corners=align_corners).numpy()
    by_list = matmul_resize(x, list(out_size), align_corners).numpy()
    by_tensor = matmul_resize(x, paddle.to_tensor(out_size, dtype="int32"), align_corners).numpy()
    np.testing.assert_allclose(by_list, expected, atol=2e-5)
    np.testing.assert_allclose(by_tensor, expected, atol=2e-5)


def test_model_resize_dispatches_only_in_deploy_mode():
    x = paddle.randn([1, 2, 5, 6])
    with deploy_resize_mode():
        deployed = resize(x, [11, 13], False).numpy()
    plain = resize(x, [11, 13], False).numpy()
    np.testing.assert_allclose(deployed, plain, atol=2e-5)


@pytest.fixture(scope="module")
def small_gcnet():
    paddle.seed(0)
    model = GCNet(5, ResNet18_vd(output_stride=8), gc_channels=32)
    model.eval()
    return model


@pytest.fixture(scope="module")
def exported_logits(small_gcnet, tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("export_logits")
    export_model(small_gcnet, str(save_dir), output_op="none",
                 val_transforms=[{"type": "Normalize", "mean": [0.4, 0.5, 0.6],
                                  "std": [0.2, 0.25, 0.3]}])
    return save_dir


def test_default_paddle_inference_matches_dygraph(small_gcnet, exported_logits):
    from paddle import inference
    deploy = yaml.safe_load((exported_logits / "deploy.yaml").read_text())["Deploy"]
    # exactly what a deployer does: default Config, oneDNN on
    config = inference.Config(str(exported_logits / deploy["model"]),
                              str(exported_logits / deploy["params"]))
    assert config.mkldnn_enabled()
    predictor = inference.create_predictor(config)
    rng = np.random.default_rng(0)
    for shape in [(1, 3, 64, 96), (2, 3, 71, 53)]:  # one dynamic-shape program, odd size too
        batch = rng.standard_normal(shape).astype(np.float32)
        expected = small_gcnet(paddle.to_tensor(batch))[0].numpy()
        actual = run_predictor(predictor, batch)
        assert actual.shape == expected.shape
        assert np.abs(actual - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())


def test_deploy_yml_carries_preprocessing(exported_logits):
    deploy = yaml.safe_load((exported_logits / "deploy.yaml").read_text())["Deploy"]
    assert deploy["normalize"] == {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}
    assert deploy["to_rgb"] is True
    assert deploy["input_shape"] == [-1, 3, -1, -1]
    assert deploy["output_op"] == "none"
    assert (exported_logits / deploy["model"]).is_file()
    assert (exported_logits / deploy["params"]).is_file()


def test_argmax_export_and_infer_script_write_label_pngs(small_gcnet, tmp_path):
    model_dir = tmp_path / "model"
    export_model(small_gcnet, str(model_dir), output_op="argmax",
                 val_transforms=[{"type": "Normalize"}])
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    image_path = tmp_path / "img.png"
    Image.fromarray(image).save(image_path)

    deployed = DeployedModel(str(model_dir))
    batch = deployed.preprocess(str(image_path))
    np.testing.assert_allclose(batch[0, :, 0, 0], (image[0, 0] / 255.0 - 0.5) / 0.5, atol=1e-6)
    expected = small_gcnet(paddle.to_tensor(batch))[0].argmax(axis=1)[0].numpy()

    out_dir = tmp_path / "out"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "infer.py"), "--model_dir",
                    str(model_dir), "--image_path", str(image_path), "--save_dir",
                    str(out_dir)], check=True, capture_output=True)
    label = np.asarray(Image.open(out_dir / "img.png"))
    assert label.shape == (48, 80)
    assert (label == expected).mean() > 0.999


def test_the_deployed_model_reads_an_image_as_evaluation_does(exported_logits, tmp_path):
    """Both read with OpenCV: a photo whose EXIF orientation says "rotate 90" comes out upright,
    in the pixels the val transforms give (PIL alone would leave it on its side)."""
    stored = np.random.default_rng(3).integers(0, 256, (20, 40, 3), dtype=np.uint8)
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif.tobytes())

    batch = DeployedModel(str(exported_logits)).preprocess(str(path))
    val = Compose([Normalize(mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3])])({"img": str(path)})

    assert batch.shape == (1, 3, 40, 20)  # upright: 20 wide, 40 high
    np.testing.assert_allclose(batch[0], val["img"], atol=1e-6)


def test_onednn_off_fallback_gives_the_same_logits(exported_logits):
    batch = np.random.default_rng(2).standard_normal((1, 3, 40, 56)).astype(np.float32)
    on = run_predictor(create_predictor(str(exported_logits)), batch)
    off = run_predictor(create_predictor(str(exported_logits), use_onednn=False), batch)
    assert np.abs(on - off).max() <= 1e-4 * max(1.0, np.abs(off).max())
