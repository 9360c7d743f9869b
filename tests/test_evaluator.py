"""evaluate() end to end on a tiny model and dataset, against an independent numpy reference."""
import json

import numpy as np
import paddle
import pytest
from paddleseg.core import infer as oracle

from gcseg.engine.evaluator import evaluate
from test_inference import NUM_CLASSES, TinySegNet

# Odd sizes; image 1 was padded 21x30 -> 24x32, image 2 resized 40x23 -> 26x17.
SHAPES = [((19, 27), []), ((24, 32), [("padding", (21, 30))]), ((26, 17), [("resize", (40, 23))])]


class TinyDataset(paddle.io.Dataset):
    """Items as the dataset contract has them: normalised CHW image, label at original size."""

    num_classes = NUM_CLASSES
    ignore_index = 255
    class_names = ["road", "car", "sky", "tree", "unused"]

    def __init__(self, num_images: int = 3, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.items = []
        for i in range(num_images):
            (height, width), trans_info = SHAPES[i % len(SHAPES)]
            label_shape = trans_info[0][1] if trans_info else (height, width)
            label = rng.integers(0, NUM_CLASSES - 1, size=label_shape)  # class 4 never in GT
            label[rng.random(label_shape) < 0.15] = 255
            image = rng.standard_normal((3, height, width)).astype("float32")
            self.items.append({"img": image, "label": label.astype("int64"),
                               "trans_info": trans_info, "img_path": f"img{i}.png"})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int) -> dict:
        return dict(self.items[idx])


def reference_matrix(model, dataset, **aug):
    """PaddleSeg's inference for the predictions, numpy for the counting."""
    matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
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
    results = evaluate(model, dataset, aug_eval=True, scales=[0.75, 1.25], flip_horizontal=True,
                       print_detail=False)
    expected = reference_matrix(model, dataset, scales=[0.75, 1.25], flip_horizontal=True)
    np.testing.assert_array_equal(results["confusion_matrix"], expected)


def test_report_table_json_and_png(tmp_path, capsys):
    model = TinySegNet()
    bias = model.classifier.bias.numpy()
    bias[4] = -1e4  # class 4 is never predicted either: zero union
    model.classifier.bias.set_value(bias)
    results = evaluate(model, TinyDataset(), save_dir=str(tmp_path), config_path="c.yml",
                       model_path="m.pdparams", flip_horizontal=True, aug_eval=True)
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
