"""GCNet (Cao et al., "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond").

The head refines the last backbone stage with a global-context block: one attention map over
all positions pools the features into a single context vector, a bottleneck transform turns it
into a per-channel offset, and that offset is added to every position. Parameter names equal
PaddleSeg's ``GCNet`` (``head.gc_block.channel_add_conv.{0,1,3}``, ``head.auxlayer.*``).

Two head styles share this graph. ``paddleseg`` (PaddleSeg's GCNet): head convs with a bias,
element-wise dropout, Paddle's default initialisation. ``mmseg`` (MMSegmentation's GCHead and
auxiliary FCNHead): head convs without bias, channel-wise ``Dropout2D``, and MMSeg's
initialisation, which matters when the head trains from ImageNet backbone weights.
"""
import math
from typing import List, Optional, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from gcseg.errors import ConfigError
from gcseg.models.layers import ConvBNReLU, resize
from gcseg.models.weights import load_weights
from gcseg.registry import MODELS


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a ``[N, C, 1, 1]`` tensor.

    Same parameters (``weight``/``bias`` of shape ``[C]``) and the same result as
    ``nn.LayerNorm([C, 1, 1])``, but normalises the *last* axis of a ``[N, 1, 1, C]`` view:
    Paddle Inference's oneDNN LayerNorm only accepts the last axis.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(channels)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        # with 1x1 spatial size [N, C, 1, 1] and [N, 1, 1, C] share one memory layout.
        # F.layer_norm, not super(): Paddle 2.6's dygraph-to-static loses the __class__ cell.
        y = F.layer_norm(paddle.reshape(x, [0, 1, 1, *self._normalized_shape]),
                         self._normalized_shape,
                         self.weight, self.bias, self._epsilon)
        return paddle.reshape(y, [0, *self._normalized_shape, 1, 1])


class GlobalContextBlock(nn.Layer):
    """``x + transform(context(x))`` with a softmax attention over all ``H*W`` positions.

    ``transform`` is 1x1 conv -> LayerNorm -> ReLU -> 1x1 conv through ``in_channels * ratio``
    channels. Initialisation is Paddle's default, as in PaddleSeg; :meth:`init_as_mmcv` gives
    mmcv's ``ContextBlock`` initialisation instead.
    """

    def __init__(self, in_channels: int, ratio: float) -> None:
        super().__init__()
        inter_channels = int(in_channels * ratio)
        self.conv_mask = nn.Conv2D(in_channels, 1, 1)
        self.channel_add_conv = nn.Sequential(
            nn.Conv2D(in_channels, inter_channels, 1),
            ChannelLayerNorm(inter_channels),
            nn.ReLU(),
            nn.Conv2D(inter_channels, in_channels, 1))

    def context(self, x: paddle.Tensor) -> paddle.Tensor:
        """Attention-weighted sum of the features over all positions: ``[N, C, 1, 1]``."""
        features = paddle.reshape(x, [0, 0, -1])  # [N, C, H*W]
        mask = paddle.reshape(self.conv_mask(x), [0, 1, -1])  # [N, 1, H*W]
        mask = F.softmax(mask, axis=-1)
        context = paddle.matmul(features, mask, transpose_y=True)  # [N, C, 1]
        return paddle.unsqueeze(context, axis=-1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x + self.channel_add_conv(self.context(x))

    def init_as_mmcv(self) -> None:
        """mmcv's initialisation: Kaiming (fan in) attention conv, and a zero last conv, so
        the block starts as the identity."""
        kaiming_normal(self.conv_mask, fan=self.conv_mask.weight[0].numel())
        last = self.channel_add_conv[3]
        last.weight.set_value(paddle.zeros_like(last.weight))
        last.bias.set_value(paddle.zeros_like(last.bias))


def kaiming_normal(conv: nn.Conv2D, fan: int) -> None:
    """He-normal weights for a conv followed by ReLU, ``std = sqrt(2 / fan)``; bias zero."""
    normal(conv, math.sqrt(2.0 / int(fan)))


def normal(conv: nn.Conv2D, std: float) -> None:
    """Weights drawn from N(0, std^2) with Paddle's generator (``paddle.seed``); bias zero."""
    conv.weight.set_value(paddle.normal(0.0, std, conv.weight.shape))
    if conv.bias is not None:
        conv.bias.set_value(paddle.zeros_like(conv.bias))


def init_conv_bn_as_mmcv(layer: ConvBNReLU) -> None:
    """mmcv's ``ConvModule`` initialisation: Kaiming (fan out, ReLU) conv, BN weight 1 bias 0
    (Paddle's BN default already)."""
    weight = layer._conv.weight  # [out, in, kh, kw]
    kaiming_normal(layer._conv, fan=weight.shape[0] * weight.shape[2] * weight.shape[3])


HEAD_STYLES = ("paddleseg", "mmseg")


def _dropout(head_style: str, p: float = 0.1) -> nn.Layer:
    """Element-wise dropout (PaddleSeg) or whole-channel dropout (MMSeg's ``Dropout2d``)."""
    return nn.Dropout2D(p=p) if head_style == "mmseg" else nn.Dropout(p=p)


class AuxHead(nn.Layer):
    """FCN auxiliary head: 3x3 ConvBNReLU, dropout, 1x1 classifier (PaddleSeg's AuxLayer,
    MMSeg's one-conv FCNHead with ``head_style="mmseg"``)."""

    def __init__(self, in_channels: int, inter_channels: int, num_classes: int,
                 head_style: str = "paddleseg") -> None:
        super().__init__()
        self.conv_bn_relu = ConvBNReLU(in_channels, inter_channels, 3, padding=1,
                                       bias=head_style == "paddleseg")
        self.dropout = _dropout(head_style)
        self.conv = nn.Conv2D(inter_channels, num_classes, 1)
        if head_style == "mmseg":
            init_conv_bn_as_mmcv(self.conv_bn_relu)
            normal(self.conv, 0.01)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.conv(self.dropout(self.conv_bn_relu(x)))


class GCNetHead(nn.Layer):
    """GC head on ``features[backbone_indices[1]]``, auxiliary head on ``[backbone_indices[0]]``.

    Returns ``[main]`` or, in training with the auxiliary head enabled, ``[main, aux]`` logits
    at feature resolution. ``head_style``: ``paddleseg`` or ``mmseg`` (see the module doc).
    """

    def __init__(self, num_classes: int, backbone_indices: Sequence[int],
                 backbone_channels: Sequence[int], gc_channels: int, ratio: float,
                 enable_auxiliary_loss: bool = True, head_style: str = "paddleseg") -> None:
        super().__init__()
        in_channels = backbone_channels[1]
        bias = head_style == "paddleseg"
        self.backbone_indices = list(backbone_indices)
        self.enable_auxiliary_loss = enable_auxiliary_loss
        self.conv_bn_relu1 = ConvBNReLU(in_channels, gc_channels, 3, padding=1, bias=bias)
        self.gc_block = GlobalContextBlock(gc_channels, ratio)
        self.conv_bn_relu2 = ConvBNReLU(gc_channels, gc_channels, 3, padding=1, bias=bias)
        self.conv_bn_relu3 = ConvBNReLU(in_channels + gc_channels, gc_channels, 3, padding=1,
                                        bias=bias)
        self.dropout = _dropout(head_style)
        self.conv = nn.Conv2D(gc_channels, num_classes, 1)
        if enable_auxiliary_loss:
            self.auxlayer = AuxHead(backbone_channels[0], backbone_channels[0] // 4, num_classes,
                                    head_style)
        if head_style == "mmseg":
            self._init_as_mmseg()

    def _init_as_mmseg(self) -> None:
        """MMSeg's initialisation of the GC head (the auxiliary head does its own)."""
        for layer in (self.conv_bn_relu1, self.conv_bn_relu2, self.conv_bn_relu3):
            init_conv_bn_as_mmcv(layer)
        self.gc_block.init_as_mmcv()
        normal(self.conv, 0.01)

    def forward(self, features: List[paddle.Tensor]) -> List[paddle.Tensor]:
        x = features[self.backbone_indices[1]]
        context = self.conv_bn_relu2(self.gc_block(self.conv_bn_relu1(x)))
        fused = self.conv_bn_relu3(paddle.concat([x, context], axis=1))
        logits = [self.conv(self.dropout(fused))]
        if self.enable_auxiliary_loss and self.training:
            logits.append(self.auxlayer(features[self.backbone_indices[0]]))
        return logits


def _check_indices(backbone_indices: Sequence[int], feat_channels: Sequence[int]) -> None:
    n = len(feat_channels)
    if (not isinstance(backbone_indices, (list, tuple)) or len(backbone_indices) != 2
            or not all(isinstance(i, int) and -n <= i < n for i in backbone_indices)):
        raise ConfigError(f"model backbone_indices={backbone_indices!r}: expected two indices "
                          f"into the backbone's {n} feature maps, e.g. [2, 3]")


def _check_head_style(head_style: str) -> None:
    if head_style not in HEAD_STYLES:
        raise ConfigError(f"model head_style={head_style!r}: expected one of "
                          f"{', '.join(HEAD_STYLES)}")


def _check_sizes(num_classes: int, gc_channels: int, ratio: float) -> None:
    """Sizes Paddle would only reject at the first forward ("filter at axis 0")."""
    for name, value in (("num_classes", num_classes), ("gc_channels", gc_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
    if int(gc_channels * ratio) < 1:
        raise ConfigError(f"ratio: gc_channels * ratio is the GC block's bottleneck width and "
                          f"must be at least 1, got {gc_channels} * {ratio!r}")


@MODELS.register
class GCNet(nn.Layer):
    """Backbone + GCNet head; logits bilinearly resized to the input size.

    ``forward(x)`` returns ``[main, aux]`` in training (``aux`` only with
    ``enable_auxiliary_loss``) and ``[main]`` in eval, each ``[N, num_classes, H, W]``.
    ``pretrained`` is a whole-model checkpoint (file or URL) with PaddleSeg's keys, or an
    MMSegmentation ``.pth`` (its keys are renamed). ``head_style``: ``paddleseg`` (default) or
    ``mmseg`` (MMSeg's head: no conv biases, ``Dropout2D``, MMSeg's initialisation).
    """

    def __init__(self, num_classes: int, backbone: nn.Layer,
                 backbone_indices: Sequence[int] = (2, 3), gc_channels: int = 512,
                 ratio: float = 0.25, enable_auxiliary_loss: bool = True,
                 align_corners: bool = False, pretrained: Optional[str] = None,
                 head_style: str = "paddleseg") -> None:
        super().__init__()
        _check_indices(backbone_indices, backbone.feat_channels)
        _check_sizes(num_classes, gc_channels, ratio)
        _check_head_style(head_style)
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.backbone = backbone
        self.head = GCNetHead(num_classes, backbone_indices,
                              [backbone.feat_channels[i] for i in backbone_indices],
                              gc_channels, ratio, enable_auxiliary_loss, head_style)
        if pretrained:
            load_weights(self, pretrained, what="model")

    def forward(self, x: paddle.Tensor) -> List[paddle.Tensor]:
        size = paddle.shape(x)[2:]
        logits = self.head(self.backbone(x))
        return [resize(logit, size, self.align_corners) for logit in logits]
