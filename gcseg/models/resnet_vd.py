"""ResNet-vd backbones (He et al., "Bag of Tricks for Image Classification with CNNs", 2019).

"vd" = a deep 3x3 stem (3 -> 32 -> 32 -> 64) instead of one 7x7 conv, and shortcut
projections that downsample with a 2x2 average pool before a stride-1 1x1 conv instead of a
strided 1x1 conv (which would discard 3/4 of the positions).

For segmentation the last stages trade stride for dilation (PaddleSeg's scheme): output stride
8 dilates stage 3 by 2 and stage 4 by 4, output stride 16 dilates stage 4 by 2. A dilated stage
does not downsample, and its *first* block already uses the stage's full dilation. On stage 4
``multi_grid[i]`` multiplies the dilation of block ``i``.

Sub-layer names (``conv1_1``, ``bb_{stage}_{block}``, ``conv0``, ``short``, ...) equal
PaddleSeg's, so its checkpoints load unchanged.
"""
import inspect
from typing import Any, Callable, List, Optional, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from gcseg.errors import ConfigError
from gcseg.models.layers import ConvBN, ConvBNReLU
from gcseg.models.weights import load_weights
from gcseg.registry import BACKBONES

# layers -> (blocks per stage, bottleneck blocks?)
_DEPTHS = {
    18: ([2, 2, 2, 2], False),
    34: ([3, 4, 6, 3], False),
    50: ([3, 4, 6, 3], True),
    101: ([3, 4, 23, 3], True),
    152: ([3, 8, 36, 3], True),
}
# output_stride -> dilation of stages 0..3
_STAGE_DILATIONS = {8: (1, 1, 2, 4), 16: (1, 1, 1, 2), 32: (1, 1, 1, 1)}
_STAGE_WIDTHS = (64, 128, 256, 512)


class VdShortcut(ConvBN):
    """Shortcut projection: 2x2 average pool (when downsampling), then a 1x1 ConvBN."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool) -> None:
        super().__init__(in_channels, out_channels, 1, bias=False)
        self.downsample = downsample

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.downsample:
            x = F.avg_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)
        return self._batch_norm(self._conv(x))  # not super(): see ConvBNReLU.forward


class BasicBlock(nn.Layer):
    """Two 3x3 ConvBNs (ResNet-18/34). The first carries the stride and the block's dilation;
    the second is dilated too unless ``dilate_second`` is False (MMSeg's ResNet).

    ``short`` projects the input to the output's shape; None keeps the identity.
    """

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, dilation: int,
                 short: Optional[nn.Layer], dilate_second: bool = True) -> None:
        super().__init__()
        self.conv0 = ConvBNReLU(in_channels, width, 3, stride=stride, dilation=dilation,
                                bias=False)
        self.conv1 = ConvBN(width, width, 3, dilation=dilation if dilate_second else 1,
                            bias=False)
        self.short = short

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        shortcut = x if self.short is None else self.short(x)
        return F.relu(shortcut + self.conv1(self.conv0(x)))


class BottleneckBlock(nn.Layer):
    """1x1 reduce, 3x3 (strided or dilated), 1x1 expand by 4 (ResNet-50 and deeper).

    ``short`` projects the input to the output's shape; None keeps the identity.
    """

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, dilation: int,
                 short: Optional[nn.Layer]) -> None:
        super().__init__()
        self.conv0 = ConvBNReLU(in_channels, width, 1, bias=False)
        self.conv1 = ConvBNReLU(width, width, 3, stride=stride, dilation=dilation, bias=False)
        self.conv2 = ConvBN(width, width * 4, 1, bias=False)
        self.short = short

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        shortcut = x if self.short is None else self.short(x)
        return F.relu(shortcut + self.conv2(self.conv1(self.conv0(x))))


def _check_args(layers: int, output_stride: int, multi_grid: Sequence[int]) -> None:
    if layers not in _DEPTHS:
        raise ConfigError(f"ResNet_vd layers={layers!r}: expected one of {sorted(_DEPTHS)}")
    if output_stride not in _STAGE_DILATIONS:
        raise ConfigError(f"backbone output_stride={output_stride!r}: expected 8, 16 or 32")
    last_blocks = _DEPTHS[layers][0][3]
    if (not isinstance(multi_grid, (list, tuple)) or len(multi_grid) < last_blocks
            or not all(isinstance(g, int) and g >= 1 for g in multi_grid)):
        raise ConfigError(f"backbone multi_grid={multi_grid!r}: expected {last_blocks} or more "
                          f"positive ints (one dilation factor per block of stage 4)")


class DeepStemResNet(nn.Layer):
    """The deep 3x3 stem (3 -> 32 -> 32 -> 64, then a 3x3 max-pool) and the forward over
    ``self.stages`` (lists of blocks) that ResNet-vd and ResNetV1c share."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv1_1 = ConvBNReLU(in_channels, 32, 3, stride=2, bias=False)
        self.conv1_2 = ConvBNReLU(32, 32, 3, bias=False)
        self.conv1_3 = ConvBNReLU(32, 64, 3, bias=False)
        self.stages: List[List[nn.Layer]] = []

    def forward(self, x: paddle.Tensor) -> List[paddle.Tensor]:
        x = self.conv1_3(self.conv1_2(self.conv1_1(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        features = []
        for blocks in self.stages:
            for block in blocks:
                x = block(x)
            features.append(x)
        return features


class ResNet_vd(DeepStemResNet):
    """ResNet-vd returning the four stage features ``[c1, c2, c3, c4]``.

    Args:
        layers: 18, 34, 50, 101 or 152.
        output_stride: 8, 16 or 32 (input size / size of ``c4``).
        multi_grid: dilation factors of the blocks of stage 4.
        in_channels: channels of the input image.
        pretrained: local file or URL of ImageNet weights (keys as PaddleSeg's backbone).
    """

    mmseg_layout = False  # MMSeg's ResNetV1c weights fit the keys, not the network

    def __init__(self, layers: int = 50, output_stride: int = 8,
                 multi_grid: Sequence[int] = (1, 1, 1), in_channels: int = 3,
                 pretrained: Optional[str] = None) -> None:
        _check_args(layers, output_stride, multi_grid)
        super().__init__(in_channels)
        depths, bottleneck = _DEPTHS[layers]
        block_type = BottleneckBlock if bottleneck else BasicBlock
        self.feat_channels = [w * block_type.expansion for w in _STAGE_WIDTHS]

        channels = 64
        for stage, (num_blocks, width) in enumerate(zip(depths, _STAGE_WIDTHS)):
            stage_dilation = _STAGE_DILATIONS[output_stride][stage]
            blocks = []
            for i in range(num_blocks):
                dilation = stage_dilation * (multi_grid[i] if stage == 3 else 1)
                downsample = i == 0 and stage > 0 and stage_dilation == 1
                short = (VdShortcut(channels, width * block_type.expansion, downsample)
                         if i == 0 else None)
                block = block_type(channels, width, stride=2 if downsample else 1,
                                   dilation=dilation, short=short)
                blocks.append(self.add_sublayer(f"bb_{stage}_{i}", block))
                channels = width * block_type.expansion
            self.stages.append(blocks)

        if pretrained:
            load_weights(self, pretrained, what="backbone")


def depth_variant(backbone_class: type, layers: int) -> Callable[..., nn.Layer]:
    """``backbone_class`` at depth ``layers``, registered as the backbone a config names by
    ``type:``: ``ResNet50_vd`` (PaddleSeg's name) for ``(ResNet_vd, 50)``, ``ResNet50_v1c`` for
    ``(ResNet_v1c, 50)``. Its signature is the class's arguments without ``layers``, so the
    config checker rejects misspelt or mistyped arguments by name."""
    class_name = backbone_class.__name__

    def build(**kwargs: Any) -> nn.Layer:
        return backbone_class(layers=layers, **kwargs)

    build.__name__ = build.__qualname__ = class_name.replace("ResNet_", f"ResNet{layers}_")
    build.__module__ = backbone_class.__module__
    build.__doc__ = f"{class_name}(layers={layers}); keyword arguments as :class:`{class_name}`."
    params = [param for name, param in inspect.signature(backbone_class.__init__).parameters.items()
              if name not in ("self", "layers")]
    build.__signature__ = inspect.Signature([param.replace(kind=param.KEYWORD_ONLY)
                                             for param in params])
    return BACKBONES.register(build)


ResNet18_vd = depth_variant(ResNet_vd, 18)
ResNet34_vd = depth_variant(ResNet_vd, 34)
ResNet50_vd = depth_variant(ResNet_vd, 50)
ResNet101_vd = depth_variant(ResNet_vd, 101)
ResNet152_vd = depth_variant(ResNet_vd, 152)
