"""Optimizers and learning-rate schedulers a config can name by ``type:``.

Every Paddle optimizer and lr scheduler is available under its Paddle name. Two PaddleSeg
conventions are kept: ``type: SGD`` (or ``sgd``) with a ``momentum`` key means momentum SGD, and
an lr scheduler may carry ``warmup_iters`` / ``warmup_start_lr`` for a linear warmup.
``PolynomialDecay`` decays over the run's ``iters`` (less the warmup) unless ``decay_steps`` is set.
"""
import inspect
from typing import Any, Callable, Optional

import paddle

from gcseg.errors import ConfigError
from gcseg.registry import LR_SCHEDULERS, OPTIMIZERS


def _with_signature(factory: Callable, template: Callable, extra: list, drop: tuple = ()) -> Callable:
    """Give ``factory`` the parameters of ``template`` (plus ``extra``) so configs are checked
    against the real argument names."""
    params = [p for name, p in inspect.signature(template).parameters.items()
              if name not in drop and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    params += [p for p in extra if p.name not in {q.name for q in params}]
    params.sort(key=lambda p: (p.kind, p.default is not p.empty))
    factory.__signature__ = inspect.Signature(params)
    return factory


def _keyword(name: str, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)


def _optimizer_factory(cls: type) -> Callable:
    def build(**kwargs):
        return cls(**kwargs)

    build.__name__ = cls.__name__
    return _with_signature(build, cls.__init__, [], drop=("self",))


def _sgd(**kwargs):
    """SGD; with ``momentum`` it is Paddle's Momentum optimizer, as in PaddleSeg configs."""
    if "momentum" in kwargs:
        return paddle.optimizer.Momentum(**kwargs)
    return paddle.optimizer.SGD(**kwargs)


def _register_optimizers() -> None:
    for name in dir(paddle.optimizer):
        cls = getattr(paddle.optimizer, name)
        if (inspect.isclass(cls) and issubclass(cls, paddle.optimizer.Optimizer)
                and cls is not paddle.optimizer.Optimizer and name != "SGD"):
            OPTIMIZERS.register(_optimizer_factory(cls), name=name)
    _sgd.__name__ = "SGD"
    momentum_args = [p for name, p in inspect.signature(paddle.optimizer.Momentum.__init__)
                     .parameters.items() if name in ("momentum", "use_nesterov")]
    momentum_args = [p.replace(kind=p.KEYWORD_ONLY) for p in momentum_args]
    OPTIMIZERS.register(_with_signature(_sgd, paddle.optimizer.SGD.__init__, momentum_args,
                                        drop=("self",)), name="SGD")


def _scheduler_factory(cls: type) -> Callable:
    def build(total_iters: int, warmup_iters: int = 0, warmup_start_lr: Optional[float] = None,
              **kwargs):
        if cls is paddle.optimizer.lr.PolynomialDecay:
            kwargs.setdefault("decay_steps", max(total_iters - warmup_iters, 1))
        scheduler = cls(**kwargs)
        if not warmup_iters:
            return scheduler
        if warmup_start_lr is None:
            raise ConfigError("lr_scheduler.warmup_start_lr: required when warmup_iters is set")
        return paddle.optimizer.lr.LinearWarmup(
            learning_rate=scheduler, warmup_steps=warmup_iters, start_lr=warmup_start_lr,
            end_lr=kwargs["learning_rate"])

    build.__name__ = cls.__name__
    extra = [_keyword("total_iters"), _keyword("warmup_iters", 0),
             _keyword("warmup_start_lr", None)]
    drop = ("self", "last_epoch", "verbose")
    if cls is paddle.optimizer.lr.PolynomialDecay:
        signature = _with_signature(build, cls.__init__, extra, drop=drop + ("decay_steps",))
        params = list(signature.__signature__.parameters.values()) + [_keyword("decay_steps", None)]
        params.sort(key=lambda p: (p.kind, p.default is not p.empty))
        build.__signature__ = inspect.Signature(params)
        return build
    return _with_signature(build, cls.__init__, extra, drop=drop)


def _register_lr_schedulers() -> None:
    base = paddle.optimizer.lr.LRScheduler
    for name in dir(paddle.optimizer.lr):
        cls = getattr(paddle.optimizer.lr, name)
        if inspect.isclass(cls) and issubclass(cls, base) and cls is not base:
            LR_SCHEDULERS.register(_scheduler_factory(cls), name=name)


_register_optimizers()
_register_lr_schedulers()
