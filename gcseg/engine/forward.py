"""The fastest correct way to run a model's forward pass for evaluation: the forward backend.

``backend="predictor"`` exports the BN-folded model to a temporary directory and runs it with
Paddle Inference (oneDNN conv+bias+ReLU fusion, all cores): on this project's 2-core machine
GCNet-R50 at 512x256 takes 0.36x of PaddleSeg's dygraph forward time (BENCHMARKS.md).
``backend="onnxruntime"`` converts that export to ONNX (paddle2onnx, the optional ``onnx``
extra) and runs it with ONNX Runtime on the CPU. ``backend="dygraph"`` runs the BN-folded
dygraph copy. ``backend="auto"`` on a CPU compiles the predictor and, when onnxruntime and
paddle2onnx are installed, ONNX Runtime; of those that agree with the dygraph model on a probe
input it takes the faster on a timing image, decides once per process (later calls, e.g. each
evaluation during training, reuse the choice) and says so in one line; when neither runs it
falls back to dygraph, saying why (e.g. on Paddle 2.6, whose dygraph-to-static translation of
the model fails). The model passed in is not modified (unless the caller asks for its weights
to be released once a compiled backend holds them); every backend is a snapshot of its weights.
On the command line the choice is ``--engine``; ``eval_results.json`` records it as ``engine``.
"""
import contextlib
import gc
import os
import sys
import tempfile
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import paddle
import paddle.nn as nn

from gcseg.cpu_env import cpu_threads, freed_memory_returned, return_freed_memory
from gcseg.deploy.fold_bn import fold_batchnorm
from gcseg.engine.inference import Forward
from gcseg.errors import GcsegError, UsageError

BACKENDS = ("auto", "predictor", "onnxruntime", "dygraph")
COMPILED_BACKENDS = ("predictor", "onnxruntime")
RUNTIME_LABELS = {"predictor": "Paddle Inference", "onnxruntime": "ONNX Runtime"}
PROBE_SHAPE = (1, 3, 64, 96)
# auto times the compiled backends once per process, alternating, on an image of this shape.
TIMING_SHAPE = (1, 3, 128, 256)
TIMING_ROUNDS = 3
RELATIVE_TOLERANCE = 1e-4
# oneDNN keeps compiled kernels per input shape; bound them for datasets of varying sizes.
SHAPE_CACHE_CAPACITY = 16
# auto's choice between the compiled backends, made once per process (see _choose_auto).
_AUTO_CHOICE: Dict[str, str] = {}


class CompiledModel:
    """An exported model's runner called like the model: ``[N,3,H,W] -> [logits]``;
    ``backend`` is ``"predictor"`` (Paddle Inference) or ``"onnxruntime"``."""

    training = False

    def __init__(self, runner, backend: str) -> None:
        self.runner = runner
        self.backend = backend

    def __call__(self, images: paddle.Tensor) -> List[paddle.Tensor]:
        return [paddle.to_tensor(self.runner.run(images.numpy()))]


def max_relative_difference(ours: np.ndarray, reference: np.ndarray) -> float:
    """``max |ours - reference|`` relative to the reference's largest magnitude (at least 1)."""
    return float(np.abs(ours - reference).max() / max(1.0, float(np.abs(reference).max())))


def _open_runner(backend: str, export_dir: str):
    """The runner of ``backend`` for the Paddle export in ``export_dir``."""
    if backend == "predictor":
        from gcseg.deploy.runtime import PaddleInferenceRunner
        gpu_id = current_gpu_id()
        return PaddleInferenceRunner(export_dir, cpu_threads=cpu_threads(),
                                     device="cpu" if gpu_id is None else "gpu",
                                     device_id=gpu_id or 0,
                                     shape_cache_capacity=SHAPE_CACHE_CAPACITY)
    from gcseg.deploy.onnx_export import convert_export_to_onnx
    from gcseg.deploy.onnx_runtime import OnnxRuntimeRunner
    onnx_dir = os.path.join(export_dir, "onnx")
    onnx_path = os.path.join(onnx_dir, "model.onnx")
    if not os.path.isfile(onnx_path):  # converted once per export, reopened from the file
        onnx_path = convert_export_to_onnx(export_dir, onnx_dir)["model"]
    return OnnxRuntimeRunner(onnx_path, cpu_threads=cpu_threads())


def _first_line(error: Exception) -> str:
    return f"{type(error).__name__}: {(str(error).strip() or '?').splitlines()[0]}"


def _checked(backend: str, export_dir: str, probe: paddle.Tensor,
             reference: np.ndarray) -> Union[CompiledModel, GcsegError]:
    """``backend``'s compiled model if it runs and agrees with ``reference`` on ``probe``,
    else the error saying why (a missing optional package stays a :class:`UsageError`)."""
    label = RUNTIME_LABELS[backend]
    try:
        compiled = CompiledModel(_open_runner(backend, export_dir), backend)
        output = compiled(probe)[0].numpy()
    except UsageError as error:
        return error
    except Exception as error:  # noqa: BLE001 - any failure here means "use another engine"
        return GcsegError(f"{label} could not run the model: {_first_line(error)}")
    difference = max_relative_difference(output, reference)
    if not difference <= RELATIVE_TOLERANCE:
        return GcsegError(f"{label} differs from dygraph by {difference:.2e} (relative) on a "
                          f"probe image")
    return compiled


def _probe(model: nn.Layer) -> Tuple[paddle.Tensor, np.ndarray]:
    """A random probe image and ``model``'s logits for it, the reference every compiled
    backend must match."""
    probe = paddle.to_tensor(np.random.default_rng(0).standard_normal(PROBE_SHAPE)
                             .astype(np.float32))
    with paddle.no_grad():
        return probe, model(probe)[0].numpy()


@contextlib.contextmanager
def _exported(model: nn.Layer) -> Iterator[str]:
    """A temporary directory holding ``model`` exported with BN folded (removed on exit; a
    compiled backend holds its own copy of the weights). Raises :class:`GcsegError` naming
    the export's failure: no backend can run what was not exported."""
    from gcseg.deploy.export import export_model
    with tempfile.TemporaryDirectory(prefix="gcseg_engine_") as work_dir:
        try:
            export_model(model, work_dir, output_op="none")
        except Exception as error:  # noqa: BLE001 - reported as the backends' failure
            raise GcsegError(f"the export failed: {_first_line(error)}") from None
        gc.collect()  # the traced BN-folded copy sits in reference cycles: free it first
        yield work_dir


def compile_backends(model: nn.Layer, backends: Sequence[str]
                    ) -> Dict[str, Union[CompiledModel, GcsegError]]:
    """``model`` (in eval mode) exported once with BN folded and loaded into each of
    ``backends``: per backend the :class:`CompiledModel`, or the error when the export or the
    runtime fails or it disagrees with the dygraph model by more than ``RELATIVE_TOLERANCE``
    on a random probe image."""
    probe, reference = _probe(model)
    try:
        with _exported(model) as work_dir:
            return {backend: _checked(backend, work_dir, probe, reference)
                    for backend in backends}
    except GcsegError as error:
        return {backend: GcsegError(f"{RUNTIME_LABELS[backend]} could not run the model: "
                                    f"{error}") for backend in backends}


def compile_for_inference(model: nn.Layer, backend: str = "predictor") -> CompiledModel:
    """``model`` compiled for ``backend`` (``predictor`` or ``onnxruntime``); raises the
    :class:`GcsegError` of :func:`compile_backends` when it cannot be used."""
    if backend == "onnxruntime":  # a missing optional package is reported before any work
        from gcseg.deploy.onnx_export import import_paddle2onnx
        from gcseg.deploy.onnx_runtime import import_onnxruntime
        import_onnxruntime("--engine onnxruntime")
        import_paddle2onnx("--engine onnxruntime")
    result = compile_backends(model, [backend])[backend]
    if isinstance(result, GcsegError):
        raise result
    return result


def _median_seconds(forward: CompiledModel) -> float:
    """Median forward time of a compiled backend on a ``TIMING_SHAPE`` image, after a warm-up
    (kernel selection, caches)."""
    image = paddle.to_tensor(np.random.default_rng(1).standard_normal(TIMING_SHAPE)
                             .astype(np.float32))
    forward(image)
    times = []
    for _ in range(TIMING_ROUNDS):
        start = time.perf_counter()
        forward(image)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _agreed_backends(seconds: Dict[str, float]) -> Tuple[List[str], Dict[str, float]]:
    """The compiled backends that run on every process (``seconds`` has the local ones that
    run, timed when both do), and their times summed over processes: in a distributed
    evaluation all processes must take the same backend."""
    from gcseg.engine.distributed import all_reduce_sum, get_world_size
    local = [float(name in seconds) for name in COMPILED_BACKENDS] + \
        [seconds.get(name, 0.0) for name in COMPILED_BACKENDS]
    summed = all_reduce_sum(paddle.to_tensor(local, dtype="float32")).numpy()
    count = len(COMPILED_BACKENDS)
    agreed = [name for name, votes in zip(COMPILED_BACKENDS, summed[:count])
              if int(round(float(votes))) == get_world_size()]
    return agreed, dict(zip(COMPILED_BACKENDS, (float(v) for v in summed[count:])))


def _choose_auto(model: nn.Layer, release_model: bool = False) -> CompiledModel:
    """Compile every backend that can run here; the faster of those that agree with dygraph
    wins, once per process, with one line saying why. Raises when none can be used.

    The backends are compiled and timed one after the other, never two alive at once: each
    holds its own copies of the weights (GCNet-R50: both together took a val.py process from
    ~1.05 to ~1.55 GB, above PaddleSeg's ~1.2). The winner is kept when it was timed last,
    else reopened from the same export. With ``release_model`` the model's weights are freed
    as soon as one backend agrees with it (dygraph will not be needed)."""
    from gcseg.deploy.onnx_export import onnx_tools_installed
    candidates = ["predictor"] + (["onnxruntime"] if onnx_tools_installed() else [])
    probe, reference = _probe(model)
    with _exported(model) as work_dir:
        seconds: Dict[str, float] = {}
        errors: Dict[str, GcsegError] = {}
        last: Optional[CompiledModel] = None
        for backend in candidates:
            last = None  # the previous runtime's weights go before the next one loads its own
            last = _load_alone(backend, work_dir, probe, reference)
            if isinstance(last, GcsegError):
                errors[backend], last = last, None
                continue
            if release_model:
                release_parameters(model)
            seconds[backend] = _median_seconds(last) if len(candidates) > 1 else 0.0
        agreed, summed = _agreed_backends(seconds)
        if not agreed:
            raise next(iter(errors.values()), GcsegError("no compiled backend runs in every "
                                                         "process"))
        choice, reason = _auto_reason(agreed, summed, candidates, errors)
        if last is None or last.backend != choice:
            last = None  # the loser goes before the winner is reopened
            last = _load_alone(choice, work_dir, probe, reference)
            if isinstance(last, GcsegError):
                raise last
    _AUTO_CHOICE["backend"] = choice
    print(f"gcseg: evaluation backend {choice} for this process ({reason})", file=sys.stderr)
    return last


def _load_alone(backend: str, export_dir: str, probe: paddle.Tensor,
                reference: np.ndarray) -> Union[CompiledModel, GcsegError]:
    """:func:`_checked` once the memory of runtimes dropped before is handed back, loading
    under glibc's default malloc (see :func:`gcseg.cpu_env.freed_memory_returned`)."""
    gc.collect()
    return_freed_memory()
    with freed_memory_returned():
        return _checked(backend, export_dir, probe, reference)


def _auto_reason(agreed: List[str], seconds: Dict[str, float], candidates: List[str],
                 errors: Dict[str, GcsegError]) -> Tuple[str, str]:
    """``auto``'s choice among the ``agreed`` backends and the reason it prints."""
    if len(agreed) == len(COMPILED_BACKENDS):
        choice = min(agreed, key=seconds.get)
        return choice, (f"ONNX Runtime took {seconds['onnxruntime'] / seconds['predictor']:.2f}x "
                        f"Paddle Inference's time on a {TIMING_SHAPE[3]}x{TIMING_SHAPE[2]} image")
    choice, = agreed
    other = next(name for name in COMPILED_BACKENDS if name != choice)
    return choice, ("ONNX Runtime: onnxruntime/paddle2onnx not installed"
                    if other not in candidates else str(errors[other]) if other in errors
                    else f"{RUNTIME_LABELS[other]} fails in another process")


def current_gpu_id() -> Optional[int]:
    """The GPU Paddle computes on (``paddle.get_device()`` is ``"gpu:N"``), else None."""
    device = paddle.get_device()
    if not device.startswith("gpu"):
        return None
    return int(device.partition(":")[2] or 0)


def _on_cpu() -> bool:
    return paddle.get_device().startswith("cpu")


def release_parameters(model: nn.Layer) -> None:
    """Free the storage of ``model``'s parameters and buffers (the model cannot run after)."""
    for tensor in [*model.parameters(), *model.buffers()]:
        tensor._clear_data()


def has_weights(model: nn.Layer) -> bool:
    """False once :func:`release_parameters` freed ``model``'s weights."""
    return all(tensor._is_initialized() for tensor in model.parameters())


def inference_forward(model: nn.Layer, backend: str = "auto", precision: str = "fp32",
                      release_model: bool = False) -> Forward:
    """The forward function evaluation should call for ``model`` (see the module docstring).
    Mixed precision (``precision != "fp32"``) autocasts dygraph, so it always uses dygraph.

    ``release_model`` is for callers that need the dygraph model no more (``val.py``): once the
    predictor holds the weights and agrees with the model, the model's own copy is freed
    (GCNet-R50: 190 MB of a ~1.2 GB process)."""
    if backend not in BACKENDS:
        raise UsageError(f"backend (--engine) must be one of {', '.join(BACKENDS)}, "
                         f"got {backend!r}")
    model = getattr(model, "_layers", model)  # the layer inside a paddle.DataParallel
    if backend == "dygraph" or (backend == "auto" and (precision != "fp32" or not _on_cpu())):
        return fold_batchnorm(model)
    try:
        compiled = (compile_for_inference(model, backend) if backend != "auto"
                    else compile_for_inference(model, _AUTO_CHOICE["backend"])
                    if "backend" in _AUTO_CHOICE else _choose_auto(model, release_model))
    except GcsegError as error:
        if backend != "auto" or not has_weights(model):  # released: no dygraph to fall back on
            raise
        print(f"gcseg: evaluating with dygraph ({error})", file=sys.stderr)
        return fold_batchnorm(model)
    if release_model:
        release_parameters(model)
    return compiled


def backend_name(forward: Forward) -> str:
    """``"predictor"``, ``"onnxruntime"`` or ``"dygraph"``: which backend
    :func:`inference_forward` returned."""
    return forward.backend if isinstance(forward, CompiledModel) else "dygraph"
