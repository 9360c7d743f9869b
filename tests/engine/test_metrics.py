"""Metrics against numpy formulas and against the official Cityscapes evaluator."""
import cv2
import numpy as np
import paddle
import pytest
from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cityscapes_eval
from cityscapesscripts.helpers.labels import trainId2label

from gcseg.engine.metrics import ConfusionMatrix, RocAuc, metrics_from_confusion

# rows: label, columns: prediction. Class 3 is in neither (zero union).
MATRIX = np.array([[50, 2, 3, 0],
                   [4, 30, 6, 0],
                   [1, 0, 9, 0],
                   [0, 0, 0, 0]])


def test_metrics_from_hand_built_matrix():
    result = metrics_from_confusion(MATRIX)
    tp, gt, pred = np.diag(MATRIX), MATRIX.sum(1), MATRIX.sum(0)
    iou = tp[:3] / (gt + pred - tp)[:3]
    assert result["class_IoU"][:3] == pytest.approx(iou)
    assert result["class_IoU"][3] is None
    assert result["mIoU"] == pytest.approx(iou.mean())
    assert result["num_classes_averaged"] == 3
    assert result["Acc"] == pytest.approx(89 / 105)
    assert result["class_precision"][:3] == pytest.approx([50 / 55, 30 / 32, 9 / 18])
    assert result["class_recall"][:3] == pytest.approx([50 / 55, 30 / 40, 9 / 10])
    dice = 2 * tp[:3] / (gt + pred)[:3]
    assert result["Dice"] == pytest.approx(dice.mean())
    expected_agreement = (gt * pred).sum() / 105 ** 2
    assert result["Kappa"] == pytest.approx((89 / 105 - expected_agreement) / (1 - expected_agreement))
    assert result["confusion_matrix"] == MATRIX.tolist()


def test_class_missing_from_prediction_has_precision_zero():
    result = metrics_from_confusion(np.array([[5, 0], [3, 0]]))
    assert result["class_IoU"] == [pytest.approx(5 / 8), 0.0]
    assert result["class_precision"] == [pytest.approx(5 / 8), 0.0]
    assert result["class_recall"] == [1.0, 0.0]
    assert result["mIoU"] == pytest.approx(5 / 16)


def test_update_counts_valid_pixels_once_and_skips_ignore_index():
    label = np.array([[0, 1, 255], [2, 2, 1]])
    pred = np.array([[0, 2, 1], [2, 0, 1]])
    matrix = ConfusionMatrix(num_classes=3, ignore_index=255)
    matrix.update(paddle.to_tensor(label), paddle.to_tensor(pred))
    matrix.update(paddle.to_tensor(label), paddle.to_tensor(pred))
    expected = np.zeros((3, 3), dtype=np.int64)
    valid = label != 255
    np.add.at(expected, (label[valid], pred[valid]), 2)
    np.testing.assert_array_equal(matrix.matrix.numpy(), expected)
    matrix.reset()
    assert matrix.matrix.numpy().sum() == 0


def _write_label_ids(path, train_ids):
    """trainId map (255 = ignore) -> Cityscapes labelIds PNG, as the official evaluator reads."""
    lut = np.zeros(256, dtype=np.uint8)  # 255 -> labelId 0 "unlabeled" (ignored in eval)
    for train_id in range(19):
        lut[train_id] = trainId2label[train_id].id
    cv2.imwrite(str(path), lut[train_ids])


def _official_class_iou(tmp_path, labels, preds):
    gt_files, pred_files = [], []
    for i, (label, pred) in enumerate(zip(labels, preds)):
        gt_files.append(tmp_path / f"city_{i:06d}_000019_gtFine_labelIds.png")
        pred_files.append(tmp_path / f"city_{i:06d}_000019_pred.png")
        _write_label_ids(gt_files[-1], label)
        _write_label_ids(pred_files[-1], pred)
    args = cityscapes_eval.CArgs()
    args.evalInstLevelScore, args.JSONOutput, args.quiet = False, False, True
    args.evalPixelAccuracy = False
    result = cityscapes_eval.evaluateImgLists([str(p) for p in pred_files],
                                              [str(p) for p in gt_files], args)
    return np.array([result["classScores"][trainId2label[t].name] for t in range(19)])


def _random_maps(seed, classes, num_images=3, shape=(23, 31)):
    rng = np.random.default_rng(seed)
    labels = rng.choice(classes, size=(num_images,) + shape)
    labels[rng.random(labels.shape) < 0.1] = 255
    noisy = rng.random(labels.shape) < 0.4
    preds = np.where(noisy, rng.choice(classes, size=labels.shape), np.maximum(labels, 0))
    preds = np.where(preds == 255, classes[0], preds)
    return labels, preds


@pytest.mark.parametrize("classes", [np.arange(19), np.array([0, 1, 2, 8, 10, 11, 13])],
                         ids=["all-classes", "subset"])
def test_class_iou_equals_official_cityscapes_evaluator(tmp_path, classes):
    labels, preds = _random_maps(0, classes)
    matrix = ConfusionMatrix(num_classes=19)
    for label, pred in zip(labels, preds):
        matrix.update(paddle.to_tensor(label), paddle.to_tensor(pred))
    result = matrix.compute()
    official = _official_class_iou(tmp_path, labels, preds)
    ours = np.array([np.nan if v is None else v for v in result["class_IoU"]])
    np.testing.assert_allclose(ours, official, rtol=1e-12)  # NaN where the evaluator has NaN
    assert result["mIoU"] == pytest.approx(np.nanmean(official), rel=1e-12)
    assert result["num_classes_averaged"] == len(classes)


# ----------------------------------------------------------------------------- AUC-ROC
def _softmax(logits: np.ndarray, axis: int = 1) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return exp / exp.sum(axis=axis, keepdims=True)


def _informative_probs(rng, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``[N, K, H, W]`` probabilities that favour the label (an imperfect classifier)."""
    logits = rng.normal(size=(labels.shape[0], num_classes) + labels.shape[1:])
    logits += 1.5 * (np.arange(num_classes)[None, :, None, None] == labels[:, None])
    return _softmax(logits).astype(np.float32)


def _roc_auc(labels: np.ndarray, probs: np.ndarray, num_classes: int, **kwargs) -> float:
    roc = RocAuc(num_classes, **kwargs)
    for label, prob in zip(labels, probs):
        roc.update(paddle.to_tensor(label), paddle.to_tensor(prob[None]))
    return roc.compute()


def test_roc_auc_of_a_hand_counted_case():
    """Class 1's pixels score 0.4 and 0.9, the others 0.1 and 0.6: 3 of 4 pairs in order; class
    0 (scores 1 - p) is the mirror image, also 3/4."""
    labels = np.array([[[0, 0, 1, 1]]])
    p1 = np.array([0.1, 0.6, 0.4, 0.9], dtype=np.float32)
    probs = np.stack([1 - p1, p1])[None, :, None, :]  # [1, 2, 1, 4]
    assert _roc_auc(labels, probs, 2) == pytest.approx(0.75)


@pytest.mark.parametrize("num_classes", [2, 4])
def test_roc_auc_equals_paddleseg_s_auc_roc(num_classes):
    """PaddleSeg 2.8's ``metrics.auc_roc`` (scikit-learn's one-vs-rest roc_auc_score) over all
    pixels, against ours accumulated image by image in histograms."""
    oracle = pytest.importorskip("paddleseg.utils.metrics")
    rng = np.random.default_rng(num_classes)
    labels = rng.integers(0, num_classes, size=(3, 17, 23))
    probs = _informative_probs(rng, labels, num_classes)
    expected = oracle.auc_roc(probs, labels[:, None], num_classes=num_classes)
    assert 0.6 < expected < 0.95  # neither chance nor perfect: the test could fail
    assert _roc_auc(labels, probs, num_classes) == pytest.approx(expected, abs=1e-4)


def test_roc_auc_leaves_out_ignored_pixels_and_classes_without_pixels():
    """PaddleSeg fails on ignored pixels; here they are left out, and a class that no pixel has
    (class 3) has no AUC and is left out of the mean."""
    oracle = pytest.importorskip("paddleseg.utils.metrics")
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 3, size=(2, 19, 13))
    probs = _informative_probs(rng, labels, 4)
    labels[rng.random(labels.shape) < 0.1] = 255
    valid = labels != 255
    valid_labels = labels[valid]  # [P]
    valid_probs = np.moveaxis(probs, 1, -1)[valid][:, :3]  # [P, 3]: classes 0-2 only
    per_class = []
    for index in range(3):  # class ``index`` against the rest, as PaddleSeg's two-class case
        score = valid_probs[:, index]
        binary_probs = np.stack([1 - score, score])[None, :, None, :]  # [1, 2, 1, P]
        binary_labels = (valid_labels == index).astype(np.int64)[None, None, None, :]
        per_class.append(oracle.auc_roc(binary_probs, binary_labels, num_classes=2))
    assert _roc_auc(labels, probs, 4) == pytest.approx(np.mean(per_class), abs=1e-4)
