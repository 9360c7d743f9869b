"""check_dataset: every problem of a broken dataset is reported at once, with a class histogram;
the script's exit code says clean (0), problems (1) or a config error (2)."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datagen import make_cityscapes_tree, make_file_list_tree, write_label
from gcseg.config import Config
from gcseg.data.check import check_config, check_dataset, quick_check
from gcseg.data.datasets import Cityscapes, Dataset
from gcseg.errors import DataError
from conftest import ROOT

SCRIPT = ROOT / "scripts" / "check_dataset.py"
NUM_CLASSES = 3

FILE_LIST_CONFIG = """
batch_size: 1
iters: 1
train_dataset:
  type: Dataset
  dataset_root: {root}
  num_classes: 3
  mode: train
  train_path: train_list.txt
  transforms: [{{type: Normalize}}]
val_dataset:
  type: Dataset
  dataset_root: {root}
  num_classes: 3
  mode: val
  val_path: val_list.txt
  transforms: [{{type: Normalize}}]
"""


def break_tree(root: Path) -> None:
    """Five problems in train_list.txt, one of each kind; val stays clean."""
    (root / "images" / "train_0.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    write_label(root / "labels" / "train_1.png", np.zeros((5, 7), dtype=np.uint8))
    write_label(root / "labels" / "bad_values.png", np.full((24, 32), 7, dtype=np.uint8))
    Image.fromarray(np.zeros((24, 32, 3), dtype=np.uint8)).save(root / "images" / "extra.png")
    with open(root / "train_list.txt", "a", encoding="utf-8") as handle:
        handle.write("images/gone.png labels/gone.png\n")
        handle.write("images/extra.png labels/bad_values.png\n")
        handle.write("images/train_1.png labels/train_1.png\n")


@pytest.fixture()
def broken(tmp_path):
    root = make_file_list_tree(tmp_path / "data", num_classes=NUM_CLASSES)
    break_tree(root)
    config = tmp_path / "broken.yml"
    config.write_text(FILE_LIST_CONFIG.format(root=root))
    return config


def run_script(*args):
    return subprocess.run([sys.executable, str(SCRIPT), "--no_progress", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_a_clean_dataset_has_no_problems_and_an_exact_histogram(tmp_path):
    root = make_file_list_tree(tmp_path, num_classes=NUM_CLASSES)
    dataset = Dataset(str(root), [], NUM_CLASSES, mode="train", train_path="train_list.txt")
    report = check_dataset(dataset, progress=False)
    labels = np.concatenate([np.asarray(Image.open(root / "labels" / f"train_{i}.png")).ravel()
                             for i in range(2)])
    assert report.ok and report.num_samples == 2
    assert report.histogram.tolist() == np.bincount(labels[labels != 255], minlength=3).tolist()
    assert report.ignored == int((labels == 255).sum())
    assert re.search(rf"2 class_2 +{report.histogram[2]:,} ", report.format())


def test_every_problem_is_reported_not_just_the_first(broken):
    train, val = check_config(Config(broken), progress=False)
    kinds = sorted(problem.kind for problem in train.problems)
    assert kinds == ["bad label values", "duplicate", "missing", "missing", "size mismatch",
                     "unreadable"]
    by_kind = {problem.kind: problem for problem in train.problems}
    assert by_kind["unreadable"].path.endswith("train_0.png")
    assert by_kind["bad label values"].path.endswith("bad_values.png")
    assert "[7]" in by_kind["bad label values"].detail
    assert "7x5" in by_kind["size mismatch"].detail
    assert val.ok


def test_a_missing_label_of_cityscapes_is_listed(tmp_path):
    root = make_cityscapes_tree(tmp_path)
    label = next((root / "gtFine" / "train").glob("*/*.png"))
    label.unlink()
    with pytest.raises(DataError, match="missing"):
        Cityscapes([], str(root), mode="train")  # the constructor still refuses it
    config = tmp_path / "c.yml"
    config.write_text(f"train_dataset: {{type: Cityscapes, dataset_root: {root}, "
                      "transforms: [], mode: train}\n")
    (report,) = check_config(Config(config), progress=False)
    assert [(p.kind, p.path) for p in report.problems] == [("missing", str(label))]


def test_a_dataset_that_cannot_be_built_is_a_problem(tmp_path):
    config = tmp_path / "c.yml"
    config.write_text(f"train_dataset: {{type: Cityscapes, dataset_root: {tmp_path / 'no'}, "
                      "transforms: [], mode: train}\n")
    (report,) = check_config(Config(config), progress=False)
    assert report.problems[0].kind == "dataset" and "no" in report.problems[0].detail


def test_quick_check_reads_the_first_sample(broken, tmp_path):
    root = Path(broken).parent / "data"
    dataset = Dataset(str(root), [], NUM_CLASSES, mode="val", val_path="val_list.txt")
    quick_check(dataset)
    (root / "images" / "val_0.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="val_0.png: unreadable.*check_dataset.py"):
        quick_check(dataset)


def test_script_exit_codes(broken, tmp_path):
    found = run_script("--config", broken)
    assert found.returncode == 1, found.stderr
    assert "6 problem(s)" in found.stdout and "gone.png" in found.stdout
    assert "class_0" in found.stdout and "ignore (255)" in found.stdout

    clean_root = make_file_list_tree(tmp_path / "clean", num_classes=NUM_CLASSES)
    clean = tmp_path / "clean.yml"
    clean.write_text(FILE_LIST_CONFIG.format(root=clean_root))
    assert run_script("--config", clean).returncode == 0

    bad_config = run_script("--config", broken, "--opts", "train_dataset.num_classes=zero")
    assert bad_config.returncode == 2
    assert bad_config.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in bad_config.stderr
