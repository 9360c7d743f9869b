"""Run an exported model (``export.py``'s directory) with Paddle Inference or ONNX Runtime.

The runtime follows the model file ``deploy.yaml`` names (``model.onnx``: ONNX Runtime, a Paddle
program: Paddle Inference) unless the caller picks one. Paddle Inference runs with its own CPU
default (oneDNN on), as a deployer who never heard of gcseg would load it; ``use_onednn=False``
is the fallback, ``bf16=True`` runs oneDNN in bfloat16 on CPUs with AVX512-BF16 / AMX-BF16 and
is refused elsewhere, where Paddle accepted the option and silently computed fp32 (logits
identical to fp32, BENCHMARKS.md).
"""
import contextlib
import os
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
from PIL import Image

from gcseg.cpu_env import cpu_supports_bf16, cpu_threads
from gcseg.deploy.deploy_yml import read_deploy
from gcseg.errors import UsageError

RUNTIMES = ("auto", "paddle", "onnxruntime")
# Predictor options that ONNX Runtime cannot honour, with the value that asks for them.
PADDLE_ONLY_OPTIONS = {"use_gpu": True, "bf16": True, "use_onednn": False}


def create_predictor(model_dir: str, *, model_file: Optional[str] = None,
                     use_onednn: bool = True, bf16: bool = False,
                     cpu_threads: Optional[int] = None, use_gpu: bool = False, gpu_id: int = 0,
                     shape_cache_capacity: Optional[int] = None):
    """A ``paddle.inference`` predictor for ``model_dir`` (its deploy.yaml's program unless
    ``model_file`` names one; default config unless told), on the CPU or, with ``use_gpu``, on
    GPU ``gpu_id``.

    Paddle Inference runs on one CPU thread unless ``cpu_threads`` says otherwise (it ignores
    ``OMP_NUM_THREADS``); ``shape_cache_capacity`` bounds oneDNN's per-input-shape cache."""
    from paddle import inference
    deploy = read_deploy(model_dir)
    config = inference.Config(os.path.join(model_dir, model_file or deploy["model"]),
                              os.path.join(model_dir, deploy.get("params", "model.pdiparams")))
    config.disable_glog_info()
    if use_gpu:
        config.enable_use_gpu(256, gpu_id)
    elif not use_onednn:
        config.disable_mkldnn()
    elif bf16:
        if not cpu_supports_bf16():
            raise UsageError("bf16 is not supported on this CPU (no avx512_bf16 / amx_bf16 in "
                             "/proc/cpuinfo); run in fp32 (without --bf16)")
        config.enable_mkldnn_bfloat16()
    if cpu_threads:
        config.set_cpu_math_library_num_threads(int(cpu_threads))
    if shape_cache_capacity and use_onednn and not use_gpu:
        config.set_mkldnn_cache_capacity(int(shape_cache_capacity))
    return inference.create_predictor(config)


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


class PaddleInferenceRunner:
    """A Paddle Inference predictor: ``run(batch [N, 3, H, W]) -> the first output``. It leaves
    the process's MKL/OpenMP thread count as gcseg's CPU set-up chose it (see
    :func:`process_math_threads`)."""

    def __init__(self, model_dir: str, **predictor_options) -> None:
        with process_math_threads():
            self.predictor = create_predictor(model_dir, **predictor_options)

    def run(self, batch: np.ndarray) -> np.ndarray:
        handle = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        handle.reshape(list(batch.shape))
        handle.copy_from_cpu(np.ascontiguousarray(batch, dtype=np.float32))
        with process_math_threads():
            self.predictor.run()
        return self.predictor.get_output_handle(
            self.predictor.get_output_names()[0]).copy_to_cpu()


def open_runner(model_dir: str, runtime: str = "auto", **predictor_options):
    """The runner for ``model_dir`` (see the module docstring); ``runtime`` is ``auto``,
    ``paddle`` or ``onnxruntime``. ``cpu_threads`` applies to both; the other options to
    Paddle Inference only, and asking ONNX Runtime for them is a one-line error."""
    if runtime not in RUNTIMES:
        raise UsageError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    deploy = read_deploy(model_dir)
    if runtime == "auto":
        runtime = "onnxruntime" if deploy["model"].endswith(".onnx") else "paddle"
    model_file = _model_file(model_dir, deploy, runtime)
    if runtime == "paddle":
        return PaddleInferenceRunner(model_dir, model_file=model_file, **predictor_options)
    unsupported = sorted(name for name, value in PADDLE_ONLY_OPTIONS.items()
                         if predictor_options.get(name, not value) == value)
    if unsupported:
        raise UsageError(f"{model_dir}: {', '.join(unsupported)} apply to Paddle Inference, not "
                         f"to ONNX Runtime (which runs on the CPU in float32)")
    from gcseg.deploy.onnx_runtime import OnnxRuntimeRunner
    return OnnxRuntimeRunner(os.path.join(model_dir, model_file),
                             cpu_threads=predictor_options.get("cpu_threads"))


class DeployedModel:
    """``deploy.yaml`` preprocessing + a runner: ``run(batch)`` and ``predict_file(path)``."""

    def __init__(self, model_dir: str, runtime: str = "auto", **predictor_options) -> None:
        self.deploy = read_deploy(model_dir)
        self.runner = open_runner(model_dir, runtime, **predictor_options)
        normalize = self.deploy["normalize"]
        self.mean = np.asarray(normalize["mean"], dtype=np.float32).reshape([-1, 1, 1])
        self.std = np.asarray(normalize["std"], dtype=np.float32).reshape([-1, 1, 1])

    def preprocess(self, image_path: str) -> np.ndarray:
        """``[1, 3, H, W]`` float32 normalised as the val transforms did."""
        image = np.asarray(Image.open(image_path).convert("RGB"), dtype=np.float32)
        if not self.deploy.get("to_rgb", True):
            image = image[:, :, ::-1]  # the model was trained on BGR (cv2) images
        chw = image.transpose(2, 0, 1) / 255.0
        return ((chw - self.mean) / self.std)[None].astype(np.float32)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The model's output for ``batch [N, 3, H, W]``."""
        return self.runner.run(batch)

    def predict_file(self, image_path: str) -> np.ndarray:
        """Class ids ``[H, W]`` of one image file (whatever the exported output op)."""
        output = self.run(self.preprocess(image_path))
        if self.deploy["output_op"] == "argmax":
            return output[0].astype(np.int64)
        return output[0].argmax(axis=0)


def infer_images(model_dir: str, image_paths: Sequence[str], save_dir: str,
                 runtime: str = "auto", **predictor_options) -> List[str]:
    """Segment ``image_paths`` with the exported model (``runtime``: see :func:`open_runner`);
    writes ``save_dir/<name>.png`` label images (pixel value = class id) and returns their
    paths."""
    model = DeployedModel(model_dir, runtime, **predictor_options)
    os.makedirs(save_dir, exist_ok=True)
    written = []
    for image_path in image_paths:
        label = model.predict_file(image_path)
        out_path = os.path.join(save_dir, Path(image_path).stem + ".png")
        Image.fromarray(label.astype(np.uint8)).save(out_path)
        written.append(out_path)
    return written
