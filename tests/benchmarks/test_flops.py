"""The FLOP counter against counts worked out by hand."""
import paddle.nn as nn
import paddle.nn.functional as F

from benchmarks.flops import count_flops, count_parameters
from gcseg.models.gcnet import GlobalContextBlock
from gcseg.models.layers import ConvBN


def test_conv_bn_by_hand():
    layer = ConvBN(3, 8, 3, stride=2)  # 3x3, bias, 16x20 -> 8x10
    counts = count_flops(layer, [2, 3, 16, 20])
    outputs = 2 * 8 * 8 * 10
    assert counts["conv"] == 2 * 3 * 9 * outputs + outputs
    assert counts["batch_norm"] == 2 * outputs
    assert counts["total"] == counts["conv"] + counts["batch_norm"]


def test_grouped_conv_without_bias():
    layer = nn.Conv2D(8, 4, 1, groups=2, bias_attr=False)
    assert count_flops(layer, [1, 8, 5, 7])["conv"] == 2 * 4 * 1 * 4 * 5 * 7


def test_gc_block_by_hand():
    block = GlobalContextBlock(16, 0.25)  # 16 -> 4 -> 16 channels
    n, c, h, w = 1, 16, 6, 10
    hw = h * w
    counts = count_flops(block, [n, c, h, w])
    conv_mask = 2 * c * hw + hw
    bottleneck = (2 * c * 4 + 4) + (2 * 4 * c + c)  # two 1x1 convs on the 1x1 context
    assert counts["conv"] == conv_mask + bottleneck
    assert counts["layer_norm"] == 5 * 4
    assert counts["gc_attention"] == 2 * c * hw + 3 * hw + c * hw


class _Upsample(nn.Layer):
    def forward(self, x):
        return F.interpolate(x, size=[12, 14], mode="bilinear")


def test_interpolation_and_parameters():
    assert count_flops(_Upsample(), [1, 5, 3, 4])["interpolate"] == 7 * 5 * 12 * 14
    assert count_parameters(ConvBN(3, 8, 3)) == 8 * 3 * 9 + 8 + 8 + 8  # conv w, b, BN gamma, beta
