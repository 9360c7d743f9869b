"""Peak memory (``VmHWM``) of one process, and the child that loads an exported model and runs
one forward with ONNX Runtime or Paddle Inference.

Imports no Paddle: the ONNX Runtime child runs as a deployment with only onnxruntime would, and
says so by failing if anything it ran imported Paddle.
"""
import resource
import sys
from typing import Tuple

import numpy as np


def peak_rss_of_this_process_mb() -> float:
    """``VmHWM`` of this process. (``ru_maxrss`` is no good here: Linux carries the parent's
    peak into a child across fork + exec, so every child reported the benchmark's own peak.)"""
    try:
        with open("/proc/self/status", encoding="utf-8") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def deploy_memory_child(model_dir: str, runtime: str, size: Tuple[int, int],
                        cpu_threads: int) -> None:
    """Load ``model_dir`` with ``runtime`` (``onnxruntime`` or ``paddle``), run one
    ``[1, 3, H, W]`` batch of zeros (``size`` is W, H); prints the peak RSS in MB."""
    from gcseg.deploy.runtime import DeployedModel
    model = DeployedModel(model_dir, runtime, cpu_threads=cpu_threads)
    model.run(np.zeros([1, 3, size[1], size[0]], dtype=np.float32))
    if runtime == "onnxruntime" and "paddle" in sys.modules:
        raise RuntimeError("the ONNX Runtime child imported Paddle: its peak RSS would count it")
    print(peak_rss_of_this_process_mb())
