"""gcseg: GCNet semantic segmentation on PaddlePaddle, compatible with PaddleSeg configs and
weights.

Importing ``gcseg`` does not import Paddle: the scripts first set up the CPU environment
(:mod:`gcseg.cpu_env`), which only works before Paddle loads. The public names below are
imported on first use; the first one that needs Paddle checks the installed Paddle first
(:mod:`gcseg.paddle_install`): none, or the CPU and GPU builds over each other, raise one line
saying how to install or repair it.
"""
import importlib
import warnings
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "Config": "gcseg.config",
    "GcsegError": "gcseg.errors",
    "train": "gcseg.engine.trainer",
    "evaluate": "gcseg.engine.evaluator",
    "predict": "gcseg.engine.predict",
    "export_model": "gcseg.deploy.export",
    "load_weights": "gcseg.models.weights",
    "save_weights": "gcseg.models.weights",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'gcseg' has no attribute '{name}'")
    if name != "GcsegError":
        from gcseg.paddle_install import check_paddle
        for line in check_paddle():
            warnings.warn(line, stacklevel=2)
    return getattr(importlib.import_module(_PUBLIC[name]), name)
