"""A bad sample, a stuck loader or a stop signal ends a run in seconds with one line.

Real Paddle DataLoaders over real files: a label holding a value that is no class, an image
of random bytes, a transform failing on an odd image, at the first, a middle and the last
position, with 0 and 2 workers; then scripts/train.py (also evaluating during training),
scripts/val.py and a 2-process ``paddle.distributed.launch`` run where only rank 1 meets the
bad sample. A dataset whose ``__getitem__`` sleeps stands for a worker stuck on a network file
system: SIGTERM ends that run, and so does ``--loader_timeout``; both save the checkpoint of
the steps made since the last one. Every subprocess runs under a timeout, so a run that hangs
fails the test instead of hanging it.

The file is also the worker of the stuck-loader runs: ``python test_bad_samples.py SLOW
train.py ARGS`` runs a script with every sample whose image path contains SLOW sleeping.
"""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, SCRIPTS, write_tiny_config

RUN_TIMEOUT = 240  # a hang fails here; a healthy run takes seconds
HINT = "scripts/check_dataset.py"
# runs a script with some samples sleeping (a child process of its own, without conftest)
SLOW_SAMPLES = ROOT / "tests" / "slow_samples.py"
SEED = 7  # the tiny training config's seed (conftest)


def make_data(root: Path, n_train: int = 4, n_val: int = 3) -> Path:
    from datagen import make_cityscapes_tree
    return make_cityscapes_tree(root, n_train=n_train, n_val=n_val)


def write_config(tmp_path: Path, data: Path) -> Path:
    """The tiny GCNet-R18 training config (conftest) over ``data`` (which must be
    ``tmp_path/data``)."""
    assert data == tmp_path / "data"
    return write_tiny_config(tmp_path)


def file_list(data: Path, mode: str) -> list:
    from gcseg.data.datasets import Cityscapes
    return Cityscapes([], str(data), mode).file_list


def spoil(pair: tuple, kind: str) -> str:
    """Make the image (random bytes) or the label (value 77 of 19 classes) of ``pair`` bad;
    returns the bad file."""
    from datagen import write_label
    image, label = pair
    if kind == "image":
        Path(image).write_bytes(np.random.default_rng(0).bytes(300))
        return image
    write_label(Path(label), np.full((32, 64), 77, dtype=np.uint8))
    return label


def epoch_order(data: Path) -> list:
    """The training samples' indices in the order of the first epoch (the sampler's)."""
    from gcseg.data.loader import epoch_permutation
    return epoch_permutation(len(file_list(data, "train")), SEED, 0).tolist()


# ----------------------------------------------------------------- the loaders, in process
class OddShapeTransforms:
    """The dataset's transforms, failing as numpy does on an image of an unexpected shape."""

    def __init__(self, compose, bad_image: str) -> None:
        self.compose, self.bad_image, self.to_rgb = compose, bad_image, compose.to_rgb

    def __call__(self, data: dict) -> dict:
        if data.get("img_path", data["img"]) == self.bad_image:  # predict passes the path as img
            raise ValueError("operands could not be broadcast together with shapes (3,) (4,)")
        return self.compose(data)


def bad_dataset(tmp_path: Path, mode: str, kind: str, position: str):
    """A Cityscapes ``mode`` set of 5 samples, the one at ``position`` bad; (dataset, its
    index, the path the error must name)."""
    from gcseg.config import Config
    data = make_data(tmp_path / "data", n_train=5, n_val=5)
    pairs = file_list(data, mode)
    index = {"first": 0, "middle": 2, "last": 4}[position]
    if kind != "transform":
        bad = spoil(pairs[index], kind)
    cfg = Config(write_config(tmp_path, data), ["batch_size=1"])
    dataset = cfg.train_dataset if mode == "train" else cfg.val_dataset
    if kind == "transform":
        bad = pairs[index][0]
        dataset.transforms = OddShapeTransforms(dataset.transforms, bad)
    return dataset, index, bad


def loader_parts() -> set:
    """This process's loader worker processes and gcseg's batch-reading threads."""
    import multiprocessing
    import threading
    return ({process.pid for process in multiprocessing.active_children()} |
            {thread.name for thread in threading.enumerate() if thread.name == "gcseg-batches"})


def assert_the_loader_ends(before: set, seconds: float = 30) -> None:
    """Every worker process and reading thread started since ``before`` ends within ``seconds``
    (they used to stay blocked for the rest of the process)."""
    deadline = time.monotonic() + seconds
    while loader_parts() - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not loader_parts() - before, f"still alive: {loader_parts() - before}"


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("position", ["first", "middle", "last"])
@pytest.mark.parametrize("kind", ["label", "image", "transform"])
def test_the_training_loader_raises_one_line_at_the_bad_sample(tmp_path, kind, position,
                                                              workers):
    from gcseg.data.loader import TrainLoader, epoch_permutation
    from gcseg.errors import DataError
    dataset, index, bad = bad_dataset(tmp_path, "train", kind, position)
    before = loader_parts()
    batches, served = iter(TrainLoader(dataset, 1, SEED, num_workers=workers, timeout=60)), 0
    with pytest.raises(DataError) as raised:
        for _ in range(len(dataset)):
            next(batches)
            served += 1
    message = str(raised.value)
    assert bad in message and HINT in message and "\n" not in message, message
    if kind == "transform":
        assert "ValueError: operands could not be broadcast" in message
    # every sample before the bad one in the epoch's order was served
    assert served == epoch_permutation(len(dataset), SEED, 0).tolist().index(index)
    assert_the_loader_ends(before)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_training_stream_left_mid_epoch_ends_its_loader(tmp_path, workers):
    """Training ends at its last iteration, usually mid-epoch: the loader goes with it."""
    from gcseg.config import Config
    from gcseg.data.loader import TrainLoader
    data = make_data(tmp_path / "data", n_train=5, n_val=1)
    dataset = Config(write_config(tmp_path, data), ["batch_size=1"]).train_dataset
    before = loader_parts()
    batches = iter(TrainLoader(dataset, 1, SEED, num_workers=workers, timeout=60))
    next(batches)
    assert loader_parts() - before  # running: the check below can fail
    batches.close()  # what dropping the generator does
    assert_the_loader_ends(before)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("kind, position", [("label", "first"), ("image", "middle"),
                                            ("transform", "last")])
def test_evaluation_raises_one_line_at_the_bad_sample(tmp_path, kind, position, workers):
    import paddle
    from gcseg.engine.evaluator import evaluate
    from gcseg.errors import DataError
    dataset, _, bad = bad_dataset(tmp_path, "val", kind, position)
    class OneByOne(paddle.nn.Layer):  # logits of 19 classes, as GCNet's list of heads
        def __init__(self):
            super().__init__()
            self.conv = paddle.nn.Conv2D(3, 19, 1)

        def forward(self, images):
            return [self.conv(images)]

    model, before = OneByOne(), loader_parts()
    with pytest.raises(DataError) as raised:
        evaluate(model, dataset, backend="dygraph", num_workers=workers, print_detail=False,
                 loader_timeout=60)
    assert bad in str(raised.value) and HINT in str(raised.value)
    assert_the_loader_ends(before)


def test_predict_skips_an_image_a_transform_fails_on(tmp_path):
    from gcseg.data.transforms import Compose
    from gcseg.engine.predict import _prepare
    from gcseg.errors import DataError
    image = tmp_path / "odd.png"
    image.write_bytes(b"")
    with pytest.raises(DataError, match=re.escape(f"{image}: ValueError: operands")):
        _prepare(OddShapeTransforms(Compose([]), str(image)), str(image))


# ----------------------------------------------------------------- the scripts
GLOG = re.compile(r"^[IWE]\d{4} \d\d:\d\d:\d\d\.\d+ ")  # Paddle's C++ log, e.g. at exit


def last_line(stderr: str) -> str:
    """The last line of ``stderr`` that is not a log line of Paddle's C++ side."""
    return [line for line in stderr.splitlines() if line.strip() and not GLOG.match(line)][-1]


def run_script(script: str, *args, timeout: int = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "GCSEG_DEBUG"}
    return subprocess.run([sys.executable, str(SCRIPTS / script), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)


def assert_ends_with_one_line(result, code: int, *names: str) -> str:
    assert result.returncode == code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    line = last_line(result.stderr)
    for name in names:
        assert str(name) in line, (name, line)
    return line


def checkpoints(save_dir: Path) -> list:
    return sorted(int(name[5:]) for name in os.listdir(save_dir) if name.startswith("iter_")) \
        if save_dir.is_dir() else []


def test_training_saves_the_steps_made_then_names_the_bad_label(tmp_path):
    data = make_data(tmp_path / "data")
    index = 2
    bad = spoil(file_list(data, "train")[index], "label")
    steps_before = epoch_order(data).index(index)
    config = write_config(tmp_path, data)
    result = run_script("train.py", "--config", config, "--batch_size", "1",
                        "--save_interval", "100", "--save_dir", tmp_path / "out")
    line = assert_ends_with_one_line(result, 2, "error: ", bad, "neither class ids",
                                     f"{HINT} --config {config} finds")
    assert checkpoints(tmp_path / "out") == ([steps_before] if steps_before else []), line


def test_evaluation_during_training_with_workers_names_the_corrupt_image(tmp_path):
    data = make_data(tmp_path / "data")
    bad = spoil(file_list(data, "val")[2], "image")
    result = run_script("train.py", "--config", write_config(tmp_path, data), "--do_eval",
                        "--batch_size", "1", "--save_interval", "1", "--num_workers", "2",
                        "--save_dir", tmp_path / "out")
    assert_ends_with_one_line(result, 2, "error: ", bad, "cannot read image", HINT)
    assert checkpoints(tmp_path / "out") == [1]


def untrained_weights(config: Path) -> Path:
    """The config's model, as initialised, saved beside the config (val.py needs weights)."""
    import paddle
    from gcseg.config import Config
    path = config.parent / "model.pdparams"
    paddle.save(Config(config).model.state_dict(), str(path))
    return path


def test_val_with_workers_names_the_bad_label(tmp_path):
    data = make_data(tmp_path / "data")
    bad = spoil(file_list(data, "val")[0], "label")
    config = write_config(tmp_path, data)
    override = f"val_dataset.dataset_root={data}"
    result = run_script("val.py", "--config", config, "--model_path", untrained_weights(config),
                        "--num_workers", "2", "--engine", "dygraph", "--opts", override)
    # the hint is the command that checks this very dataset
    assert_ends_with_one_line(result, 2, "error: ", bad,
                              f"{HINT} --config {config} --opts {override} finds")


@pytest.mark.xdist_group("launch")  # one paddle.distributed.launch at a time
def test_two_processes_end_when_only_rank_1_meets_the_bad_sample(tmp_path):
    """Rank r takes sample ``order[2 b + r]`` in step b+1: the bad one is rank 1's second
    (not sample 0, which the start-up check reads on every rank). Both ranks stop at that step,
    rank 0 saves step 1 first, and the launcher exits non-zero."""
    data = make_data(tmp_path / "data", n_train=6)
    index = epoch_order(data)[3]
    assert index != 0
    bad = spoil(file_list(data, "train")[index], "image")
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
               "--log_dir", str(tmp_path / "logs"), str(SCRIPTS / "train.py"),
               "--config", str(write_config(tmp_path, data)), "--batch_size", "1",
               "--save_interval", "100", "--save_dir", str(tmp_path / "out")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("GCSEG_DEBUG", None)
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=RUN_TIMEOUT)
    logs = [(tmp_path / "logs" / f"workerlog.{rank}").read_text() for rank in (0, 1)]
    assert run.returncode != 0
    assert all("Traceback" not in log for log in logs), logs
    assert last_line(logs[1]).startswith(f"error: {bad}: cannot read image"), logs[1][-2000:]
    assert last_line(logs[0]) == ("error: another process met a bad sample (its log names the "
                                  "file)"), logs[0][-2000:]
    assert checkpoints(tmp_path / "out") == [1]


# ----------------------------------------------------------------- a stuck loader, signals
def start_stuck(slow: str, script: str, *args, ready: str) -> tuple:
    """``script`` with every sample whose image path contains ``slow`` sleeping for an hour.
    Returns (process, stderr lines so far) once a stderr line holds ``ready``."""
    process = subprocess.Popen(
        [sys.executable, str(SLOW_SAMPLES), slow, str(SCRIPTS / script), *map(str, args)],
        stderr=subprocess.PIPE, text=True,
        env={key: value for key, value in os.environ.items() if key != "GCSEG_DEBUG"})
    lines = []
    for line in process.stderr:  # ends at the process's end if it never gets there
        lines.append(line)
        if ready in line:
            break
    return process, lines


def start_stuck_training(tmp_path: Path, workers: int, *extra: str) -> tuple:
    """train.py whose training sample at epoch position 2 sleeps: two steps are made, then
    the loader blocks. Returns (process, save_dir, stderr lines) once step 2 is logged."""
    data = make_data(tmp_path / "data")
    slow = Path(file_list(data, "train")[epoch_order(data)[2]][0]).name
    save_dir = tmp_path / "out"
    process, lines = start_stuck(
        slow, "train.py", "--config", write_config(tmp_path, data), "--batch_size",
        "1", "--save_interval", "100", "--save_dir", save_dir, "--num_workers", workers, *extra,
        ready="iter: 2/")
    return process, save_dir, lines


def finish(process: subprocess.Popen, lines: list) -> str:
    try:
        _, rest = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail("the run did not end after the signal / timeout")
    return "".join(lines) + rest


@pytest.mark.parametrize("workers", [0, 2])
def test_sigterm_while_the_loader_blocks_saves_and_ends(tmp_path, workers):
    process, save_dir, lines = start_stuck_training(tmp_path, workers)
    process.send_signal(signal.SIGTERM)
    stderr = finish(process, lines)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "Traceback" not in stderr
    assert "stopped by SIGTERM at iter 2" in stderr
    assert last_line(stderr) == "stopped by SIGTERM"
    assert checkpoints(save_dir) == [2]


def test_a_loader_that_yields_nothing_is_reported_after_the_timeout(tmp_path):
    process, save_dir, lines = start_stuck_training(tmp_path, 2, "--loader_timeout", "2")
    stderr = finish(process, lines)
    assert process.returncode == 2, stderr[-3000:]
    assert "Traceback" not in stderr
    line = last_line(stderr)
    assert line.startswith("error: training data loader: no data for 2 s"), line
    assert "--loader_timeout" in line and HINT in line
    assert checkpoints(save_dir) == [2]


def test_sigterm_while_val_waits_for_a_stuck_worker_ends_it(tmp_path):
    data = make_data(tmp_path / "data")
    config = write_config(tmp_path, data)
    slow = Path(file_list(data, "val")[1][0]).name
    process, lines = start_stuck(slow, "val.py", "--config", config, "--model_path",
                                 untrained_weights(config), "--num_workers", 2,
                                 "--engine", "dygraph", ready=f"sleeping on {slow}")
    process.send_signal(signal.SIGTERM)
    stderr = finish(process, lines)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "Traceback" not in stderr and last_line(stderr) == "stopped by SIGTERM"


# ----------------------------------------------------------------- the watchdog alone
WATCHDOG = """
import sys, threading
sys.path.insert(0, {root!r})
from gcseg import stopping
stopping.GRACE_SECONDS = 1.0
with stopping.cooperative(), stopping.last_resort(lambda: print("last resort ran", flush=True)):
    print("ready", flush=True)
    threading.Event().wait()  # blocked, never checks for a stop request
"""


def start_blocked(tmp_path: Path) -> subprocess.Popen:
    script = tmp_path / "blocked.py"
    script.write_text(WATCHDOG.format(root=str(ROOT)))
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "ready\n"
    return process


def test_a_process_that_does_not_stop_is_ended_after_the_grace_period(tmp_path):
    process = start_blocked(tmp_path)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 128 + signal.SIGTERM
    assert stdout == "last resort ran\n"
    assert stderr == "error: still running 1 s after SIGTERM; ended by force\n"


def test_a_second_ctrl_c_ends_the_process_at_once(tmp_path):
    process = start_blocked(tmp_path)
    process.send_signal(signal.SIGINT)
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 128 + signal.SIGINT
    assert stdout == "" and stderr == "interrupted (second Ctrl-C)\n"
