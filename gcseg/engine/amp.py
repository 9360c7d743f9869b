"""Mixed precision as one optional object on the training step's single code path.

``Precision("fp32")`` autocasts nothing and steps the optimizer plainly; fp16 adds a GradScaler
(loss scaling), bf16 needs none. fp16 runs only on a GPU; bf16 on a CPU only where the CPU has
bf16 instructions and Paddle's autocast really computes in bf16 there. Paddle 2.6.2 and 3.3.1
autocast nothing on a CPU (O1 and O2 alike: a conv stays float32, even on an AVX512-BF16 + AMX
Xeon), so ``--precision bf16`` on a CPU is refused with the reason rather than run as fp32
under the name bf16.
"""
import contextlib
import functools
import warnings
from typing import ContextManager, Optional

import paddle

from gcseg.cpu_env import BF16_CPU_FLAGS, cpu_supports_bf16
from gcseg.errors import UsageError

PRECISIONS = ("fp32", "fp16", "bf16")
AMP_LEVELS = ("O1", "O2")
_DTYPES = {"fp16": "float16", "bf16": "bfloat16"}


@functools.lru_cache(maxsize=None)
def autocast_computes_in(dtype: str, amp_level: str) -> bool:
    """Whether a conv under Paddle's autocast (``amp_level``) on the current device outputs
    ``dtype``: a probe of what Paddle does, not of what it accepts."""
    conv = paddle.nn.Conv2D(4, 4, 1)
    if amp_level == "O2":
        conv = paddle.amp.decorate(models=conv, level="O2", dtype=dtype)
    with warnings.catch_warnings(), paddle.no_grad():
        warnings.simplefilter("ignore")  # Paddle warns when autocast has no effect here
        with paddle.amp.auto_cast(level=amp_level, dtype=dtype):
            output = conv(paddle.ones([1, 4, 2, 2]))
    return output.dtype == getattr(paddle, dtype)


def bf16_unsupported_reason(amp_level: str = "O1",
                            cpuinfo: str = "/proc/cpuinfo") -> Optional[str]:
    """Why ``--precision bf16`` cannot compute in bf16 here (None when it can)."""
    if paddle.get_device().startswith("gpu"):
        return None if paddle.amp.is_bfloat16_supported() else "this GPU has no bf16 support"
    if not cpu_supports_bf16(cpuinfo):
        return (f"this CPU has no bf16 instructions (neither {' nor '.join(BF16_CPU_FLAGS)} in "
                f"{cpuinfo})")
    if not autocast_computes_in("bfloat16", amp_level):
        return (f"Paddle {paddle.__version__}'s autocast computes nothing in bf16 on "
                f"{paddle.get_device()} (it would run fp32)")
    return None


def check_precision(precision: str, amp_level: str) -> None:
    """A one-line UsageError for a precision this Paddle build / device cannot train in."""
    if precision not in PRECISIONS:
        raise UsageError(f"--precision: expected one of {', '.join(PRECISIONS)}, "
                         f"got {precision!r}")
    if amp_level not in AMP_LEVELS:
        raise UsageError(f"--amp_level: expected O1 or O2, got {amp_level!r}")
    on_gpu = paddle.is_compiled_with_cuda() and paddle.get_device().startswith("gpu")
    if precision == "fp16" and not on_gpu:
        raise UsageError(f"--precision fp16 needs a GPU (device is {paddle.get_device()}); "
                         "use --precision fp32")
    reason = bf16_unsupported_reason(amp_level) if precision == "bf16" else None
    if reason:
        raise UsageError(f"--precision bf16 is not supported here: {reason}; use --precision "
                         "fp32")


class Precision:
    """Autocast for the forward pass and the backward + optimizer step, scaled for fp16."""

    def __init__(self, precision: str = "fp32", amp_level: str = "O1") -> None:
        check_precision(precision, amp_level)
        self.precision, self.amp_level = precision, amp_level
        self.scaler: Optional[paddle.amp.GradScaler] = (
            paddle.amp.GradScaler(init_loss_scaling=2.0 ** 15) if precision == "fp16" else None)

    @property
    def enabled(self) -> bool:
        return self.precision != "fp32"

    def decorate(self, model: paddle.nn.Layer, optimizer: paddle.optimizer.Optimizer):
        """O2 keeps the weights in low precision (with fp32 master weights in the optimizer)."""
        if self.enabled and self.amp_level == "O2":
            return paddle.amp.decorate(models=model, optimizers=optimizer, level="O2",
                                       dtype=_DTYPES[self.precision])
        return model, optimizer

    def autocast(self) -> ContextManager:
        if not self.enabled:
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(level=self.amp_level, dtype=_DTYPES[self.precision])

    def backward_and_step(self, loss: paddle.Tensor,
                          optimizer: paddle.optimizer.Optimizer) -> None:
        if self.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
        optimizer.clear_grad()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def set_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
