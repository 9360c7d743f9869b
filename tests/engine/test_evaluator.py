"""evaluate() end to end on a tiny model and dataset, against an independent numpy reference."""
import json

import numpy as np
import paddle
import pytest
from paddleseg.core import infer as oracle

from gcseg.engine.evaluator import evaluate
from gcseg.engine.inference import InferenceSettings
from conftest import TINY_NUM_CLASSES, TinyDataset, TinySegNet


def reference_matrix(model, dataset, **aug):
    """PaddleSeg's inference for the predictions, numpy for the counting."""
    matrix = np.zeros((TINY_NUM_CLASSES, TINY_NUM_CLASSES), dtype=np.int64)
    model.eval()
    for item in dataset.items:
        image = paddle.to_tensor(item["img"][None])
        if aug:
            pred, _ = oracle.aug_inference(model, image, item["trans_info"], **aug)
        else:
            pred, _ = oracle.inference(model, image, trans_info=item["trans_info"])
        pred, label = pred.numpy()[0, 0], item["label"]
        valid = label != 255
        np.add.at(matrix, (label[valid], pred[valid]), 1)
    return matrix


@pytest.fixture(scope="module")
def model():
    paddle.seed(3)
    return TinySegNet()


def test_confusion_matrix_equals_reference_and_mode_is_restored(model):
    dataset = TinyDataset()
    model.train()
    results = evaluate(model, dataset, print_detail=False)
    assert model.training
    np.testing.assert_array_equal(results["confusion_matrix"], reference_matrix(model, dataset))
    assert results["num_images"] == 3


def test_tta_confusion_matrix_equals_reference(model):
    dataset = TinyDataset()
    settings = InferenceSettings(aug_eval=True, scales=[0.75, 1.25], flip_horizontal=True)
    results = evaluate(model, dataset, settings, print_detail=False)
    expected = reference_matrix(model, dataset, scales=[0.75, 1.25], flip_horizontal=True)
    np.testing.assert_array_equal(results["confusion_matrix"], expected)


def test_report_table_json_and_png(tmp_path, capsys):
    model = TinySegNet()
    bias = model.classifier.bias.numpy()
    bias[4] = -1e4  # class 4 is never predicted either: zero union
    model.classifier.bias.set_value(bias)
    results = evaluate(model, TinyDataset(), InferenceSettings(flip_horizontal=True, aug_eval=True),
                       save_dir=str(tmp_path), config_path="c.yml", model_path="m.pdparams")
    output = capsys.readouterr().out
    lines = output.splitlines()
    assert lines[0] == ("[EVAL] test-time augmentation: scales 1.0; flips: none, horizontal "
                        "(2 views per image, logits averaged)")
    header = next(i for i, line in enumerate(lines) if line.startswith("Class"))
    rows = {line.split()[0]: line.split()[1:] for line in lines[header + 1:header + 6]}
    assert rows["unused"] == ["-", "-", "-", "-"]
    assert rows["road"][0] == f"{results['class_IoU'][0]:.4f}"
    assert results["mIoU"] == pytest.approx(np.mean(results["class_IoU"][:4]))
    assert "mIoU: %.4f (mean of 4/5 classes" % results["mIoU"] in output
    saved = json.loads((tmp_path / "eval_results.json").read_text())
    for key in ("mIoU", "Acc", "Kappa", "Dice", "class_IoU", "class_precision", "class_recall",
                "confusion_matrix"):
        assert saved[key] == results[key]
    assert saved["config_path"] == "c.yml" and saved["model_path"] == "m.pdparams"
    assert saved["inference"]["flip_horizontal"] is True
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
