"""Convolution building blocks with PaddleSeg's parameter names, and the one resize function.

Sub-layer names are part of the checkpoint format: a conv-BN pair stores its weights under
``_conv`` and ``_batch_norm`` (``_batch_norm._mean`` / ``._variance`` for the running stats),
exactly as PaddleSeg's ``ConvBN`` / ``ConvBNReLU`` / ``ConvBNLayer`` do.
"""
from typing import Optional, Sequence, Union

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from gcseg.models.resize import deploy_resize_active, matmul_resize


class ConvBN(nn.Layer):
    """``Conv2D`` followed by ``BatchNorm2D``.

    ``padding`` defaults to ``dilation * (kernel_size - 1) // 2``, which keeps the spatial size
    at stride 1 for odd kernels (the padding PaddleSeg's ResNet-vd and heads use).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, padding: Optional[int] = None, bias: bool = True) -> None:
        super().__init__()
        if padding is None:
            padding = dilation * (kernel_size - 1) // 2
        self._conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                               padding=padding, dilation=dilation,
                               bias_attr=None if bias else False)
        self._batch_norm = nn.BatchNorm2D(out_channels)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self._batch_norm(self._conv(x))


class ConvBNReLU(ConvBN):
    """``ConvBN`` followed by ReLU."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        # Not ``super()``: Paddle 2.6's dygraph-to-static converter loses its __class__ cell.
        return F.relu(self._batch_norm(self._conv(x)))


def resize(x: paddle.Tensor, size: Union[Sequence[int], paddle.Tensor],
           align_corners: bool) -> paddle.Tensor:
    """Bilinear resize of ``x`` ``[N, C, h, w]`` to ``size`` ``(H, W)``.

    Every model resizes through this function so that export can swap in an implementation
    that Paddle Inference's oneDNN kernels accept. ``size`` may be a list of ints or a 1-D
    integer tensor such as ``paddle.shape(image)[2:]`` (dynamic shapes in exported programs).
    """
    if deploy_resize_active():
        return matmul_resize(x, size, align_corners)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)
