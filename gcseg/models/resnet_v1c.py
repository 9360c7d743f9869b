"""ResNetV1c backbones as MMSegmentation builds them ("R-50-D8" and friends).

Like ResNet-vd, V1c has the deep 3x3 stem (3 -> 32 -> 32 -> 64) and puts a bottleneck's stride
on its 3x3 conv. Unlike ResNet-vd, a shortcut that changes the shape is a *strided* 1x1 conv +
BN (no average pool), and a dilated stage contracts its first block's dilation
(``contract_dilation``): at output stride 8 stage 3 runs dilations [1, 2, 2, ...] and stage 4
[2, 4, 4], where ResNet-vd runs [2, 2, ...] and [4, 4, 4]. A basic block (ResNet-18) dilates
only its first conv. MMSeg's weights give MMSeg's outputs only with these semantics.

Sub-layer names are ResNet-vd's (``conv1_1``, ``bb_{stage}_{block}.conv{k}``, ``short``), so
one checkpoint layout serves both families; :mod:`gcseg.models.mmseg_keys` renames MMSeg's keys.
"""
from typing import List, Optional

import paddle.nn as nn

from gcseg.errors import ConfigError
from gcseg.models.layers import ConvBN
from gcseg.models.resnet_vd import (BasicBlock, BottleneckBlock, DeepStemResNet,
                                     depth_variant)
from gcseg.models.weights import load_weights

# layers -> blocks per stage (ResNet-18 uses basic blocks, the others bottlenecks)
_DEPTHS = {18: [2, 2, 2, 2], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}
# output_stride -> (stride, dilation) of stages 0..3, as MMSeg's "D8"/"D16" configs set them
_STAGE_GEOMETRY = {
    8: ((1, 2, 1, 1), (1, 1, 2, 4)),
    16: ((1, 2, 2, 1), (1, 1, 1, 2)),
    32: ((1, 2, 2, 2), (1, 1, 1, 1)),
}
_STAGE_WIDTHS = (64, 128, 256, 512)


def block_dilations(num_blocks: int, dilation: int, contract_dilation: bool) -> List[int]:
    """Dilation of each block of a stage: with ``contract_dilation`` a dilated stage's first
    block uses half of it (MMSeg's ``ResLayer``)."""
    first = dilation // 2 if contract_dilation and dilation > 1 else dilation
    return [first] + [dilation] * (num_blocks - 1)


class ResNet_v1c(DeepStemResNet):
    """ResNetV1c returning the four stage features ``[c1, c2, c3, c4]``.

    Args:
        layers: 18, 50 or 101.
        output_stride: 8, 16 or 32 (input size / size of ``c4``).
        contract_dilation: halve the dilation of a dilated stage's first block (MMSeg: True).
        in_channels: channels of the input image.
        pretrained: ImageNet weights: a file, URL or ``open-mmlab://resnet50_v1c``-style name
            (MMCV's ``.pth`` keys or gcseg's).
    """

    mmseg_layout = True

    def __init__(self, layers: int = 50, output_stride: int = 8, contract_dilation: bool = True,
                 in_channels: int = 3, pretrained: Optional[str] = None) -> None:
        if layers not in _DEPTHS:
            raise ConfigError(f"ResNet_v1c layers={layers!r}: expected one of {sorted(_DEPTHS)}")
        if output_stride not in _STAGE_GEOMETRY:
            raise ConfigError(f"backbone output_stride={output_stride!r}: expected 8, 16 or 32")
        super().__init__(in_channels)
        block_type = BasicBlock if layers == 18 else BottleneckBlock
        self.feat_channels = [w * block_type.expansion for w in _STAGE_WIDTHS]

        channels = 64
        strides, dilations = _STAGE_GEOMETRY[output_stride]
        for stage, num_blocks in enumerate(_DEPTHS[layers]):
            blocks = []
            for i, dilation in enumerate(block_dilations(num_blocks, dilations[stage],
                                                         contract_dilation)):
                block = self._block(block_type, channels, _STAGE_WIDTHS[stage],
                                    strides[stage] if i == 0 else 1, dilation)
                blocks.append(self.add_sublayer(f"bb_{stage}_{i}", block))
                channels = _STAGE_WIDTHS[stage] * block_type.expansion
            self.stages.append(blocks)

        if pretrained:
            load_weights(self, pretrained, what="backbone")

    @staticmethod
    def _block(block_type: type, in_channels: int, width: int, stride: int,
               dilation: int) -> nn.Layer:
        """One block; its shortcut is a strided 1x1 ConvBN where the shape changes."""
        out_channels = width * block_type.expansion
        short = (ConvBN(in_channels, out_channels, 1, stride=stride, bias=False)
                 if stride != 1 or in_channels != out_channels else None)
        if block_type is BasicBlock:
            return BasicBlock(in_channels, width, stride, dilation, short, dilate_second=False)
        return block_type(in_channels, width, stride, dilation, short)


ResNet18_v1c = depth_variant(ResNet_v1c, 18)  # MMSeg's resnet18_v1c
ResNet50_v1c = depth_variant(ResNet_v1c, 50)  # MMSeg's R-50
ResNet101_v1c = depth_variant(ResNet_v1c, 101)  # MMSeg's R-101
