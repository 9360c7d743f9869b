"""Stand-in for mmcv.ops in the MMSeg oracle environment (mmcv-lite has no compiled ops).

mmsegmentation imports ``point_sample`` and ``sigmoid_focal_loss`` at start-up and guards its
other ``mmcv.ops`` imports with ``except ModuleNotFoundError``. GCNet uses none of them, so every
name here fails loudly when used instead of giving a wrong answer.
"""


def _unavailable(name: str):
    def op(*args, **kwargs):
        raise RuntimeError(f"mmcv.ops.{name} is not available in the mmseg oracle (mmcv-lite)")
    op.__name__ = name
    return op


point_sample = _unavailable("point_sample")
sigmoid_focal_loss = _unavailable("sigmoid_focal_loss")


def __getattr__(name: str):
    raise ModuleNotFoundError(f"mmcv.ops.{name} needs mmcv's compiled ops (mmcv-lite has none)")
