"""The config system: PaddleSeg-format YAML, ``_base_`` inheritance, ``--opts``, runtime defaults,
building by ``type:``, and one-line ConfigErrors naming the file and the dotted key."""
import ast
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import paddle
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gcseg.builder import check_arguments
from gcseg.config import Config, load_yaml_with_bases
from gcseg.errors import CheckpointError, ConfigError
from gcseg.models.gcnet import GCNet
from gcseg.registry import OPTIMIZERS
from conftest import ROOT

PADDLESEG_CONFIGS = Path(__file__).parent / "fixtures" / "paddleseg_configs" / "configs"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def paddleseg_merge(path: Path) -> dict:
    """PaddleSeg 2.8's own reading of a config file with its bases (the oracle)."""
    oracle = pytest.importorskip("paddleseg.cvlibs.config")
    return oracle.parse_from_yaml(str(path))


def config_error(path, opts=None, *components: str) -> str:
    """The one-line ConfigError of loading ``path``, then building its model, loss and train
    dataset (when present) and ``components``."""
    with pytest.raises(ConfigError) as info:
        cfg = Config(path, opts)
        for key in ("model", "loss", "train_dataset"):  # components are built on first access
            if key in cfg.dic:
                getattr(cfg, key)
        for key in components:
            getattr(cfg, key)
    message = str(info.value)
    assert "\n" not in message
    return message


# ----------------------------------------------------------------------------- _base_
def test_base_as_string_inherits_and_child_wins(tmp_path):
    write(tmp_path, "base.yml", "batch_size: 2\niters: 100\n")
    child = write(tmp_path, "child.yml", "_base_: base.yml\niters: 50\n")
    assert load_yaml_with_bases(child) == {"batch_size": 2, "iters": 50}


def test_base_as_list_earlier_base_wins_as_in_paddleseg(tmp_path):
    write(tmp_path, "a.yml", "batch_size: 1\nmodel: {type: A, x: 1}\n")
    write(tmp_path, "b.yml", "batch_size: 2\niters: 7\nmodel: {type: B, y: 2}\n")
    child = write(tmp_path, "child.yml", "_base_: [a.yml, b.yml]\n")
    merged = load_yaml_with_bases(child)
    assert merged == {"batch_size": 1, "iters": 7, "model": {"type": "A", "x": 1, "y": 2}}
    assert merged == paddleseg_merge(child)


def test_base_recursive_relative_to_each_file(tmp_path):
    write(tmp_path, "_base_/data.yml", "train_dataset: {type: Cityscapes, mode: train}\n")
    write(tmp_path, "_base_/dataset_aug.yml",
          "_base_: data.yml\ntrain_dataset: {mode: trainaug}\n")
    write(tmp_path, "models/r50.yml", "_base_: ../_base_/dataset_aug.yml\niters: 10\n")
    r101 = write(tmp_path, "models/r101.yml", "_base_: ./r50.yml\nbatch_size: 3\n")
    merged = load_yaml_with_bases(r101)
    assert merged == {"train_dataset": {"type": "Cityscapes", "mode": "trainaug"},
                      "iters": 10, "batch_size": 3}
    assert merged == paddleseg_merge(r101)


def test_nested_dicts_merge_key_by_key_and_lists_are_replaced(tmp_path):
    write(tmp_path, "base.yml", """\
        model:
          backbone: {type: ResNet50_vd, output_stride: 8, pretrained: url}
          gc_channels: 512
        loss: {types: [{type: CrossEntropyLoss}], coef: [1]}
        """)
    child = write(tmp_path, "child.yml", """\
        _base_: base.yml
        model:
          backbone: {type: ResNet101_vd}
        loss: {coef: [1, 0.4]}
        """)
    merged = load_yaml_with_bases(child)
    assert merged["model"] == {"backbone": {"type": "ResNet101_vd", "output_stride": 8,
                                            "pretrained": "url"}, "gc_channels": 512}
    assert merged["loss"] == {"types": [{"type": "CrossEntropyLoss"}], "coef": [1, 0.4]}
    assert merged == paddleseg_merge(child)


def test_inherited_false_replaces_a_section(tmp_path):
    write(tmp_path, "base.yml", "optimizer: {type: SGD, momentum: 0.9, weight_decay: 4.0e-5}\n"
                                "iters: 5\n")
    child = write(tmp_path, "child.yml", """\
        _base_: base.yml
        optimizer:
          _inherited_: False
          type: Adam
        """)
    merged = load_yaml_with_bases(child)
    assert merged == {"optimizer": {"type": "Adam"}, "iters": 5}
    assert merged == paddleseg_merge(child)


def test_paddleseg_fixture_files_merge_as_paddleseg_merges_them():
    for path in sorted(PADDLESEG_CONFIGS.rglob("*.yml")):
        assert load_yaml_with_bases(path) == paddleseg_merge(path), path.name


# ----------------------------------------------------------------------------- --opts
def test_opts_override_numbers_lists_booleans_and_add_keys(tmp_path):
    path = write(tmp_path, "c.yml", """\
        batch_size: 2
        model: {type: GCNet, align_corners: False, backbone: {type: ResNet50_vd}}
        """)
    cfg = Config(path, ["batch_size=8", "model.align_corners=True",
                        "model.backbone.multi_grid=[1, 2, 4]", "model.backbone.pretrained=null",
                        "lr_scheduler.learning_rate=0.0025", "test.scales=[0.75, 1.0]"])
    assert cfg.batch_size == 8
    assert cfg.dic["model"]["align_corners"] is True
    assert cfg.dic["model"]["backbone"] == {"type": "ResNet50_vd", "multi_grid": [1, 2, 4],
                                            "pretrained": None}
    assert cfg.dic["lr_scheduler"] == {"learning_rate": 0.0025}
    assert cfg.runtime("test")["scales"] == [0.75, 1.0]


@pytest.mark.parametrize("opt", ["batch_size", "=3", "model..type=GCNet", " =1"])
def test_opts_without_key_equals_value_are_rejected(tmp_path, opt):
    path = write(tmp_path, "c.yml", "batch_size: 2\n")
    message = config_error(path, [opt])
    assert message.startswith("--opts: ") and "key=value" in message


def test_opts_cannot_descend_into_a_value(tmp_path):
    path = write(tmp_path, "c.yml", "batch_size: 2\n")
    message = config_error(path, ["batch_size.x=1"])
    assert message.startswith("--opts: batch_size.x:")


@pytest.mark.parametrize("raw, value", [
    ("None", None), ("null", None), ("True", True), ("true", True), ("False", False),
    ("false", False), ("[1, 2]", [1, 2]), ("[null, 2]", [None, 2]), ("(512, 512)", [512, 512]),
    ("0.75,1.0,1.25", [0.75, 1.0, 1.25]), ("1e-4", 1e-4), ("'text'", "text"),
    ("{a: 1}", {"a": 1}), ("{'a': (1, 2)}", {"a": [1, 2]}), ("ResNet50_vd", "ResNet50_vd"),
    ("/data/my run/x.pdparams", "/data/my run/x.pdparams"), ("", None)])
def test_opts_values_in_python_and_yaml_spelling(tmp_path, raw, value):
    """PaddleSeg reads --opts values as Python literals (its docs: test_config.scales=0.75,1.0),
    YAML users write null/true; both mean the same."""
    path = write(tmp_path, "c.yml", "batch_size: 2\n")
    assert Config(path, [f"test.value={raw}"]).dic["test"]["value"] == value


@pytest.mark.parametrize("opt, message", [
    ("model.backbone.pretrained=/absent/r18.pdparams",
     "--opts: model.backbone.pretrained: weights file not found: /absent/r18.pdparams"),
    ("model.pretrained=/absent/gcnet.pdparams",
     "--opts: model.pretrained: weights file not found: /absent/gcnet.pdparams")])
def test_weights_errors_from_opts_name_opts(tmp_path, opt, message):
    path = write(tmp_path, "c.yml", TINY_MODEL + "  num_classes: 2\n")
    with pytest.raises(CheckpointError) as error:
        Config(path, [opt]).model
    assert str(error.value) == message


def test_weights_errors_from_the_file_name_the_file_and_the_pretrained_key(tmp_path):
    path = write(tmp_path, "c.yml", TINY_MODEL.replace(
        "pretrained: null", "pretrained: /absent/r18.pdparams") + "  num_classes: 2\n")
    with pytest.raises(CheckpointError) as error:
        Config(path).model
    assert str(error.value) == (f"{path.resolve()}: model.backbone.pretrained: weights file "
                                "not found: /absent/r18.pdparams")


# ----------------------------------------------------------------------------- runtime sections
def test_runtime_sections_give_defaults_that_the_file_overrides(tmp_path):
    path = write(tmp_path, "c.yml", """\
        global: {device: cpu}
        train: {save_interval: 50, do_eval: True}
        test: {is_slide: True, crop_size: [769, 769], stride: [513, 513]}
        """)
    cfg = Config(path)
    assert cfg.runtime("global") == {"data_format": "NCHW", "device": "cpu", "num_workers": 0}
    train = cfg.runtime("train")
    assert (train["save_interval"], train["do_eval"], train["log_iters"]) == (50, True, 10)
    test = cfg.runtime("test")
    assert (test["is_slide"], test["crop_size"], test["stride"]) == (True, [769, 769], [513, 513])
    assert (test["aug_eval"], test["flip_horizontal"]) == (False, False)


def test_old_style_test_config_counts_as_test_section(tmp_path):
    path = write(tmp_path, "c.yml", "test_config: {aug_eval: True, scales: [0.75, 1.0, 1.25]}\n")
    test = Config(path).runtime("test")
    assert test["aug_eval"] is True and test["scales"] == [0.75, 1.0, 1.25]


def test_paddleseg_runtime_keys_use_vdl_repeats_auc_roc_are_accepted(tmp_path):
    """The keys PaddleSeg's runtime.yml gained after 2.8 (train.use_vdl, train.repeats,
    test.auc_roc), and their defaults when absent."""
    path = write(tmp_path, "runtime.yml", """\
        train: {use_vdl: True, repeats: 1}
        test: {auc_roc: True}
        """)
    cfg = Config(path)
    assert (cfg.runtime("train")["use_vdl"], cfg.runtime("train")["repeats"]) == (True, 1)
    assert cfg.runtime("test")["auc_roc"] is True
    defaults = Config(write(tmp_path, "empty.yml", "{}\n"))
    assert (defaults.runtime("train")["use_vdl"], defaults.runtime("train")["repeats"],
            defaults.runtime("test")["auc_roc"]) == (False, 1, False)


def test_shipped_runtime_yml_matches_the_built_in_defaults_except_device():
    cfg = Config(ROOT / "configs" / "_base_" / "runtime.yml")
    assert cfg.runtime("global")["device"] == "gpu"
    for section in ("train", "test"):
        for key, value in cfg.dic[section].items():
            assert cfg.runtime(section)[key] == value


# ----------------------------------------------------------------------------- building
TINY_MODEL = textwrap.dedent("""\
    model:
      type: GCNet
      backbone: {type: ResNet18_vd, output_stride: 32, pretrained: null}
      gc_channels: 16
    """)


def test_num_classes_comes_from_the_dataset_class(tmp_path):
    path = write(tmp_path, "c.yml", TINY_MODEL + "train_dataset: {type: ADE20K}\n")
    cfg = Config(path)
    assert cfg.dataset_num_classes() == 150
    assert cfg.model.head.conv.weight.shape == [150, 16, 1, 1]


def test_num_classes_disagreeing_with_the_dataset_is_an_error(tmp_path):
    path = write(tmp_path, "c.yml", TINY_MODEL + "  num_classes: 5\n"
                                                 "val_dataset: {type: Cityscapes}\n")
    message = config_error(path)
    assert str(path.resolve()) in message and "model.num_classes: 5" in message and "19" in message


def test_single_loss_type_repeats_for_each_coef(tmp_path):
    path = write(tmp_path, "c.yml", "loss: {types: [{type: CrossEntropyLoss}], coef: [1, 0.4]}\n")
    loss = Config(path).loss
    assert [type(t).__name__ for t in loss["types"]] == ["CrossEntropyLoss"] * 2
    assert loss["coef"] == [1.0, 0.4]


def test_optimizer_sgd_with_momentum_and_poly_lr_over_iters(tmp_path):
    path = write(tmp_path, "c.yml", TINY_MODEL + textwrap.dedent("""\
        train_dataset: {type: Cityscapes}
        iters: 100
        optimizer: {type: sgd, momentum: 0.9, weight_decay: 4.0e-5}
        lr_scheduler: {type: PolynomialDecay, learning_rate: 0.01, end_lr: 1.0e-5, power: 0.9}
        """))
    cfg = Config(path)
    assert type(cfg.optimizer).__name__ == "Momentum"
    assert cfg.lr_scheduler.decay_steps == 100
    assert cfg.optimizer.get_lr() == pytest.approx(0.01)


def test_an_argument_gcseg_supplies_is_an_error_in_the_config(tmp_path):
    """PaddleSeg's optimizers reject ``learning_rate`` too; it would be silently replaced by
    the lr_scheduler here otherwise."""
    path = write(tmp_path, "c.yml", TINY_MODEL + textwrap.dedent("""\
        iters: 100
        optimizer: {type: SGD, learning_rate: 0.5}
        lr_scheduler: {type: PolynomialDecay, learning_rate: 0.01}
        """))
    assert config_error(path, ["model.num_classes=5"], "optimizer") == (
        f"{path}: optimizer.learning_rate: set by gcseg, not by the config "
        "(it is the lr_scheduler section); remove it")


def test_learning_rate_holds_a_number_or_a_nested_scheduler(tmp_path):
    path = write(tmp_path, "c.yml", textwrap.dedent("""\
        iters: 100
        lr_scheduler:
          type: LinearWarmup
          learning_rate: {type: PolynomialDecay, learning_rate: 0.1, decay_steps: 10}
          warmup_steps: 5
          start_lr: 0.0
          end_lr: 0.1
        """))
    warmup = Config(path).lr_scheduler
    assert type(warmup.learning_rate).__name__ == "PolynomialDecay"
    assert warmup.learning_rate.decay_steps == 10
    message = config_error(path, ["lr_scheduler.learning_rate.decay_steps=null"], "lr_scheduler")
    assert message == ("--opts: lr_scheduler.learning_rate.decay_steps: required where the "
                       "run's iters do not apply (a scheduler inside another)")


def test_warmup_rises_to_the_schedulers_initial_rate(tmp_path):
    """CyclicLR has no ``learning_rate``: the warmup ends at its ``base_learning_rate``."""
    path = write(tmp_path, "c.yml", textwrap.dedent("""\
        iters: 100
        lr_scheduler: {type: CyclicLR, base_learning_rate: 0.01, max_learning_rate: 0.1,
                       step_size_up: 5, warmup_iters: 2, warmup_start_lr: 0.0}
        """))
    warmup = Config(path).lr_scheduler
    assert (warmup.start_lr, warmup.end_lr, warmup.warmup_steps) == (0.0, 0.01, 2)


@pytest.mark.parametrize("weight_decay", [4e-5, 0, None, paddle.regularizer.L2Decay(4e-5)])
def test_optimizer_factories_take_weight_decay_as_a_number_or_a_regularizer(weight_decay):
    layer = paddle.nn.Linear(2, 1)
    optimizer = OPTIMIZERS.get("SGD")(parameters=layer.parameters(), learning_rate=0.1,
                                      momentum=0.9, weight_decay=weight_decay)
    layer(paddle.ones([1, 2])).sum().backward()
    optimizer.step()
    assert layer.bias.numpy() == pytest.approx([-0.1])


# ----------------------------------------------------------------------------- errors
def test_unknown_type_names_file_key_and_close_names(tmp_path):
    path = write(tmp_path, "c.yml", "loss: {types: [{type: CrossEntropyLos}], coef: [1]}\n")
    message = config_error(path)
    assert message.startswith(str(path.resolve()))
    assert "loss.types.0.type" in message and "did you mean CrossEntropyLoss" in message


def test_an_unknown_type_with_a_line_break_stays_one_line(tmp_path):
    path = write(tmp_path, "c.yml", 'iters: 10\nlr_scheduler: {type: "Poly\\nDecay"}\n')
    message = config_error(path, None, "lr_scheduler")
    assert "\n" not in message and "unknown lr_scheduler type 'Poly\\nDecay'" in message


@pytest.mark.parametrize("name", ["[]", "{a: 1}", "3"])
def test_a_type_that_is_not_a_name(tmp_path, name):
    path = write(tmp_path, "c.yml", f"iters: 10\nlr_scheduler: {{type: {name}}}\n")
    message = config_error(path, None, "lr_scheduler")
    assert message.startswith(f"{path.resolve()}: lr_scheduler.type: expected a name, got "
                              f"{yaml.safe_load(name)!r} (known lr_scheduler types: ")


def test_error_names_the_base_file_that_set_the_key(tmp_path):
    base = write(tmp_path, "_base_/loss.yml", "loss: {types: [{type: Focal}], coef: [1]}\n")
    child = write(tmp_path, "c.yml", "_base_: _base_/loss.yml\nbatch_size: 2\n")
    assert config_error(child).startswith(str(base.resolve()))


def test_missing_required_argument(tmp_path):
    path = write(tmp_path, "c.yml", "model: {type: GCNet}\ntrain_dataset: {type: Cityscapes}\n")
    message = config_error(path)
    assert str(path.resolve()) in message
    assert "model: missing required argument 'backbone' for GCNet" in message


@pytest.mark.parametrize("argument, expected", [
    ("ignore_index: x", "loss.types.0.ignore_index: expected int, got 'x'"),
    ("weight: heavy", "loss.types.0.weight: expected"),  # a sequence (of class weights)
])
def test_wrong_value_type(tmp_path, argument, expected):
    path = write(tmp_path, "c.yml", f"loss: {{types: [{{type: CrossEntropyLoss, {argument}}}],"
                                    " coef: [1]}\n")
    message = config_error(path)
    assert str(path.resolve()) in message
    assert expected in message


def test_unknown_argument_lists_accepted_ones(tmp_path):
    path = write(tmp_path, "c.yml", "loss: {types: [{type: CrossEntropyLoss, ignore: 255}],"
                                    " coef: [1]}\n")
    message = config_error(path)
    assert "loss.types.0.ignore: unknown argument for CrossEntropyLoss" in message
    assert "ignore_index" in message


def test_wrong_schedule_values(tmp_path):
    path = write(tmp_path, "c.yml", "batch_size: 0\n")
    assert config_error(path) == f"{path.resolve()}: batch_size: expected a positive integer, got 0"
    assert "iters: expected a positive integer" in config_error(path, ["batch_size=2",
                                                                       "iters=many"])


def test_missing_base_file(tmp_path):
    path = write(tmp_path, "c.yml", "_base_: ../nowhere/base.yml\n")
    message = config_error(path)
    assert message.startswith(f"{path.resolve()}: _base_: file '../nowhere/base.yml' not found")


def test_base_cycle(tmp_path):
    write(tmp_path, "a.yml", "_base_: b.yml\n")
    path = write(tmp_path, "b.yml", "_base_: a.yml\n")
    message = config_error(path)
    assert "_base_ cycle: b.yml -> a.yml -> b.yml" in message


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "c.yml", "model:\n  type: GCNet\n   backbone: [\n")
    message = config_error(path)
    assert message.startswith(f"{path.resolve()}: invalid YAML at line 3")


def test_non_mapping_top_level(tmp_path):
    path = write(tmp_path, "c.yml", "- type: GCNet\n")
    assert config_error(path) == (f"{path.resolve()}: expected a mapping of keys at the top "
                                  "level, got list")


def test_missing_config_file(tmp_path):
    assert config_error(tmp_path / "none.yml") == f"{tmp_path / 'none.yml'}: config file not found"


def test_script_reports_config_error_in_one_line_with_exit_code_2(tmp_path):
    path = write(tmp_path, "c.yml", "_base_: missing.yml\n")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "val.py"), "--config", str(path),
         "--model_path", str(tmp_path / "model.pdparams")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert lines[-1].startswith("error: ") and "_base_: file 'missing.yml' not found" in lines[-1]


@pytest.mark.parametrize("opt, got", [
    ("model.backbone=ResNet50_vd", "'ResNet50_vd'; did you mean {type: ResNet50_vd}?"),
    ("model.backbone=null", "None"), ("model.backbone=[ResNet50_vd]", "['ResNet50_vd']")])
def test_a_name_where_a_component_is_expected(tmp_path, opt, got):
    path = write(tmp_path, "c.yml", TINY_MODEL + "  num_classes: 2\n")
    assert config_error(path, [opt]) == ("--opts: model.backbone: expected a mapping with type: "
                                         f"and the backbone's arguments, got {got}")


def test_a_name_where_a_component_is_expected_names_the_file(tmp_path):
    path = write(tmp_path, "c.yml", "model: {type: GCNet, num_classes: 2, backbone: ResNet18_vd}\n")
    assert config_error(path).startswith(f"{path.resolve()}: model.backbone: expected a mapping")


@pytest.mark.parametrize("transforms, message", [
    ("Normalize", "train_dataset.transforms: expected a list of transforms, each a mapping with "
                  "type:, got 'Normalize'"),
    ("[Normalize]", "train_dataset.transforms.0: expected a mapping with type: and the "
                    "transform's arguments, got 'Normalize'; did you mean {type: Normalize}?")])
def test_transforms_are_a_list_of_mappings(tmp_path, transforms, message):
    path = write(tmp_path, "c.yml", f"train_dataset: {{type: Cityscapes, dataset_root: ., "
                                    f"transforms: {transforms}}}\n")
    assert config_error(path) == f"{path.resolve()}: {message}"


def test_a_class_annotation_is_checked_with_isinstance():
    with pytest.raises(ConfigError, match=r"^model.backbone: expected Layer, got 'ResNet50_vd'$"):
        check_arguments(GCNet, {"num_classes": 2, "backbone": "ResNet50_vd"}, "model")


@pytest.mark.parametrize("opts, message", [
    (["optimizer.weight_decay=abc"], "optimizer.weight_decay: expected a number or a regularizer "
                                     "(paddle.regularizer.L2Decay), got 'abc'"),
    (["optimizer.type=SGD", "optimizer.momentum=abc"], "optimizer.momentum: expected "),
    (["lr_scheduler.warmup_iters=x"], "lr_scheduler.warmup_iters: expected an integer, got 'x'"),
    (["lr_scheduler.decay_steps=1.5"], "lr_scheduler.decay_steps: expected an integer, got 1.5"),
    (["lr_scheduler.power=abc"], "lr_scheduler.power: expected ")])
def test_optimizer_and_scheduler_values_paddle_would_reject_only_at_the_first_step(
        tmp_path, opts, message):
    """Paddle's annotations cannot check these (2.6 has none), yet a bad value passes its
    constructors: ``weight_decay: abc`` fails at the first step as "'str' object is not
    callable"."""
    path = write(tmp_path, "c.yml", TINY_MODEL + textwrap.dedent("""\
          num_classes: 2
        iters: 10
        optimizer: {type: Adam}
        lr_scheduler: {type: PolynomialDecay, learning_rate: 0.01}
        """))
    assert config_error(path, opts, "optimizer").startswith(f"--opts: {message}")


@pytest.mark.parametrize("name, value, expected", [
    ("beta1", "abc", "a number"), ("epsilon", [1e-8], "a number"), ("beta2", True, "a number"),
    ("learning_rate", "0.1", "a number or an lr scheduler"),
    ("grad_clip", "norm", "a gradient clip (paddle.nn.ClipGradByGlobalNorm) or null"),
    ("lazy_mode", "yes", "true or false")])
def test_optimizer_factories_check_their_values(name, value, expected):
    adam = OPTIMIZERS.get("Adam")
    with pytest.raises(ConfigError) as info:
        adam(parameters=paddle.nn.Linear(2, 2).parameters(), **{name: value})
    assert str(info.value) == f"{name}: expected {expected}, got {value!r}"


@pytest.mark.parametrize("opts, origin, message", [
    ([], "c.yml", "batchsize: unknown top-level key (did you mean batch_size?)"),
    (["iter=5"], "--opts", "iter: unknown top-level key (did you mean iters?)"),
    (["optimzer.type=sgd"], "--opts", "optimzer: unknown top-level key (did you mean optimizer?)"),
    (["zzz=1"], "--opts", "zzz: unknown top-level key (known: batch_size, iters, model, ")])
def test_unknown_top_level_key_names_the_file_and_a_close_match(tmp_path, opts, origin, message):
    path = write(tmp_path, "c.yml", "batchsize: 4\n" if not opts else "batch_size: 4\n")
    origin = str(path.resolve()) if origin == "c.yml" else origin
    assert config_error(path, opts).startswith(f"{origin}: {message}")


def test_unknown_top_level_key_in_a_base_names_the_base(tmp_path):
    base = write(tmp_path, "_base_/b.yml", "lr_schduler: {type: PolynomialDecay}\n")
    child = write(tmp_path, "c.yml", "_base_: _base_/b.yml\nbatch_size: 2\n")
    assert config_error(child) == (f"{base.resolve()}: lr_schduler: unknown top-level key "
                                   "(did you mean lr_scheduler?)")


def test_every_top_level_key_paddleseg_reads_is_accepted(tmp_path):
    path = write(tmp_path, "c.yml", textwrap.dedent("""\
        batch_size: 2
        iters: 10
        learning_rate: {value: 0.01, decay: {type: poly, power: 0.9}}
        distill_loss: {types: [{type: KLLoss}], coef: [1]}
        export: {transforms: [{type: Normalize}]}
        test_dataset: {type: Dataset}
        test_config: {aug_eval: True}
        to_static_training: False
        """))
    assert Config(path).runtime("test")["aug_eval"] is True


def test_every_shipped_and_paddleseg_config_file_loads():
    files = [*(ROOT / "configs").rglob("*.yml"), *PADDLESEG_CONFIGS.rglob("*.yml")]
    assert len(files) > 20
    for path in files:
        Config(path)


def test_config_modules_run_on_python_3_9():
    """Python 3.9 has no ``types.UnionType`` and no 3.10 syntax."""
    for name in ("config.py", "registry.py", "optim.py"):
        ast.parse((ROOT / "gcseg" / name).read_text(encoding="utf-8"), feature_version=(3, 9))
    without_union_type = textwrap.dedent("""\
        import sys, types, typing
        stub = types.ModuleType("types")
        vars(stub).update({k: v for k, v in vars(types).items() if k != "UnionType"})
        sys.modules["types"] = stub
        from gcseg.builder import _type_matches
        sys.modules["types"] = types
        assert _type_matches(None, typing.Optional[int]) and _type_matches(3, int)
        assert not _type_matches("x", typing.Optional[int]) and not _type_matches("x", int)
        """)
    subprocess.run([sys.executable, "-c", without_union_type], check=True, timeout=60)


# ----------------------------------------------------------------------------- fuzz
KEYS = st.sampled_from(["_base_", "_inherited_", "batch_size", "iters", "model", "loss", "types",
                        "coef", "type", "test", "test_config", "train", "global", "optimizer"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False),
                    st.text(max_size=8),
                    st.sampled_from(["CrossEntropyLoss", "x.yml", "GCNet", "a\x00b", ".", ""]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(KEYS, st.text(max_size=4)), inner,
                                                 max_size=3)), max_leaves=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.dictionaries(KEYS, VALUES, max_size=5), VALUES))
def test_any_yaml_gives_a_config_or_a_config_error(document):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "fuzz.yml"
        path.write_text(yaml.safe_dump(document))
        try:
            cfg = Config(path)
            cfg.runtime("test")
            cfg.dataset_num_classes()
            if "loss" in cfg.dic:
                cfg.loss
        except ConfigError as error:
            assert "\n" not in str(error)


def test_model_sizes_paddle_would_reject_at_the_first_forward_fail_at_build():
    config = (Path(__file__).resolve().parents[1] / "configs" / "quickstart" /
              "gcnet_resnet18_os8_quickstart.yml")
    with pytest.raises(ConfigError, match=r"--opts: model\.ratio: gc_channels \* ratio is the GC "
                                          r"block's bottleneck width and must be at least 1, "
                                          r"got 64 \* 0\.001"):
        Config(config, ["model.ratio=0.001"]).model
    from gcseg.models import ResNet18_vd
    with pytest.raises(ConfigError, match=r"^num_classes: expected a positive integer, got 0$"):
        GCNet(0, ResNet18_vd(output_stride=8))
