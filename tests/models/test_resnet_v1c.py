"""ResNetV1c (MMSeg's R-18/50/101-D8) and GCNet's MMSeg head style, without the oracle.

The numbers against mmsegmentation itself are in test_mmseg_parity.py; these tests pin the
structure: dilations with contract_dilation, strided 1x1 shortcuts, key names, the head's
missing biases, Dropout2D and initialisation, and the key renaming table.
"""
import numpy as np
import paddle
import pytest
import yaml

from gcseg.config import Config
from gcseg.errors import ConfigError
from gcseg.deploy.export import export_model
from gcseg.models import GCNet, ResNet18_v1c, ResNet50_v1c, ResNet101_v1c
from gcseg.models.mmseg_keys import mmseg_key, mmseg_to_gcseg
from gcseg.models.resnet_v1c import block_dilations
from conftest import run_predictor


def dilations(blocks, conv_name):
    return [getattr(block, conv_name)._conv._dilation[0] for block in blocks]


def strides(blocks, conv_name):
    return [getattr(block, conv_name)._conv._stride[0] for block in blocks]


def test_d8_contracts_the_first_dilation_of_stages_3_and_4():
    backbone = ResNet50_v1c(output_stride=8)
    assert dilations(backbone.stages[2], "conv1") == [1, 2, 2, 2, 2, 2]
    assert dilations(backbone.stages[3], "conv1") == [2, 4, 4]
    assert [strides(stage, "conv1")[0] for stage in backbone.stages] == [1, 2, 1, 1]
    assert dilations(ResNet50_v1c(output_stride=8, contract_dilation=False).stages[3],
                     "conv1") == [4, 4, 4]
    assert len(ResNet101_v1c().stages[2]) == 23
    assert block_dilations(3, 1, True) == [1, 1, 1]


def test_basic_blocks_dilate_only_their_first_conv():
    stage4 = ResNet18_v1c(output_stride=16).stages[3]
    assert dilations(stage4, "conv0") == [1, 2]
    assert dilations(stage4, "conv1") == [1, 1]


def test_shortcuts_are_strided_1x1_convs_where_the_shape_changes():
    backbone = ResNet50_v1c(output_stride=8)
    first_blocks = [stage[0] for stage in backbone.stages]
    assert [block.short._conv._stride[0] for block in first_blocks] == [1, 2, 1, 1]
    assert all(block.short._conv._kernel_size == [1, 1] for block in first_blocks)
    assert all(block.short is None for stage in backbone.stages for block in stage[1:])
    assert ResNet18_v1c().stages[0][0].short is None  # 64 -> 64 channels, stride 1


@pytest.mark.parametrize("output_stride, sizes", [
    (8, [(17, 24), (9, 12), (9, 12), (9, 12)]),
    (16, [(17, 24), (9, 12), (5, 6), (5, 6)]),
    (32, [(17, 24), (9, 12), (5, 6), (3, 3)]),
])
def test_output_stride_feature_shapes_on_odd_input(output_stride, sizes):
    backbone = ResNet18_v1c(output_stride=output_stride)
    backbone.eval()
    features = backbone(paddle.rand([1, 3, 67, 93]))
    assert [tuple(f.shape[2:]) for f in features] == sizes
    assert [f.shape[1] for f in features] == backbone.feat_channels == [64, 128, 256, 512]


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="output_stride=4: expected 8, 16 or 32"):
        ResNet50_v1c(output_stride=4)
    with pytest.raises(ConfigError, match="head_style='torch': expected one of paddleseg, mmseg"):
        GCNet(5, ResNet18_v1c(), gc_channels=16, head_style="torch")


def test_mmseg_head_style_from_yaml(tmp_path):
    path = tmp_path / "gcnet.yml"
    path.write_text(yaml.safe_dump({"model": {
        "type": "GCNet", "num_classes": 5, "gc_channels": 32, "head_style": "mmseg",
        "backbone": {"type": "ResNet18_v1c", "output_stride": 8}}}))
    model = Config(str(path)).model
    keys = model.state_dict()
    assert "head.conv_bn_relu1._conv.bias" not in keys and "head.conv.bias" in keys
    assert "backbone.bb_1_0.short._conv.weight" in keys  # same names as ResNet-vd
    assert isinstance(model.head.dropout, paddle.nn.Dropout2D)
    assert isinstance(model.head.auxlayer.dropout, paddle.nn.Dropout2D)


def test_mmseg_initialisation():
    paddle.seed(3)
    head = GCNet(5, ResNet18_v1c(), gc_channels=64, head_style="mmseg").head
    last = head.gc_block.channel_add_conv[3]
    assert not last.weight.numpy().any() and not last.bias.numpy().any()  # block = identity
    for conv_seg in (head.conv, head.auxlayer.conv):
        assert abs(conv_seg.weight.numpy().std() - 0.01) < 0.002
        assert not conv_seg.bias.numpy().any()
    weight = head.conv_bn_relu3._conv.weight.numpy()  # Kaiming, fan out = 64 * 3 * 3
    assert abs(weight.std() - np.sqrt(2 / (64 * 9))) < 0.1 * np.sqrt(2 / (64 * 9))


@pytest.mark.parametrize("theirs, ours", [
    ("backbone.stem.0.weight", "backbone.conv1_1._conv.weight"),
    ("backbone.stem.7.running_var", "backbone.conv1_3._batch_norm._variance"),
    ("backbone.layer3.5.conv2.weight", "backbone.bb_2_5.conv1._conv.weight"),
    ("backbone.layer1.0.bn3.running_mean", "backbone.bb_0_0.conv2._batch_norm._mean"),
    ("backbone.layer2.0.downsample.0.weight", "backbone.bb_1_0.short._conv.weight"),
    ("backbone.layer4.0.downsample.1.bias", "backbone.bb_3_0.short._batch_norm.bias"),
    ("layer1.1.conv1.weight", "bb_0_1.conv0._conv.weight"),  # MMCV's ImageNet files
    ("decode_head.convs.0.conv.weight", "head.conv_bn_relu1._conv.weight"),
    ("decode_head.convs.1.bn.weight", "head.conv_bn_relu2._batch_norm.weight"),
    ("decode_head.conv_cat.bn.running_var", "head.conv_bn_relu3._batch_norm._variance"),
    ("decode_head.gc_block.channel_add_conv.3.bias", "head.gc_block.channel_add_conv.3.bias"),
    ("decode_head.conv_seg.weight", "head.conv.weight"),
    ("auxiliary_head.convs.0.conv.weight", "head.auxlayer.conv_bn_relu._conv.weight"),
    ("auxiliary_head.conv_seg.bias", "head.auxlayer.conv.bias"),
    ("fc.weight", "fc.weight"),
    ("head.conv.weight", "head.conv.weight"),  # gcseg's own keys pass unchanged
])
def test_mmseg_key_table(theirs, ours):
    assert mmseg_key(theirs) == ours


def test_renaming_drops_bn_counters_and_flattens_the_layer_norm():
    state = {"backbone.stem.1.num_batches_tracked": np.zeros([], "int64"),
             "decode_head.gc_block.channel_add_conv.1.weight": np.ones([8, 1, 1], "float32")}
    assert {key: value.shape for key, value in mmseg_to_gcseg(state).items()} == {
        "head.gc_block.channel_add_conv.1.weight": (8,)}



def test_mmseg_style_gcnet_exports_and_runs_in_paddle_inference(tmp_path):
    """An R-18-D8 MMSeg-style GCNet (align_corners True, as the 769x769 rows) through
    export and Paddle Inference's default (oneDNN) predictor, as the vd models go."""
    from paddle import inference
    paddle.seed(1)
    model = GCNet(5, ResNet18_v1c(), gc_channels=32, head_style="mmseg", align_corners=True)
    model.eval()
    export_model(model, str(tmp_path), output_op="none")
    deploy = yaml.safe_load((tmp_path / "deploy.yaml").read_text())["Deploy"]
    predictor = inference.create_predictor(inference.Config(str(tmp_path / deploy["model"]),
                                                            str(tmp_path / deploy["params"])))
    batch = np.random.default_rng(0).standard_normal((1, 3, 71, 53)).astype(np.float32)
    expected = model(paddle.to_tensor(batch))[0].numpy()
    actual = run_predictor(predictor, batch)
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).max() <= 1e-4 * np.abs(expected).max()
