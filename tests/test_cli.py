"""Test-time flags: given on the command line they win over the config's ``test:`` section,
in either direction (``--is_slide`` / ``--no_is_slide``); not given, the config decides."""
import argparse
import dataclasses

import pytest

from gcseg import cli
from gcseg.config import Config


@pytest.fixture
def slide_config(tmp_path):
    path = tmp_path / "slide.yml"
    path.write_text("test: {is_slide: True, crop_size: [769, 769], stride: [513, 513], "
                    "flip_horizontal: True}\n")
    return Config(path)


def settings_for(cfg: Config, *argv: str) -> dict:
    parser = argparse.ArgumentParser()
    cli.add_inference_args(parser)
    return dataclasses.asdict(cli.inference_settings(parser.parse_args(argv), cfg))


def test_config_value_applies_when_no_flag_is_given(slide_config):
    settings = settings_for(slide_config)
    assert settings["is_slide"] is True and settings["flip_horizontal"] is True
    assert settings["aug_eval"] is False  # runtime default


def test_negative_flags_switch_config_values_off(slide_config):
    settings = settings_for(slide_config, "--no_is_slide", "--no_flip_horizontal")
    assert settings["is_slide"] is False and settings["flip_horizontal"] is False


def test_positive_flags_switch_runtime_defaults_on(slide_config):
    settings = settings_for(slide_config, "--aug_eval", "--flip_vertical")
    assert settings["aug_eval"] is True and settings["flip_vertical"] is True


def test_last_of_a_flag_pair_wins(slide_config):
    assert settings_for(slide_config, "--no_is_slide", "--is_slide")["is_slide"] is True
