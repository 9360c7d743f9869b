"""VisualDL logging of a training run (``visualdl --logdir <save_dir>`` shows it).

Scalars: ``Train/loss`` (and ``Train/loss_<i>`` per head), ``Train/lr``, ``Train/batch_cost``,
``Train/reader_cost``, ``Evaluate/mIoU``, ``Evaluate/Acc``, ``Evaluate/Kappa``,
``Evaluate/IoU/<class>``; image ``Evaluate/prediction_vs_label``: the prediction of one
validation image beside its label, coloured with the dataset's palette.
"""
import os
from typing import Any, Dict, Mapping

import numpy as np
import paddle
from visualdl import LogWriter

from gcseg.data.palettes import colorize
from gcseg.engine.evaluator import as_tensor, eval_mode
from gcseg.engine.inference import InferenceSettings, infer_logits

VDL_SUBDIR = "vdl"
PANEL_TAG = "Evaluate/prediction_vs_label"


def eval_scalars(results: Mapping[str, Any]) -> Dict[str, float]:
    """``Evaluate/...`` tags of an evaluation; classes with no pixels anywhere are skipped."""
    scalars = {f"Evaluate/{key}": float(results[key]) for key in ("mIoU", "Acc", "Kappa")}
    if results.get("auc_roc") is not None:
        scalars["Evaluate/AUC_ROC"] = float(results["auc_roc"])
    for name, iou in zip(results["class_names"], results["class_IoU"]):
        if iou is not None:
            scalars[f"Evaluate/IoU/{name}"] = float(iou)
    return scalars


def prediction_panel(model: paddle.nn.Layer, dataset: Any, index: int = 0,
                     gap: int = 4) -> np.ndarray:
    """``HW3 uint8``: the colourised prediction of ``dataset[index]``, a white gap, its label."""
    item = dataset[index]
    with eval_mode(model):
        logits = infer_logits(model, as_tensor(item["img"]).unsqueeze(0), InferenceSettings(),
                              item.get("trans_info"))
    prediction = logits.argmax(axis=1)[0].numpy()
    palette, ignore = dataset.palette, dataset.ignore_index
    left = colorize(prediction, palette, ignore)
    right = colorize(np.asarray(item["label"]), palette, ignore)
    spacer = np.full((left.shape[0], gap, 3), 255, dtype=np.uint8)
    return np.concatenate([left, spacer, right], axis=1)


class VdlWriter:
    """A VisualDL ``LogWriter`` in ``<save_dir>/vdl``; create it on the main process only."""

    def __init__(self, save_dir: str) -> None:
        self.logdir = os.path.join(save_dir, VDL_SUBDIR)
        self.writer = LogWriter(logdir=self.logdir)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, float(value), step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        self.writer.add_image(tag, image, step, dataformats="HWC")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
