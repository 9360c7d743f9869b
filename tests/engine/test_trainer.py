"""The training loop: settings, log lines, learning on a tiny run, the NaN stop."""
import logging
import re

import numpy as np
import paddle
import pytest

from gcseg.config import Config
from gcseg.engine import forward
from gcseg.engine.checkpoint import Checkpointer
from gcseg.engine.trainer import Hook, StepResult, Trainer, TrainSettings, train
from gcseg.errors import TrainingError, UsageError
from conftest import run_tiny, write_tiny_config


def test_settings_fall_back_to_the_config_and_reject_unknown_names(tmp_path):
    cfg = Config(write_tiny_config(tmp_path))
    settings = TrainSettings.from_config(cfg, save_dir="out", log_iters=None)
    assert (settings.save_dir, settings.log_iters, settings.save_interval, settings.seed) == \
        ("out", 1, 2, 7)
    assert settings.keep_checkpoint_max == 5 and settings.do_eval is False
    with pytest.raises(UsageError, match="unknown setting"):
        TrainSettings.from_config(cfg, save_every=3)
    with pytest.raises(UsageError, match="--log_iters"):
        TrainSettings.from_config(cfg, log_iters=0)
    with pytest.raises(UsageError, match="fp16 needs a GPU"):
        train(cfg, save_dir=str(tmp_path / "fp16"), precision="fp16")


def test_training_logs_each_step_lowers_the_loss_and_checkpoints(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="gcseg")
    trainer = run_tiny(write_tiny_config(tmp_path), tmp_path / "out",
                       opts=["iters=6", "lr_scheduler.learning_rate=0.05"])
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[TRAIN]")]
    assert len(lines) == 6
    pattern = (r"\[TRAIN\] epoch: (\d+), iter: (\d)/6, loss: [\d.]+ \(loss_0 [\d.]+, "
               r"loss_1 [\d.]+\), lr: [\d.]+, batch_cost: [\d.]+, reader_cost: [\d.]+, "
               r"ips: [\d.]+ samples/sec \| ETA \d\d:\d\d:\d\d")
    epochs = [int(re.fullmatch(pattern, line).group(1)) for line in lines]
    assert epochs == [1, 1, 1, 2, 2, 2]  # 6 samples / batch 2 = 3 batches per epoch
    first, last = sum(trainer.recorder.losses[1]), sum(trainer.recorder.losses[6])
    assert last < first
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["iter_2", "iter_4", "iter_6"]


def test_a_non_finite_loss_stops_naming_the_iteration_and_keeps_the_last_checkpoint(tmp_path):
    config_path = write_tiny_config(tmp_path)
    save_dir = tmp_path / "out"
    opts = ["iters=20", "lr_scheduler.learning_rate=1.0e+10", "lr_scheduler.warmup_iters=0"]
    with pytest.raises(TrainingError) as error:
        run_tiny(config_path, save_dir, opts, save_interval=1)
    message = str(error.value)
    # the loss turns NaN/Inf, or (checked first at a save) BN statistics already have
    stop = re.match(r"iter[ _](\d+): (loss is (nan|inf) \(loss_0 .*, loss_1 .*\)|"
                    r"not saved, the weights hold NaN or Inf)", message)
    failed = int(stop.group(1))
    assert "\n" not in message
    assert failed >= 2 and message.endswith(f"iter_{failed - 1}")
    assert not (save_dir / f"iter_{failed}").exists()
    cfg = Config(config_path, opts)
    state = Checkpointer(str(save_dir), cfg.model, cfg.optimizer).load(
        str(save_dir / f"iter_{failed - 1}"))
    assert state["iter"] == failed - 1 and state["position"] == divmod(failed - 1, 3)


def test_evaluation_during_training_uses_the_configs_test_section(tmp_path):
    """As PaddleSeg does: e.g. the 769x769 configs evaluate (and pick best_model) with sliding
    windows."""
    cfg = Config(write_tiny_config(tmp_path), ["iters=2", "test.is_slide=True",
                                               "test.crop_size=[32,32]", "test.stride=[16,16]"])
    summary = train(cfg, save_dir=str(tmp_path / "out"), do_eval=True)
    inference = summary["last_eval"]["inference"]
    assert inference["is_slide"] is True
    assert tuple(inference["crop_size"]) == (32, 32) and tuple(inference["stride"]) == (16, 16)


def test_evaluations_during_training_change_neither_the_losses_nor_the_model(tmp_path,
                                                                            monkeypatch):
    """An evaluation by the predictor (a BN-folded export with matmul resizes, run by Paddle
    Inference) leaves nothing behind that later steps see: the model keeps its layers and train
    mode, the process its thread count, so the losses and weights equal those of the same run
    without evaluations."""
    monkeypatch.setitem(forward._AUTO_CHOICE, "backend", "predictor")  # what "auto" runs
    config_path, opts = write_tiny_config(tmp_path), ["iters=6"]
    plain = run_tiny(config_path, tmp_path / "plain", opts, save_interval=2)
    evaluated = run_tiny(config_path, tmp_path / "evaluated", opts, save_interval=2, do_eval=True)
    assert evaluated.summary()["last_eval"]["engine"] == "predictor"
    assert evaluated.recorder.losses == plain.recorder.losses  # exactly, head by head
    assert evaluated.model.training
    assert [type(layer) for layer in evaluated.model.sublayers()] == \
        [type(layer) for layer in plain.model.sublayers()]
    weights = plain.model.state_dict()
    for key, value in evaluated.model.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), weights[key].numpy(), err_msg=key)


class OutOfMemoryAt(Hook):
    """Raises what Paddle raises when the device runs out of memory, after step ``iteration``."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def after_step(self, trainer: Trainer, step: StepResult) -> None:
        if trainer.iter == self.iteration:
            raise MemoryError("Out of memory error on GPU 0")


def test_out_of_memory_mid_run_stops_with_one_line_naming_the_iteration(tmp_path):
    with pytest.raises(TrainingError) as error:
        run_tiny(write_tiny_config(tmp_path), tmp_path / "out", ["iters=4"], [OutOfMemoryAt(3)])
    message = str(error.value)
    assert message.startswith("iter 3: out of memory on the device") and "\n" not in message
    assert message.endswith(f"resume with --resume_model {tmp_path / 'out' / 'iter_2'}")


def test_a_save_dir_that_is_a_file_is_refused_before_training(tmp_path):
    (tmp_path / "taken").write_text("not a directory")
    with pytest.raises(UsageError, match=r"--save_dir .*taken: exists and is not a directory"):
        train(Config(write_tiny_config(tmp_path)), save_dir=str(tmp_path / "taken"))


def test_do_eval_needs_a_val_dataset(tmp_path):
    config_path = write_tiny_config(tmp_path)
    text = config_path.read_text()
    config_path.write_text(text[:text.index("val_dataset:")] + text[text.index("train:"):])
    with pytest.raises(UsageError, match="no val_dataset"):
        train(Config(config_path), save_dir=str(tmp_path / "out"), do_eval=True)
    assert paddle.get_device() == "cpu"
