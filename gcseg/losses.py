"""Segmentation losses with PaddleSeg 2.8's semantics, and their combination over model heads.

Both losses get the per-pixel negative log-likelihood from Paddle's fused softmax cross entropy
on channel-last logits, in float32 with int64 labels (PaddleSeg 2.8's own CrossEntropyLoss
multiplies an int64 label by a float32 mask, which Paddle 3.x rejects). Measured on the
project's 2-core CPU, [2, 19, 256, 512] logits, forward + backward: 57 ms channel-last,
82 ms over axis 1, 765 ms as ``log_softmax`` + ``take_along_axis`` (the gather's backward).
"""
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import paddle
import paddle.nn.functional as F
from paddle import nn

from gcseg.errors import ConfigError
from gcseg.registry import LOSSES


def _pixel_nll(logit: paddle.Tensor, label: paddle.Tensor, ignore_index: int,
               channel_axis: int) -> Tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor]:
    """Per-pixel ``-log p(label)`` (0 at ignored pixels), the float valid mask and the label.

    logit ``[N, K, H, W]`` (or ``[N, H, W, K]``), label ``[N, H, W]`` or ``[N, 1, H, W]``; all
    outputs ``[N, H, W]``.
    """
    label = label.astype("int64")
    if label.ndim == logit.ndim:  # [N, 1, H, W] labels, as PaddleSeg also accepts
        label = label.squeeze(channel_axis)
    valid = (label != ignore_index).astype("float32")
    if channel_axis != logit.ndim - 1:
        logit = paddle.transpose(logit, [0, *range(2, logit.ndim), 1])
    nll = F.cross_entropy(logit.astype("float32"), label.unsqueeze(-1), reduction="none",
                          ignore_index=ignore_index)
    return nll.squeeze(-1), valid, label


@LOSSES.register
class CrossEntropyLoss(nn.Layer):
    """Pixel-wise softmax cross entropy, averaged over the non-ignored pixels.

    With class ``weight`` w the result is ``sum(w[y] * nll) / sum(w[y])`` over valid pixels
    (PaddleSeg 2.8: ``mean(w[y] * nll * mask) / (mean(w[y] * mask) + 1e-8)``), i.e. a weighted
    mean, so the loss scale does not depend on the weights' scale. With
    ``top_k_percent_pixels < 1`` only the ``int(p * N*H*W)`` largest pixel losses count, divided
    by the mean weight of those pixels (PaddleSeg counts an ignored pixel there with weight
    ``w[0]``, or 1 without weights, and so does this). ``avg_non_ignore=False`` (PaddleSeg's
    switch) divides by every pixel instead of the valid ones, ignored pixels counting as
    ``w[0]`` (or 1) there too.
    """

    EPS = 1e-8

    def __init__(self, weight: Optional[Sequence[float]] = None, ignore_index: int = 255,
                 top_k_percent_pixels: float = 1.0, avg_non_ignore: bool = True,
                 data_format: str = "NCHW") -> None:
        super().__init__()
        if not 0.0 < top_k_percent_pixels <= 1.0:
            raise ConfigError(f"CrossEntropyLoss.top_k_percent_pixels: expected a number in "
                              f"(0, 1], got {top_k_percent_pixels!r}")
        if data_format not in ("NCHW", "NHWC"):
            raise ConfigError(f"CrossEntropyLoss.data_format: expected NCHW or NHWC, "
                              f"got {data_format!r}")
        self.ignore_index = ignore_index
        self.top_k_percent_pixels = float(top_k_percent_pixels)
        self.avg_non_ignore = bool(avg_non_ignore)
        self.data_format = data_format
        self.weight = None if weight is None else paddle.to_tensor(list(weight), "float32")

    def forward(self, logit: paddle.Tensor, label: paddle.Tensor) -> paddle.Tensor:
        axis = 1 if self.data_format == "NCHW" else logit.ndim - 1
        if self.weight is not None and logit.shape[axis] != self.weight.shape[0]:
            raise ConfigError(f"CrossEntropyLoss.weight: {self.weight.shape[0]} weights for "
                              f"{logit.shape[axis]} classes")
        nll, valid, label = _pixel_nll(logit, label, self.ignore_index, axis)
        mask = valid if self.avg_non_ignore else paddle.ones_like(valid)
        if self.weight is None and self.top_k_percent_pixels == 1.0:
            return nll.mean() / (mask.mean() + self.EPS)  # the common case, without a coef map
        coef = self._pixel_weights(label, valid)
        loss = nll * coef
        if self.top_k_percent_pixels == 1.0:
            return loss.mean() / ((mask * coef).mean() + self.EPS)
        top_k = max(int(self.top_k_percent_pixels * math.prod(loss.shape)), 1)
        top_loss, indices = paddle.topk(loss.flatten(), top_k)
        top_coef = paddle.gather(coef.flatten(), indices)
        return top_loss.mean() / (top_coef.mean() + self.EPS)

    def _pixel_weights(self, label: paddle.Tensor, valid: paddle.Tensor) -> paddle.Tensor:
        """``w[label]`` per pixel, ``w[0]`` at ignored pixels; all ones without weights."""
        if self.weight is None:
            return paddle.ones_like(valid)
        safe_label = label * valid.astype("int64")
        return paddle.gather(self.weight, safe_label.flatten()).reshape(safe_label.shape)


@LOSSES.register
class OhemCrossEntropyLoss(nn.Layer):
    """Cross entropy over the hard pixels only (online hard example mining), as PaddleSeg 2.8.

    When more than ``min_kept`` pixels are valid, a pixel is kept if the softmax probability of
    its true class is below ``max(thresh, p_k)``, where ``p_k`` is the ``min_kept``-th smallest
    such probability (so at least about ``min_kept`` pixels stay). Otherwise (or with
    ``min_kept`` 0) every valid pixel is kept. The loss is the mean over kept pixels.
    """

    EPS = 1e-5

    def __init__(self, thresh: float = 0.7, min_kept: int = 10000,
                 ignore_index: int = 255) -> None:
        super().__init__()
        if not isinstance(min_kept, int) or min_kept < 0:
            raise ConfigError(f"OhemCrossEntropyLoss.min_kept: expected an int >= 0, "
                              f"got {min_kept!r}")
        self.thresh = float(thresh)
        self.min_kept = min_kept
        self.ignore_index = ignore_index

    def forward(self, logit: paddle.Tensor, label: paddle.Tensor) -> paddle.Tensor:
        nll, valid, _ = _pixel_nll(logit, label, self.ignore_index, 1)
        true_prob = paddle.exp(-nll) + (1.0 - valid)  # ignored pixels get > 1: never "hard"
        flat = true_prob.flatten()
        kth = min(flat.shape[0], max(self.min_kept, 1)) - 1
        threshold = paddle.maximum(paddle.sort(flat)[kth], paddle.to_tensor(self.thresh))
        num_valid = valid.sum()
        mining = paddle.logical_and(num_valid > self.min_kept,
                                    paddle.to_tensor(self.min_kept > 0))
        kept = paddle.where(mining, (true_prob < threshold).astype("float32"),
                            paddle.ones_like(valid)) * valid
        kept.stop_gradient = True
        return (nll * kept).mean() / (kept.mean() + self.EPS)


def one_type_per_coef(types: Sequence[Any], coef: Sequence[float]) -> List[Any]:
    """``types`` with one entry per coefficient: a single type is repeated for every coef, as in
    PaddleSeg configs (``types: [{type: CrossEntropyLoss}]``, ``coef: [1, 0.4]``)."""
    types = list(types)
    if len(types) == 1 and len(coef) > 1:
        types = types * len(coef)
    if not types or len(types) != len(coef):
        raise ConfigError(f"loss: {len(types)} types but {len(coef)} coef "
                          "(expected one coef per type, or a single type)")
    return types


def combine(logits_list: Sequence[paddle.Tensor], label: paddle.Tensor,
            loss_cfg: Dict[str, Any]) -> Tuple[paddle.Tensor, List[paddle.Tensor]]:
    """``sum_i coef[i] * types[i](logits_list[i], label)`` and the per-head weighted terms.

    ``loss_cfg = {"types": [...], "coef": [...]}``; a single type is used for every coef, as in
    PaddleSeg configs (``types: [{type: CrossEntropyLoss}]``, ``coef: [1, 0.4]``). Coefficients
    beyond the model's outputs are unused, as in PaddleSeg (a config with ``coef: [1, 0.4]`` and
    ``enable_auxiliary_loss: False`` trains the main head only).
    """
    coef = list(loss_cfg.get("coef", []))
    types = one_type_per_coef(loss_cfg.get("types", []), coef)
    if len(logits_list) > len(coef):
        raise ConfigError(f"loss.coef: {len(coef)} coefficients but the model returned "
                          f"{len(logits_list)} outputs (main + auxiliary heads)")
    per_head = [c * loss(logits, label) for loss, c, logits in zip(types, coef, logits_list)]
    return paddle.add_n(per_head), per_head
