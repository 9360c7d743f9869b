"""Fold BatchNorm into the convolution before it, for inference and export.

In eval mode ``BN(conv(x)) = gamma * (W x + b - mean) / sqrt(var + eps) + beta`` is one
convolution with ``W' = W * s`` (per output channel) and ``b' = (b - mean) * s + beta``, where
``s = gamma / sqrt(var + eps)``. Folding removes one full pass over every feature map.

Pairs are found by PaddleSeg's naming contract: a layer holding a ``Conv2D`` named ``_conv``
and a ``BatchNorm2D`` named ``_batch_norm`` applied right after it (``ConvBN``, ``ConvBNReLU``
and the ResNet-vd layers). The model passed in is never modified.
"""
import copy

import numpy as np
import paddle
import paddle.nn as nn

CONV_NAME = "_conv"
BN_NAME = "_batch_norm"


def _fold_pair(conv: nn.Conv2D, bn: nn.Layer) -> None:
    weight = conv.weight.numpy().astype(np.float64)
    mean = bn._mean.numpy().astype(np.float64)
    variance = bn._variance.numpy().astype(np.float64)
    gamma = bn.weight.numpy().astype(np.float64) if bn.weight is not None else 1.0
    beta = bn.bias.numpy().astype(np.float64) if bn.bias is not None else 0.0
    scale = gamma / np.sqrt(variance + bn._epsilon)  # [out_channels]
    bias = conv.bias.numpy().astype(np.float64) if conv.bias is not None else 0.0
    dtype = conv.weight.dtype
    conv.weight.set_value(paddle.to_tensor(
        (weight * scale.reshape([-1, 1, 1, 1])).astype(np.float32)).astype(dtype))
    folded_bias = ((bias - mean) * scale + beta).astype(np.float32)
    if conv.bias is None:
        conv.bias = conv.create_parameter([folded_bias.size], is_bias=True)
    conv.bias.set_value(paddle.to_tensor(folded_bias).astype(dtype))


def fold_batchnorm(model: nn.Layer) -> nn.Layer:
    """A deep copy of ``model`` in eval mode with every ``_conv``/``_batch_norm`` pair folded
    (the BN replaced by ``nn.Identity``); ``model`` itself is left untouched."""
    folded = copy.deepcopy(model)
    folded.eval()
    with paddle.no_grad():
        for layer in folded.sublayers(include_self=True):
            conv = getattr(layer, CONV_NAME, None)
            bn = getattr(layer, BN_NAME, None)
            if isinstance(conv, nn.Conv2D) and isinstance(bn, nn.layer.norm._BatchNormBase):
                _fold_pair(conv, bn)
                setattr(layer, BN_NAME, nn.Identity())
    return folded


def count_batchnorms(model: nn.Layer) -> int:
    """Number of BatchNorm layers left in ``model``."""
    return sum(isinstance(layer, nn.layer.norm._BatchNormBase) for layer in model.sublayers())
