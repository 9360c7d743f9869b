"""ResNet-vd: PaddleSeg's keys for all depths, output strides, multi_grid, equal features."""
import numpy as np
import paddle
import pytest

from gcseg.errors import ConfigError
from gcseg.models import resnet_vd
from gcseg.registry import BACKBONES

oracle_resnet = pytest.importorskip("paddleseg.models.backbones.resnet_vd")

NAMES = ["ResNet18_vd", "ResNet34_vd", "ResNet50_vd", "ResNet101_vd", "ResNet152_vd"]


def shapes(layer):
    return [(key, list(value.shape)) for key, value in layer.state_dict().items()]


@pytest.mark.parametrize("name", NAMES)
def test_all_five_registered_with_paddleseg_keys(name):
    backbone = BACKBONES.get(name)()
    assert shapes(backbone) == shapes(getattr(oracle_resnet, name)())
    expected_channels = [64, 128, 256, 512] if name in NAMES[:2] else [256, 512, 1024, 2048]
    assert backbone.feat_channels == expected_channels


@pytest.mark.parametrize("output_stride, sizes", [
    # 67 -> stem 34 -> pool 17 -> 9 -> 5 -> 3 (every stride-2 step rounds up)
    (8, [(17, 24), (9, 12), (9, 12), (9, 12)]),
    (16, [(17, 24), (9, 12), (5, 6), (5, 6)]),
    (32, [(17, 24), (9, 12), (5, 6), (3, 3)]),
])
def test_output_stride_feature_shapes_on_odd_input(output_stride, sizes):
    backbone = resnet_vd.ResNet18_vd(output_stride=output_stride)
    backbone.eval()
    features = backbone(paddle.rand([1, 3, 67, 93]))
    assert [tuple(f.shape[2:]) for f in features] == sizes
    assert [f.shape[1] for f in features] == backbone.feat_channels


def conv_dilations(blocks, conv_name):
    return [getattr(block, conv_name)._conv._dilation[0] for block in blocks]


def test_dilation_pattern_and_multi_grid():
    os8 = resnet_vd.ResNet50_vd(output_stride=8, multi_grid=(1, 2, 4))
    assert conv_dilations(os8.stages[2], "conv1") == [2] * 6  # first block dilated too
    assert conv_dilations(os8.stages[3], "conv1") == [4, 8, 16]
    assert [block.conv1._conv._stride[0] for block in os8.stages[2]] == [1] * 6
    os16 = resnet_vd.ResNet18_vd(output_stride=16, multi_grid=(1, 3))
    assert conv_dilations(os16.stages[2], "conv0") == [1, 1]
    assert os16.stages[2][0].conv0._conv._stride[0] == 2
    assert conv_dilations(os16.stages[3], "conv0") == [2, 6]
    assert conv_dilations(os16.stages[3], "conv1") == [2, 6]


@pytest.mark.parametrize("name, output_stride, multi_grid", [
    ("ResNet18_vd", 8, (1, 2)),
    ("ResNet18_vd", 16, (1, 1)),
    ("ResNet18_vd", 32, (1, 1)),
    ("ResNet50_vd", 8, (1, 2, 4)),
])
def test_features_equal_paddleseg(name, output_stride, multi_grid):
    paddle.seed(0)
    oracle = getattr(oracle_resnet, name)(output_stride=output_stride, multi_grid=multi_grid)
    rng = np.random.default_rng(0)
    state = oracle.state_dict()
    for key in state:
        if key.endswith(("_mean", "_variance")):
            low, high = (0.5, 2.0) if key.endswith("_variance") else (-0.2, 0.2)
            state[key] = rng.uniform(low, high, state[key].shape).astype("float32")
    oracle.set_state_dict(state)
    backbone = BACKBONES.get(name)(output_stride=output_stride, multi_grid=multi_grid)
    backbone.set_state_dict(oracle.state_dict())
    oracle.eval()
    backbone.eval()
    x = paddle.to_tensor(rng.normal(size=(1, 3, 67, 93)).astype("float32"))
    with paddle.no_grad():
        expected = oracle(x)
        features = backbone(x)
    for ours, theirs in zip(features, expected):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=0, atol=1e-4)


def test_in_channels():
    backbone = resnet_vd.ResNet18_vd(in_channels=1)
    assert backbone.conv1_1._conv.weight.shape == [32, 1, 3, 3]
    assert backbone(paddle.rand([1, 1, 32, 32]))[3].shape == [1, 512, 4, 4]


@pytest.mark.parametrize("kwargs, message", [
    ({"output_stride": 4}, "output_stride=4: expected 8, 16 or 32"),
    ({"multi_grid": (1, 2)}, r"multi_grid=\(1, 2\): expected 3 or more positive ints"),
    ({"multi_grid": (1, 0, 1)}, "multi_grid"),
])
def test_bad_arguments_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        resnet_vd.ResNet50_vd(**kwargs)
