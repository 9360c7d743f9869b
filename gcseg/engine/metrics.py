"""Segmentation metrics from one confusion matrix.

The matrix is accumulated on the device (one ``bincount`` per image) and summed across
processes; every reported number is derived from it on the host at the end.

Zero-union classes (in neither ground truth nor prediction) have no IoU: they appear as
``None`` and are left out of the means, as in the official Cityscapes evaluator and
MMSegmentation (PaddleSeg 2.8 counts them as IoU 0). PaddleSeg's per-class "Acc" is
``class_precision`` here.
"""
from typing import Dict, List, Optional

import numpy as np
import paddle

from gcseg.engine.distributed import all_reduce_sum


class ConfusionMatrix:
    """``matrix[label, pred]`` pixel counts over every pixel whose label is a valid class."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.matrix = paddle.zeros([self.num_classes, self.num_classes], dtype="int64")

    def update(self, label: paddle.Tensor, pred: paddle.Tensor) -> None:
        """Add one image (or batch): ``label`` and ``pred`` hold class ids, same number of pixels."""
        n = self.num_classes
        label = label.flatten().astype("int64")
        pred = pred.flatten().astype("int64")
        valid = (label != self.ignore_index) & (label >= 0) & (label < n)
        index = paddle.masked_select(n * label + pred, valid)
        self.matrix += paddle.bincount(index, minlength=n * n).reshape([n, n])

    def all_reduce(self) -> None:
        """Sum the matrix over all processes (a no-op in a single process)."""
        all_reduce_sum(self.matrix)

    def compute(self) -> Dict[str, object]:
        return metrics_from_confusion(self.matrix.numpy())


def _nullable(values: np.ndarray, defined: np.ndarray) -> List[Optional[float]]:
    return [float(v) if ok else None for v, ok in zip(values, defined)]


def metrics_from_confusion(matrix: np.ndarray) -> Dict[str, object]:
    """mIoU, Acc, Kappa, Dice and per-class IoU/precision/recall/Dice of ``matrix[label, pred]``.

    Per-class values are ``None`` for zero-union classes; precision (recall) of a class never
    predicted (never in the ground truth) but present in the other is 0, as in PaddleSeg.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    true_positive = np.diag(matrix)
    label_area = matrix.sum(axis=1)
    pred_area = matrix.sum(axis=0)
    union = label_area + pred_area - true_positive
    present = union > 0
    total = matrix.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = true_positive / union
        dice = 2 * true_positive / (label_area + pred_area)
        precision = np.where(pred_area > 0, true_positive / pred_area, 0.0)
        recall = np.where(label_area > 0, true_positive / label_area, 0.0)
        accuracy = true_positive.sum() / total
        expected = (label_area * pred_area).sum() / total ** 2
        kappa = (accuracy - expected) / (1 - expected)
    num_averaged = int(present.sum())
    return {
        "mIoU": float(iou[present].mean()) if num_averaged else float("nan"),
        "Acc": float(accuracy),
        "Kappa": float(kappa),
        "Dice": float(dice[present].mean()) if num_averaged else float("nan"),
        "num_classes_averaged": num_averaged,
        "class_IoU": _nullable(iou, present),
        "class_precision": _nullable(precision, present),
        "class_recall": _nullable(recall, present),
        "class_dice": _nullable(dice, present),
        "confusion_matrix": matrix.astype(np.int64).tolist(),
    }
