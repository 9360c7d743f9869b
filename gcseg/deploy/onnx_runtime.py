"""Run an ONNX export (``export.py --format onnx``) with ONNX Runtime on the CPU.

onnxruntime is optional (``pip install "gcseg[onnx]"``); without it the runner is a one-line
error naming the extra. The session uses ``cpu_threads`` threads for each operator (default:
ONNX Runtime's, one per physical core) and one thread between operators: a GCNet forward is
a chain with no independent branches worth running side by side. ``verbose`` shows ONNX
Runtime's informational log (errors only otherwise).
"""
import importlib.util
from typing import Any, Optional

import numpy as np

from gcseg.deploy.onnx_export import missing_onnx_tool_message
from gcseg.errors import UsageError


def import_onnxruntime(purpose: str = "running an ONNX model") -> Any:
    """onnxruntime, or a one-line :class:`UsageError` naming the extra that installs it."""
    if importlib.util.find_spec("onnxruntime") is None:
        raise UsageError(missing_onnx_tool_message(purpose, "onnxruntime"))
    import onnxruntime
    return onnxruntime


class OnnxRuntimeRunner:
    """An ONNX Runtime CPU session: ``run(batch [N, 3, H, W]) -> the model's first output``;
    ``description`` says how it runs."""

    def __init__(self, onnx_path: str, cpu_threads: Optional[int] = None,
                 verbose: bool = False) -> None:
        onnxruntime = import_onnxruntime()
        options = onnxruntime.SessionOptions()
        if cpu_threads:
            options.intra_op_num_threads = int(cpu_threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 1 if verbose else 3  # info / errors only
        self.session = onnxruntime.InferenceSession(onnx_path, options,
                                                    providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        threads = self.session.get_session_options().intra_op_num_threads
        self.description = (f"ONNX Runtime {onnxruntime.__version__} on the CPU, "
                            f"{threads or 'its default number of'} threads, fp32")

    def run(self, batch: np.ndarray) -> np.ndarray:
        feed = {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}
        return self.session.run(None, feed)[0]
