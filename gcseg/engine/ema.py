"""An exponential moving average (EMA) of the trained weights, as PaddleSeg's ``--use_ema``.

The EMA is a copy of the model, in eval mode and never trained. It starts as the model at the
first step of a run (or of a resumed run whose checkpoint has no EMA weights), and after step
``t`` (counted from the start of training) every floating-point entry of the state dict, batch
norm statistics included, becomes ``ema = d * ema + (1 - d) * weight`` with
``d = min(1 - 1 / (t + 1), 0.999)``: a plain average over the first steps, then a decay of 0.999.
It is evaluated beside the model and saved as ``ema_model.pdparams`` (see the Checkpointer).
"""
import copy

import paddle

EMA_FILE = "ema_model.pdparams"
EMA_BEST_DIR = "ema_best_model"
DECAY = 0.999


def ema_decay(iteration: int, decay: float = DECAY) -> float:
    """The weight of the old average after step ``iteration`` (1-based)."""
    return min(1.0 - 1.0 / (iteration + 1), decay)


class ExponentialMovingAverage:
    """``self.model``: the averaged copy of the model given at construction."""

    def __init__(self, model: paddle.nn.Layer, decay: float = DECAY) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model)
        self.model.eval()
        for param in self.model.parameters():
            param.stop_gradient = True

    def reset(self, model: paddle.nn.Layer) -> None:
        """Start the average again from ``model``'s current weights."""
        self._blend(model, 0.0)

    def update(self, model: paddle.nn.Layer, iteration: int) -> None:
        """Fold in ``model``'s weights after step ``iteration``."""
        self._blend(model, ema_decay(iteration, self.decay))

    @paddle.no_grad()
    def _blend(self, model: paddle.nn.Layer, old_weight: float) -> None:
        current = model.state_dict()
        for key, average in self.model.state_dict().items():
            if paddle.is_floating_point(average):
                value = current[key].detach().astype(average.dtype)
                average.set_value(average * old_weight + value * (1.0 - old_weight))
