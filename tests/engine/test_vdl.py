"""VisualDL logs of a tiny run, read back with VisualDL's own LogReader."""
import numpy as np
from PIL import Image
from visualdl import LogReader

from gcseg.config import Config
from gcseg.engine.trainer import VIS_SUBDIR, train
from gcseg.engine.vdl import PANEL_TAG, VDL_SUBDIR
from conftest import write_tiny_config


def test_train_and_eval_scalars_per_class_iou_and_the_prediction_panel(tmp_path):
    cfg = Config(write_tiny_config(tmp_path), ["iters=2"])
    summary = train(cfg, save_dir=str(tmp_path / "out"), do_eval=True, use_vdl=True)
    (log_file,) = (tmp_path / "out" / VDL_SUBDIR).glob("vdlrecords.*.log")
    reader = LogReader(file_path=str(log_file))
    tags = reader.get_tags()
    for tag in ("Train/loss", "Train/loss_0", "Train/loss_1", "Train/lr", "Train/batch_cost",
                "Train/reader_cost", "Evaluate/mIoU", "Evaluate/Acc", "Evaluate/Kappa"):
        assert tag in tags["scalar"], tag
    results = summary["last_eval"]
    present = [name for name, iou in zip(results["class_names"], results["class_IoU"])
               if iou is not None]
    assert present and all(f"Evaluate/IoU/{name}" in tags["scalar"] for name in present)
    assert [record.id for record in reader.get_data("scalar", "Train/loss")] == [1, 2]
    miou = reader.get_data("scalar", "Evaluate/mIoU")
    assert [r.id for r in miou] == [2] and np.isclose(miou[0].value, results["mIoU"])
    assert tags["image"] == [PANEL_TAG]
    assert len(reader.get_data("image", PANEL_TAG)) == 1
    panel = np.asarray(Image.open(tmp_path / "out" / VIS_SUBDIR / "iter_2.png"))
    assert panel.shape == (32, 64 + 4 + 64, 3)  # prediction | white gap | label, 64x32 images
    assert (panel[:, 64:68] == 255).all()
