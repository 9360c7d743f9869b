"""End to end: an MMSeg GCNet R-50-D8 checkpoint evaluates and predicts in gcseg as
mmsegmentation's own ``init_model`` + ``inference_model`` do, on real photos, with the row's own
test pipeline.

The oracle (tests/oracles/mmseg_inference.py, mmsegmentation 1.2.2 in its own environment)
builds the VOC12aug 512x512 row from the config its wheel ships, gives it random non-trivial
weights, saves them with ``torch.save`` in the legacy format and runs its inference API on two
photos (imgviz's VOC photo, 500x375, and its ARC2017 scene, 640x480) written as JPEG files that
both sides decode with OpenCV. gcseg runs ``configs/mmseg/<row>.yml`` with that ``.pth``: its
evaluation engine's logits, ``scripts/predict.py``'s label PNGs and ``scripts/val.py`` on a
VOC tree whose labels are mmseg's predictions. Logits agree to 1e-4 of the largest logit; a
label may differ only where mmseg's top two logits are closer than that (a float-noise tie).
"""
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import imgviz
import numpy as np
import paddle
from PIL import Image
import pytest

from gcseg.config import Config
from gcseg.engine.inference import InferenceSettings, infer_logits
from gcseg.engine.predict import val_transforms_and_palette
from gcseg.models import load_weights
from mmseg_oracle import ROOT, cached_oracle_outputs, run_oracle

ROW = "gcnet_r50-d8_4xb4-20k_voc12aug-512x512"
CONFIG = ROOT / "configs" / "mmseg" / f"{ROW}.yml"
PHOTOS = {"voc": imgviz.data.voc, "arc2017": imgviz.data.arc2017}
TOLERANCE = 1e-4
TIMEOUT_SECONDS = 900


def photo_paths(folder: Path) -> List[Path]:
    return [folder / "photos" / f"{name}.jpg" for name in PHOTOS]


def write_photos(folder: Path) -> None:
    for path, load in zip(photo_paths(folder), PHOTOS.values()):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(load()["rgb"]).save(path, quality=95)


@pytest.fixture(scope="module")
def oracle() -> Path:
    settings = dict(config=ROW, photos=list(PHOTOS), seed=0, legacy_format=True)

    def produce(folder: Path) -> None:
        write_photos(folder)
        images = [str(path) for path in photo_paths(folder)]
        run_oracle("mmseg_inference.py", str(folder), json.dumps({**settings, "images": images}))

    return cached_oracle_outputs("mmseg_inference.py", settings, produce)


def mmseg_results(oracle: Path) -> Dict[str, tuple]:
    """name -> (mmseg's logits [C, H, W], mmseg's label map [H, W])."""
    arrays = np.load(oracle / "oracle.npz")
    return {name: (arrays[f"logits/{index}"], arrays[f"label/{index}"])
            for index, name in enumerate(PHOTOS)}


def near_ties(logits: np.ndarray) -> np.ndarray:
    """Pixels whose top two logits are within the comparison's tolerance of each other."""
    top_two = np.sort(logits, axis=0)[-2:]
    return top_two[1] - top_two[0] <= 2 * TOLERANCE * np.abs(logits).max()


def assert_labels_equal(labels: np.ndarray, logits: np.ndarray, expected: np.ndarray) -> None:
    assert labels.shape == expected.shape
    differ = labels != expected
    assert not (differ & ~near_ties(logits)).any(), \
        f"{int((differ & ~near_ties(logits)).sum())} pixels differ away from a logit tie"


def run_script(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / script), "--config",
                             str(CONFIG), "--device", "cpu", *args],
                            capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def test_the_oracle_is_not_trivial(oracle):
    for logits, labels in mmseg_results(oracle).values():
        assert np.abs(logits).max() > 10.0
        assert len(np.unique(labels)) >= 3
        assert near_ties(logits).mean() < 1e-4


def test_evaluation_engine_logits_equal_mmseg(oracle):
    cfg = Config(CONFIG, load_pretrained=False)
    model = cfg.model
    load_weights(model, str(oracle / "gcnet.pth"))
    model.eval()
    transforms, _ = val_transforms_and_palette(cfg)
    settings = InferenceSettings.from_config(cfg)
    for path, (expected, _) in zip(photo_paths(oracle), mmseg_results(oracle).values()):
        data = transforms({"img": str(path), "trans_info": []})
        assert data["img"].shape[1:] == (512, 683)  # (2048, 512) keeping the 4:3 ratio
        with paddle.no_grad():
            logits = infer_logits(model, paddle.to_tensor(data["img"]).unsqueeze(0), settings,
                                  data["trans_info"])[0].numpy()
        assert logits.shape == expected.shape
        error = np.abs(logits - expected).max() / np.abs(expected).max()
        assert error <= TOLERANCE, f"{path.name}: max |diff| is {error:.2e} of the largest logit"


def test_predict_writes_mmseg_label_maps(oracle, tmp_path):
    output = run_script("predict.py", "--model_path", str(oracle / "gcnet.pth"),
                        "--image_path", str(oracle / "photos"), "--save_dir", str(tmp_path))
    assert f"predicted {len(PHOTOS)}/{len(PHOTOS)} images" in output
    for name, (logits, expected) in mmseg_results(oracle).items():
        with Image.open(tmp_path / "pseudo_color_prediction" / f"{name}.png") as image:
            assert_labels_equal(np.asarray(image), logits, expected)


def voc_tree(root: Path, oracle: Path) -> Path:
    """A VOCdevkit whose val set is the photos, labelled with mmseg's predictions."""
    voc = root / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True)
    for path, (name, (_, labels)) in zip(photo_paths(oracle), mmseg_results(oracle).items()):
        (voc / "JPEGImages" / path.name).write_bytes(path.read_bytes())
        Image.fromarray(labels.astype(np.uint8)).save(voc / "SegmentationClass" / f"{name}.png")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(PHOTOS) + "\n")
    return voc.parent


def test_val_on_mmseg_labels_scores_every_pixel_right(oracle, tmp_path):
    devkit = voc_tree(tmp_path / "data", oracle)
    # --engine predictor: how auto picks an engine is tested in tests/engine and tests/deploy;
    # its choice would convert this R-50 to ONNX and time both runtimes first
    run_script("val.py", "--model_path", str(oracle / "gcnet.pth"), "--save_dir",
               str(tmp_path / "eval"), "--engine", "predictor",
               "--opts", f"val_dataset.dataset_root={devkit}")
    results = json.loads((tmp_path / "eval" / "eval_results.json").read_text())
    assert results["engine"] == "predictor"
    matrix = np.asarray(results["confusion_matrix"])
    ties = sum(int(near_ties(logits).sum()) for logits, _ in mmseg_results(oracle).values())
    assert matrix.sum() == sum(labels.size for _, labels in mmseg_results(oracle).values())
    assert matrix.sum() - np.trace(matrix) <= ties
