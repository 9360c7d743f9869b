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
(a collective another rank never joins) is ended by :mod:`gcseg.engine.stopping`, which first
saves the checkpoint when the loop is between steps.
"""
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
from gcseg.engine import stopping
from gcseg.engine.amp import Precision
from gcseg.engine.checkpoint import Checkpointer
from gcseg.engine.distributed import (any_process, data_parallel, get_rank, get_world_size,
                                      is_main_process, sync_batch_norm)
from gcseg.engine.evaluator import evaluate, settings_from_config, summary_line
from gcseg.engine.failures import as_training_error
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

    @classmethod
    def from_config(cls, cfg: Any, **overrides: Any) -> "TrainSettings":
        """The config's ``train:`` / ``global:`` sections, overridden by non-None values."""
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise UsageError(f"train(): unknown setting(s) {', '.join(unknown)} "
                             f"(accepted: {', '.join(sorted(names))})")
        values = {**cfg.runtime("global"), **cfg.runtime("train")}
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
                 vdl: Optional[VdlWriter], num_workers: int, test_settings: Dict[str, Any],
                 save_dir: str, loader_timeout: float = DEFAULT_LOADER_TIMEOUT) -> None:
        self.dataset, self.save_interval = dataset, save_interval
        self.checkpointer, self.vdl, self.num_workers = checkpointer, vdl, num_workers
        self.loader_timeout = loader_timeout
        self.test_settings, self.vis_dir = test_settings, os.path.join(save_dir, VIS_SUBDIR)
        self.last_results: Optional[Dict[str, Any]] = None

    def after_step(self, trainer: "Trainer", step: StepResult) -> None:
        if trainer.iter % self.save_interval:
            return
        results = evaluate(trainer.model, self.dataset, num_workers=self.num_workers,
                           loader_timeout=self.loader_timeout, print_detail=False,
                           **self.test_settings)
        self.last_results = results
        if not is_main_process():
            return
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


# ----------------------------------------------------------------------------- the loop
def check_datasets(cfg: Any, do_eval: bool) -> None:
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


class Trainer:
    """Model, optimizer, data stream and hooks of one run; :meth:`train` runs it."""

    def __init__(self, cfg: Any, settings: TrainSettings) -> None:
        self.cfg, self.settings = cfg, settings
        self.rank, self.world_size = get_rank(), get_world_size()
        self.seed = DEFAULT_SEED if settings.seed is None else settings.seed
        seed_everything(self.seed)
        check_datasets(cfg, settings.do_eval)
        self.precision = Precision(settings.precision, settings.amp_level)
        model, self.optimizer = self.precision.decorate(sync_batch_norm(cfg.model), cfg.optimizer)
        self.model, self.lr_scheduler, self.loss_cfg = model, cfg.lr_scheduler, cfg.loss
        self.iters, self.batch_size = cfg.iters, cfg.batch_size
        self.checkpointer = Checkpointer(settings.save_dir, model, self.optimizer,
                                         keep_checkpoint_max=settings.keep_checkpoint_max,
                                         enabled=is_main_process())
        self.iter, position = self.resume(settings.resume_model)
        self.network = data_parallel(model)
        cfg.train_dataset.seed = self.seed
        self.loader = TrainLoader(cfg.train_dataset, self.batch_size, self.seed,
                                  num_workers=settings.num_workers, rank=self.rank,
                                  world_size=self.world_size, start=position,
                                  timeout=settings.loader_timeout)
        self.position = self.loader.position  # of the batch after iteration ``iter``
        self.between_steps = False  # the weights are those of iteration ``iter``
        main = is_main_process()
        self.vdl = VdlWriter(settings.save_dir) if settings.use_vdl and main else None
        self.hooks = self.build_hooks()

    def resume(self, directory: Optional[str]) -> tuple:
        """``(iter, data position)`` of ``directory`` after restoring it, or a fresh start."""
        if not directory:
            return 0, (0, 0)
        state = self.checkpointer.load(directory)
        self.precision.set_state_dict(state.get("amp", {}))
        if state.get("seed", self.seed) != self.seed:
            logger.warning("resuming with seed %d, but %s was trained with seed %d: the data "
                           "order changes", self.seed, directory, state["seed"])
        if is_main_process():
            logger.info("resumed from %s at iter %d", directory, state["iter"])
        return state["iter"], tuple(state.get("position", (0, state["iter"])))

    def build_hooks(self) -> List[Hook]:
        settings, main, vdl = self.settings, is_main_process(), self.vdl
        hooks: List[Hook] = [LogHook(settings.log_iters, vdl)] if main else []
        hooks.append(CheckpointHook(self.checkpointer, settings.save_interval))
        if settings.do_eval:
            hooks.append(EvalHook(self.cfg.val_dataset, settings.save_interval,
                                  self.checkpointer, vdl, settings.num_workers,
                                  settings_from_config(self.cfg), settings.save_dir,
                                  settings.loader_timeout))
        return hooks

    @property
    def epoch(self) -> int:
        """1-based epoch of the latest step."""
        return (self.iter - 1) // self.loader.batches_per_epoch + 1

    def train_state(self) -> Dict[str, Any]:
        """What a checkpoint holds beyond weights and optimizer (see Checkpointer)."""
        return {"position": self.position, "seed": self.seed,
                "amp": self.precision.state_dict()}

    def last_checkpoint(self) -> Optional[str]:
        found = self.checkpointer.checkpoints()
        return found[-1] if found else None


    def run_step(self, images: paddle.Tensor, labels: paddle.Tensor) -> StepResult:
        """One iteration: forward, loss, (finite check), backward, optimizer and lr step."""
        paddle.seed(step_seed(self.seed, self.iter, self.rank))
        with self.precision.autocast():
            logits_list = self.network(images)  # [main, aux], each [N, K, H, W]
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
        while self.iter < self.iters:
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
        evals = [hook.last_results for hook in self.hooks if isinstance(hook, EvalHook)]
        return {"iter": self.iter, "save_dir": self.settings.save_dir,
                "last_checkpoint": self.last_checkpoint(), "best": self.checkpointer.best(),
                "last_eval": evals[0] if evals else None}


def seed_everything(seed: int) -> None:
    """Seed Paddle, numpy and Python's random (model initialisation, host-side draws)."""
    paddle.seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def train(cfg: Any, **settings: Any) -> Dict[str, Any]:
    """Train ``cfg``'s model. ``settings`` are :class:`TrainSettings` fields; unset (or None)
    ones come from the config's ``train:`` / ``global:`` sections (PaddleSeg's runtime.yml).

    Returns ``{"iter", "save_dir", "last_checkpoint", "best", "last_eval"}``.
    """
    return Trainer(cfg, TrainSettings.from_config(cfg, **settings)).train()
