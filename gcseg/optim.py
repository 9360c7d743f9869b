"""Optimizers and learning-rate schedulers a config can name by ``type:``.

Every Paddle optimizer and lr scheduler is available under its Paddle name. Two PaddleSeg
conventions are kept: ``type: SGD`` (or ``sgd``) with a ``momentum`` key means momentum SGD, and
an lr scheduler may carry ``warmup_iters`` / ``warmup_start_lr`` for a linear warmup (up to the
scheduler's initial learning rate).
``PolynomialDecay`` decays over the run's ``iters`` (less the warmup) unless ``decay_steps`` is set.
Arguments Paddle would only trip over at the first step (numbers, flags) are checked when the
optimizer or scheduler is built.

Every optimizer also takes PaddleSeg's two keys: ``custom_cfg``, a list of ``{name, lr_mult,
weight_decay_mult}`` giving the parameters whose names contain ``name`` their own lr and
weight-decay multipliers (:func:`parameter_groups`), and ``grad_clip_cfg``, e.g.
``{name: ClipGradByNorm, clip_norm: 1.0}`` (:func:`gradient_clip`).
"""
import inspect
import logging
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import paddle

from gcseg.errors import ConfigError
from gcseg.registry import LR_SCHEDULERS, OPTIMIZERS

logger = logging.getLogger(__name__)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_learning_rate(value: Any) -> bool:
    return _is_number(value) or isinstance(value, paddle.optimizer.lr.LRScheduler)


def _is_weight_decay(value: Any) -> bool:
    return _is_number(value) or isinstance(value, paddle.regularizer.WeightDecayRegularizer)


def _is_gradient_clip(value: Any) -> bool:
    return isinstance(value, paddle.nn.clip.ClipGradBase)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


_PLAIN_NUMBERS = ("momentum", "beta1", "beta2", "epsilon", "rho", "end_lr", "power", "gamma",
                  "eta_min", "start_lr")
# Paddle 2.6 takes an int ``weight_decay`` for a regularizer object, so these get floats.
FLOAT_ARGUMENTS = {"learning_rate", "weight_decay", *_PLAIN_NUMBERS}

# What an argument accepts, and how to say so. Paddle's own annotations name its classes in
# strings (3.x) or are absent (2.6), so the config's type check lets anything through, and a
# wrong value would only fail at the first step ("'str' object is not callable").
ARGUMENT_CHECKS: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "learning_rate": (_is_learning_rate, "a number or an lr scheduler"),
    "weight_decay": (_optional(_is_weight_decay),
                     "a number or a regularizer (paddle.regularizer.L2Decay)"),
    "grad_clip": (_optional(_is_gradient_clip),
                  "a gradient clip (paddle.nn.ClipGradByGlobalNorm) or null"),
    **{name: (_is_number, "a number") for name in _PLAIN_NUMBERS},
    **{name: (_is_count, "an integer") for name in (
        "warmup_iters", "warmup_steps", "step_size", "T_max")},
    **{name: (lambda value: isinstance(value, bool), "true or false") for name in (
        "use_nesterov", "lazy_mode", "multi_precision", "amsgrad", "centered", "cycle")},
    "warmup_start_lr": (_optional(_is_number), "a number"),
    "decay_steps": (_optional(_is_count), "an integer"),
    "total_iters": (_optional(_is_count), "an integer"),
    "custom_cfg": (_optional(lambda value: isinstance(value, list)),
                   "a list of {name, lr_mult, weight_decay_mult} mappings"),
    "grad_clip_cfg": (_optional(lambda value: isinstance(value, dict)),
                      "a mapping such as {name: ClipGradByNorm, clip_norm: 1.0}"),
}


def checked_arguments(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """``kwargs`` with whole numbers as floats where Paddle wants floats; a ConfigError
    ``"<argument>: expected <what>, got <value>"`` for the first value it would reject."""
    for name, value in kwargs.items():
        accepts, expected = ARGUMENT_CHECKS.get(name, (None, ""))
        if accepts is not None and not accepts(value):
            raise ConfigError(f"{name}: expected {expected}, got {value!r}")
    return {name: float(value) if name in FLOAT_ARGUMENTS and _is_count(value) else value
            for name, value in kwargs.items()}


# ----------------------------------------------------------------------------- PaddleSeg's keys
GRADIENT_CLIPS = ("ClipGradByValue", "ClipGradByNorm", "ClipGradByGlobalNorm")
_GROUP_KEYS = ("name", "lr_mult", "weight_decay_mult")


def gradient_clip(grad_clip_cfg: Dict[str, Any]) -> paddle.nn.clip.ClipGradBase:
    """``{name: ClipGradByNorm, clip_norm: 1.0}`` -> ``paddle.nn.ClipGradByNorm(clip_norm=1.0)``
    (PaddleSeg's ``grad_clip_cfg``: one of its three clip names and that class's arguments)."""
    options = dict(grad_clip_cfg)
    name = options.pop("name", None)
    if name not in GRADIENT_CLIPS:
        raise ConfigError(f"grad_clip_cfg: name: expected one of {', '.join(GRADIENT_CLIPS)}, "
                          f"got {name!r}")
    try:
        return getattr(paddle.nn, name)(**options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"grad_clip_cfg: cannot build {name}: {error}") from None


def _check_group(index: int, item: Any) -> None:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise ConfigError(f"custom_cfg: item {index}: expected a mapping with name: (part of "
                          f"parameter names) and lr_mult / weight_decay_mult, got {item!r}")
    unknown = sorted(set(item) - set(_GROUP_KEYS))
    if unknown:
        raise ConfigError(f"custom_cfg: item {index}: unknown key(s) {', '.join(unknown)} "
                          f"(accepted: {', '.join(_GROUP_KEYS)})")
    for key in ("lr_mult", "weight_decay_mult"):
        if key in item and not _is_number(item[key]):
            raise ConfigError(f"custom_cfg: item {index}: {key}: expected a number, "
                              f"got {item[key]!r}")


def _group_of(name: str, custom_cfg: Sequence[Dict[str, Any]]) -> int:
    """The first ``custom_cfg`` item whose name is part of ``name``; ``len(custom_cfg)`` if none."""
    return next((i for i, item in enumerate(custom_cfg) if item["name"] in name), len(custom_cfg))


def parameter_groups(parameters: Sequence[Any], custom_cfg: Optional[List[Dict[str, Any]]],
                     weight_decay: Any = None) -> Union[list, List[Dict[str, Any]]]:
    """What the optimizer's ``parameters`` should be, with PaddleSeg's ``custom_cfg`` meaning.

    ``parameters`` are the model's ``named_parameters()`` pairs (plain parameters do without
    ``custom_cfg``). Without ``custom_cfg``: every parameter. With it: one group per item, in
    order, holding the trainable parameters whose dotted name contains the item's ``name`` (the
    first item that matches wins), with ``learning_rate: lr_mult`` (a multiplier of the
    scheduler's lr, default 1) and, when both are given, ``weight_decay: weight_decay *
    weight_decay_mult``; then one group of the rest with the optimizer's own settings.
    """
    named = [item if isinstance(item, tuple) else (None, item) for item in parameters]
    if not custom_cfg:
        return [param for _, param in named]
    if any(name is None for name, _ in named):
        raise ConfigError("custom_cfg: needs the model's named parameters")
    for index, item in enumerate(custom_cfg):
        _check_group(index, item)
    members: List[list] = [[] for _ in range(len(custom_cfg) + 1)]
    for name, param in named:
        if not param.stop_gradient:
            members[_group_of(name, custom_cfg)].append(param)
    groups = []
    for item, params in zip(custom_cfg, members):
        if not params:
            logger.warning("optimizer.custom_cfg: name %r matches no trainable parameter",
                           item["name"])
        group = {"params": params, "learning_rate": item.get("lr_mult", 1.0)}
        if weight_decay is not None and item.get("weight_decay_mult") is not None:
            if not _is_number(weight_decay):
                raise ConfigError("custom_cfg: weight_decay_mult needs weight_decay to be a "
                                  f"number, got {weight_decay!r}")
            group["weight_decay"] = weight_decay * item["weight_decay_mult"]
        groups.append(group)
    groups.append({"params": members[-1]})
    return groups


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


def _construct_optimizer(cls: type, kwargs: Dict[str, Any]) -> paddle.optimizer.Optimizer:
    """``cls`` built from checked ``kwargs``, with ``custom_cfg`` turned into parameter groups
    and ``grad_clip_cfg`` into ``grad_clip``."""
    kwargs = checked_arguments(kwargs)
    custom_cfg, grad_clip_cfg = kwargs.pop("custom_cfg", None), kwargs.pop("grad_clip_cfg", None)
    if grad_clip_cfg is not None:
        if kwargs.get("grad_clip") is not None:
            raise ConfigError("grad_clip_cfg: set either grad_clip_cfg or grad_clip, not both")
        kwargs["grad_clip"] = gradient_clip(grad_clip_cfg)
    if "parameters" in kwargs:
        kwargs["parameters"] = parameter_groups(kwargs["parameters"], custom_cfg,
                                                kwargs.get("weight_decay"))
    elif custom_cfg:
        raise ConfigError("custom_cfg: needs the model's parameters")
    return cls(**kwargs)


# PaddleSeg's optimizer keys, on every optimizer besides the Paddle class's own arguments.
_PADDLESEG_KEYS = [_keyword("custom_cfg", None), _keyword("grad_clip_cfg", None)]


def _optimizer_factory(cls: type) -> Callable:
    def build(**kwargs):
        return _construct_optimizer(cls, kwargs)

    build.__name__ = cls.__name__
    return _with_signature(build, cls.__init__, _PADDLESEG_KEYS, drop=("self",))


def _sgd(**kwargs):
    """SGD; with ``momentum`` it is Paddle's Momentum optimizer, as in PaddleSeg configs."""
    if "momentum" in kwargs:
        return _construct_optimizer(paddle.optimizer.Momentum, kwargs)
    return _construct_optimizer(paddle.optimizer.SGD, kwargs)


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
    OPTIMIZERS.register(_with_signature(_sgd, paddle.optimizer.SGD.__init__,
                                        momentum_args + _PADDLESEG_KEYS, drop=("self",)),
                        name="SGD")


def _scheduler_factory(cls: type) -> Callable:
    def build(total_iters: Optional[int] = None, warmup_iters: int = 0,
              warmup_start_lr: Optional[float] = None, **kwargs):
        checked_arguments({"total_iters": total_iters, "warmup_iters": warmup_iters,
                           "warmup_start_lr": warmup_start_lr})
        kwargs = checked_arguments(kwargs)
        if cls is paddle.optimizer.lr.PolynomialDecay and kwargs.get("decay_steps") is None:
            if total_iters is None:
                raise ConfigError("decay_steps: required where the run's iters do not apply "
                                  "(a scheduler inside another)")
            kwargs["decay_steps"] = max(total_iters - warmup_iters, 1)
        scheduler = cls(**kwargs)
        if not warmup_iters:
            return scheduler
        if warmup_start_lr is None:
            raise ConfigError("warmup_start_lr: required when warmup_iters is set")
        return paddle.optimizer.lr.LinearWarmup(
            learning_rate=scheduler, warmup_steps=warmup_iters, start_lr=warmup_start_lr,
            end_lr=scheduler.base_lr)

    build.__name__ = cls.__name__
    extra = [_keyword("total_iters", None), _keyword("warmup_iters", 0),
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
