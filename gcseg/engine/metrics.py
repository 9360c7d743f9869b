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


class RocAuc:
    """Area under the ROC curve of each class's probability, that class against the rest,
    averaged over the classes (PaddleSeg's ``auc_roc``: scikit-learn's one-vs-rest
    ``roc_auc_score``, macro mean; for two classes both halves equal the AUC of class 1).

    PaddleSeg keeps every pixel's probabilities in memory (and fails on ignored pixels); here
    each class's probabilities are counted in ``bins`` equal-width bins, apart for its pixels
    and the others', on the device and summed across processes. A positive and a negative
    pixel in one bin count as a tie (half), which moves the AUC by at most half the fraction
    of such pairs. Ignored pixels are left out; a class without pixels of its own (or without
    any others) has no AUC and is left out of the mean.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, bins: int = 1 << 14) -> None:
        self.num_classes, self.ignore_index, self.bins = num_classes, ignore_index, bins
        self.reset()

    def reset(self) -> None:
        # [class, (others, own), bin]
        self.counts = paddle.zeros([self.num_classes, 2, self.bins], dtype="int64")

    def update(self, label: paddle.Tensor, probs: paddle.Tensor) -> None:
        """Add one image: ``label [h, w]`` class ids, ``probs [1, K, h, w]`` probabilities."""
        label = label.flatten().astype("int64")
        valid = (label != self.ignore_index) & (label >= 0) & (label < self.num_classes)
        label = paddle.masked_select(label, valid)
        probs = probs.reshape([self.num_classes, -1])  # [K, h*w]
        for index in range(self.num_classes):
            score = paddle.masked_select(probs[index], valid)
            bin_of = paddle.clip((score * self.bins).astype("int64"), 0, self.bins - 1)
            own = (label == index).astype("int64")
            self.counts[index] += paddle.bincount(own * self.bins + bin_of,
                                                  minlength=2 * self.bins).reshape([2, -1])

    def all_reduce(self) -> None:
        all_reduce_sum(self.counts)

    def compute(self) -> Optional[float]:
        """The mean AUC over classes that have both own and other pixels (None if none has)."""
        return auc_from_histograms(self.counts.numpy())


def auc_from_histograms(counts: np.ndarray) -> Optional[float]:
    """Mean one-vs-rest AUC of ``counts[class, (others, own), bin]`` (bins in score order)."""
    counts = counts.astype(np.float64)
    others, own = counts[:, 0], counts[:, 1]
    others_below = np.cumsum(others, axis=1) - others
    pairs = others.sum(axis=1) * own.sum(axis=1)
    defined = pairs > 0
    if not defined.any():
        return None
    wins = (own * (others_below + 0.5 * others)).sum(axis=1)
    return float((wins[defined] / pairs[defined]).mean())
