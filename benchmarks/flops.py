"""FLOP count of a forward pass, by forward hooks (``paddle.flops`` is broken with numpy 2 and
counts LayerNorm/softmax as zero).

One multiply-add is 2 FLOPs. Counted, per sample in the batch:

- ``Conv2D``: ``2 * (C_in / groups) * k_h * k_w * C_out * H_out * W_out`` (+ ``C_out*H*W`` bias)
- ``BatchNorm``: 2 per element (scale + shift, eval form); ``LayerNorm``: 5 per element
  (mean, variance, normalise, scale, shift)
- global-context block (any layer with ``conv_mask``): the attention pooling matmul
  ``2 * C * H * W``, the softmax ``3 * H * W`` (exp, sum, divide), the broadcast add ``C*H*W``
- bilinear ``F.interpolate``: 7 per output element (4 taps: 4 multiplies + 3 adds)
- max/avg pooling layers: ``k_h * k_w`` per output element

ReLU, dropout, concat and reshapes are not counted. Works for gcseg's and PaddleSeg's GCNet
alike (same layer types), so the two counts can be compared.
"""
import contextlib
from typing import Dict, Iterator, List, Sequence

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

BILINEAR_PER_OUTPUT = 7
LAYERNORM_PER_ELEMENT = 5
BATCHNORM_PER_ELEMENT = 2


def _numel(shape: Sequence[int]) -> int:
    return int(np.prod([int(v) for v in shape]))


def conv2d_flops(layer: nn.Conv2D, output_shape: Sequence[int]) -> int:
    """FLOPs of one ``Conv2D`` producing ``output_shape`` ``[N, C_out, H, W]``."""
    in_channels = layer.weight.shape[1]  # already C_in / groups
    kernel = _numel(layer.weight.shape[2:])
    flops = 2 * in_channels * kernel * _numel(output_shape)
    if layer.bias is not None:
        flops += _numel(output_shape)
    return flops


def gc_attention_flops(input_shape: Sequence[int]) -> int:
    """Context pooling of a GC block on ``[N, C, H, W]``: matmul, softmax, broadcast add."""
    batch, channels, height, width = (int(v) for v in input_shape)
    positions = height * width
    return batch * (2 * channels * positions + 3 * positions + channels * positions)


def _layer_flops(layer: nn.Layer, inputs, output) -> int:
    if isinstance(layer, nn.Conv2D):
        return conv2d_flops(layer, output.shape)
    if isinstance(layer, nn.layer.norm._BatchNormBase):
        return BATCHNORM_PER_ELEMENT * _numel(output.shape)
    if isinstance(layer, nn.LayerNorm):
        return LAYERNORM_PER_ELEMENT * _numel(output.shape)
    if isinstance(layer, (nn.MaxPool2D, nn.AvgPool2D)):
        kernel = layer.ksize if hasattr(layer, "ksize") else layer.kernel_size
        kernel = kernel if isinstance(kernel, (list, tuple)) else (kernel, kernel)
        return _numel(kernel) * _numel(output.shape)
    if hasattr(layer, "conv_mask"):
        return gc_attention_flops(inputs[0].shape)
    return 0


@contextlib.contextmanager
def _count_interpolations(counter: List[int]) -> Iterator[None]:
    original = F.interpolate

    def counting(x, *args, **kwargs):
        out = original(x, *args, **kwargs)
        counter[0] += BILINEAR_PER_OUTPUT * _numel(out.shape)
        return out

    F.interpolate = counting
    try:
        yield
    finally:
        F.interpolate = original


def count_flops(model: nn.Layer, input_shape: Sequence[int]) -> Dict[str, int]:
    """FLOPs of one eval-mode forward of ``model`` on zeros of ``input_shape``, by layer kind
    (``conv``, ``batch_norm``, ``layer_norm``, ``gc_attention``, ``pool``, ``interpolate``)
    and ``total``. The model's train/eval mode is restored."""
    totals = {"conv": 0, "batch_norm": 0, "layer_norm": 0, "gc_attention": 0, "pool": 0,
              "interpolate": 0}
    kinds = ((nn.Conv2D, "conv"), (nn.layer.norm._BatchNormBase, "batch_norm"),
             (nn.LayerNorm, "layer_norm"), ((nn.MaxPool2D, nn.AvgPool2D), "pool"))

    def hook(layer, inputs, output):
        kind = next((name for cls, name in kinds if isinstance(layer, cls)),
                    "gc_attention" if hasattr(layer, "conv_mask") else None)
        if kind:
            totals[kind] += _layer_flops(layer, inputs, output)

    handles = [layer.register_forward_post_hook(hook)
               for layer in model.sublayers(include_self=True)]
    interpolations = [0]
    was_training = model.training
    model.eval()
    try:
        with paddle.no_grad(), _count_interpolations(interpolations):
            model(paddle.zeros(list(input_shape), dtype="float32"))
    finally:
        for handle in handles:
            handle.remove()
        if was_training:
            model.train()
    totals["interpolate"] = interpolations[0]
    totals["total"] = sum(totals.values())
    return totals


def count_parameters(model: nn.Layer) -> int:
    """Number of trainable parameter values (BatchNorm running statistics not counted)."""
    return sum(_numel(p.shape) for p in model.parameters() if not p.stop_gradient)
