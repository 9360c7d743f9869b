"""User mistakes on the command line end as one ``error: ...`` line and exit code 2, no traceback;
``--debug`` / ``GCSEG_DEBUG=1`` shows the traceback instead.

The scripts' stderr also carries lines that are not gcseg's to control: Paddle prints a warning
about OMP_NUM_THREADS when it is imported, Python prints a ccache UserWarning from Paddle's
cpp_extension and one from BatchNorm in training, gcseg announces its CPU set-up, and
train.py logs progress. :func:`error_lines`
drops exactly those (each pattern below is one of them), so anything else on stderr - a
traceback, a second message - fails the tests.
"""
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"

NOISE = [
    re.compile(r"^WARNING: OMP_NUM_THREADS set to \d+, not 1\."),  # paddle/__init__.py
    re.compile(r"^PLEASE USE OMP_NUM_THREADS WISELY\.$"),  # ... its second line
    re.compile(r".*UserWarning: No ccache found\."),  # paddle.utils.cpp_extension at import
    re.compile(r".*UserWarning: When training, we now always track global mean and "
               r"variance\."),  # paddle.nn.BatchNorm at the first training step
    re.compile(r"^\s+warnings\.warn\("),  # ... the source line Python shows under a warning
    re.compile(r"^gcseg cpu setup: "),  # gcseg.cpu_env.configure
    re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (INFO|WARNING) "),  # train.py's log lines
    re.compile(r"^\[ ?(WARN|ERROR):\d+@[\d.]+\] global "),  # OpenCV decoder warnings
]


def error_lines(stderr: str) -> List[str]:
    """stderr without the known import-time and log lines (see the module docstring)."""
    return [line for line in stderr.splitlines()
            if line.strip() and not any(pattern.match(line) for pattern in NOISE)]


def run(script: str, *args: str, env_extra=None) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "GCSEG_DEBUG"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, str(SCRIPTS / script), *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env)


def assert_one_line_error(result: subprocess.CompletedProcess, *names: str) -> str:
    """Exit 2, exactly one ``error:`` line naming each of ``names``, no traceback."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    from datagen import make_cityscapes_tree
    root = tmp_path_factory.mktemp("cli")
    make_cityscapes_tree(root / "data", n_train=1, n_val=1)
    path = root / "tiny.yml"
    path.write_text(f"""
batch_size: 1
iters: 1
model:
  type: GCNet
  backbone: {{type: ResNet18_vd, output_stride: 8}}
  gc_channels: 16
optimizer: {{type: SGD, momentum: 0.9}}
lr_scheduler: {{type: PolynomialDecay, learning_rate: 0.01}}
loss: {{types: [{{type: CrossEntropyLoss}}], coef: [1, 0.4]}}
train_dataset:
  type: Cityscapes
  dataset_root: {root / 'data'}
  mode: train
  transforms: [{{type: Normalize}}]
val_dataset:
  type: Cityscapes
  dataset_root: {root / 'data'}
  mode: val
  transforms: [{{type: Normalize}}]
global: {{device: cpu}}
""")
    return path


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nope.yml"
    assert_one_line_error(run("val.py", "--config", missing, "--model_path", "m.pdparams"),
                          missing, "not found")


def test_invalid_yaml(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("model: {type: GCNet\n  backbone: [\n")
    assert_one_line_error(run("train.py", "--config", broken), broken, "invalid YAML")


def test_malformed_opts(config):
    assert_one_line_error(run("train.py", "--config", config, "--opts", "batch_size"),
                          "--opts", "batch_size", "key=value")


def test_bad_flag_value(config, tmp_path):
    assert_one_line_error(run("train.py", "--config", config, "--save_interval", "0",
                              "--save_dir", tmp_path), "--save_interval", "0")


def test_missing_dataset_root(config, tmp_path):
    assert_one_line_error(run("train.py", "--config", config, "--save_dir", tmp_path, "--opts",
                              f"train_dataset.dataset_root={tmp_path / 'gone'}"),
                          tmp_path / "gone")


def test_missing_model_path(config, tmp_path):
    missing = tmp_path / "absent.pdparams"
    image = next((config.parent / "data" / "leftImg8bit" / "val").rglob("*.png"))
    assert_one_line_error(run("val.py", "--config", config, "--model_path", missing),
                          missing, "not found")
    assert_one_line_error(run("predict.py", "--config", config, "--model_path", missing,
                              "--image_path", image, "--save_dir", tmp_path), missing, "not found")


@pytest.mark.parametrize("name", ["absent.png", "absent_dir", "absent.txt"])
def test_missing_image_path(config, tmp_path, name):
    missing = tmp_path / name
    assert_one_line_error(run("predict.py", "--config", config, "--model_path", "m.pdparams",
                              "--image_path", missing, "--save_dir", tmp_path),
                          f"--image_path {missing}", "not found")


def test_debug_shows_the_traceback(tmp_path):
    missing = tmp_path / "nope.yml"
    by_flag = run("val.py", "--config", missing, "--model_path", "m.pdparams", "--debug")
    by_env = run("val.py", "--config", missing, "--model_path", "m.pdparams",
                 env_extra={"GCSEG_DEBUG": "1"})
    for result in (by_flag, by_env):
        assert result.returncode != 0
        assert "Traceback" in result.stderr and "ConfigError" in result.stderr


@pytest.mark.parametrize("flag, value, noun", [("--iters", "-1", "an integer"),
                                               ("--batch_size", "0", "an integer"),
                                               ("--learning_rate", "-0.1", "a number"),
                                               ("--log_iters", "ten", "an integer")])
def test_train_flags_must_be_positive(flag, value, noun):
    """Reported at the flag, before any config work (the config file does not even exist)."""
    line = assert_one_line_error(run("train.py", "--config", "missing.yml", flag, value), flag)
    assert line == f"error: {flag}: expected {noun} above 0, got '{value}'"
