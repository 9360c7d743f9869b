"""The training loop: a short step plus periodic hooks (logging, checkpoints, evaluation).

``train(cfg, **settings)`` is the library entry point behind ``scripts/train.py``. The
:class:`Trainer` owns model, optimizer, data stream and hooks; :meth:`Trainer.run_step` is the
whole of one iteration (forward, loss, backward, optimizer and lr step). Everything periodic is
a small :class:`Hook`. Runs are reproducible and resumable exactly: the data order depends on
``(seed, epoch)``, augmentation on ``(seed, epoch, idx)``, and Paddle's generator (dropout) is
reseeded from ``(seed, iter, rank)`` before every step.

A run that cannot go on ends with one line and keeps what it saved: a bad sample, a data loader
that produces nothing for ``loader_timeout`` seconds, or SIGINT / SIGTERM (on any rank: all
ranks agree before every step) ends the loop, the checkpoint is saved when steps were made
since the last one, and the error or signal is raised. A process stuck where it cannot check
(a collective another rank never joins) is ended by :mod:`gcseg.stopping`, which first
saves the checkpoint when the loop is between steps.

PaddleSeg's other training options are small pieces too: ``use_ema`` (an averaged copy of the
weights, evaluated and saved beside the model, :mod:`gcseg.engine.ema`), ``early_stop_intervals``,
``profiler_options`` (:mod:`gcseg.engine.profiler`), ``to_static_training`` (the forward pass
runs as a dygraph-to-static program) and ``repeats`` (each epoch visits the training list that
many times).
"""
import copy
import dataclasses
import logging
import math
import os
import random
import signal
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import paddle
from PIL import Image

from gcseg.data.check import quick_check
from gcseg.data.guard import DEFAULT_LOADER_TIMEOUT
from gcseg.data.loader import TrainLoader
from gcseg import stopping
from gcseg.engine.amp import Precision
from gcseg.engine.checkpoint import Checkpointer
from gcseg.engine.distributed import (any_process, data_parallel, get_rank, get_world_size,
                                      is_main_process, sync_batch_norm)
from gcseg.engine.ema import EMA_BEST_DIR, EMA_FILE, ExponentialMovingAverage
from gcseg.engine.evaluator import evaluate, summary_line
from gcseg.engine.failures import as_training_error
from gcseg.engine.inference import InferenceSettings
from gcseg.engine.profiler import StepProfiler, parse_profiler_options
from gcseg.engine.vdl import PANEL_TAG, VdlWriter, eval_scalars, prediction_panel
from gcseg.errors import DataError, TrainingError, UsageError
from gcseg.losses import combine

logger = logging.getLogger(__name__)

DEFAULT_SEED = 0
VIS_SUBDIR = "eval_vis"


@dataclasses.dataclass
class TrainSettings:
    """The run settings (PaddleSeg's tools/train.py flags / runtime.yml ``train:`` keys)."""

    save_dir: str = "./output"
    do_eval: bool = False
    resume_model: Optional[str] = None
    save_interval: int = 1000
    log_iters: int = 10
    keep_checkpoint_max: int = 5
    seed: Optional[int] = None
    precision: str = "fp32"
    amp_level: str = "O1"
    use_vdl: bool = False
    num_workers: int = 0
    loader_timeout: float = DEFAULT_LOADER_TIMEOUT
    use_ema: bool = False
    early_stop_intervals: Optional[int] = None
    profiler_options: Optional[str] = None
    to_static_training: bool = False
    repeats: int = 1
    data_format: str = "NCHW"
    use_multilabel: bool = False

    @classmethod
    def from_config(cls, cfg: Any, **overrides: Any) -> "TrainSettings":
        """The config's ``train:`` / ``global:`` sections (and its top-level
        ``to_static_training``, where PaddleSeg reads it), overridden by non-None values."""
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise UsageError(f"train(): unknown setting(s) {', '.join(unknown)} "
                             f"(accepted: {', '.join(sorted(names))})")
        values = {key: cfg.dic[key] for key in ("to_static_training",) if key in cfg.dic}
        values.update({**cfg.runtime("global"), **cfg.runtime("train")})
        values.update({key: value for key, value in overrides.items() if value is not None})
        settings = cls(**{name: values[name] for name in names if name in values})
        settings.check()
        return settings

    def check(self) -> None:
        if os.path.exists(self.save_dir) and not os.path.isdir(self.save_dir):
            raise UsageError(f"--save_dir {self.save_dir}: exists and is not a directory")
        for name in ("save_interval", "log_iters"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise UsageError(f"--{name}: expected a positive integer, got {value!r}")
        for name in ("keep_checkpoint_max", "num_workers"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise UsageError(f"--{name}: expected an integer >= 0, got {getattr(self, name)!r}")
        timeout = self.loader_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise UsageError(f"--loader_timeout: expected seconds above 0, got {timeout!r}")
        self.check_paddleseg_options()

    def check_paddleseg_options(self) -> None:
        """PaddleSeg's options: types, what GCNet cannot do, what needs what."""
        for name in ("use_ema", "to_static_training", "use_multilabel"):
            if not isinstance(getattr(self, name), bool):
                raise UsageError(f"{name}: expected true or false, got {getattr(self, name)!r}")
        if isinstance(self.repeats, bool) or not isinstance(self.repeats, int) or self.repeats < 1:
            raise UsageError(f"--repeats: expected a positive integer, got {self.repeats!r}")
        if self.early_stop_intervals is not None and (
                isinstance(self.early_stop_intervals, bool)
                or not isinstance(self.early_stop_intervals, int) or self.early_stop_intervals < 1):
            raise UsageError(f"--early_stop_intervals: expected a positive integer, "
                             f"got {self.early_stop_intervals!r}")
        if self.early_stop_intervals is not None and not self.do_eval:
            raise UsageError("--early_stop_intervals counts evaluations: it needs --do_eval")
        if self.data_format not in ("NCHW", "NHWC"):
            raise UsageError(f"--data_format: expected NCHW or NHWC, got {self.data_format!r}")
        if self.data_format == "NHWC":
            raise UsageError("--data_format NHWC: GCNet runs in NCHW only (so does PaddleSeg's, "
                             "whose NHWC is for DeepLabV3P alone); use NCHW")
        if self.use_multilabel:
            raise UsageError("--use_multilabel: not supported for GCNet (one class per pixel: "
                             "softmax cross-entropy)")
        if self.profiler_options is not None:
            parse_profiler_options(self.profiler_options, self.save_dir)


@dataclasses.dataclass
class StepResult:
    losses: List[float]  # per head, weighted by coef
    lr: float
    reader_cost: float = 0.0
    batch_cost: float = 0.0
    batch_size: int = 0

    @property
    def loss(self) -> float:
        return sum(self.losses)


def step_seed(seed: int, iteration: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, iteration, rank]).generate_state(1)[0])


def non_finite_error(iteration: int, losses: List[float], last_checkpoint: Optional[str],
                     on_this_rank: bool = True) -> TrainingError:
    heads = ", ".join(f"loss_{i} {value:.6g}" for i, value in enumerate(losses))
    where = (f"loss is {sum(losses)} ({heads})" if on_this_rank
             else "the loss of another process is NaN or Inf")
    return TrainingError(f"iter {iteration}: {where}; training stopped "
                         f"before updating the weights; last checkpoint: "
                         f"{last_checkpoint or 'none'}")


# ----------------------------------------------------------------------------- hooks
class Hook:
    """Something done now and then: after a step, and once at the end of training."""

    def after_step(self, trainer: "Trainer", step: StepResult) -> None:
        """Called after every step."""

    def after_train(self, trainer: "Trainer") -> None:
        """Called once when the loop ends (done or stopped by a signal)."""

    def state_dict(self) -> Dict[str, Any]:
        """What a checkpoint must hold for a resumed run to continue this hook exactly."""
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue from a checkpoint's :meth:`state_dict`."""


class LogHook(Hook):
    """One ``[TRAIN]`` line every ``log_iters`` steps (averages since the last line), also to
    VisualDL."""

    def __init__(self, log_iters: int, vdl: Optional[VdlWriter]) -> None:
        self.log_iters, self.vdl = log_iters, vdl
        self.window: List[StepResult] = []

    def after_step(self, trainer: "Trainer", step: StepResult) -> None:
        self.window.append(step)
        if trainer.iter % self.log_iters == 0:
            self.log(trainer)

    def log(self, trainer: "Trainer") -> None:
        count = len(self.window)
        losses = np.mean([s.losses for s in self.window], axis=0).tolist()
        batch_cost = sum(s.batch_cost for s in self.window) / count
        reader_cost = sum(s.reader_cost for s in self.window) / count
        ips = sum(s.batch_size for s in self.window) / max(batch_cost * count, 1e-12)
        lr, heads = self.window[-1].lr, ", ".join(f"loss_{i} {v:.4f}" for i, v in enumerate(losses))
        eta = time.strftime("%H:%M:%S", time.gmtime(batch_cost * (trainer.iters - trainer.iter)))
        logger.info("[TRAIN] epoch: %d, iter: %d/%d, loss: %.4f (%s), lr: %.6f, batch_cost: %.4f, "
                    "reader_cost: %.5f, ips: %.4f samples/sec | ETA %s", trainer.epoch,
                    trainer.iter, trainer.iters, sum(losses), heads, lr, batch_cost, reader_cost,
                    ips, eta)
        if self.vdl is not None:
            scalars = {"Train/loss": sum(losses), "Train/lr": lr, "Train/batch_cost": batch_cost,
                       "Train/reader_cost": reader_cost}
            if len(losses) > 1:
                scalars.update({f"Train/loss_{i}": v for i, v in enumerate(losses)})
            self.vdl.scalars(scalars, trainer.iter)
        self.window = []


class CheckpointHook(Hook):
    """``iter_<N>`` every ``save_interval`` steps and at the end (also after a stop signal)."""

    def __init__(self, checkpointer: Checkpointer, save_interval: int) -> None:
        self.checkpointer, self.save_interval = checkpointer, save_interval
        self.saved_iter = -1
        self.lock = threading.Lock()  # the stop watchdog may save from its thread

    def save(self, trainer: "Trainer") -> None:
        self.checkpointer.save(trainer.iter, trainer.train_state())
        self.saved_iter = trainer.iter

    def after_step(self, trainer: "Trainer", step: StepResult) -> None:
        if trainer.iter % self.save_interval == 0:
            with self.lock:
                self.save(trainer)

    def after_train(self, trainer: "Trainer") -> None:
        with self.lock:
            if self.saved_iter != trainer.iter:
                self.save(trainer)


class EvalHook(Hook):
    """Evaluate every ``save_interval`` steps with the config's ``test:`` settings (on every
    rank: each takes a shard); the main process logs, updates ``best_model``, writes VisualDL
    and saves the prediction-beside-label panel as ``<save_dir>/eval_vis/iter_<N>.png``."""

    def __init__(self, dataset: Any, save_interval: int, checkpointer: Checkpointer,
                 vdl: Optional[VdlWriter], num_workers: int, test_settings: InferenceSettings,
                 save_dir: str, loader_timeout: float = DEFAULT_LOADER_TIMEOUT,
                 auc_roc: bool = False) -> None:
        self.dataset, self.save_interval = dataset, save_interval
        self.checkpointer, self.vdl, self.num_workers = checkpointer, vdl, num_workers
        self.loader_timeout, self.auc_roc = loader_timeout, auc_roc
        self.test_settings, self.vis_dir = test_settings, os.path.join(save_dir, VIS_SUBDIR)
        self.last_results: Optional[Dict[str, Any]] = None
        self.last_iter = 0

    def model_of(self, trainer: "Trainer") -> paddle.nn.Layer:
        return trainer.model

    def after_step(self, trainer: "Trainer", step: StepResult) -> None:
        if trainer.iter % self.save_interval:
            return
        results = evaluate(self.model_of(trainer), self.dataset, self.test_settings,
                           num_workers=self.num_workers, loader_timeout=self.loader_timeout,
                           print_detail=False, auc_roc=self.auc_roc)
        self.last_results, self.last_iter = results, trainer.iter
        if is_main_process():
            self.publish(trainer, results)

    def publish(self, trainer: "Trainer", results: Dict[str, Any]) -> None:
        """Log, keep the best model, save the panel, write VisualDL (main process)."""
        logger.info(summary_line(results))
        self.checkpointer.save_best(trainer.iter, results["mIoU"])
        best = self.checkpointer.best()
        logger.info("[EVAL] the best model so far: mIoU %.4f at iter %d", best["mIoU"],
                    best["iter"])
        panel = prediction_panel(trainer.model, self.dataset)
        os.makedirs(self.vis_dir, exist_ok=True)
        Image.fromarray(panel).save(os.path.join(self.vis_dir, f"iter_{trainer.iter}.png"))
        if self.vdl is not None:
            self.vdl.scalars(eval_scalars(results), trainer.iter)
            self.vdl.image(PANEL_TAG, panel, trainer.iter)


class EmaHook(Hook):
    """Folds the weights into the exponential moving average after every step."""

    def __init__(self, ema: ExponentialMovingAverage) -> None:
        self.ema = ema

    def after_step(self, trainer: "Trainer", step: StepResult) -> None:
        self.ema.update(trainer.model, trainer.iter)


class EmaEvalHook(EvalHook):
    """Evaluates the EMA weights when the model is evaluated (PaddleSeg's ``--use_ema``): logs
    their mIoU, keeps the best in ``ema_best_model/ema_model.pdparams`` and writes
    ``Evaluate/Ema_mIoU`` / ``Evaluate/Ema_Acc`` to VisualDL."""

    def model_of(self, trainer: "Trainer") -> paddle.nn.Layer:
        return trainer.ema.model

    def publish(self, trainer: "Trainer", results: Dict[str, Any]) -> None:
        logger.info("[EVAL] EMA model: mIoU %.4f, Acc %.4f, Kappa %.4f", results["mIoU"],
                    results["Acc"], results["Kappa"])
        self.checkpointer.save_best(trainer.iter, results["mIoU"], trainer.ema.model,
                                    EMA_BEST_DIR, EMA_FILE)
        best = self.checkpointer.best(EMA_BEST_DIR)
        logger.info("[EVAL] the best EMA model so far: mIoU %.4f at iter %d", best["mIoU"],
                    best["iter"])
        if self.vdl is not None:
            self.vdl.scalars({"Evaluate/Ema_mIoU": results["mIoU"],
                              "Evaluate/Ema_Acc": results["Acc"]}, trainer.iter)


class EarlyStopHook(Hook):
    """PaddleSeg's ``--early_stop_intervals N``: after an evaluation whose mIoU beats the best
    so far the count restarts at 0, one below the best adds 1 (an equal one changes nothing),
    and training stops once the count reaches N (after that iteration's checkpoint)."""

    def __init__(self, evaluation: EvalHook, intervals: int) -> None:
        self.evaluation, self.intervals = evaluation, intervals
        self.best, self.count = -1.0, 0

    def after_step(self, trainer: "Trainer", step: StepResult) -> None:
        if self.evaluation.last_iter != trainer.iter:
            return
        miou = self.evaluation.last_results["mIoU"]
        if miou > self.best:
            self.best, self.count = miou, 0
        elif miou < self.best:
            self.count += 1
        if self.count >= self.intervals:
            trainer.stop_reason = (f"early stop: {self.count} evaluations below the best mIoU "
                                   f"{self.best:.4f} since it was reached")

    def state_dict(self) -> Dict[str, Any]:
        return {"best": self.best, "count": self.count}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.best, self.count = state.get("best", self.best), state.get("count", self.count)


class ProfilerHook(Hook):
    """``--profiler_options``: see :mod:`gcseg.engine.profiler`."""

    def __init__(self, profiler: StepProfiler) -> None:
        self.profiler = profiler

    def after_step(self, trainer: "Trainer", step: StepResult) -> None:
        if self.profiler.after_step():
            trainer.stop_reason = f"profiling finished (trace in {self.profiler.path})"

    def after_train(self, trainer: "Trainer") -> None:
        self.profiler.finish()


# ----------------------------------------------------------------------------- the loop
def quick_check_datasets(cfg: Any, do_eval: bool) -> None:
    """Cheap checks before the first step: the constructors have found every listed file, and
    :func:`~gcseg.data.check.quick_check` reads the first sample of each dataset used."""
    datasets = [cfg.train_dataset]
    if do_eval and not cfg.has_val_dataset:
        raise UsageError(f"--do_eval: {cfg.path} has no val_dataset section")
    datasets += [cfg.val_dataset] if do_eval else []
    for dataset in datasets:
        if hasattr(dataset, "file_list"):  # gcseg's datasets; a custom one checks itself
            quick_check(dataset)
    if not do_eval:
        return
    train_classes, val_classes = cfg.train_dataset.num_classes, cfg.val_dataset.num_classes
    if val_classes != train_classes:
        raise UsageError(f"{cfg.path}: val_dataset has {val_classes} classes, train_dataset "
                         f"{train_classes}")


def repeated(dataset: Any, repeats: int) -> Any:
    """``dataset`` with its file list ``repeats`` times over (PaddleSeg's ``--repeats``): an
    epoch is that many passes, each copy of a sample augmented by its own index."""
    if repeats == 1:
        return dataset
    if not isinstance(getattr(dataset, "file_list", None), list):
        raise UsageError(f"--repeats: the train_dataset ({type(dataset).__name__}) has no "
                         "file_list to repeat")
    copied = copy.copy(dataset)
    copied.file_list = dataset.file_list * repeats
    return copied


def static_forward(network: paddle.nn.Layer):
    """``network``'s forward as one dygraph-to-static program (PaddleSeg's
    ``to_static_training``), translated whole from its source (``full_graph=True``, as export
    does) rather than by Paddle's default bytecode translation, which may split it into pieces
    with dygraph between them. ``network`` itself stays dygraph, for evaluation and export."""
    return paddle.jit.to_static(network.forward, full_graph=True)


class Trainer:
    """Model, optimizer, data stream and hooks of one run; :meth:`train` runs it."""

    def __init__(self, cfg: Any, settings: TrainSettings) -> None:
        self.cfg, self.settings = cfg, settings
        self.rank, self.world_size = get_rank(), get_world_size()
        self.seed = DEFAULT_SEED if settings.seed is None else settings.seed
        seed_everything(self.seed)
        quick_check_datasets(cfg, settings.do_eval)
        self.precision = Precision(settings.precision, settings.amp_level)
        model, self.optimizer = self.precision.decorate(sync_batch_norm(cfg.model), cfg.optimizer)
        self.model, self.lr_scheduler, self.loss_cfg = model, cfg.lr_scheduler, cfg.loss
        self.iters, self.batch_size = cfg.iters, cfg.batch_size
        self.ema = ExponentialMovingAverage(model) if settings.use_ema else None
        self.checkpointer = Checkpointer(settings.save_dir, model, self.optimizer,
                                         keep_checkpoint_max=settings.keep_checkpoint_max,
                                         enabled=is_main_process(),
                                         extra_models={EMA_FILE: self.ema.model} if self.ema
                                         else None)
        self.stop_reason: Optional[str] = None  # set by a hook to end training early
        self.hook_states: Dict[str, Any] = {}
        self.iter, position = self.resume(settings.resume_model)
        self.network = data_parallel(model)
        self.forward = (static_forward(self.network) if settings.to_static_training
                        else self.network)
        cfg.train_dataset.seed = self.seed
        self.loader = TrainLoader(repeated(cfg.train_dataset, settings.repeats),
                                  self.batch_size, self.seed,
                                  num_workers=settings.num_workers, rank=self.rank,
                                  world_size=self.world_size, start=position,
                                  timeout=settings.loader_timeout)
        self.position = self.loader.position  # of the batch after iteration ``iter``
        self.between_steps = False  # the weights are those of iteration ``iter``
        main = is_main_process()
        self.vdl = VdlWriter(settings.save_dir) if settings.use_vdl and main else None
        self.hooks = self.build_hooks()
        for hook in self.hooks:
            hook.load_state_dict(self.hook_states.get(type(hook).__name__, {}))

    def resume(self, directory: Optional[str]) -> tuple:
        """``(iter, data position)`` of ``directory`` after restoring it, or a fresh start."""
        if not directory:
            return 0, (0, 0)
        state = self.checkpointer.load(directory)
        self.precision.set_state_dict(state.get("amp", {}))
        self.hook_states = state.get("hooks", {})
        if self.ema is not None and not os.path.isfile(os.path.join(directory, EMA_FILE)):
            self.ema.reset(self.model)  # a checkpoint without EMA weights: start from its own
        if state.get("seed", self.seed) != self.seed:
            logger.warning("resuming with seed %d, but %s was trained with seed %d: the data "
                           "order changes", self.seed, directory, state["seed"])
        if is_main_process():
            logger.info("resumed from %s at iter %d", directory, state["iter"])
        return state["iter"], tuple(state.get("position", (0, state["iter"])))

    def build_hooks(self) -> List[Hook]:
        """In PaddleSeg's order: profile, log, average, evaluate, early stop, then save."""
        settings, main, vdl = self.settings, is_main_process(), self.vdl
        hooks: List[Hook] = []
        if settings.profiler_options is not None:
            options = parse_profiler_options(settings.profiler_options, settings.save_dir)
            hooks.append(ProfilerHook(StepProfiler(options, self.rank)))
        hooks += [LogHook(settings.log_iters, vdl)] if main else []
        hooks += [EmaHook(self.ema)] if self.ema is not None else []
        if settings.do_eval:
            evaluation = (self.cfg.val_dataset, settings.save_interval, self.checkpointer, vdl,
                          settings.num_workers, InferenceSettings.from_config(self.cfg),
                          settings.save_dir, settings.loader_timeout,
                          self.cfg.runtime("test")["auc_roc"] is True)  # PaddleSeg's test_config
            model_evaluation = EvalHook(*evaluation)
            hooks.append(model_evaluation)
            hooks += [EmaEvalHook(*evaluation)] if self.ema is not None else []
            if settings.early_stop_intervals is not None:  # decided by the model's mIoU
                hooks.append(EarlyStopHook(model_evaluation, settings.early_stop_intervals))
        hooks.append(CheckpointHook(self.checkpointer, settings.save_interval))
        return hooks

    @property
    def epoch(self) -> int:
        """1-based epoch of the latest step."""
        return (self.iter - 1) // self.loader.batches_per_epoch + 1

    def train_state(self) -> Dict[str, Any]:
        """What a checkpoint holds beyond weights and optimizer (see Checkpointer)."""
        hooks = {type(hook).__name__: hook.state_dict() for hook in self.hooks}
        return {"position": self.position, "seed": self.seed,
                "amp": self.precision.state_dict(),
                "hooks": {name: state for name, state in hooks.items() if state}}

    def last_checkpoint(self) -> Optional[str]:
        found = self.checkpointer.checkpoints()
        return found[-1] if found else None


    def run_step(self, images: paddle.Tensor, labels: paddle.Tensor) -> StepResult:
        """One iteration: forward, loss, (finite check), backward, optimizer and lr step."""
        paddle.seed(step_seed(self.seed, self.iter, self.rank))
        with self.precision.autocast():
            logits_list = self.forward(images)  # [main, aux], each [N, K, H, W]
            total, per_head = combine(logits_list, labels, self.loss_cfg)
        losses = [float(loss) for loss in per_head]
        finite = all(math.isfinite(value) for value in losses)
        if any_process(not finite)[0]:
            raise non_finite_error(self.iter, losses, self.last_checkpoint(),
                                   on_this_rank=not finite)
        lr = self.optimizer.get_lr()
        self.precision.backward_and_step(total, self.optimizer)
        self.lr_scheduler.step()
        return StepResult(losses, lr, batch_size=int(images.shape[0]) * self.world_size)

    def train(self) -> Dict[str, Any]:
        """Run from the current iteration to ``iters``; returns a summary of the run."""
        self.model.train()
        try:
            with stopping.cooperative(), stopping.last_resort(self.save_between_steps):
                self._run()
        except Exception as error:  # out of memory / disk full: one line, not a traceback
            one_line = as_training_error(error, self.iter, self.last_checkpoint())
            if one_line is None:
                raise
            raise one_line from error
        finally:
            if self.vdl is not None:
                self.vdl.close()
        return self.summary()

    def _run(self) -> None:
        """The loop, then the hooks' ``after_train`` (the last checkpoint), also when a bad
        sample or a stop signal ended the loop; that ending is raised afterwards."""
        ending: Optional[BaseException] = None
        try:
            self._loop()
            if self.stop_reason is not None:
                logger.info("stopped at iter %d: %s", self.iter, self.stop_reason)
        except DataError as error:
            ending = error
        except stopping.StopRequested:
            signum = stopping.requested() or signal.SIGTERM  # SIGTERM: another rank's signal
            logger.info("stopped by %s at iter %d", signal.Signals(signum).name, self.iter)
            ending = stopping.signal_exception(signum)
        self.between_steps = False  # this thread saves now, not the watchdog's last resort
        for hook in self.hooks:
            hook.after_train(self)
        if ending is not None:
            any_process(False, False)  # a barrier: no rank exits (ending all) before rank 0 saved
            raise ending

    def _loop(self) -> None:
        batches = iter(self.loader)
        while self.iter < self.iters and self.stop_reason is None:
            start = time.perf_counter()
            self.between_steps = True
            images, labels = self._next_batch(batches)
            self.between_steps, self.position = False, self.loader.position
            reader_cost = time.perf_counter() - start
            self.iter += 1
            step = self.run_step(images, labels)
            step.reader_cost, step.batch_cost = reader_cost, time.perf_counter() - start
            for hook in self.hooks:
                hook.after_step(self, step)

    def _next_batch(self, batches: Iterator) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """The next batch, once every rank has one; else every rank raises the same way."""
        batch, failure = None, None
        try:
            batch = next(batches)
        except DataError as error:
            failure = error
        except stopping.StopRequested:
            pass
        if failure is not None or stopping.requested() is not None:
            self.save_between_steps()  # before the collective, in case a rank never joins it
        self.agree_to_stop(batch is None and failure is None, failure is not None, failure)
        return batch

    def agree_to_stop(self, stop: bool, failed: bool, failure: Optional[DataError] = None) -> None:
        """Raise on every rank when any rank was stopped (:class:`stopping.StopRequested`) or
        met a bad sample (``failure``, or a :class:`DataError` naming no file elsewhere)."""
        stop, failed = any_process(stop or stopping.requested() is not None, failed)
        if failed:
            raise failure or DataError("another process met a bad sample (its log names the file)")
        if stop:
            raise stopping.StopRequested

    def save_between_steps(self) -> None:
        """Save the checkpoint of the steps made since the last one, if the loop is between
        steps (the weights are complete). Also the stop watchdog's last resort, from its
        thread, when the main thread is stuck."""
        if self.between_steps:
            for hook in self.hooks:
                if isinstance(hook, CheckpointHook):
                    hook.after_train(self)

    def summary(self) -> Dict[str, Any]:
        evals = [hook.last_results for hook in self.hooks if type(hook) is EvalHook]
        return {"iter": self.iter, "save_dir": self.settings.save_dir,
                "last_checkpoint": self.last_checkpoint(), "best": self.checkpointer.best(),
                "last_eval": evals[0] if evals else None, "stop_reason": self.stop_reason}


def seed_everything(seed: int) -> None:
    """Seed Paddle, numpy and Python's random (model initialisation, host-side draws)."""
    paddle.seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def train(cfg: Any, **settings: Any) -> Dict[str, Any]:
    """Train ``cfg``'s model. ``settings`` are :class:`TrainSettings` fields; unset (or None)
    ones come from the config's ``train:`` / ``global:`` sections (PaddleSeg's runtime.yml).

    Returns ``{"iter", "save_dir", "last_checkpoint", "best", "last_eval", "stop_reason"}``.
    """
    return Trainer(cfg, TrainSettings.from_config(cfg, **settings)).train()
