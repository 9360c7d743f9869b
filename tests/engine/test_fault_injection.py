"""A killed run loses nothing; a failing run stops with one line and keeps its last checkpoint.

scripts/train.py runs as a subprocess on a tiny dataset. It is SIGKILLed at seeded random
moments (one of them as soon as a temporary checkpoint directory appears, i.e. mid-save) and
resumed each time from the newest ``iter_<N>``; the final weights must equal those of an
uninterrupted run, and every ``iter_<N>`` left behind must be complete and loadable.
"""
import errno
import os
import pickle
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import paddle
import pytest

from gcseg.engine.checkpoint import Checkpointer
from gcseg.engine.failures import as_training_error
from gcseg.errors import TrainingError
from gcseg.models.weights import load_state_dict_file
from conftest import ROOT, error_lines, write_tiny_config

TRAIN = ROOT / "scripts" / "train.py"
ITERS = 6
KILL_SEED = 2024
ITER_DIR = re.compile(r"^iter_(\d+)$")

# the tiny run of conftest, longer, checkpointing at every step, without warmup
CONFIG = """
_base_: tiny.yml
iters: {iters}
lr_scheduler: {{warmup_iters: 0}}
global: {{device: cpu, num_workers: 0}}
train: {{save_interval: 1, keep_checkpoint_max: 2, seed: 3}}
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fault")
    write_tiny_config(root, num_train=4)
    path = root / "fault.yml"
    path.write_text(CONFIG.format(iters=ITERS))
    return path


def train_command(config: Path, save_dir: Path, *extra: str) -> list:
    return [sys.executable, str(TRAIN), "--config", str(config), "--save_dir", str(save_dir),
            *extra]


def iter_dirs(save_dir: Path) -> dict:
    if not save_dir.is_dir():
        return {}
    return {int(m.group(1)): save_dir / m.group(0) for m in map(ITER_DIR.match,
                                                                os.listdir(save_dir)) if m}


def assert_complete(checkpoint: Path) -> None:
    """Model, optimizer and training state all load."""
    assert load_state_dict_file(str(checkpoint / "model.pdparams"))
    assert isinstance(paddle.load(str(checkpoint / "model.pdopt")), dict)
    with open(checkpoint / "train_state.pkl", "rb") as file:
        assert pickle.load(file)["iter"] == int(checkpoint.name.split("_")[1])


def assert_only_complete_or_temporary(save_dir: Path) -> None:
    for name in os.listdir(save_dir):
        if ITER_DIR.match(name):
            assert_complete(save_dir / name)
        else:
            assert name.startswith(".tmp-") or ".stale-" in name, name


def kill_when(process: subprocess.Popen, save_dir: Path, moment: str, rng: random.Random) -> bool:
    """SIGKILL ``process`` mid-save (``moment="saving"``) or a random time after its next
    checkpoint (``"random"``). False if it finished first."""
    start = set(iter_dirs(save_dir))
    delay = rng.uniform(0.0, 0.6)
    saw_new_at = None
    while process.poll() is None:
        names = os.listdir(save_dir) if save_dir.is_dir() else []
        if moment == "saving" and any(n.startswith(".tmp-iter_") for n in names):
            process.kill()
            break
        if moment == "random" and saw_new_at is None and set(iter_dirs(save_dir)) - start:
            saw_new_at = time.monotonic()
        if saw_new_at is not None and time.monotonic() - saw_new_at >= delay:
            process.kill()
            break
        time.sleep(0.002)
    return process.wait(timeout=120) != 0


def test_killed_and_resumed_runs_end_with_the_uninterrupted_weights(config, tmp_path):
    whole = subprocess.run(train_command(config, tmp_path / "whole"), capture_output=True,
                           text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-2000:]

    rng, save_dir, kills = random.Random(KILL_SEED), tmp_path / "killed", 0
    leftovers = set()  # half-written checkpoints the kills left behind, which resume ignores
    moments = ["saving", "random", "saving"]
    for _ in range(len(moments) + 2):
        done = iter_dirs(save_dir)
        resume = ["--resume_model", str(done[max(done)])] if done else []
        process = subprocess.Popen(train_command(config, save_dir, *resume),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        moment = moments[kills] if kills < len(moments) else None
        if moment is None or not kill_when(process, save_dir, moment, rng):
            _, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, stderr.decode()[-2000:]
            break
        process.stderr.close()
        kills += 1
        assert_only_complete_or_temporary(save_dir)
        leftovers |= {name for name in os.listdir(save_dir) if name.startswith(".tmp-iter_")}
    assert kills == len(moments)
    assert leftovers, "no kill landed inside a checkpoint write"
    assert max(iter_dirs(save_dir)) == ITERS
    assert_only_complete_or_temporary(save_dir)
    expected = load_state_dict_file(str(tmp_path / "whole" / f"iter_{ITERS}" / "model.pdparams"))
    resumed = load_state_dict_file(str(save_dir / f"iter_{ITERS}" / "model.pdparams"))
    assert expected.keys() == resumed.keys()
    for key, value in expected.items():
        np.testing.assert_allclose(resumed[key], value, rtol=0, atol=1e-6, err_msg=key)


def test_a_non_finite_loss_stops_with_one_line_and_keeps_the_last_checkpoint(config, tmp_path):
    result = subprocess.run(train_command(config, tmp_path, "--iters", "20", "--learning_rate",
                                          "1e10"), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    (line,) = error_lines(result.stderr)
    # the loss turns NaN/Inf, or (checked first at a save) the weights already have
    assert re.match(r"error: iter[ _]\d+: (loss is (nan|inf)|not saved, the weights hold NaN)",
                    line), line
    last = max(iter_dirs(tmp_path))
    assert f"last checkpoint: {tmp_path / f'iter_{last}'}" in line
    assert_only_complete_or_temporary(tmp_path)


def test_disk_full_while_saving_stops_with_one_line_and_keeps_the_last_checkpoint(config,
                                                                                tmp_path):
    """A file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) makes every checkpoint write fail with
    EFBIG, as a full disk fails with ENOSPC; the checkpoint written before stays loadable."""
    first = subprocess.run(train_command(config, tmp_path, "--iters", "1"), capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    limited = ("import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, "
               "signal.SIG_IGN); resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20)); "
               f"sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", limited, *train_command(
        config, tmp_path, "--iters", "2", "--resume_model", str(tmp_path / "iter_1"))[1:]],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = error_lines(result.stderr)
    assert line.startswith(f"error: {tmp_path / 'iter_2'}: cannot write, EFBIG"), line
    assert sorted(iter_dirs(tmp_path)) == [1]
    assert_only_complete_or_temporary(tmp_path)


def test_disk_full_inside_a_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model = paddle.nn.Linear(2, 2)
    optimizer = paddle.optimizer.SGD(parameters=model.parameters())
    checkpointer = Checkpointer(str(tmp_path), model, optimizer, keep_checkpoint_max=1)
    checkpointer.save(1, {})

    def no_space(obj, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(paddle, "save", no_space)
    with pytest.raises(TrainingError, match=r"iter_2: cannot write, ENOSPC.*intact"):
        checkpointer.save(2, {})
    assert os.listdir(tmp_path) == ["iter_1"]
    monkeypatch.undo()
    assert_complete(tmp_path / "iter_1")


@pytest.mark.parametrize("exc, expected", [
    (MemoryError(), "out of memory"),
    (RuntimeError("ResourceExhaustedError: \n\nOut of memory error on GPU 0. Cannot allocate "
                  "1.5GB memory"), "out of memory on the device (ResourceExhaustedError:"),
    (OSError(errno.ENOSPC, "No space left on device", "/out/iter_4/model.pdopt"),
     "/out/iter_4/model.pdopt: cannot write, ENOSPC"),
])
def test_out_of_memory_and_disk_full_become_one_line_training_errors(exc, expected):
    error = as_training_error(exc, 12, "/out/iter_10")
    assert isinstance(error, TrainingError)
    message = str(error)
    assert "\n" not in message and message.startswith("iter 12: ") and expected in message
    assert message.endswith("resume with --resume_model /out/iter_10")
    if "memory" in expected:
        assert "batch_size" in message and "crop" in message


@pytest.mark.parametrize("exc", [ValueError("shape mismatch"), OSError(errno.EACCES, "denied"),
                                 TrainingError("iter 3: loss is nan")])
def test_other_errors_are_left_alone(exc):
    assert as_training_error(exc, 3) is None
