"""2-process training under a real ``paddle.distributed.launch``: the ranks end with the same
parameters (DataParallel averages the gradients), only rank 0 writes checkpoints and logs, and
each rank trains on its own shard (so the BatchNorm running statistics, local on CPU, differ).

When one rank alone meets a NaN loss or a stop signal, every rank stops at the same iteration
(none is left waiting in the gradient all-reduce) and rank 0 saves the checkpoint.

The test launches this file itself as the worker: each rank trains with the library and writes
its final weights to ``<out>/rank<R>.npz``; a fault mode makes rank 1 alone fail.
"""
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.xdist_group("launch")  # one paddle.distributed.launch at a time


def break_rank1(fault: str) -> None:
    """Rank 1 alone gets a NaN loss at iteration 2 (``nan``) or SIGTERM after step 1
    (``sigterm``); rank 0 runs normally."""
    from gcseg.engine import trainer as trainer_module
    if fault == "nan":
        combine = trainer_module.combine

        def nan_at_iteration_2(logits, labels, loss_cfg):
            total, per_head = combine(logits, labels, loss_cfg)
            calls.append(1)
            if len(calls) < 2:
                return total, per_head
            return total * float("nan"), [loss * float("nan") for loss in per_head]
        calls = []
        trainer_module.combine = nan_at_iteration_2
    elif fault == "sigterm":
        class SigtermAfterStep1(trainer_module.Hook):
            def after_step(self, trainer, step):
                if trainer.iter == 1:
                    os.kill(os.getpid(), signal.SIGTERM)
        original = trainer_module.Trainer.build_hooks
        trainer_module.Trainer.build_hooks = lambda self: original(self) + [SigtermAfterStep1()]


def worker(config_path: str, save_dir: str, out_dir: str, fault: str = "none") -> None:
    from gcseg.config import Config
    from gcseg.engine.distributed import get_rank, init_distributed
    from gcseg.engine.trainer import Trainer, TrainSettings

    logging.basicConfig(level=logging.INFO, force=True)  # both ranks may log: only 0 should
    init_distributed()
    if get_rank() == 1:
        break_rank1(fault)
    cfg = Config(config_path, ["iters=2", "batch_size=1"])
    trainer = Trainer(cfg, TrainSettings.from_config(cfg, save_dir=save_dir))
    try:
        trainer.train()
    finally:
        print(f"rank {get_rank()} ended at iter {trainer.iter}", flush=True)
    parameters = {key for key, param in trainer.model.named_parameters()
                  if not param.stop_gradient}
    weights = {("param:" if key in parameters else "buffer:") + key: value.numpy()
               for key, value in trainer.model.state_dict().items()}
    np.savez(os.path.join(out_dir, f"rank{get_rank()}.npz"), **weights)


def launch(tmp_path: Path, fault: str = "none") -> tuple:
    """Run 2 worker processes; returns (return code, the two worker logs, save_dir, out_dir).
    (The helpers are imported here, not at the top: the workers run this file and need none.)"""
    from conftest import ROOT, write_tiny_config
    config_path = write_tiny_config(tmp_path, num_train=4)
    save_dir, out_dir = tmp_path / "out", tmp_path / "weights"
    out_dir.mkdir()
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
               "--log_dir", str(tmp_path / "logs"), __file__, str(config_path), str(save_dir),
               str(out_dir), fault]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{ROOT}:{ROOT / 'tests'}")
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=240)
    logs = [(tmp_path / "logs" / f"workerlog.{rank}").read_text() for rank in (0, 1)]
    return run.returncode, logs, save_dir, out_dir


def test_two_processes_end_with_identical_parameters(tmp_path):
    returncode, logs, save_dir, out_dir = launch(tmp_path)
    assert returncode == 0, "".join(logs)[-3000:]
    rank0, rank1 = np.load(out_dir / "rank0.npz"), np.load(out_dir / "rank1.npz")
    assert set(rank0.files) == set(rank1.files)
    params = [key for key in rank0.files if key.startswith("param:")]
    assert len(params) > 50
    for key in params:
        np.testing.assert_array_equal(rank0[key], rank1[key], err_msg=key)
    assert any(not np.array_equal(rank0[key], rank1[key])
               for key in rank0.files if key.endswith("._mean"))
    assert sorted(os.listdir(save_dir)) == ["iter_2"]
    assert "[TRAIN]" in logs[0]
    assert "[TRAIN]" not in logs[1]


def test_a_nan_on_one_rank_stops_both_at_that_iteration(tmp_path):
    returncode, logs, save_dir, _ = launch(tmp_path, "nan")
    assert returncode != 0
    assert "iter 2: the loss of another process is NaN or Inf" in logs[0]
    assert "iter 2: loss is nan" in logs[1]
    assert all(f"rank {rank} ended at iter 2" in log for rank, log in enumerate(logs))
    assert not (save_dir / "iter_2").exists()


def test_a_signal_to_one_rank_stops_both_and_rank0_saves(tmp_path):
    returncode, logs, save_dir, _ = launch(tmp_path, "sigterm")
    assert returncode != 0
    assert all(f"rank {rank} ended at iter 1" in log for rank, log in enumerate(logs))
    assert "stopped by SIGTERM at iter 1" in logs[0]
    assert sorted(os.listdir(save_dir)) == ["iter_1"]
    assert sorted(os.listdir(save_dir / "iter_1")) == ["model.pdopt", "model.pdparams",
                                                     "train_state.pkl"]


if __name__ == "__main__":
    worker(*sys.argv[1:5])
