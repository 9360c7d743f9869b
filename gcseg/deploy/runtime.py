"""Run an exported model (``export.py``'s directory) with Paddle Inference or ONNX Runtime.

The runtime follows the model file ``deploy.yaml`` names (``model.onnx``: ONNX Runtime, a Paddle
program: Paddle Inference) unless the caller picks one. Paddle Inference runs with its own CPU
default (oneDNN on), as a deployer who never heard of gcseg would load it, unless the
:class:`~gcseg.deploy.inference_options.InferenceOptions` (given as keywords) say otherwise.
``precision="bf16"`` (oneDNN bfloat16) runs only where the CPU has AVX512-BF16 / AMX-BF16 and
Paddle really computes in bf16 there: a probe whose bf16 output equals the fp32 one bit for bit
refuses it (BENCHMARKS.md records a bf16 CPU where Paddle accepted the option and computed fp32).
"""
import contextlib
import os
from typing import Dict, Iterator, Optional

import numpy as np

from gcseg.cpu_env import cpu_threads
from gcseg.data.images import read_image
from gcseg.deploy.deploy_yml import read_deploy
from gcseg.deploy.inference_options import (InferenceOptions, check_options, describe_config,
                                            paddle_config)
from gcseg.errors import UsageError

RUNTIMES = ("auto", "paddle", "onnxruntime")
BF16_PROBE_SIZE = (128, 128)  # H, W of the image that tells bf16 from fp32 where H, W are dynamic


def predictor_config(model_dir: str, options: InferenceOptions,
                     model_file: Optional[str] = None):
    """The ``paddle.inference.Config`` of ``model_dir``'s program (its deploy.yaml's unless
    ``model_file`` names one) under ``options``."""
    deploy = read_deploy(model_dir)
    return paddle_config(os.path.join(model_dir, model_file or deploy["model"]),
                         os.path.join(model_dir, deploy.get("params", "model.pdiparams")),
                         options)


def create_predictor(model_dir: str, *, model_file: Optional[str] = None, **options):
    """A ``paddle.inference`` predictor for ``model_dir`` under the
    :class:`~gcseg.deploy.inference_options.InferenceOptions` given as keywords (default: the
    CPU, Paddle's default config).

    Paddle Inference runs on one CPU thread unless ``cpu_threads`` says otherwise (it ignores
    ``OMP_NUM_THREADS``); ``shape_cache_capacity`` bounds oneDNN's per-input-shape cache."""
    from paddle import inference
    settings = InferenceOptions(**options)
    check_options(settings)
    with process_math_threads():
        return inference.create_predictor(predictor_config(model_dir, settings, model_file))


def _model_file(model_dir: str, deploy: Dict, runtime: str) -> str:
    """The file ``runtime`` runs: the one deploy.yaml names, else the other export found beside
    it (a directory may hold both after exporting twice)."""
    from gcseg.compat import saved_program_file
    from gcseg.deploy.onnx_export import ONNX_FILE
    if runtime == "onnxruntime":
        name = deploy["model"] if deploy["model"].endswith(".onnx") else ONNX_FILE
        if not os.path.isfile(os.path.join(model_dir, name)):
            raise UsageError(f"{model_dir}: no {name} to run with ONNX Runtime (export with "
                             f"scripts/export.py --format onnx)")
        return name
    if not deploy["model"].endswith(".onnx"):
        return deploy["model"]
    try:
        return saved_program_file(model_dir, "model")
    except FileNotFoundError:
        raise UsageError(f"{model_dir}: holds an ONNX model only; run it with ONNX Runtime "
                         f"(--runtime onnxruntime or auto)") from None


@contextlib.contextmanager
def process_math_threads() -> Iterator[None]:
    """Within the block Paddle Inference may change the thread count of MKL and OpenMP; after
    it they run on the process's threads (:func:`gcseg.cpu_env.cpu_threads`) again.

    Paddle Inference (2.6 and 3.x) sets that count for MKL (process-wide) and for the calling
    thread's OpenMP, not for its predictor alone: creating a predictor sets it to the predictor's
    ``cpu_math_library_num_threads`` (1 unless told), and every run ends by setting it to 1, "to
    avoid thread conflict" in a serving process. Dygraph Paddle computes with the same count, so
    training steps after an evaluation by the predictor ran on one thread."""
    try:
        yield
    finally:
        from paddle.base import core
        core.set_num_threads(cpu_threads())


def run_predictor(predictor, batch: np.ndarray) -> np.ndarray:
    """The first output of ``predictor`` for ``batch [N, 3, H, W]``."""
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(list(batch.shape))
    handle.copy_from_cpu(np.ascontiguousarray(batch, dtype=np.float32))
    with process_math_threads():
        predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def probe_batch(model_dir: str) -> np.ndarray:
    """A random batch of the shape the export takes (one image of ``BF16_PROBE_SIZE`` where
    the batch or the size is dynamic)."""
    batch, channels, height, width = read_deploy(model_dir).get("input_shape", [-1, 3, -1, -1])
    shape = [batch if batch > 0 else 1, channels, height if height > 0 else BF16_PROBE_SIZE[0],
             width if width > 0 else BF16_PROBE_SIZE[1]]
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def check_bf16_applied(model_dir: str, predictor, options: Dict) -> None:
    """A one-line UsageError when ``predictor`` (created with ``precision="bf16"``) computes a
    probe batch bit for bit as the fp32 predictor does: bf16 was accepted but not applied."""
    import paddle
    batch = probe_batch(model_dir)
    fp32 = create_predictor(model_dir, **{**options, "precision": "fp32"})
    if np.array_equal(run_predictor(predictor, batch), run_predictor(fp32, batch)):
        raise UsageError(f"--precision bf16: Paddle {paddle.__version__}'s oneDNN computed a "
                         "probe image bit for bit as in fp32 (bf16 accepted but not applied on "
                         "this CPU); use --precision fp32")


class PaddleInferenceRunner:
    """A Paddle Inference predictor: ``run(batch [N, 3, H, W]) -> the first output``;
    ``description`` says what it runs on, as its config reports it. It leaves the process's
    MKL/OpenMP thread count as gcseg's CPU set-up chose it (see :func:`process_math_threads`)."""

    def __init__(self, model_dir: str, model_file: Optional[str] = None, **options) -> None:
        self.predictor = create_predictor(model_dir, model_file=model_file, **options)
        self.model_dir, self.model_file = model_dir, model_file
        self.options = InferenceOptions(**options)
        if self.options.precision == "bf16":
            check_bf16_applied(model_dir, self.predictor, dict(options, model_file=model_file))

    @property
    def description(self) -> str:
        return describe_config(predictor_config(self.model_dir, self.options, self.model_file),
                               self.options)

    def run(self, batch: np.ndarray) -> np.ndarray:
        return run_predictor(self.predictor, batch)


def resolve_runtime(model_dir: str, runtime: str = "auto") -> str:
    """``paddle`` or ``onnxruntime``: ``runtime``, or for ``auto`` the one the model file
    deploy.yaml names needs."""
    if runtime not in RUNTIMES:
        raise UsageError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime != "auto":
        return runtime
    return "onnxruntime" if read_deploy(model_dir)["model"].endswith(".onnx") else "paddle"


def check_runtime_options(model_dir: str, runtime: str, options: InferenceOptions) -> None:
    """A one-line UsageError for ``options`` that ``runtime`` (``paddle`` or ``onnxruntime``)
    cannot run here."""
    if runtime == "paddle":
        check_options(options)
        return
    unsupported = options.paddle_only_flags()
    if unsupported:
        raise UsageError(f"{model_dir}: {', '.join(unsupported)} apply to Paddle Inference, not "
                         f"to ONNX Runtime (which runs on the CPU in float32)")


def open_runner(model_dir: str, runtime: str = "auto", **options):
    """The runner for ``model_dir`` (see the module docstring); ``runtime`` is ``auto``,
    ``paddle`` or ``onnxruntime``. ``cpu_threads`` and ``print_detail`` apply to both; the
    other options to Paddle Inference only, and asking ONNX Runtime for them is a one-line
    error."""
    runtime = resolve_runtime(model_dir, runtime)
    model_file = _model_file(model_dir, read_deploy(model_dir), runtime)
    if runtime == "paddle":
        return PaddleInferenceRunner(model_dir, model_file=model_file, **options)
    settings = InferenceOptions(**options)
    check_runtime_options(model_dir, runtime, settings)
    from gcseg.deploy.onnx_runtime import OnnxRuntimeRunner
    return OnnxRuntimeRunner(os.path.join(model_dir, model_file),
                             cpu_threads=settings.cpu_threads, verbose=settings.print_detail)


class DeployedModel:
    """``deploy.yaml`` preprocessing + a runner: ``run(batch)``, ``labels(output)`` and
    ``predict_file(path)``."""

    def __init__(self, model_dir: str, runtime: str = "auto", **options) -> None:
        self.deploy = read_deploy(model_dir)
        self.runner = open_runner(model_dir, runtime, **options)
        normalize = self.deploy["normalize"]
        self.mean = np.asarray(normalize["mean"], dtype=np.float32).reshape([-1, 1, 1])
        self.std = np.asarray(normalize["std"], dtype=np.float32).reshape([-1, 1, 1])

    def preprocess(self, image_path: str) -> np.ndarray:
        """``[1, 3, H, W]`` float32, read and normalised as the val transforms did."""
        image = read_image(image_path, to_rgb=self.deploy.get("to_rgb", True))
        chw = image.transpose(2, 0, 1) / 255.0
        return ((chw - self.mean) / self.std)[None].astype(np.float32)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The model's output for ``batch [N, 3, H, W]``."""
        return self.runner.run(batch)

    def labels(self, output: np.ndarray) -> np.ndarray:
        """Class ids ``[N, H, W]`` of a batch's output, whatever the exported output op (an
        argmax over the classes of logits or probabilities, PaddleSeg's ``--with_argmax``)."""
        if self.deploy["output_op"] == "argmax":
            return output.astype(np.int64)
        return output.argmax(axis=1)

    def predict_file(self, image_path: str) -> np.ndarray:
        """Class ids ``[H, W]`` of one image file."""
        return self.labels(self.run(self.preprocess(image_path)))[0]
