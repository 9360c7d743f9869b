"""Checkpointer: the one object that writes, prunes and reads training checkpoints.

Layout (PaddleSeg's, plus one file of our own)::

    <save_dir>/iter_<N>/model.pdparams     model weights
    <save_dir>/iter_<N>/model.pdopt        optimizer state (with the lr scheduler's)
    <save_dir>/iter_<N>/train_state.pkl    iteration, data position, seed, RNG and AMP states
    <save_dir>/best_model/model.pdparams   the weights with the best validation mIoU
    <save_dir>/best_model/best_model.json  {"iter": N, "mIoU": ...}

With ``--use_ema`` (PaddleSeg's names): ``iter_<N>/ema_model.pdparams`` and
``ema_best_model/ema_model.pdparams`` (+ ``best_model.json``), the best EMA weights by mIoU.

Every directory is written under a temporary name, flushed to disk and renamed into place, so a
directory with a final name is always complete. A crash leaves at most a ``.tmp-*`` directory,
or (killed between the two renames that replace ``best_model``) a ``best_model.stale-*`` one;
the next run's Checkpointer deletes the first and puts the second back. Weights holding NaN or
Inf are never saved. PaddleSeg's own ``iter_<N>`` checkpoints (no ``train_state.pkl``) resume
too.
"""
import contextlib
import json
import logging
import os
import pickle
import random
import re
import shutil
import tempfile
import warnings
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import paddle

from gcseg.engine.failures import disk_full_error
from gcseg.errors import CheckpointError, TrainingError
from gcseg.staging import make_staging_dir
from gcseg.models.weights import load_weights

logger = logging.getLogger(__name__)

MODEL_FILE = "model.pdparams"
OPTIMIZER_FILE = "model.pdopt"
STATE_FILE = "train_state.pkl"
BEST_DIR = "best_model"
BEST_INFO_FILE = "best_model.json"
_ITER_DIR = re.compile(r"^iter_(\d+)$")
_TMP_PREFIX = ".tmp-"
_STALE = re.compile(r"^(.+)\.stale-\d+$")


def rng_states() -> Dict[str, Any]:
    """Host RNG states. Paddle's generator needs none: the trainer reseeds it every step."""
    return {"numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_states(states: Dict[str, Any]) -> None:
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def parameter_names(model: paddle.nn.Layer) -> Dict[str, str]:
    """``{Paddle's unique parameter name: state_dict key}``. The optimizer state is keyed by the
    unique names (``conv2d_64.w_0_velocity_0``), which depend on how many layers the process
    built before; the keys do not."""
    return {param.name: key for key, param in model.named_parameters()}


def _rename_key(key: str, renames: Dict[str, str]) -> str:
    """``<param name>_<accumulator>`` (or a bare param name) with the param name replaced."""
    if key in renames:
        return renames[key]
    for end in (i for i, char in enumerate(key) if char == "_"):
        if key[:end] in renames:
            return renames[key[:end]] + key[end:]
    return key


def rename_optimizer_state(state: Dict[str, Any], saved_names: Dict[str, str],
                           model: paddle.nn.Layer) -> Dict[str, Any]:
    """Re-key an optimizer state saved with ``saved_names`` for ``model``'s parameter names."""
    current = {key: name for name, key in parameter_names(model).items()}
    renames = {old: current[key] for old, key in saved_names.items() if key in current}
    renamed = {_rename_key(key, renames): value for key, value in state.items()}
    if isinstance(state.get("master_weights"), dict):
        renamed["master_weights"] = {_rename_key(key, renames): value
                                     for key, value in state["master_weights"].items()}
    return renamed


def replace_dir(source: str, target: str) -> None:
    """Move the finished directory ``source`` to ``target``, replacing an older ``target``
    (kept as ``<target>.stale-<pid>`` between the two renames, see :func:`recover_save_dir`)."""
    if not os.path.isdir(target):
        os.replace(source, target)
        return
    stale = f"{target}.stale-{os.getpid()}"
    os.replace(target, stale)
    os.replace(source, target)
    shutil.rmtree(stale)


def recover_save_dir(save_dir: str) -> None:
    """Undo what a killed writer left in ``save_dir``: a ``<name>.stale-<pid>`` whose ``<name>``
    is gone is the last complete copy and moves back; other stale and ``.tmp-*`` directories
    are deleted."""
    if not os.path.isdir(save_dir):
        return
    for entry in sorted(os.listdir(save_dir)):
        path, stale = os.path.join(save_dir, entry), _STALE.match(entry)
        if stale and not os.path.exists(os.path.join(save_dir, stale.group(1))):
            os.replace(path, os.path.join(save_dir, stale.group(1)))
            logger.warning("restored %s left by an interrupted save", stale.group(1))
        elif stale or entry.startswith(_TMP_PREFIX):
            shutil.rmtree(path, ignore_errors=True)


def flush_to_disk(directory: str) -> None:
    """fsync every file in ``directory`` and the directory itself, so that the rename which
    publishes it cannot reach the disk before its contents."""
    for name in os.listdir(directory):
        with open(os.path.join(directory, name), "rb") as file:
            os.fsync(file.fileno())
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def non_finite_parameters(model: paddle.nn.Layer) -> List[str]:
    """Names of ``model``'s parameters and buffers holding NaN or Inf."""
    return [name for name, value in model.state_dict().items()
            if paddle.is_floating_point(value) and not bool(paddle.isfinite(value).all())]


def _load_pickle(path: str) -> Dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return pickle.load(file)
    except Exception as error:  # a damaged pickle raises many types, not only UnpicklingError
        raise CheckpointError(f"{path}: cannot read training state "
                              f"({type(error).__name__}: {str(error)[:120]})") from None


class Checkpointer:
    """Saves ``iter_<N>`` checkpoints, keeps the newest ``keep_checkpoint_max``, tracks
    ``best_model`` by mIoU and restores all of it for ``--resume_model``.

    Only the process with ``enabled=True`` (rank 0) writes; every rank can load.
    """

    def __init__(self, save_dir: str, model: paddle.nn.Layer,
                 optimizer: paddle.optimizer.Optimizer, *, keep_checkpoint_max: int = 5,
                 enabled: bool = True,
                 extra_models: Optional[Dict[str, paddle.nn.Layer]] = None) -> None:
        """``extra_models``: ``{file name: layer}`` saved in every ``iter_<N>`` beside the model
        (the EMA weights) and restored by :meth:`load` when the checkpoint has the file."""
        self.save_dir, self.model, self.optimizer = save_dir, model, optimizer
        self.extra_models = dict(extra_models or {})
        self.keep_checkpoint_max = keep_checkpoint_max
        self.enabled = enabled
        if enabled:
            recover_save_dir(save_dir)

    # ------------------------------------------------------------------ writing
    def _write_dir(self, name: str, files: Dict[str, Any]) -> str:
        """Write ``{file name: object}`` into ``<save_dir>/<name>`` atomically."""
        self._check_finite(name)
        try:
            os.makedirs(self.save_dir, exist_ok=True)
        except OSError as error:
            raise CheckpointError(f"--save_dir {self.save_dir}: cannot create it "
                                  f"({error.strerror})") from None
        tmp = make_staging_dir(self.save_dir, f"{_TMP_PREFIX}{name}-")
        try:
            for file_name, obj in files.items():
                path = os.path.join(tmp, file_name)
                if file_name.endswith(".json"):
                    with open(path, "w", encoding="utf-8") as file:
                        json.dump(obj, file, indent=2)
                elif file_name.endswith(".pkl"):
                    with open(path, "wb") as file:
                        pickle.dump(obj, file)
                else:
                    paddle.save(obj, path)
            flush_to_disk(tmp)
            target = os.path.join(self.save_dir, name)
            replace_dir(tmp, target)
        except OSError as error:
            disk_full = disk_full_error(error, os.path.join(self.save_dir, name))
            raise disk_full or CheckpointError(
                f"{os.path.join(self.save_dir, name)}: cannot write the checkpoint "
                f"({error.strerror or error})") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target

    def _check_finite(self, name: str) -> None:
        bad = non_finite_parameters(self.model)
        if bad:
            last = self.checkpoints()[-1:] or ["none"]
            raise TrainingError(f"{name}: not saved, the weights hold NaN or Inf "
                                f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); "
                                f"training stopped; last checkpoint: {last[0]}")

    def save(self, iteration: int, train_state: Dict[str, Any]) -> Optional[str]:
        """Write ``iter_<iteration>`` (model, optimizer, ``train_state`` + RNG) and prune."""
        if not self.enabled:
            return None
        state = {**train_state, "iter": iteration, "rng": rng_states(),
                 "param_names": parameter_names(self.model)}
        extra = {name: layer.state_dict() for name, layer in self.extra_models.items()}
        path = self._write_dir(f"iter_{iteration}", {
            MODEL_FILE: self.model.state_dict(), OPTIMIZER_FILE: self.optimizer.state_dict(),
            STATE_FILE: state, **extra})
        self.prune()
        logger.info("saved checkpoint %s", path)
        return path

    def checkpoints(self) -> List[str]:
        """The ``iter_<N>`` directories in ``save_dir``, oldest first."""
        if not os.path.isdir(self.save_dir):
            return []
        found = [(int(m.group(1)), name) for name in os.listdir(self.save_dir)
                 if (m := _ITER_DIR.match(name)) and os.path.isdir(
                     os.path.join(self.save_dir, name))]
        return [os.path.join(self.save_dir, name) for _, name in sorted(found)]

    def prune(self) -> None:
        if self.keep_checkpoint_max <= 0:
            return
        for path in self.checkpoints()[:-self.keep_checkpoint_max]:
            # renamed first, so a crash mid-delete leaves no half-deleted iter_<N> behind
            doomed = tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}delete-{os.path.basename(path)}-",
                                      dir=self.save_dir)
            os.replace(path, os.path.join(doomed, "checkpoint"))
            shutil.rmtree(doomed)

    # ------------------------------------------------------------------ best model
    def best(self, directory: str = BEST_DIR) -> Optional[Dict[str, Any]]:
        """``{"iter": N, "mIoU": m}`` of the saved best model (in ``directory``), if any."""
        path = os.path.join(self.save_dir, directory, BEST_INFO_FILE)
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as file:
            return json.load(file)

    def save_best(self, iteration: int, miou: float, model: Optional[paddle.nn.Layer] = None,
                  directory: str = BEST_DIR, file_name: str = MODEL_FILE) -> bool:
        """Make these weights (``model``'s, by default the trained model's) the best in
        ``directory`` if ``miou`` beats the best saved there."""
        best = self.best(directory)
        if not self.enabled or (best is not None and miou <= best["mIoU"]):
            return False
        model = self.model if model is None else model
        self._write_dir(directory, {file_name: model.state_dict(),
                                    BEST_INFO_FILE: {"iter": iteration, "mIoU": miou}})
        logger.info("[EVAL] new %s: mIoU %.4f at iter %d", directory, miou, iteration)
        return True

    # ------------------------------------------------------------------ reading
    def load(self, directory: str) -> Dict[str, Any]:
        """Restore model, optimizer and RNG from ``directory``; returns its training state."""
        directory = os.path.normpath(directory)
        optimizer_path = os.path.join(directory, OPTIMIZER_FILE)
        if not os.path.isdir(directory) or not os.path.isfile(optimizer_path):
            raise CheckpointError(f"{directory}: not a checkpoint directory (expected "
                                  f"{MODEL_FILE} and {OPTIMIZER_FILE} inside)")
        load_weights(self.model, os.path.join(directory, MODEL_FILE), what="model")
        for name, layer in self.extra_models.items():
            if os.path.isfile(os.path.join(directory, name)):
                load_weights(layer, os.path.join(directory, name), what="model")
        state = self._train_state(directory)
        try:
            optimizer_state = paddle.load(optimizer_path)
            if "param_names" in state:
                optimizer_state = rename_optimizer_state(optimizer_state, state["param_names"],
                                                         self.model)
            with _warmup_state_taken_whole(self.optimizer):
                self.optimizer.set_state_dict(optimizer_state)
        except Exception as error:  # paddle raises many types for a corrupt or foreign file
            raise CheckpointError(f"{optimizer_path}: cannot restore the optimizer "
                                  f"({type(error).__name__}: {str(error)[:120]})") from None
        if "rng" in state:
            set_rng_states(state["rng"])
        return state

    def _train_state(self, directory: str) -> Dict[str, Any]:
        state_path = os.path.join(directory, STATE_FILE)
        if os.path.isfile(state_path):
            return _load_pickle(state_path)
        match = _ITER_DIR.match(os.path.basename(directory))
        if match is None:
            raise CheckpointError(f"{directory}: no {STATE_FILE}, and the directory name does "
                                  "not say the iteration (expected iter_<N>)")
        return {"iter": int(match.group(1))}


@contextlib.contextmanager
def _warmup_state_taken_whole(optimizer: Any) -> Iterator[None]:
    """Silences Paddle's "unused values in state_dict" warning for a warmup scheduler, which
    every resume of a run with warmup printed: ``LinearWarmup.set_state_dict`` hands its whole
    state, the inner scheduler's under ``LinearWarmup_LR`` included, to the base class, which
    counts that key as unused, then restores the inner scheduler from it itself."""
    with warnings.catch_warnings():
        scheduler = getattr(optimizer, "_learning_rate", None)
        if isinstance(scheduler, paddle.optimizer.lr.LinearWarmup):
            warnings.filterwarnings("ignore", message="There are some unused values in state_dict")
        yield
