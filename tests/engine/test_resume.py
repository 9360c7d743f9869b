"""Exact resume: 2N iterations in one run == N, stopped by SIGTERM, then resumed for N more."""
import os
import signal

import numpy as np
import pytest

from gcseg.engine.trainer import Hook
from conftest import run_tiny, write_tiny_config

ITERS = 6  # 6 samples / batch 2: the resumed half starts inside epoch 2 (batch 0)
STOP_AT = 4  # ...and here inside epoch 2 at batch 1


class SigtermAt(Hook):
    """Sends this process SIGTERM after step ``iteration`` (as a scheduler killing the job)."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def after_step(self, trainer, step) -> None:
        if trainer.iter == self.iteration:
            os.kill(os.getpid(), signal.SIGTERM)


def test_stopped_and_resumed_run_matches_the_uninterrupted_run(tmp_path):
    config_path = write_tiny_config(tmp_path)
    opts = [f"iters={ITERS}"]
    whole = run_tiny(config_path, tmp_path / "whole", opts, save_interval=100)

    with pytest.raises(SystemExit) as stopped:
        run_tiny(config_path, tmp_path / "parts", opts, [SigtermAt(STOP_AT)], save_interval=100)
    assert stopped.value.code == 128 + signal.SIGTERM
    checkpoint = tmp_path / "parts" / f"iter_{STOP_AT}"
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == [checkpoint.name]

    resumed = run_tiny(config_path, tmp_path / "parts", opts, save_interval=100,
                       resume_model=str(checkpoint), num_workers=2)
    assert sorted(resumed.recorder.losses) == list(range(STOP_AT + 1, ITERS + 1))
    for iteration, losses in resumed.recorder.losses.items():
        np.testing.assert_allclose(losses, whole.recorder.losses[iteration], rtol=0, atol=1e-6)
    final_whole, final_resumed = whole.model.state_dict(), resumed.model.state_dict()
    for key, value in final_whole.items():
        np.testing.assert_allclose(final_resumed[key].numpy(), value.numpy(), rtol=0, atol=1e-6,
                                   err_msg=key)
