"""Inference against PaddleSeg 2.8's own functions (the oracle) on the same model and input."""
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import pytest
from paddleseg.core import infer as oracle

from gcseg.engine import inference
from gcseg.engine.inference import InferenceSettings, infer_logits, window_origins
from gcseg.errors import UsageError
from conftest import TINY_NUM_CLASSES, TinySegNet


@pytest.fixture(scope="module")
def model():
    paddle.seed(0)
    net = TinySegNet()
    net.eval()
    return net


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return paddle.to_tensor(rng.standard_normal((1, 3, 37, 53)).astype("float32"))


TRANS_INFO = [("resize", (45, 61)), ("padding", (37, 50))]  # padded 37x50 -> 37x53, then resized


def assert_close(ours, theirs):
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours.numpy(), theirs.numpy().astype("float32"), atol=1e-4)


def test_whole_image_equals_paddleseg(model, image):
    _, expected = oracle.inference(model, image, trans_info=TRANS_INFO)
    assert_close(infer_logits(model, image, InferenceSettings(), TRANS_INFO), expected)


def test_slide_equals_paddleseg(model, image):
    settings = InferenceSettings(is_slide=True, crop_size=(24, 16), stride=(16, 10))
    expected = oracle.slide_inference(model, image, crop_size=(24, 16), stride=(16, 10))
    assert_close(infer_logits(model, image, settings), expected)


def test_flip_equals_paddleseg(model, image):
    settings = InferenceSettings(aug_eval=True, flip_horizontal=True, flip_vertical=True)
    _, expected = oracle.aug_inference(model, image, TRANS_INFO, scales=1.0,
                                       flip_horizontal=True, flip_vertical=True)
    assert_close(infer_logits(model, image, settings, TRANS_INFO), expected)


def test_multiscale_flip_slide_equals_paddleseg(model, image):
    settings = InferenceSettings(aug_eval=True, scales=[0.75, 1.0, 1.25], flip_horizontal=True,
                                 is_slide=True, crop_size=(32, 24), stride=(20, 16))
    _, expected = oracle.aug_inference(model, image, TRANS_INFO, scales=[0.75, 1.0, 1.25],
                                       flip_horizontal=True, is_slide=True,
                                       crop_size=(32, 24), stride=(20, 16))
    assert_close(infer_logits(model, image, settings, TRANS_INFO), expected)


@pytest.mark.parametrize("align_corners", [False, True])
def test_probability_average_softmaxes_each_view_at_the_label_resolution(model, image,
                                                                        align_corners):
    """MMSegmentation's order: each view's logits flipped back, resized to the input, mapped
    back through trans_info (crop the padding, resize to the original), and only then
    softmaxed; the probabilities are averaged. The logits' resizes use ``align_corners``
    (MMSeg: its model's), the image's own rescaling does not."""
    settings = InferenceSettings(aug_eval=True, scales=[0.5, 1.0], flip_horizontal=True,
                                 tta_average="probs", align_corners=align_corners)
    views = []
    for scale in (0.5, 1.0):
        size = [int(37 * scale + 0.5), int(53 * scale + 0.5)]
        scaled = F.interpolate(image, size, mode="bilinear")
        for flipped in (False, True):
            x = scaled[:, :, :, ::-1] if flipped else scaled
            logit = model(x)[0]
            logit = logit[:, :, :, ::-1] if flipped else logit
            logit = F.interpolate(logit, [37, 53], mode="bilinear",
                                  align_corners=align_corners)[:, :, :37, :50]
            logit = F.interpolate(logit, [45, 61], mode="bilinear", align_corners=align_corners)
            views.append(F.softmax(logit, axis=1))
    probs = infer_logits(model, image, settings, TRANS_INFO)
    assert probs.shape == [1, TINY_NUM_CLASSES, 45, 61]
    np.testing.assert_allclose(probs.numpy(), paddle.stack(views).mean(0).numpy(), atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1).numpy(), 1.0, atol=1e-5)


@pytest.mark.parametrize("views", [dict(), dict(aug_eval=True, scales=[1.0])])
def test_one_view_keeps_its_logits_under_probs_averaging(model, image, views):
    """MMSeg's rows set ``tta_average: probs`` for ms+flip; without TTA (or with one view)
    nothing is averaged and the output is the logits, as MMSeg's inference returns them."""
    _, expected = oracle.inference(model, image, trans_info=TRANS_INFO)
    settings = InferenceSettings(tta_average="probs", **views)
    assert not settings.averages_probs
    assert_close(infer_logits(model, image, settings, TRANS_INFO), expected)


class MirrorSymmetricNet(nn.Layer):
    """Per-pixel classifier of a horizontally symmetric input: flipping changes nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.classifier = nn.Conv2D(3, TINY_NUM_CLASSES, 1)

    def forward(self, x):
        return [self.classifier(x)]


def test_flip_invariance_on_symmetric_input():
    paddle.seed(1)
    net = MirrorSymmetricNet()
    half = paddle.rand([1, 3, 9, 8])
    symmetric = paddle.concat([half, half[:, :, :, ::-1]], axis=3)
    plain = infer_logits(net, symmetric, InferenceSettings())
    flipped = infer_logits(net, symmetric, InferenceSettings(aug_eval=True, flip_horizontal=True))
    np.testing.assert_allclose(flipped.numpy(), plain.numpy(), atol=1e-6)


def test_window_origins_clamp_last_window_to_border():
    assert window_origins(37, 16, 10) == [0, 10, 20, 21]
    assert window_origins(12, 16, 10) == [0]


def test_settings_reject_bad_values():
    with pytest.raises(UsageError, match="crop_size"):
        InferenceSettings(is_slide=True, stride=(8, 8))
    with pytest.raises(UsageError, match="stride"):
        InferenceSettings(is_slide=True, crop_size=(8, 8), stride=(16, 8))
    with pytest.raises(UsageError, match="needs a GPU"):
        InferenceSettings(precision="fp16")
    with pytest.raises(UsageError, match="tta_average"):
        InferenceSettings(tta_average="votes")


class CountingNet(TinySegNet):
    """TinySegNet that records the shape of every input batch."""

    def __init__(self) -> None:
        super().__init__()
        self.input_shapes = []

    def forward(self, x):
        self.input_shapes.append(list(x.shape))
        return super().forward(x)


@pytest.fixture
def counting_net():
    paddle.seed(0)
    net = CountingNet()
    net.eval()
    return net


@pytest.mark.parametrize("batch_pixels, expected_batches",
                         [(10 ** 6, [18]), (4 * 24 * 16, [4, 4, 4, 4, 2])])
def test_slide_batches_windows_and_equals_paddleseg(monkeypatch, counting_net, image,
                                                    batch_pixels, expected_batches):
    """3 x 3 windows x 2 flips: one forward of all 18 crops, or forwards of at most 2 windows
    (4 crops) when the pixel budget is small."""
    monkeypatch.setattr(inference, "MAX_BATCH_PIXELS", batch_pixels)
    settings = InferenceSettings(aug_eval=True, flip_horizontal=True, is_slide=True,
                                 crop_size=(24, 16), stride=(16, 12))
    _, expected = oracle.aug_inference(counting_net, image, [], scales=1.0,
                                       flip_horizontal=True, is_slide=True,
                                       crop_size=(24, 16), stride=(16, 12))
    counting_net.input_shapes.clear()
    assert_close(infer_logits(counting_net, image, settings), expected)
    assert [shape[0] for shape in counting_net.input_shapes] == expected_batches


@pytest.mark.parametrize("tta_average", ["logits", "probs"])
def test_flip_views_split_into_forwards_within_the_pixel_budget(monkeypatch, counting_net,
                                                                image, tta_average):
    """4 flips at scales 0.75 (28x40 = 1120 px), 1.0 (37x53 = 1961 px) and 1.25 (46x66 =
    3036 px) under a 3922-pixel budget: 3 + 1, 2 + 2 and 1 + 1 + 1 + 1 views per forward,
    with the results of one forward per scale."""
    settings = InferenceSettings(aug_eval=True, scales=[0.75, 1.0, 1.25], flip_horizontal=True,
                                 flip_vertical=True, tta_average=tta_average)
    unbounded = infer_logits(counting_net, image, settings, TRANS_INFO)
    assert [shape[0] for shape in counting_net.input_shapes] == [4, 4, 4]

    budget = 2 * 37 * 53
    monkeypatch.setattr(inference, "MAX_BATCH_PIXELS", budget)
    counting_net.input_shapes.clear()
    bounded = infer_logits(counting_net, image, settings, TRANS_INFO)
    assert [shape[0] for shape in counting_net.input_shapes] == [3, 1, 2, 2, 1, 1, 1, 1]
    assert all(n * h * w <= budget for n, _, h, w in counting_net.input_shapes)
    np.testing.assert_allclose(bounded.numpy(), unbounded.numpy(), rtol=0, atol=1e-6)
