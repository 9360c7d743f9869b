"""PaddleSeg's training options: ``use_ema`` (against a numpy EMA of the weights, and across a
resume), ``early_stop_intervals``, ``profiler_options``, ``to_static_training``, ``repeats``,
``data_format`` and ``use_multilabel``; each on a tiny GCNet-R18 run (64x32 crops)."""
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import paddle
import pytest

from gcseg.config import Config
from gcseg.engine.ema import EMA_FILE, ExponentialMovingAverage, ema_decay
from gcseg.engine.profiler import parse_profiler_options
from gcseg.engine.trainer import EarlyStopHook, Hook, StepResult, Trainer, TrainSettings
from gcseg.engine.vdl import eval_scalars
from gcseg.errors import UsageError
from conftest import (LossRecorder, assert_one_line_error, run_script, run_tiny,
                      write_tiny_config)


def make_trainer(config_path: Path, save_dir: Path, opts: Optional[List[str]] = None,
                 **settings: Any) -> Trainer:
    cfg = Config(config_path, opts)
    trainer = Trainer(cfg, TrainSettings.from_config(cfg, save_dir=str(save_dir), **settings))
    trainer.recorder = LossRecorder()
    trainer.hooks.append(trainer.recorder)
    return trainer


def numpy_state(layer: paddle.nn.Layer) -> Dict[str, np.ndarray]:
    return {key: value.numpy().copy() for key, value in layer.state_dict().items()}


class WeightRecorder(Hook):
    """The model's state dict after every step, as numpy."""

    def __init__(self) -> None:
        self.states: Dict[int, Dict[str, np.ndarray]] = {}

    def after_step(self, trainer: Trainer, step: StepResult) -> None:
        self.states[trainer.iter] = numpy_state(trainer.model)


def numpy_ema(initial: Dict[str, np.ndarray], states: Dict[int, Dict[str, np.ndarray]],
              last: int, first: int = 1) -> Dict[str, np.ndarray]:
    """PaddleSeg's EMA, written out: e = d e + (1 - d) w_t, d = min(1 - 1/(t + 1), 0.999)."""
    average = {key: value.astype(np.float64) for key, value in initial.items()}
    for t in range(first, last + 1):
        decay = min(1 - 1 / (t + 1), 0.999)
        average = {key: decay * value + (1 - decay) * states[t][key]
                   for key, value in average.items()}
    return average


# ----------------------------------------------------------------------------- EMA
def test_ema_weights_match_a_numpy_ema_and_are_saved_and_evaluated(tmp_path):
    trainer = make_trainer(write_tiny_config(tmp_path), tmp_path / "out", ["iters=4"],
                           use_ema=True, do_eval=True)
    initial, weights = numpy_state(trainer.model), WeightRecorder()
    trainer.hooks.insert(0, weights)
    trainer.train()
    for iteration in (2, 4):
        saved = paddle.load(str(tmp_path / "out" / f"iter_{iteration}" / EMA_FILE))
        expected = numpy_ema(initial, weights.states, iteration)
        assert set(saved) == set(expected)
        for key, value in expected.items():
            np.testing.assert_allclose(saved[key].numpy(), value, rtol=1e-5, atol=1e-7,
                                       err_msg=key)
    moved = [key for key in initial if not np.allclose(initial[key], weights.states[4][key])]
    assert len(moved) > 20  # the weights did change, so the EMA differs from them
    best = json.loads((tmp_path / "out" / "ema_best_model" / "best_model.json").read_text())
    assert best["iter"] in (2, 4)
    assert (tmp_path / "out" / "ema_best_model" / EMA_FILE).is_file()


def test_ema_decay_is_capped_at_0999_as_in_paddleseg():
    assert [ema_decay(t) for t in (1, 3, 999, 5000)] == [0.5, 0.75, 0.999, 0.999]
    layer = paddle.nn.Linear(3, 2)
    ema = ExponentialMovingAverage(layer)
    start = layer.weight.numpy().copy()
    layer.weight.set_value(start + 1.0)
    ema.update(layer, 5000)
    np.testing.assert_allclose(ema.model.weight.numpy(), start + 0.001, rtol=1e-6)


def test_a_resumed_run_continues_the_ema_exactly(tmp_path):
    config_path = write_tiny_config(tmp_path)
    make_trainer(config_path, tmp_path / "whole", ["iters=4"], use_ema=True).train()
    make_trainer(config_path, tmp_path / "resumed", ["iters=4"], use_ema=True,
                 resume_model=str(tmp_path / "whole" / "iter_2")).train()
    whole = paddle.load(str(tmp_path / "whole" / "iter_4" / EMA_FILE))
    split = paddle.load(str(tmp_path / "resumed" / "iter_4" / EMA_FILE))
    for key in whole:
        np.testing.assert_allclose(split[key].numpy(), whole[key].numpy(), rtol=1e-5,
                                   atol=1e-7, err_msg=key)


def test_resuming_a_checkpoint_without_ema_starts_the_average_from_its_weights(tmp_path):
    config_path = write_tiny_config(tmp_path)
    make_trainer(config_path, tmp_path / "plain", ["iters=4"]).train()
    resumed = make_trainer(config_path, tmp_path / "ema", ["iters=4"], use_ema=True,
                           resume_model=str(tmp_path / "plain" / "iter_2"))
    initial, weights = numpy_state(resumed.model), WeightRecorder()
    resumed.hooks.insert(0, weights)
    resumed.train()
    saved = paddle.load(str(tmp_path / "ema" / "iter_4" / EMA_FILE))
    for key, value in numpy_ema(initial, weights.states, 4, first=3).items():
        np.testing.assert_allclose(saved[key].numpy(), value, rtol=1e-5, atol=1e-7, err_msg=key)


# ----------------------------------------------------------------------------- early stop
class ScriptedEvaluation(Hook):
    """Stands in for the evaluation: the mIoU of iteration ``t`` is ``mious[t]``."""

    def __init__(self, mious: Dict[int, float]) -> None:
        self.mious, self.last_iter, self.last_results = mious, 0, None

    def after_step(self, trainer: Trainer, step: StepResult) -> None:
        if trainer.iter in self.mious:
            self.last_iter, self.last_results = trainer.iter, {"mIoU": self.mious[trainer.iter]}


@pytest.mark.parametrize("intervals, stop", [(2, 8), (3, 10)])
def test_early_stop_counts_evaluations_below_the_best(tmp_path, intervals, stop):
    """Best 0.5 at 2; 0.4 at 4 (count 1); equal 0.5 at 6 (unchanged); 0.3 at 8 (2); 0.2 at
    10 (3). A better mIoU would restart the count."""
    mious = {2: 0.5, 4: 0.4, 6: 0.5, 8: 0.3, 10: 0.2, 12: 0.1}
    trainer = make_trainer(write_tiny_config(tmp_path), tmp_path / "out", ["iters=12"])
    scripted = ScriptedEvaluation(mious)
    trainer.hooks[-2:-2] = [scripted, EarlyStopHook(scripted, intervals)]  # before saving
    summary = trainer.train()
    assert trainer.iter == stop and max(trainer.recorder.losses) == stop
    assert summary["stop_reason"].startswith("early stop")
    assert (tmp_path / "out" / f"iter_{stop}").is_dir()
    assert not (tmp_path / "out" / f"iter_{stop + 2}").exists()


def test_early_stop_state_is_in_the_checkpoint(tmp_path):
    trainer = make_trainer(write_tiny_config(tmp_path), tmp_path / "out", ["iters=4"])
    scripted = ScriptedEvaluation({2: 0.5, 4: 0.25})
    trainer.hooks[-2:-2] = [scripted, EarlyStopHook(scripted, 5)]
    trainer.train()
    resumed = make_trainer(write_tiny_config(tmp_path), tmp_path / "out", ["iters=6"],
                           do_eval=True, early_stop_intervals=5,
                           resume_model=str(tmp_path / "out" / "iter_4"))
    hook = next(h for h in resumed.hooks if isinstance(h, EarlyStopHook))
    assert (hook.best, hook.count) == (0.5, 1)


def test_early_stop_needs_do_eval(tmp_path):
    with pytest.raises(UsageError, match="--early_stop_intervals counts evaluations: it needs "
                                         "--do_eval"):
        make_trainer(write_tiny_config(tmp_path), tmp_path / "out", early_stop_intervals=2)


# ----------------------------------------------------------------------------- profiler
def test_profiler_writes_its_trace_where_asked_and_ends_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trace = tmp_path / "profiles" / "run.json"
    trainer = make_trainer(write_tiny_config(tmp_path), tmp_path / "out", ["iters=8"],
                           profiler_options=f"batch_range=[1, 3]; profile_path={trace}")
    summary = trainer.train()
    events = json.loads(trace.read_text())["traceEvents"]
    assert sum(event.get("name", "").startswith("ProfileStep") for event in events) >= 2
    assert trainer.iter == 4 and summary["stop_reason"].startswith("profiling finished")
    assert (tmp_path / "out" / "iter_4").is_dir()
    assert not (tmp_path / "profiler_log").exists()  # Paddle's default place stays unused


def test_profiler_options_in_paddlesegs_format(tmp_path):
    options = parse_profiler_options(
        "batch_range=[50, 60]; state=CPU; sorted_key=ave; tracer_option=OpDetail; "
        "exit_on_finished=false", str(tmp_path))
    assert options == {"batch_range": [50, 60], "state": "CPU", "sorted_key": "ave",
                       "tracer_option": "OpDetail", "exit_on_finished": False,
                       "profile_path": str(tmp_path / "profile.json")}
    for text, expected in [("batch_range=[5, 2]", "batch_range: expected [first, last]"),
                           ("sorted_key=calls", "sorted_key: expected one of total, ave"),
                           ("profile=x", "'profile=x': expected key=value")]:
        with pytest.raises(UsageError, match=r"--profiler_options: " + expected.replace(
                "[", r"\[").replace("]", r"\]")):
            parse_profiler_options(text, str(tmp_path))


# ----------------------------------------------------------------------------- to_static
def test_to_static_training_gives_the_dygraph_losses(tmp_path):
    config_path = write_tiny_config(tmp_path)
    dygraph = make_trainer(config_path, tmp_path / "dygraph", ["iters=3"])
    dygraph.train()
    static = make_trainer(config_path, tmp_path / "static", ["iters=3"],
                          to_static_training=True)
    assert static.forward is not static.network
    static.train()
    for iteration in (1, 2, 3):
        np.testing.assert_allclose(static.recorder.losses[iteration],
                                   dygraph.recorder.losses[iteration], rtol=1e-4, atol=1e-5)


def test_to_static_training_is_read_from_the_configs_top_level(tmp_path):
    cfg = Config(write_tiny_config(tmp_path), ["to_static_training=True"])
    assert TrainSettings.from_config(cfg).to_static_training is True
    assert TrainSettings.from_config(cfg, to_static_training=False).to_static_training is False


# ----------------------------------------------------------------------------- repeats
def test_repeats_makes_each_epoch_visit_the_list_that_many_times(tmp_path):
    config_path = write_tiny_config(tmp_path)  # 6 training samples, batch 2
    plain = make_trainer(config_path, tmp_path / "a")
    twice = make_trainer(config_path, tmp_path / "b", ["train.repeats=2"])
    assert (plain.loader.batches_per_epoch, twice.loader.batches_per_epoch) == (3, 6)
    assert make_trainer(config_path, tmp_path / "c", repeats=3).loader.batches_per_epoch == 9
    assert len(twice.cfg.train_dataset) == 6  # the config's dataset itself is unchanged
    twice.cfg.dic["iters"] = 4
    twice.iters = 4
    twice.train()
    assert twice.epoch == 1  # 4 steps fit in the first, doubled epoch


# ----------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("settings, message", [
    ({"data_format": "NHWC"}, "--data_format NHWC: GCNet runs in NCHW only"),
    ({"data_format": "NCWH"}, "--data_format: expected NCHW or NHWC, got 'NCWH'"),
    ({"use_multilabel": True}, "--use_multilabel: not supported for GCNet"),
    ({"repeats": 0}, "--repeats: expected a positive integer, got 0"),
])
def test_what_gcnet_cannot_do_is_refused_in_one_line(tmp_path, settings, message):
    with pytest.raises(UsageError) as error:
        TrainSettings.from_config(Config(write_tiny_config(tmp_path)), **settings)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_train_script_refuses_nhwc_from_the_flag_and_from_global_section(tmp_path):
    config_path = write_tiny_config(tmp_path)
    assert_one_line_error(run_script("train.py", "--config", config_path, "--data_format", "NHWC",
                              "--save_dir", tmp_path / "out"), "--data_format NHWC")
    assert_one_line_error(run_script("train.py", "--config", config_path, "--use_multilabel",
                              "--opts", "global.data_format=NCHW"), "--use_multilabel")


def test_a_resumed_run_does_not_fetch_the_pretrained_weights_its_checkpoint_replaces(tmp_path):
    """Offline, a config naming backbone weights by an unreachable URL still resumes."""
    config_path = write_tiny_config(tmp_path)
    unreachable = "model.backbone.pretrained=http://127.0.0.1:9/resnet18_vd_ssld.tar.gz"
    save_dir = tmp_path / "out"
    first = run_script("train.py", "--config", config_path, "--iters", "2", "--save_dir",
                       save_dir, "--opts", "model.backbone.pretrained=null")
    assert first.returncode == 0, first.stderr[-3000:]
    offline = {"GCSEG_HOME": str(tmp_path / "empty_cache")}
    fresh = run_script("train.py", "--config", config_path, "--iters", "4", "--save_dir",
                       tmp_path / "fresh", "--opts", unreachable, env_extra=offline)
    assert_one_line_error(fresh, "cannot download")  # the URL really is unreachable
    resumed = run_script("train.py", "--config", config_path, "--iters", "4", "--save_dir",
                         save_dir, "--resume_model", save_dir / "iter_2", "--opts", unreachable,
                         env_extra=offline)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (save_dir / "iter_4" / "model.pdparams").exists()


def test_the_configs_test_auc_roc_reaches_the_evaluations_during_training(tmp_path):
    """PaddleSeg passes its test_config (auc_roc included) to the evaluations of train()."""
    config_path = write_tiny_config(tmp_path)  # iters=2: one evaluation (save_interval 2)
    trainer = run_tiny(config_path, tmp_path / "out", ["test.auc_roc=True", "iters=2"],
                       do_eval=True, use_vdl=True)
    results = trainer.summary()["last_eval"]
    assert 0.0 <= results["auc_roc"] <= 1.0
    assert eval_scalars(results)["Evaluate/AUC_ROC"] == results["auc_roc"]
    plain = run_tiny(config_path, tmp_path / "plain", ["iters=2"],
                     do_eval=True).summary()["last_eval"]
    assert "auc_roc" not in plain and "Evaluate/AUC_ROC" not in eval_scalars(plain)
