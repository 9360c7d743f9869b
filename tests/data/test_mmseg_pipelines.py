"""configs/mmseg pipelines against MMSegmentation's own: for each dataset family the row's train
and test pipeline, from the files of a tiny dataset, give the model input and the label that
mmseg 1.2.2's pipeline + SegDataPreProcessor give (the config it ships for that row, run in the
oracle environment). The random transforms draw the same numbers from numpy as mmcv/mmseg, so
with one seed the training samples agree pixel for pixel too."""
import json

import numpy as np
import pytest

import datagen
from gcseg.config import Config
from gcseg.data.datasets import sample_seed
from conftest import ROOT
from mmseg_oracle import require_oracle_python, run_oracle

MMSEG_CONFIGS = ROOT / "configs" / "mmseg"
ROWS = {"cityscapes": "gcnet_r50-d8_4xb2-40k_cityscapes-512x1024",
        "cityscapes_769": "gcnet_r50-d8_4xb2-80k_cityscapes-769x769",
        "ade20k": "gcnet_r50-d8_4xb4-80k_ade20k-512x512",
        "voc12aug": "gcnet_r101-d8_4xb4-20k_voc12aug-512x512"}
SEEDS = (0, 1)
# one uint8 step is 1/58 after normalising; this only absorbs float rounding
NORMALIZED_ATOL = 1e-5


def dominant_label(rng: np.random.Generator, height: int, width: int, first: int) -> np.ndarray:
    """Mostly class ``first``, a small block of ``first + 1``, a stripe of ``first + 2`` and a
    few ignored pixels: windows often fail cat_max_ratio 0.75, so RandomCrop redraws."""
    label = np.full((height, width), first, np.uint8)
    top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
    label[top:top + height // 4, left:left + width // 5] = first + 1
    label[:, width - 3:] = first + 2
    label[rng.random((height, width)) < 0.03] = 255
    return label


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Tiny Cityscapes, ADE20K and VOC trees; Cityscapes and ADE20K labels dominated by one
    class. Odd sizes make every resize factor inexact."""
    base = tmp_path_factory.mktemp("mmseg_data")
    rng = np.random.default_rng(7)
    cityscapes = datagen.make_cityscapes_tree(base / "cityscapes", size=(97, 45))
    for path in sorted(cityscapes.rglob("*_labelTrainIds.png")):
        datagen.write_label(path, dominant_label(rng, 45, 97, first=0))
    ade20k = datagen.make_ade20k_tree(base / "ade20k", size=(53, 37))
    for path in sorted((ade20k / "annotations").rglob("*.png")):
        label = dominant_label(rng, 37, 53, first=1)
        datagen.write_label(path, np.where(label == 255, 0, label).astype(np.uint8))
    voc = datagen.make_voc_tree(base / "VOCdevkit", size=(61, 43))
    return {"Cityscapes": cityscapes, "ADE20K": ade20k, "PascalVOC": voc}


def gcseg_config(row: str, roots: dict) -> Config:
    path = MMSEG_CONFIGS / f"{row}.yml"
    root = roots[Config(path).dic["train_dataset"]["type"]]
    return Config(path, [f"train_dataset.dataset_root={root}", f"val_dataset.dataset_root={root}"])


def cases_and_expected(roots: dict) -> tuple:
    """The oracle's request, and gcseg's (img, label) for each of its keys."""
    request, ours = [], {}
    for family, row in ROWS.items():
        cfg = gcseg_config(row, roots)
        for pipeline, dataset in (("train", cfg.train_dataset), ("test", cfg.val_dataset)):
            for idx in range(2):
                for seed in SEEDS if pipeline == "train" else (0,):
                    dataset.seed = seed
                    key = f"{family}-{pipeline}-{idx}-{seed}"
                    item = dataset[idx]
                    ours[key] = (item["img"], item["label"])
                    img_path, label_path = dataset.file_list[idx]
                    request.append({"key": key, "config": row, "pipeline": pipeline,
                                    "img_path": img_path, "seg_map_path": label_path,
                                    "seed": sample_seed(seed, 0, idx)})
    return request, ours


@pytest.fixture(scope="module")
def compared(roots, tmp_path_factory):
    require_oracle_python()
    request, ours = cases_and_expected(roots)
    work = tmp_path_factory.mktemp("oracle")
    (work / "request.json").write_text(json.dumps(request))
    run_oracle("mmseg_pipeline.py", str(work / "request.json"), str(work / "result.npz"))
    with np.load(work / "result.npz") as result:
        theirs = {key: (result[f"{key}/img"], result[f"{key}/label"]) for key in ours}
    return ours, theirs


def test_test_pipelines_give_mmsegs_model_input_and_label(compared):
    ours, theirs = compared
    keys = [key for key in ours if "-test-" in key]
    assert len(keys) == 2 * len(ROWS)
    for key in keys:
        (img, label), (their_img, their_label) = ours[key], theirs[key]
        assert img.shape == their_img.shape, key  # mmcv's int(side * factor + 0.5)
        np.testing.assert_allclose(img, their_img, atol=NORMALIZED_ATOL, rtol=0, err_msg=key)
        np.testing.assert_array_equal(label, their_label, err_msg=key)  # the full-size label


def test_train_pipelines_give_mmsegs_samples_under_the_same_seed(compared):
    ours, theirs = compared
    keys = [key for key in ours if "-train-" in key]
    assert len(keys) == 2 * len(SEEDS) * len(ROWS)
    for key in keys:
        (img, label), (their_img, their_label) = ours[key], theirs[key]
        assert img.shape == their_img.shape, key
        np.testing.assert_allclose(img, their_img, atol=NORMALIZED_ATOL, rtol=0, err_msg=key)
        np.testing.assert_array_equal(label, their_label, err_msg=key)
    # the samples differ from seed to seed: the comparison saw several random draws
    first, second = (ours[f"cityscapes-train-0-{seed}"][0] for seed in SEEDS)
    assert first.shape != second.shape or not np.array_equal(first, second)
