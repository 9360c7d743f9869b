"""GCNet: PaddleSeg's checkpoint layout, logits equal to PaddleSeg's, the GC block's formula."""
import numpy as np
import paddle
import pytest

from gcseg.compat import SAVED_PROGRAM_SUFFIXES
from gcseg.models import GCNet, GlobalContextBlock
from gcseg.models import resnet_vd as gcseg_resnet
from gcseg.registry import MODELS

paddleseg_models = pytest.importorskip("paddleseg.models")
from paddleseg.models.backbones import resnet_vd as oracle_resnet  # noqa: E402


def shapes(layer):
    return {key: list(value.shape) for key, value in layer.state_dict().items()}


def randomize_vectors(layer, seed):
    """Give every 1-D tensor (biases, BN/LN affine and running stats) non-default values."""
    rng = np.random.default_rng(seed)
    state = layer.state_dict()
    for key, value in state.items():
        if len(value.shape) == 1:
            n = value.shape[0]
            state[key] = (rng.uniform(0.5, 2.0, n) if key.endswith("_variance")
                          else rng.normal(0.0, 0.2, n)).astype("float32")
    layer.set_state_dict(state)


def oracle_and_gcseg(backbone, num_classes=19, seed=0, **kwargs):
    paddle.seed(seed)
    oracle = paddleseg_models.GCNet(num_classes, getattr(oracle_resnet, backbone)(), **kwargs)
    randomize_vectors(oracle, seed)
    model = GCNet(num_classes, getattr(gcseg_resnet, backbone)(), **kwargs)
    reference = oracle.state_dict()
    assert list(model.state_dict()) == list(reference)
    model.set_state_dict(reference)
    oracle.eval()  # returns None on Paddle 2.6
    model.eval()
    return oracle, model


@pytest.mark.parametrize("backbone, tensors, values", [
    ("ResNet50_vd", 311, 49_688_839),
    ("ResNet101_vd", 566, 68_733_191),
])
def test_checkpoint_layout_equals_paddleseg(backbone, tensors, values):
    model = GCNet(19, getattr(gcseg_resnet, backbone)())
    oracle = paddleseg_models.GCNet(19, getattr(oracle_resnet, backbone)())
    ours = shapes(model)
    assert ours == shapes(oracle)
    assert len(ours) == tensors
    assert sum(int(np.prod(shape)) for shape in ours.values()) == values
    assert ours["head.gc_block.channel_add_conv.1.weight"] == [128]
    assert ours["head.conv_bn_relu3._conv.weight"] == [512, 2560, 3, 3]


@pytest.mark.parametrize("backbone, size, align_corners", [
    ("ResNet18_vd", (64, 128), False),
    ("ResNet18_vd", (67, 93), False),
    ("ResNet18_vd", (67, 93), True),
    ("ResNet50_vd", (67, 93), False),
])
def test_eval_logits_equal_paddleseg(backbone, size, align_corners):
    oracle, model = oracle_and_gcseg(backbone, align_corners=align_corners)
    x = paddle.to_tensor(np.random.default_rng(1).normal(size=(1, 3) + size).astype("float32"))
    with paddle.no_grad():
        expected = oracle(x)[0].numpy()
        logits = model(x)
    assert len(logits) == 1
    assert logits[0].shape == [1, 19, *size]
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(logits[0].numpy(), expected, rtol=0, atol=1e-4)


def test_training_returns_main_and_auxiliary_logits_like_paddleseg():
    oracle, model = oracle_and_gcseg("ResNet18_vd", num_classes=5)
    oracle.train()
    model.train()
    for layer in (oracle, model):  # compare without dropout noise; BN uses batch stats
        for sub in layer.sublayers():
            if isinstance(sub, paddle.nn.Dropout):
                sub.p = 0.0
    x = paddle.to_tensor(np.random.default_rng(2).normal(size=(2, 3, 64, 96)).astype("float32"))
    expected = [logit.numpy() for logit in oracle(x)]
    logits = model(x)
    assert [logit.shape for logit in logits] == [[2, 5, 64, 96]] * 2
    for ours, theirs in zip(logits, expected):
        np.testing.assert_allclose(ours.numpy(), theirs, rtol=0, atol=1e-4)


def test_no_auxiliary_head_when_disabled():
    model = GCNet(3, gcseg_resnet.ResNet18_vd(), enable_auxiliary_loss=False)
    assert not any(key.startswith("head.auxlayer") for key in model.state_dict())
    model.train()
    assert len(model(paddle.rand([1, 3, 64, 64]))) == 1


def test_gcnet_is_registered():
    assert MODELS.get("GCNet") is GCNet


def numpy_global_context(x, params):
    """The GC block formula written out: x + W3 relu(LN(W0 sum_j softmax(w_m x)_j x_j))."""
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w)
    scores = np.einsum("c,ncp->np", params["conv_mask.weight"][0, :, 0, 0], flat)
    scores += params["conv_mask.bias"][0]
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    context = np.einsum("ncp,np->nc", flat, weights)  # [N, C]
    t = context @ params["channel_add_conv.0.weight"][:, :, 0, 0].T
    t += params["channel_add_conv.0.bias"]
    t = (t - t.mean(axis=1, keepdims=True)) / np.sqrt(t.var(axis=1, keepdims=True) + 1e-5)
    t = np.maximum(t * params["channel_add_conv.1.weight"] + params["channel_add_conv.1.bias"],
                   0.0)
    t = t @ params["channel_add_conv.3.weight"][:, :, 0, 0].T + params["channel_add_conv.3.bias"]
    return x + t[:, :, None, None]


def test_global_context_block_matches_numpy_formula():
    paddle.seed(3)
    block = GlobalContextBlock(16, ratio=0.25)
    randomize_vectors(block, 3)
    params = {key: value.numpy().astype("float64") for key, value in block.state_dict().items()}
    assert params["channel_add_conv.1.weight"].shape == (4,)
    x = np.random.default_rng(4).normal(size=(2, 16, 5, 7))
    out = block(paddle.to_tensor(x.astype("float32"))).numpy()
    np.testing.assert_allclose(out, numpy_global_context(x, params), rtol=1e-5, atol=1e-5)


def test_bad_backbone_indices_is_a_config_error():
    from gcseg.errors import ConfigError
    with pytest.raises(ConfigError, match=r"backbone_indices=\[2, 7\]"):
        GCNet(3, gcseg_resnet.ResNet18_vd(), backbone_indices=[2, 7])


@pytest.mark.paddle3_only
def test_global_context_block_runs_under_paddle_inference_onednn(tmp_path):
    """The LayerNorm runs on the last axis, the only one oneDNN's kernel accepts."""
    from paddle import inference
    from paddle.static import InputSpec

    paddle.seed(5)
    block = GlobalContextBlock(16, ratio=0.25)
    block.eval()
    static = paddle.jit.to_static(block, input_spec=[InputSpec([None, 16, None, None])])
    paddle.jit.save(static, str(tmp_path / "gc"))
    model_file = next(p for p in tmp_path.iterdir() if p.suffix in SAVED_PROGRAM_SUFFIXES)
    config = inference.Config(str(model_file), str(tmp_path / "gc.pdiparams"))
    config.enable_mkldnn()
    predictor = inference.create_predictor(config)
    x = np.random.default_rng(6).normal(size=(2, 16, 5, 7)).astype("float32")
    predictor.get_input_handle(predictor.get_input_names()[0]).copy_from_cpu(x)
    predictor.run()
    out = predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
    np.testing.assert_allclose(out, block(paddle.to_tensor(x)).numpy(), rtol=0, atol=1e-5)
