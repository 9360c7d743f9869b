"""scripts/predict.py writes PaddleSeg-style outputs and reports unreadable images."""
import os
import subprocess
import sys

import cv2
import numpy as np
from PIL import Image

from gcseg.config import Config
from gcseg.data.images import collect_images
from gcseg.data.palettes import CITYSCAPES_COLORS
from gcseg.engine.inference import InferenceSettings
from gcseg.engine.predict import output_name, predict_from_config
from conftest import ROOT, expected_prediction, write_run


def test_predict_writes_outputs_and_skips_bad_images(tmp_path):
    config_path, model_path = write_run(tmp_path, num_val=2)
    good = sorted((tmp_path / "data" / "leftImg8bit" / "val").rglob("*.png"))
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_text("not an image")
    missing = tmp_path / "missing.png"
    image_list = tmp_path / "images.txt"
    image_list.write_text("\n".join(str(p) for p in [good[0], missing, corrupt, good[1]]))

    save_dir = tmp_path / "out"
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "predict.py"),
                          "--config", str(config_path), "--model_path", str(model_path),
                          "--image_path", str(image_list), "--save_dir", str(save_dir),
                          "--aug_eval", "--flip_horizontal"],
                         capture_output=True, text=True, timeout=120)

    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == (
        f"error: 2 of 4 images could not be predicted and were skipped; the first: {missing}: "
        "cannot read image (no such file)")
    assert f"{missing}: cannot read image (no such file)" in run.stdout + run.stderr
    assert f"{corrupt}: cannot read image (not a readable image)" in run.stdout + run.stderr
    assert "predicted 2/4 images" in run.stdout
    for image_path in good:  # names below the folder holding every list entry (tmp_path)
        name = image_path.relative_to(tmp_path)
        pseudo = Image.open(save_dir / "pseudo_color_prediction" / name)
        assert pseudo.mode == "P"
        palette = np.array(pseudo.getpalette()[:57]).reshape(19, 3)
        np.testing.assert_array_equal(palette, CITYSCAPES_COLORS)
        np.testing.assert_array_equal(np.asarray(pseudo),
                                      expected_prediction(config_path, model_path, image_path))
        added = cv2.imread(str(save_dir / "added_prediction" / name))
        assert added.shape == cv2.imread(str(image_path)).shape  # (37, 61, 3): original size


def test_predict_needs_no_dataset_on_disk(tmp_path):
    config_path, model_path = write_run(tmp_path, num_val=1)
    image = next((tmp_path / "data" / "leftImg8bit" / "val").rglob("*.png"))
    cfg = Config(config_path, [f"val_dataset.dataset_root={tmp_path / 'absent'}"],
                 load_pretrained=False)
    save_dir = tmp_path / "out"

    total, failed = predict_from_config(cfg, str(model_path), str(image), str(save_dir),
                                        InferenceSettings(aug_eval=True, flip_horizontal=True))

    assert (total, failed) == (1, [])
    pseudo = Image.open(save_dir / "pseudo_color_prediction" / image.name)
    np.testing.assert_array_equal(np.array(pseudo.getpalette()[:57]).reshape(19, 3),
                                  CITYSCAPES_COLORS)  # the Cityscapes class's palette
    np.testing.assert_array_equal(np.asarray(pseudo),  # the val transforms (Resize) were used
                                  expected_prediction(config_path, model_path, image))
    assert (save_dir / "added_prediction" / image.name).is_file()


def test_same_file_names_in_different_folders_keep_their_sub_paths(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    listing = tmp_path / "list.txt"
    listing.write_text("x/frame.png\ny/frame.png\n")
    found, image_dir = collect_images(str(listing))
    names = [output_name(image, image_dir) for image in found]
    assert names == [os.path.join("x", "frame.png"), os.path.join("y", "frame.png")]
    listing.write_text("x/frame.png\n")  # one folder: plain file names, as before
    found, image_dir = collect_images(str(listing))
    assert [output_name(image, image_dir) for image in found] == ["frame.png"]
