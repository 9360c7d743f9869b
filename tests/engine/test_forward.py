"""The evaluation engine: the Paddle Inference predictor computes the unfused dygraph logits
(within 1e-4 relative), and ``auto`` falls back to dygraph where no compiled engine can run.
(ONNX Runtime and how ``auto`` chooses between compiled backends: deploy/test_onnx.py.)"""
import ctypes
import os
from typing import Dict

import numpy as np
import paddle
import pytest

from gcseg.cpu_env import cpu_threads
from gcseg.deploy.runtime import process_math_threads
from gcseg.engine import forward
from gcseg.engine.evaluator import evaluate
from gcseg.engine.forward import (backend_name, compile_for_inference, inference_forward,
                                  max_relative_difference)
from gcseg.errors import GcsegError, UsageError
from gcseg.models import GCNet, ResNet18_vd
from conftest import TinyDataset, randomise_batchnorm_statistics


class HostRoundTripNet(paddle.nn.Layer):
    """Copies its logits through numpy inside forward: no static graph can hold that, on any
    Paddle version, so the export for the predictor fails."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 4, 1)

    def forward(self, images):
        return [paddle.to_tensor(np.ascontiguousarray(self.conv(images).numpy()))]


@pytest.mark.parametrize("shape", [(1, 3, 64, 96), (2, 3, 71, 53)])
def test_predictor_equals_unfused_dygraph(gcnet, shape):
    compiled = compile_for_inference(gcnet)
    image = paddle.to_tensor(np.random.default_rng(1).standard_normal(shape).astype("float32"))
    with paddle.no_grad():
        expected = gcnet(image)[0].numpy()
    logits = compiled(image)[0]
    assert list(logits.shape) == list(expected.shape)
    assert max_relative_difference(logits.numpy(), expected) < 1e-4


COMPILED_BACKENDS = ("predictor", "onnxruntime")  # auto's choice on a CPU (by speed)


def test_auto_picks_a_compiled_engine_and_leaves_the_model_alone(gcnet):
    keys = {k: v.numpy().copy() for k, v in gcnet.state_dict().items()}
    assert backend_name(inference_forward(gcnet)) in COMPILED_BACKENDS
    assert backend_name(inference_forward(gcnet, "dygraph")) == "dygraph"
    assert all(np.array_equal(keys[k], v.numpy()) for k, v in gcnet.state_dict().items())


@pytest.mark.parametrize("device, kind, gpu_id", [("cpu", "cpu", 0), ("gpu:1", "gpu", 1)])
def test_predictor_runs_on_the_device_paddle_computes_on(gcnet, monkeypatch, device, kind,
                                                         gpu_id):
    """On a GPU build the predictor is created on Paddle's GPU, not silently on the CPU; ``auto``
    still picks dygraph there. (This machine has no GPU: the options the predictor is created
    with are recorded, then it is built for the CPU.)"""
    from gcseg.deploy import runtime as predictor
    created_with = []
    create_on_cpu = predictor.create_predictor

    def record_options(model_dir, **options):
        created_with.append(options)
        return create_on_cpu(model_dir, cpu_threads=options["cpu_threads"])

    monkeypatch.setattr(predictor, "create_predictor", record_options)
    monkeypatch.setattr(paddle, "get_device", lambda: device)
    assert backend_name(inference_forward(gcnet, "predictor")) == "predictor"
    options = created_with[-1]  # create_predictor's defaults where not given
    assert (options.get("device", "cpu"), options.get("device_id", 0)) == (kind, gpu_id)
    assert backend_name(inference_forward(gcnet)) in (("dygraph",) if kind == "gpu"
                                                      else COMPILED_BACKENDS)


def test_auto_falls_back_to_dygraph_when_the_predictor_cannot_run(capsys, monkeypatch):
    monkeypatch.setattr(forward, "_AUTO_CHOICE", {})  # decided anew, as in a new process
    model = HostRoundTripNet()
    model.eval()
    assert backend_name(inference_forward(model)) == "dygraph"
    assert "evaluating with dygraph" in capsys.readouterr().err
    with pytest.raises(GcsegError, match="Paddle Inference"):
        inference_forward(model, "predictor")
    with pytest.raises(UsageError, match="engine"):
        inference_forward(model, "tensorrt")


def test_a_failed_export_does_not_break_the_next_one(gcnet, monkeypatch):
    """Paddle keys a trace's parameters by ``id(program)`` and keeps them when the trace fails;
    a later program with the same id inherited them (CI: ``KeyError: 'conv2d_..._deepcopy_..'``).
    Every program gets one id here, so the collision happens on every run, not by chance."""
    from paddle.jit.dy2static import program_translator
    monkeypatch.setattr(program_translator, "_program_hash", lambda program: 0)
    unexportable = HostRoundTripNet()
    unexportable.eval()
    with pytest.raises(GcsegError, match="Paddle Inference"):
        compile_for_inference(unexportable)
    image = paddle.to_tensor(np.random.default_rng(2).standard_normal((1, 3, 64, 64))
                             .astype("float32"))
    with paddle.no_grad():
        expected = gcnet(image)[0].numpy()
    assert max_relative_difference(compile_for_inference(gcnet)(image)[0].numpy(), expected) < 1e-4


def test_evaluate_gives_the_same_metrics_with_both_engines(gcnet):
    dataset = TinyDataset(num_images=3)  # odd sizes, padding and resize in trans_info
    results = {backend: evaluate(gcnet, dataset, backend=backend, print_detail=False)
               for backend in ("predictor", "dygraph")}
    assert results["predictor"]["engine"] == "predictor"
    assert results["dygraph"]["engine"] == "dygraph"
    np.testing.assert_array_equal(results["predictor"]["confusion_matrix"],
                                  results["dygraph"]["confusion_matrix"])


def test_evaluate_can_release_the_model_once_the_predictor_holds_its_weights():
    """val.py's memory saving: the same metrics, and the dygraph weights freed only when the
    predictor runs (the dygraph fallback still needs them)."""
    paddle.seed(0)
    model = GCNet(5, ResNet18_vd(output_stride=8), gc_channels=32)
    randomise_batchnorm_statistics(model)
    model.eval()
    dataset = TinyDataset(num_images=2)
    kept = evaluate(model, dataset, print_detail=False)
    assert all(parameter._is_initialized() for parameter in model.parameters())
    released = evaluate(model, dataset, print_detail=False, release_model=True)
    np.testing.assert_array_equal(kept["confusion_matrix"], released["confusion_matrix"])
    freed = [not parameter._is_initialized() for parameter in model.parameters()]
    assert all(freed) if released["engine"] != "dygraph" else not any(freed)


def test_a_released_model_is_not_evaluated_with_dygraph_when_no_backend_is_agreed(
        gcnet, monkeypatch, capsys):
    """``release_model`` frees the weights once a backend agrees with the model; if the
    processes then agree on no backend, the run stops with the reason instead of falling back
    to a dygraph model without weights. Without ``release_model`` it falls back."""
    monkeypatch.setattr(forward, "_agreed_backends", lambda seconds: ([], {}))
    from gcseg.deploy import onnx_export
    monkeypatch.setattr(onnx_export, "onnx_tools_installed", lambda: False)  # one runtime is enough
    twin = GCNet(5, ResNet18_vd(output_stride=8), gc_channels=32)
    twin.set_state_dict(gcnet.state_dict())
    twin.eval()
    for model, release in ((gcnet, False), (twin, True)):
        monkeypatch.setattr(forward, "_AUTO_CHOICE", {})  # decided anew, as in a new process
        if release:
            with pytest.raises(GcsegError, match="no compiled backend runs in every process"):
                inference_forward(model, release_model=True)
            assert not forward.has_weights(model)
        else:
            assert backend_name(inference_forward(model)) == "dygraph"
            assert forward.has_weights(model)


# The thread-count getter of each math library Paddle's CPU wheels load.
THREAD_COUNT_GETTERS = {"libmklml_intel": "MKL_Get_Max_Threads", "libiomp5": "omp_get_max_threads",
                        "libgomp": "omp_get_max_threads"}


def math_library_threads() -> Dict[str, int]:
    """How many threads MKL and each OpenMP runtime loaded in this process will use (for OpenMP:
    in this thread), asked of the libraries themselves."""
    with open("/proc/self/maps", encoding="utf-8") as maps:
        paths = {line.split()[-1] for line in maps if ".so" in line}
    counts = {}
    for path in sorted(paths):
        library = os.path.basename(path).partition(".so")[0]
        if library in THREAD_COUNT_GETTERS:
            counts[library] = getattr(ctypes.CDLL(path), THREAD_COUNT_GETTERS[library])()
    return counts


def test_the_predictor_leaves_mkl_and_openmp_on_the_process_threads(gcnet, monkeypatch):
    """Paddle Inference sets MKL's and OpenMP's thread count when a predictor is created and to 1
    after every run; training after an evaluation then ran on one thread. The process is given
    two threads here (the suite's workers may run on one, which would not show it)."""
    image = paddle.to_tensor(np.random.default_rng(3).standard_normal((1, 3, 64, 64))
                             .astype("float32"))
    paddle.matmul(image, image)  # dygraph's MKL is loaded
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    try:
        with process_math_threads():  # the process computes on two threads
            pass
        before = math_library_threads()
        compiled = compile_for_inference(gcnet)
        compiled(image)
        threads = math_library_threads()
    finally:
        monkeypatch.undo()
        with process_math_threads():  # back to this worker's own count
            pass
    if "libmklml_intel" not in threads:
        pytest.skip("needs Paddle's MKL (mklml)")
    assert before["libmklml_intel"] == 2 and threads == before
