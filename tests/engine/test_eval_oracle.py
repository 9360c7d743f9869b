"""gcseg's default evaluation path end to end against PaddleSeg 2.8 (the oracle): ``infer_logits``
through each engine ``auto`` chooses from on a CPU (Paddle Inference and ONNX Runtime, both
running the BN-folded export) on a small GCNet, and PaddleSeg's ``aug_inference`` /
``inference`` on its own GCNet holding the same weights, on an odd-sized image with a resize and
padding to undo."""
import numpy as np
import paddle
import pytest

from gcseg.engine.forward import backend_name, inference_forward, max_relative_difference
from gcseg.engine.inference import InferenceSettings, infer_logits
from gcseg.models import GCNet, ResNet18_vd

paddleseg_models = pytest.importorskip("paddleseg.models")
from paddleseg.core import infer as oracle  # noqa: E402
from paddleseg.models.backbones import resnet_vd as oracle_resnet  # noqa: E402
from conftest import randomise_batchnorm_statistics

NUM_CLASSES = 5
IMAGE_SHAPE = (1, 3, 67, 101)
TRANS_INFO = [("resize", (75, 110)), ("padding", (67, 96))]  # padded 67x96 -> 67x101, resized
SCALES = [0.75, 1.0]
CROP_SIZE, STRIDE = (64, 48), (32, 24)  # (width, height): 2 x 3 windows at scale 1


@pytest.fixture(scope="module")
def gcnet_and_twin():
    paddle.seed(0)
    model = GCNet(NUM_CLASSES, ResNet18_vd(output_stride=8), gc_channels=32)
    randomise_batchnorm_statistics(model)
    model.eval()
    twin = paddleseg_models.GCNet(NUM_CLASSES, oracle_resnet.ResNet18_vd(output_stride=8),
                                  gc_channels=32)
    twin.set_state_dict(model.state_dict())
    twin.eval()
    return model, twin


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(3)
    return paddle.to_tensor(rng.standard_normal(IMAGE_SHAPE).astype("float32"))


@pytest.fixture(scope="module", params=["predictor", "onnxruntime"])
def evaluation_forward(request, gcnet_and_twin):
    if request.param == "onnxruntime":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("paddle2onnx")
    forward = inference_forward(gcnet_and_twin[0], request.param)
    assert backend_name(forward) == request.param
    return forward


def assert_matches_oracle(ours: paddle.Tensor, theirs: paddle.Tensor) -> None:
    """Within 1e-4 of the oracle's largest logit: the predictor runs BN-folded, fused kernels."""
    theirs = theirs.numpy().astype("float32")
    assert ours.shape == list(theirs.shape) == [1, NUM_CLASSES, 75, 110]
    assert np.abs(theirs).max() > 0.1
    assert max_relative_difference(ours.numpy(), theirs) < 1e-4


def test_multiscale_flip_equals_paddleseg_aug_inference(gcnet_and_twin, image,
                                                         evaluation_forward):
    settings = InferenceSettings(aug_eval=True, scales=SCALES, flip_horizontal=True)
    _, expected = oracle.aug_inference(gcnet_and_twin[1], image, TRANS_INFO, scales=SCALES,
                                       flip_horizontal=True)
    assert_matches_oracle(infer_logits(evaluation_forward, image, settings, TRANS_INFO),
                          expected)


def test_slide_equals_paddleseg_slide_inference(gcnet_and_twin, image, evaluation_forward):
    settings = InferenceSettings(is_slide=True, crop_size=CROP_SIZE, stride=STRIDE)
    _, expected = oracle.inference(gcnet_and_twin[1], image, TRANS_INFO, is_slide=True,
                                   crop_size=CROP_SIZE, stride=STRIDE)
    assert_matches_oracle(infer_logits(evaluation_forward, image, settings, TRANS_INFO),
                          expected)


def test_multiscale_flip_slide_equals_paddleseg_aug_inference(gcnet_and_twin, image,
                                                              evaluation_forward):
    settings = InferenceSettings(aug_eval=True, scales=SCALES, flip_horizontal=True,
                                 is_slide=True, crop_size=CROP_SIZE, stride=STRIDE)
    _, expected = oracle.aug_inference(gcnet_and_twin[1], image, TRANS_INFO, scales=SCALES,
                                       flip_horizontal=True, is_slide=True,
                                       crop_size=CROP_SIZE, stride=STRIDE)
    assert_matches_oracle(infer_logits(evaluation_forward, image, settings, TRANS_INFO),
                          expected)
