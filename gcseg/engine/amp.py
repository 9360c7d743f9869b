"""Mixed precision as one optional object on the training step's single code path.

``Precision("fp32")`` autocasts nothing and steps the optimizer plainly; fp16 adds a GradScaler
(loss scaling), bf16 needs none. fp16 runs only on a GPU; bf16 also on a CPU when Paddle
supports it there.
"""
import contextlib
from typing import ContextManager, Optional

import paddle

from gcseg.errors import UsageError

PRECISIONS = ("fp32", "fp16", "bf16")
AMP_LEVELS = ("O1", "O2")
_DTYPES = {"fp16": "float16", "bf16": "bfloat16"}


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
    if precision == "bf16" and not on_gpu and not paddle.amp.is_bfloat16_supported():
        raise UsageError(f"--precision bf16 is not supported on {paddle.get_device()} by this "
                         "Paddle build; use --precision fp32")


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
