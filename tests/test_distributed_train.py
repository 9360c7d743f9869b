"""2-process training under a real ``paddle.distributed.launch``: the ranks end with the same
parameters (DataParallel averages the gradients), only rank 0 writes checkpoints and logs, and
each rank trains on its own shard (so the BatchNorm running statistics, local on CPU, differ).

The test launches this file itself as the worker: each rank trains with the library and writes
its final weights to ``<out>/rank<R>.npz``.
"""
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def worker(config_path: str, save_dir: str, out_dir: str) -> None:
    from gcseg.config import Config
    from gcseg.engine.distributed import get_rank, init_distributed
    from gcseg.engine.trainer import Trainer, TrainSettings

    logging.basicConfig(level=logging.INFO, force=True)  # both ranks may log: only 0 should
    init_distributed()
    cfg = Config(config_path, ["iters=2", "batch_size=1"])
    trainer = Trainer(cfg, TrainSettings.from_config(cfg, save_dir=save_dir))
    trainer.train()
    parameters = {key for key, param in trainer.model.named_parameters()
                  if not param.stop_gradient}
    weights = {("param:" if key in parameters else "buffer:") + key: value.numpy()
               for key, value in trainer.model.state_dict().items()}
    np.savez(os.path.join(out_dir, f"rank{get_rank()}.npz"), **weights)


def test_two_processes_end_with_identical_parameters(tmp_path):
    from test_trainer import write_tiny_config
    config_path = write_tiny_config(tmp_path, num_train=4)
    save_dir, out_dir = tmp_path / "out", tmp_path / "weights"
    out_dir.mkdir()
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
               "--log_dir", str(tmp_path / "logs"), __file__, str(config_path), str(save_dir),
               str(out_dir)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{ROOT}:{ROOT / 'tests'}")
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=240)
    logs = "".join(p.read_text() for p in sorted((tmp_path / "logs").glob("workerlog.*")))
    assert run.returncode == 0, logs[-3000:]
    rank0, rank1 = np.load(out_dir / "rank0.npz"), np.load(out_dir / "rank1.npz")
    assert set(rank0.files) == set(rank1.files)
    params = [key for key in rank0.files if key.startswith("param:")]
    assert len(params) > 50
    for key in params:
        np.testing.assert_array_equal(rank0[key], rank1[key], err_msg=key)
    assert any(not np.array_equal(rank0[key], rank1[key])
               for key in rank0.files if key.endswith("._mean"))
    assert sorted(os.listdir(save_dir)) == ["iter_2"]
    assert "[TRAIN]" in (tmp_path / "logs" / "workerlog.0").read_text()
    assert "[TRAIN]" not in (tmp_path / "logs" / "workerlog.1").read_text()


if __name__ == "__main__":
    worker(*sys.argv[1:4])
