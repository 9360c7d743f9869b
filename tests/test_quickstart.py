"""The quickstart config learns: a short run beats the best constant prediction clearly."""

import numpy as np
import pytest

from gcseg.config import Config
from gcseg.data.quickstart import make_quickstart_dataset
from gcseg.engine.trainer import train
from conftest import ROOT

CONFIG = ROOT / "configs" / "quickstart" / "gcnet_resnet18_os8_quickstart.yml"
SHORT_ITERS = 40


def constant_prediction_scores(dataset) -> tuple:
    """(mIoU, Acc) of predicting the most frequent class everywhere: its IoU is its pixel
    share, every other class present in the labels scores 0."""
    labels = np.concatenate([dataset[i]["label"].ravel() for i in range(len(dataset))])
    counts = np.bincount(labels[labels != dataset.ignore_index], minlength=dataset.num_classes)
    share = counts.max() / counts.sum()
    return share / np.count_nonzero(counts), share


@pytest.mark.slow
def test_a_short_quickstart_run_learns_well_above_the_constant_baseline(tmp_path):
    data_root = make_quickstart_dataset(tmp_path / "quickstart", num_train=32, num_val=8)
    cfg = Config(CONFIG, [f"iters={SHORT_ITERS}", f"train_dataset.dataset_root={data_root}",
                          f"val_dataset.dataset_root={data_root}"])
    summary = train(cfg, save_dir=str(tmp_path / "out"), do_eval=True,
                    save_interval=SHORT_ITERS, log_iters=10)
    baseline_miou, baseline_acc = constant_prediction_scores(cfg.val_dataset)
    results = summary["last_eval"]
    assert results["mIoU"] > 2 * baseline_miou, (results["mIoU"], baseline_miou)
    assert results["Acc"] > baseline_acc + 0.15, (results["Acc"], baseline_acc)
    assert summary["best"]["iter"] == SHORT_ITERS
    assert (tmp_path / "out" / "best_model" / "model.pdparams").is_file()
