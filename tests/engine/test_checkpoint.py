"""Checkpointer: PaddleSeg's layout, atomic directories, keep_checkpoint_max, best_model,
restoring, and SIGTERM saving a checkpoint of a real scripts/train.py run."""
import json
import os
import pickle
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import paddle
import pytest

from gcseg.engine.checkpoint import Checkpointer
from gcseg.errors import CheckpointError, TrainingError
from conftest import ROOT, write_tiny_config


def make_parts(seed: int = 0):
    """A small model and a momentum optimizer with one step taken (so it has velocities)."""
    paddle.seed(seed)
    model = paddle.nn.Sequential(paddle.nn.Linear(4, 3), paddle.nn.BatchNorm1D(3))
    scheduler = paddle.optimizer.lr.PolynomialDecay(0.1, decay_steps=10)
    optimizer = paddle.optimizer.Momentum(scheduler, momentum=0.9,
                                          parameters=model.parameters())
    model(paddle.rand([5, 4])).mean().backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


def test_layout_is_paddleseg_s_and_keep_checkpoint_max_prunes_the_oldest(tmp_path):
    model, optimizer, _ = make_parts()
    checkpointer = Checkpointer(str(tmp_path), model, optimizer, keep_checkpoint_max=2)
    for iteration in (10, 20, 30):
        checkpointer.save(iteration, {"position": (0, iteration)})
    assert sorted(os.listdir(tmp_path)) == ["iter_20", "iter_30"]
    assert sorted(os.listdir(tmp_path / "iter_30")) == ["model.pdopt", "model.pdparams",
                                                       "train_state.pkl"]
    weights = paddle.load(str(tmp_path / "iter_30" / "model.pdparams"))
    assert set(weights) == set(model.state_dict())
    assert "LR_Scheduler" in paddle.load(str(tmp_path / "iter_30" / "model.pdopt"))


def warmup_parts(steps: int):
    """A small model, a momentum optimizer under LinearWarmup(PolynomialDecay) (a config's
    ``warmup_iters``), ``steps`` scheduler steps taken."""
    model = paddle.nn.Linear(4, 3)
    scheduler = paddle.optimizer.lr.LinearWarmup(
        paddle.optimizer.lr.PolynomialDecay(0.1, decay_steps=20), warmup_steps=3, start_lr=0.0,
        end_lr=0.1)
    optimizer = paddle.optimizer.Momentum(scheduler, momentum=0.9,
                                          parameters=model.parameters())
    for _ in range(steps):
        scheduler.step()
    return model, optimizer, scheduler


def test_resuming_a_warmup_schedule_restores_both_schedulers_without_a_warning(tmp_path):
    """Paddle's LinearWarmup warned of "unused values" in its own state on every resume."""
    model, optimizer, scheduler = warmup_parts(steps=5)
    Checkpointer(str(tmp_path), model, optimizer).save(5, {})
    model, optimizer, resumed = warmup_parts(steps=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Checkpointer(str(tmp_path), model, optimizer).load(str(tmp_path / "iter_5"))
    assert resumed.last_epoch == scheduler.last_epoch == 5
    assert resumed.learning_rate.last_epoch == scheduler.learning_rate.last_epoch
    assert resumed() == pytest.approx(scheduler())


def test_a_failed_write_leaves_no_directory_and_the_previous_one_intact(tmp_path):
    model, optimizer, _ = make_parts()
    checkpointer = Checkpointer(str(tmp_path), model, optimizer)
    checkpointer.save(1, {})
    before = (tmp_path / "iter_1" / "model.pdparams").read_bytes()
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        checkpointer.save(2, {"unpicklable": lambda: None})
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        checkpointer.save(1, {"unpicklable": lambda: None})
    assert os.listdir(tmp_path) == ["iter_1"]
    assert (tmp_path / "iter_1" / "model.pdparams").read_bytes() == before


def test_a_save_killed_between_its_renames_is_undone_by_the_next_checkpointer(tmp_path):
    """replace_dir moves best_model aside, then the new one in: killed in between, only
    best_model.stale-<pid> (complete) and a .tmp-* directory are on disk."""
    model, optimizer, _ = make_parts()
    Checkpointer(str(tmp_path), model, optimizer).save_best(10, 0.5)
    os.replace(tmp_path / "best_model", tmp_path / "best_model.stale-4242")
    (tmp_path / ".tmp-best_model-x1y2").mkdir()
    (tmp_path / ".tmp-best_model-x1y2" / "model.pdparams").write_bytes(b"half written")
    checkpointer = Checkpointer(str(tmp_path), model, optimizer)
    assert os.listdir(tmp_path) == ["best_model"]
    assert checkpointer.best() == {"iter": 10, "mIoU": 0.5}


@pytest.mark.parametrize("umask, dir_mode, file_mode", [(0o022, 0o755, 0o644),
                                                         (0o027, 0o750, 0o640),
                                                         (0o002, 0o775, 0o664)])
def test_checkpoint_directories_and_files_honour_the_umask(tmp_path, umask, dir_mode, file_mode):
    """iter_N/ and best_model/ are staged under another name and renamed into place; their mode
    is the umask's, as for every other file of the run (a teammate or a server can read them),
    and so is the mode of weights written by save_weights."""
    from gcseg.models.weights import save_weights
    model, optimizer, _ = make_parts()
    previous = os.umask(umask)
    try:
        checkpointer = Checkpointer(str(tmp_path / "run"), model, optimizer)
        written = [checkpointer.save(10, {}), checkpointer.save(20, {})]
        checkpointer.save_best(20, 0.5)
        checkpointer.save_best(30, 0.6)  # replaces best_model
        save_weights(model, str(tmp_path / "converted.pdparams"))
    finally:
        os.umask(previous)
    directories = [Path(path) for path in written] + [tmp_path / "run" / "best_model"]
    for directory in directories:
        assert directory.stat().st_mode & 0o777 == dir_mode, directory
        for file in directory.iterdir():
            assert file.stat().st_mode & 0o777 == file_mode, file
    assert (tmp_path / "converted.pdparams").stat().st_mode & 0o777 == file_mode


def test_weights_holding_nan_are_never_saved(tmp_path):
    model, optimizer, _ = make_parts()
    checkpointer = Checkpointer(str(tmp_path), model, optimizer, keep_checkpoint_max=1)
    checkpointer.save(1, {})
    weight = model[0].weight
    weight.set_value(np.full(weight.shape, np.nan, dtype="float32"))
    with pytest.raises(TrainingError, match=r"iter_2: not saved, the weights hold NaN or Inf "
                                            r"\(0.weight\)"):
        checkpointer.save(2, {})
    with pytest.raises(TrainingError, match="best_model: not saved"):
        checkpointer.save_best(2, 0.9)
    assert os.listdir(tmp_path) == ["iter_1"]


def test_best_model_is_replaced_only_by_a_higher_miou(tmp_path):
    model, optimizer, _ = make_parts()
    checkpointer = Checkpointer(str(tmp_path), model, optimizer)
    assert checkpointer.save_best(100, 0.5) and not checkpointer.save_best(200, 0.4)
    assert json.loads((tmp_path / "best_model" / "best_model.json").read_text()) == \
        {"iter": 100, "mIoU": 0.5}
    assert checkpointer.save_best(300, 0.6) and checkpointer.best() == {"iter": 300, "mIoU": 0.6}
    assert sorted(os.listdir(tmp_path / "best_model")) == ["best_model.json", "model.pdparams"]


def test_load_restores_weights_optimizer_scheduler_and_host_rng(tmp_path):
    model, optimizer, scheduler = make_parts(seed=0)
    checkpointer = Checkpointer(str(tmp_path), model, optimizer)
    np.random.seed(5)
    checkpointer.save(7, {"position": (2, 1)})
    expected_draw = np.random.rand()
    fresh_model, fresh_optimizer, fresh_scheduler = make_parts(seed=1)
    state = Checkpointer(str(tmp_path), fresh_model, fresh_optimizer).load(str(tmp_path / "iter_7"))
    assert state["iter"] == 7 and state["position"] == (2, 1)
    assert np.random.rand() == expected_draw
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(fresh_model.state_dict()[key].numpy(), value.numpy())
    assert fresh_scheduler.last_epoch == scheduler.last_epoch
    velocities = {k: v for k, v in fresh_optimizer.state_dict().items() if "velocity" in k}
    saved = {k: v for k, v in optimizer.state_dict().items() if "velocity" in k}
    assert len(velocities) == len(saved) == 4  # renamed to the fresh parameters' names
    for (_, fresh), (_, old) in zip(sorted(velocities.items()), sorted(saved.items())):
        np.testing.assert_array_equal(fresh.numpy(), old.numpy())


def test_a_paddleseg_checkpoint_without_train_state_resumes_from_its_name(tmp_path):
    model, optimizer, _ = make_parts()
    (tmp_path / "iter_40").mkdir()
    paddle.save(model.state_dict(), str(tmp_path / "iter_40" / "model.pdparams"))
    paddle.save(optimizer.state_dict(), str(tmp_path / "iter_40" / "model.pdopt"))
    state = Checkpointer(str(tmp_path), model, optimizer).load(str(tmp_path / "iter_40"))
    assert state == {"iter": 40}
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        Checkpointer(str(tmp_path), model, optimizer).load(str(tmp_path / "missing"))


def test_sigterm_saves_a_checkpoint_at_the_current_iteration_and_exits(tmp_path):
    config_path = write_tiny_config(tmp_path)
    save_dir = tmp_path / "out"
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), "--config", str(config_path),
               "--iters", "300", "--save_interval", "1000", "--log_iters", "1",
               "--save_dir", str(save_dir), "--device", "cpu"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    for line in process.stderr:
        if "[TRAIN]" in line:
            break
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, rest
    saved = [name for name in os.listdir(save_dir) if name.startswith("iter_")]
    assert len(saved) == 1 and not any(name.startswith(".tmp") for name in os.listdir(save_dir))
    iteration = int(saved[0].split("_")[1])
    with open(save_dir / saved[0] / "train_state.pkl", "rb") as file:
        assert pickle.load(file)["iter"] == iteration >= 1
    assert f"stopped by SIGTERM at iter {iteration}" in rest
