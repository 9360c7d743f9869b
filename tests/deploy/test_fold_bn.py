"""fold_batchnorm: the folded copy computes what the eval-mode model computes, without BN."""
import numpy as np
import paddle
import paddle.nn as nn

from gcseg.deploy.fold_bn import count_batchnorms, fold_batchnorm
from gcseg.models import GCNet, ResNet18_vd
from conftest import randomise_batchnorm_statistics


def test_folded_gcnet_equals_eval_model_and_leaves_it_untouched():
    paddle.seed(0)
    model = GCNet(5, ResNet18_vd(output_stride=8), gc_channels=32)
    randomise_batchnorm_statistics(model)
    model.train()
    keys_before = set(model.state_dict())
    folded = fold_batchnorm(model)

    assert model.training and not folded.training
    assert set(model.state_dict()) == keys_before
    assert count_batchnorms(model) > 0 and count_batchnorms(folded) == 0

    model.eval()
    image = paddle.randn([1, 3, 64, 96])
    expected = model(image)[0].numpy()
    actual = folded(image)[0].numpy()
    scale = max(1.0, float(np.abs(expected).max()))
    assert np.abs(actual - expected).max() <= 1e-4 * scale


def test_conv_without_bias_gets_the_folded_bias():
    from gcseg.models.layers import ConvBN
    paddle.seed(1)
    layer = ConvBN(4, 6, 3, bias=False)
    randomise_batchnorm_statistics(layer)
    layer.eval()
    x = paddle.randn([2, 4, 9, 7])
    folded = fold_batchnorm(layer)
    assert folded._conv.bias is not None
    np.testing.assert_allclose(folded(x).numpy(), layer(x).numpy(), atol=1e-5)
