"""User mistakes on the command line end as one ``error: ...`` line and exit code 2, no traceback;
``--debug`` / ``GCSEG_DEBUG=1`` shows the traceback instead. (conftest's ``error_lines`` drops
the stderr lines that are not gcseg's to control, so anything else - a traceback, a second
message - fails the tests.)
"""
import pytest

from conftest import assert_one_line_error, run_script


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nope.yml"
    assert_one_line_error(run_script("val.py", "--config", missing, "--model_path", "m.pdparams"),
                          missing, "not found")


def test_invalid_yaml(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("model: {type: GCNet\n  backbone: [\n")
    assert_one_line_error(run_script("train.py", "--config", broken), broken, "invalid YAML")


def test_malformed_opts(config):
    assert_one_line_error(run_script("train.py", "--config", config, "--opts", "batch_size"),
                          "--opts", "batch_size", "key=value")


def test_bad_flag_value(config, tmp_path):
    assert_one_line_error(run_script("train.py", "--config", config, "--save_interval", "0",
                              "--save_dir", tmp_path), "--save_interval", "0")


def test_missing_dataset_root(config, tmp_path):
    assert_one_line_error(run_script("train.py", "--config", config, "--save_dir", tmp_path,
                                     "--opts", f"train_dataset.dataset_root={tmp_path / 'gone'}"),
                          tmp_path / "gone")


def test_missing_model_path(config, tmp_path):
    missing = tmp_path / "absent.pdparams"
    image = next((config.parent / "data" / "leftImg8bit" / "val").rglob("*.png"))
    assert_one_line_error(run_script("val.py", "--config", config, "--model_path", missing),
                          missing, "not found")
    assert_one_line_error(run_script("predict.py", "--config", config, "--model_path", missing,
                              "--image_path", image, "--save_dir", tmp_path), missing, "not found")


@pytest.mark.parametrize("name", ["absent.png", "absent_dir", "absent.txt"])
def test_missing_image_path(config, tmp_path, name):
    missing = tmp_path / name
    assert_one_line_error(run_script("predict.py", "--config", config, "--model_path", "m.pdparams",
                              "--image_path", missing, "--save_dir", tmp_path),
                          f"--image_path {missing}", "not found")


def test_debug_shows_the_traceback(tmp_path):
    missing = tmp_path / "nope.yml"
    by_flag = run_script("val.py", "--config", missing, "--model_path", "m.pdparams", "--debug")
    by_env = run_script("val.py", "--config", missing, "--model_path", "m.pdparams",
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
    result = run_script("train.py", "--config", "missing.yml", flag, value)
    line = assert_one_line_error(result, flag)
    assert line == f"error: {flag}: expected {noun} above 0, got '{value}'"
