"""Loss values against numpy, with ignored pixels, class weights, top-k and OHEM."""
import numpy as np
import paddle
import pytest

from gcseg.errors import ConfigError
from gcseg.losses import CrossEntropyLoss, OhemCrossEntropyLoss, combine


def numpy_nll(logits, labels):
    """-log softmax(logits)[label] per pixel, NCHW logits, NHW labels (labels must be valid)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_prob = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -np.take_along_axis(log_prob, labels[:, None], axis=1)[:, 0]


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    labels = rng.integers(0, 3, (2, 4, 5)).astype(np.int64)
    labels[0, 0, :3] = 255
    labels[1, 2, 4] = 255
    return logits, labels


def run(loss, logits, labels):
    return float(loss(paddle.to_tensor(logits), paddle.to_tensor(labels)))


def test_cross_entropy_averages_over_non_ignored_pixels(batch):
    logits, labels = batch
    valid = labels != 255
    expected = numpy_nll(logits, np.where(valid, labels, 0))[valid].mean()
    assert run(CrossEntropyLoss(), logits, labels) == pytest.approx(expected, rel=1e-5)


def test_cross_entropy_avg_non_ignore_false_divides_by_every_pixel(batch):
    """PaddleSeg's ``avg_non_ignore: False``: ignored pixels add 0 loss but count in the mean."""
    logits, labels = batch
    valid = labels != 255
    expected = np.where(valid, numpy_nll(logits, np.where(valid, labels, 0)), 0.0).mean()
    got = run(CrossEntropyLoss(avg_non_ignore=False), logits, labels)
    assert got == pytest.approx(expected, rel=1e-5)


def test_cross_entropy_gradient_is_softmax_minus_one_hot_over_valid_pixels(batch):
    logits, labels = batch
    valid = labels != 255
    safe = np.where(valid, labels, 0)
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    one_hot = np.eye(logits.shape[1], dtype=np.float32)[safe].transpose(0, 3, 1, 2)
    expected = (softmax - one_hot) * valid[:, None] / valid.sum()
    x = paddle.to_tensor(logits, stop_gradient=False)
    CrossEntropyLoss()(x, paddle.to_tensor(labels)).backward()
    np.testing.assert_allclose(x.grad.numpy(), expected, atol=1e-6)


def test_cross_entropy_with_class_weights_is_a_weighted_mean(batch):
    logits, labels = batch
    weight = np.array([0.5, 2.0, 1.0])
    valid = labels != 255
    safe = np.where(valid, labels, 0)
    w = weight[safe][valid]
    expected = (w * numpy_nll(logits, safe)[valid]).sum() / w.sum()
    assert run(CrossEntropyLoss(weight=list(weight)), logits, labels) == pytest.approx(
        expected, rel=1e-5)


def test_cross_entropy_top_k_keeps_the_largest_pixel_losses(batch):
    logits, labels = batch
    valid = labels != 255
    per_pixel = np.where(valid, numpy_nll(logits, np.where(valid, labels, 0)), 0.0).ravel()
    k = int(0.25 * per_pixel.size)  # 10 of 40 pixels
    expected = np.sort(per_pixel)[-k:].mean()
    got = run(CrossEntropyLoss(top_k_percent_pixels=0.25), logits, labels)
    assert got == pytest.approx(expected, rel=1e-5)


def test_cross_entropy_nhwc_matches_nchw(batch):
    logits, labels = batch
    nchw = run(CrossEntropyLoss(), logits, labels)
    nhwc = run(CrossEntropyLoss(data_format="NHWC"), logits.transpose(0, 2, 3, 1), labels)
    assert nhwc == pytest.approx(nchw, rel=1e-6)


def two_class_logits(true_probs):
    """Logits [1, 2, 1, P] whose softmax gives class 0 the probabilities ``true_probs``."""
    p = np.asarray(true_probs, np.float64)
    return np.stack([np.log(p), np.log(1 - p)])[None, :, None, :].astype(np.float32)


@pytest.mark.parametrize("min_kept, kept_probs", [
    (2, [0.6, 0.3]),            # 2nd smallest 0.6 < thresh 0.7: keep p < 0.7
    (3, [0.6, 0.3]),            # 3rd smallest 0.8 > 0.7: keep p < 0.8 (strictly)
    (4, [0.9, 0.6, 0.3, 0.8]),  # not more valid pixels (4) than min_kept: keep all
    (0, [0.9, 0.6, 0.3, 0.8]),  # min_kept 0 disables mining, as in PaddleSeg
])
def test_ohem_keeps_the_hard_pixels(min_kept, kept_probs):
    logits = two_class_logits([0.9, 0.6, 0.3, 0.8, 0.5])
    labels = np.array([[[0, 0, 0, 0, 255]]], np.int64)  # the 5th pixel is ignored
    expected = -np.log(kept_probs).mean()
    got = run(OhemCrossEntropyLoss(thresh=0.7, min_kept=min_kept), logits, labels)
    assert got == pytest.approx(expected, rel=1e-3)  # 1e-5 EPS in the denominator


def test_losses_backpropagate_float32_logits_with_int64_labels(batch):
    logits, labels = batch
    for loss in (CrossEntropyLoss(weight=[1.0, 2.0, 3.0]), OhemCrossEntropyLoss(min_kept=5)):
        x = paddle.to_tensor(logits, stop_gradient=False)
        value = loss(x, paddle.to_tensor(labels))
        value.backward()
        assert value.ndim == 0 and x.grad is not None
        assert np.all(x.grad.numpy()[0, :, 0, :3] == 0)  # ignored pixels get no gradient


def test_combine_weights_each_head_and_repeats_a_single_type(batch):
    logits, labels = batch
    main, aux = paddle.to_tensor(logits), paddle.to_tensor(logits[:, ::-1].copy())
    label = paddle.to_tensor(labels)
    ce = CrossEntropyLoss()
    total, per_head = combine([main, aux], label, {"types": [ce], "coef": [1, 0.4]})
    expected = [float(ce(main, label)), 0.4 * float(ce(aux, label))]
    assert [float(v) for v in per_head] == pytest.approx(expected, rel=1e-6)
    assert float(total) == pytest.approx(sum(expected), rel=1e-6)


def test_combine_rejects_mismatched_lengths(batch):
    logits, labels = batch
    x, y = paddle.to_tensor(logits), paddle.to_tensor(labels)
    ce = CrossEntropyLoss()
    with pytest.raises(ConfigError, match="2 types but 3 coef"):
        combine([x, x, x], y, {"types": [ce, ce], "coef": [1, 0.4, 0.2]})
    with pytest.raises(ConfigError, match="1 coefficients but the model returned 2"):
        combine([x, x], y, {"types": [ce], "coef": [1]})


def test_combine_ignores_coefficients_beyond_the_outputs_like_paddleseg(batch):
    """``coef: [1, 0.4]`` with the auxiliary head switched off trains the main head alone."""
    logits, labels = batch
    x, y = paddle.to_tensor(logits), paddle.to_tensor(labels)
    ce = CrossEntropyLoss()
    total, per_head = combine([x], y, {"types": [ce], "coef": [1, 0.4]})
    assert len(per_head) == 1
    assert float(total) == pytest.approx(float(ce(x, y)), rel=1e-6)


def test_paddleseg_parity_where_its_losses_run(batch):
    """PaddleSeg 2.8's own losses only run on Paddle 2.x (dtype promotion errors on 3.x)."""
    if int(paddle.__version__.split(".")[0]) >= 3:
        pytest.skip("PaddleSeg 2.8 losses fail on Paddle 3")
    losses = pytest.importorskip("paddleseg.models.losses")
    logits, labels = batch
    x, y = paddle.to_tensor(logits), paddle.to_tensor(labels)
    pairs = [(losses.CrossEntropyLoss(weight=[0.5, 2.0, 1.0]),
              CrossEntropyLoss(weight=[0.5, 2.0, 1.0])),
             (losses.CrossEntropyLoss(top_k_percent_pixels=0.3),
              CrossEntropyLoss(top_k_percent_pixels=0.3)),
             (losses.CrossEntropyLoss(avg_non_ignore=False),
              CrossEntropyLoss(avg_non_ignore=False)),
             (losses.OhemCrossEntropyLoss(0.7, 8), OhemCrossEntropyLoss(0.7, 8))]
    for theirs, ours in pairs:
        assert float(ours(x, y)) == pytest.approx(float(theirs(x, y)), rel=1e-5)
