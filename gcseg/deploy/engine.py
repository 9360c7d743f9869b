"""The fastest correct way to run a model's forward pass for evaluation.

``engine="predictor"`` exports the BN-folded model to a temporary directory and runs it with
Paddle Inference (oneDNN conv+bias+ReLU fusion, all cores): on this project's 2-core machine
GCNet-R50 at 512x256 takes 0.36x of PaddleSeg's dygraph forward time (BENCHMARKS.md).
``engine="dygraph"`` runs the BN-folded dygraph copy. ``engine="auto"`` picks the predictor on
a CPU when it can be built and agrees with the dygraph model on a probe input, else dygraph
(e.g. on Paddle 2.6, whose dygraph-to-static translation of the model fails), with one line
saying why. The model passed in is not modified (unless the caller asks for its weights to be
released once the predictor holds them); both engines are snapshots of its weights.
"""
import gc
import os
import sys
import tempfile
from typing import List, Optional

import numpy as np
import paddle
import paddle.nn as nn

from gcseg.deploy.fold_bn import fold_batchnorm
from gcseg.engine.inference import Forward
from gcseg.errors import GcsegError, UsageError

ENGINES = ("auto", "predictor", "dygraph")
PROBE_SHAPE = (1, 3, 64, 96)
RELATIVE_TOLERANCE = 1e-4
# oneDNN keeps compiled kernels per input shape; bound them for datasets of varying sizes.
SHAPE_CACHE_CAPACITY = 16


class PredictorModel:
    """A Paddle Inference predictor called like the model: ``[N,3,H,W] -> [logits]``, on GPU
    ``gpu_id`` or, when it is None, on the CPU."""

    training = False

    def __init__(self, model_dir: str, cpu_threads: int, gpu_id: Optional[int] = None) -> None:
        from gcseg.deploy.predictor import DeployedModel
        self.runner = DeployedModel(model_dir, cpu_threads=cpu_threads,
                                    use_gpu=gpu_id is not None, gpu_id=gpu_id or 0,
                                    shape_cache_capacity=SHAPE_CACHE_CAPACITY)

    def __call__(self, images: paddle.Tensor) -> List[paddle.Tensor]:
        return [paddle.to_tensor(self.runner.run(images.numpy()))]


def cpu_threads() -> int:
    """The thread count the CPU set-up chose (``OMP_NUM_THREADS``), else every usable core."""
    from gcseg.cpu_env import usable_cores
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else usable_cores()


def max_relative_difference(ours: np.ndarray, reference: np.ndarray) -> float:
    """``max |ours - reference|`` relative to the reference's largest magnitude (at least 1)."""
    return float(np.abs(ours - reference).max() / max(1.0, float(np.abs(reference).max())))


def compile_for_inference(model: nn.Layer) -> PredictorModel:
    """``model`` (in eval mode) exported with BN folded and loaded into a Paddle Inference
    predictor; raises :class:`GcsegError` when the export or the predictor fails or the
    predictor disagrees with the dygraph model by more than ``RELATIVE_TOLERANCE`` on a
    random probe image."""
    from gcseg.export import export_model
    probe = paddle.to_tensor(np.random.default_rng(0).standard_normal(PROBE_SHAPE)
                             .astype(np.float32))
    with paddle.no_grad():
        reference = model(probe)[0].numpy()
    try:
        with tempfile.TemporaryDirectory(prefix="gcseg_engine_") as work_dir:
            export_model(model, work_dir, output_op="none")
            gc.collect()  # the traced BN-folded copy sits in reference cycles: free it first
            compiled = PredictorModel(work_dir, cpu_threads(), current_gpu_id())
        output = compiled(probe)[0].numpy()
    except Exception as error:  # noqa: BLE001 - any failure here means "use dygraph"
        raise GcsegError(f"Paddle Inference could not run the model: {type(error).__name__}: "
                         f"{str(error).strip().splitlines()[0]}") from error
    difference = max_relative_difference(output, reference)
    if not difference <= RELATIVE_TOLERANCE:
        raise GcsegError(f"Paddle Inference differs from dygraph by {difference:.2e} "
                         f"(relative) on a probe image")
    return compiled


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


def inference_forward(model: nn.Layer, engine: str = "auto", precision: str = "fp32",
                      release_model: bool = False) -> Forward:
    """The forward function evaluation should call for ``model`` (see the module docstring).
    Mixed precision (``precision != "fp32"``) autocasts dygraph, so it always uses dygraph.

    ``release_model`` is for callers that need the dygraph model no more (``val.py``): once the
    predictor holds the weights and agrees with the model, the model's own copy is freed
    (GCNet-R50: 190 MB of a ~1.2 GB process)."""
    if engine not in ENGINES:
        raise UsageError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    model = getattr(model, "_layers", model)  # the layer inside a paddle.DataParallel
    if engine == "dygraph" or (engine == "auto" and (precision != "fp32" or not _on_cpu())):
        return fold_batchnorm(model)
    try:
        compiled = compile_for_inference(model)
    except GcsegError as error:
        if engine == "predictor":
            raise
        print(f"gcseg: evaluating with dygraph ({error})", file=sys.stderr)
        return fold_batchnorm(model)
    if release_model:
        release_parameters(model)
    return compiled


def engine_name(forward: Forward) -> str:
    """``"predictor"`` or ``"dygraph"``: which engine :func:`inference_forward` returned."""
    return "predictor" if isinstance(forward, PredictorModel) else "dygraph"
