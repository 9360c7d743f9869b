"""Fuzzing the two text inputs users write by hand: config YAML (with ``_base_`` and ``--opts``)
and dataset file lists. Whatever the text, the result is a gcseg error or a working object,
never another exception."""
from pathlib import Path
from typing import Any
from unittest import mock

import paddle
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gcseg.builder import register_components
from gcseg.config import Config
from gcseg.data.datasets import Dataset
from gcseg.errors import GcsegError
from gcseg.registry import DATASETS, LOSSES, LR_SCHEDULERS, TRANSFORMS

FUZZ = settings(max_examples=int(__import__("os").environ.get("FUZZ_N", 200)), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

KNOWN_KEYS = ["_base_", "_inherited_", "batch_size", "iters", "model", "train_dataset",
              "val_dataset", "loss", "types", "coef", "lr_scheduler", "learning_rate",
              "optimizer", "transforms", "type", "num_classes", "dataset_root", "mode",
              "global", "train", "test", "test_config", "scales", "device"]
register_components()
TYPE_NAMES = sorted({*DATASETS, *LOSSES, *LR_SCHEDULERS, *TRANSFORMS})

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2 ** 40, 2 ** 40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["..", "base.yml", "./", "/", "x.yml", "\x00", "1e9", "~", "[1,", "{a"]),
    st.sampled_from(TYPE_NAMES))
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=8), st.integers(-3, 3))
yaml_values = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)), max_leaves=20)
ARGUMENTS = ["dataset_root", "mode", "num_classes", "transforms", "train_path", "val_path",
             "separator", "ignore_index", "learning_rate", "end_lr", "power", "warmup_iters",
             "warmup_start_lr", "decay_steps", "crop_size", "min_scale_factor",
             "max_scale_factor", "scale_step_size", "target_size", "mean", "std", "prob",
             "weight", "thresh", "min_kept", "im_padding_value", "label_padding_value"]
components = st.fixed_dictionaries({"type": st.sampled_from(TYPE_NAMES)}, optional={
    name: st.one_of(scalars, st.lists(scalars, max_size=3)) for name in ARGUMENTS})
sections = st.fixed_dictionaries({}, optional={
    "batch_size": scalars, "iters": scalars,
    "train_dataset": components.map(lambda c: {**c, "transforms": [c]} if "mode" in c else c),
    "val_dataset": components, "lr_scheduler": components,
    "loss": st.fixed_dictionaries({"types": st.lists(components, max_size=2),
                                   "coef": st.lists(scalars, max_size=2)})})
documents = st.one_of(sections, st.dictionaries(keys, yaml_values, max_size=8), yaml_values)
opts = st.lists(st.one_of(
    st.text(max_size=20),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KNOWN_KEYS + ["a.b.c", "model.type",
                                                                     "train.save_dir", "."]),
              st.text(max_size=12))), max_size=3)


# Model and optimizer sections around a tiny GCNet (ResNet18_vd, 4 to 8 context channels), with
# values of the wrong type among right ones. Numbers stay in range: large ones would ask for huge
# tensors, and GCNet does not check that its channel counts (gc_channels * ratio, num_classes)
# are positive, which only fails at the first forward.
wrong_types = st.one_of(st.none(), st.text(max_size=6),
                        st.sampled_from(["ResNet18_vd", "GCNet", "SGD", "1e-4"]),
                        st.lists(st.integers(-2, 4) | st.text(max_size=3), max_size=3),
                        st.dictionaries(st.sampled_from(["type", "layers"]),
                                        st.sampled_from(["ResNet18_vd", 18, None]), max_size=2)
                        ).map(lambda value: value)  # one branch of a one_of, not five


def maybe_wrong(right: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(right, wrong_types)


TINY_BACKBONE = {"type": "ResNet18_vd", "output_stride": 32, "pretrained": None}
TINY_MODEL = {"type": "GCNet", "backbone": TINY_BACKBONE, "gc_channels": 8, "num_classes": 2}
flags = maybe_wrong(st.booleans())
backbones = st.fixed_dictionaries(
    {"type": st.just("ResNet18_vd"), "output_stride": maybe_wrong(st.sampled_from([8, 32, 7])),
     "pretrained": st.none()},
    optional={"multi_grid": maybe_wrong(st.lists(st.integers(-1, 3), max_size=4))})
models = st.fixed_dictionaries(
    {"type": st.just("GCNet"), "backbone": maybe_wrong(backbones),
     "gc_channels": maybe_wrong(st.integers(4, 8)), "num_classes": st.integers(1, 3)},
    optional={"backbone_indices": maybe_wrong(st.lists(st.integers(-5, 4), max_size=3)),
              "ratio": maybe_wrong(st.floats(0.25, 1)), "enable_auxiliary_loss": flags,
              "align_corners": flags})


def one_value_made_wrong(section: dict, index: int, wrong: Any) -> dict:
    key = sorted(section)[index % len(section)]
    return {**section, key: wrong}


def right_or_one_wrong(sections: st.SearchStrategy) -> st.SearchStrategy:
    """A right section, or one with a single value of the wrong type: a wrong value among
    right ones is what reaches the first training step."""
    return st.one_of(sections, st.builds(one_value_made_wrong, sections, st.integers(0, 9),
                                         wrong_types))


def optimizer_sections(types: list, arguments: dict) -> st.SearchStrategy:
    return st.fixed_dictionaries(
        {"type": st.sampled_from(types), "weight_decay": st.floats(0, 1e-3) | st.none()},
        optional={"grad_clip": st.none(), **arguments})


fractions = st.floats(0, 1)
optimizers = right_or_one_wrong(st.one_of(
    optimizer_sections(["SGD", "sgd"], {"momentum": fractions, "use_nesterov": st.booleans()}),
    optimizer_sections(["Adam", "AdamW"], {"beta1": fractions, "beta2": fractions,
                                           "epsilon": st.floats(1e-8, 1e-3)}),
    optimizer_sections(["RMSProp"], {"rho": fractions, "momentum": fractions})))
lr_schedulers = right_or_one_wrong(st.fixed_dictionaries(
    {"type": st.just("PolynomialDecay"), "learning_rate": st.floats(1e-4, 0.1)},
    optional={"warmup_iters": st.integers(0, 3), "warmup_start_lr": st.floats(0, 1e-3),
              "end_lr": st.floats(0, 1e-4), "power": st.floats(0.5, 2)}))


def one_training_step(cfg: Config) -> None:
    """A step of the config's optimizer on its model: Paddle checks some optimizer values only
    here ("'str' object is not callable" for a text ``weight_decay``)."""
    model, optimizer = cfg.model, cfg.optimizer
    logits = model(paddle.zeros([1, 3, 32, 32]))  # each [1, num_classes, 32, 32]
    paddle.add_n([logit.mean() for logit in logits]).backward()
    optimizer.step()
    optimizer.clear_grad()


ACCESSORS = [lambda cfg: [cfg.runtime(section) for section in ("global", "train", "test")],
             lambda cfg: cfg.batch_size, lambda cfg: cfg.iters,
             lambda cfg: cfg.dataset_num_classes(), lambda cfg: cfg.loss,
             lambda cfg: cfg.lr_scheduler, lambda cfg: cfg.train_dataset,
             lambda cfg: cfg.val_dataset, lambda cfg: cfg.model, lambda cfg: cfg.optimizer,
             lambda cfg: cfg.dump()]


def one_line_gcseg_error(error: GcsegError) -> None:
    assert "\n" not in str(error), str(error)


def exercise(cfg: Config) -> None:
    """What scripts read from a config before building the model, each on its own."""
    for accessor in ACCESSORS:
        try:
            accessor(cfg)
        except GcsegError as error:
            one_line_gcseg_error(error)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(document=documents, base=st.one_of(st.none(), documents), options=opts,
       raw=st.one_of(st.none(), st.text(max_size=60)))
def test_any_config_text_gives_a_gcseg_error_or_a_config(workdir, document, base, options, raw):
    (workdir / "base.yml").write_text(yaml.safe_dump(base), encoding="utf-8")
    path = workdir / "config.yml"
    path.write_text(raw if raw is not None else yaml.safe_dump(document), encoding="utf-8")
    try:
        exercise(Config(path, options))
    except GcsegError as error:
        one_line_gcseg_error(error)


@pytest.fixture(scope="module")
def tiny_model(workdir):
    path = workdir / "tiny.yml"
    path.write_text(yaml.safe_dump({"model": TINY_MODEL}), encoding="utf-8")
    return Config(path).model


@settings(FUZZ, max_examples=max(FUZZ.max_examples // 10, 5))
@given(model=models, options=st.lists(st.sampled_from([
    "model.backbone=ResNet18_vd", "model.backbone.output_stride=16", "model.gc_channels=x"]),
    max_size=1))
def test_any_model_section_gives_a_gcseg_error_or_a_model(workdir, model, options):
    path = workdir / "model.yml"
    path.write_text(yaml.safe_dump({"model": model}), encoding="utf-8")
    try:
        Config(path, options).model
    except GcsegError as error:
        one_line_gcseg_error(error)


@settings(FUZZ, max_examples=max(FUZZ.max_examples // 4, 5))
@given(optimizer=optimizers, lr_scheduler=lr_schedulers, options=st.lists(st.sampled_from([
    "optimizer.weight_decay=abc", "optimizer.momentum=[0.9]", "lr_scheduler.warmup_iters=2"]),
    max_size=1))
def test_any_optimizer_section_gives_a_gcseg_error_or_a_training_step(
        workdir, tiny_model, optimizer, lr_scheduler, options):
    """Every example trains the one tiny model, so that each builds only its optimizer."""
    path = workdir / "optimizer.yml"
    document = {"iters": 10, "model": TINY_MODEL, "optimizer": optimizer,
                "lr_scheduler": lr_scheduler}
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    try:
        with mock.patch.object(Config, "model", property(lambda cfg: tiny_model)):
            one_training_step(Config(path, options))
    except GcsegError as error:
        one_line_gcseg_error(error)


@FUZZ
@given(text=st.one_of(st.text(st.characters(blacklist_categories=("Cs",)), max_size=200),
                      st.binary(max_size=120).map(lambda b: b.decode("latin-1"))),
       raw_bytes=st.one_of(st.none(), st.binary(max_size=80)),
       separator=st.sampled_from([" ", ",", "\t", "|", "  ", "", "\n", "é"]),
       mode=st.sampled_from(["train", "val", "test"]))
def test_any_file_list_gives_a_gcseg_error_or_a_dataset(workdir, text, raw_bytes, separator,
                                                        mode):
    (workdir / "img.png").write_bytes(b"")
    list_path = workdir / "list.txt"
    if raw_bytes is not None:
        list_path.write_bytes(raw_bytes)
    else:
        list_path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        dataset = Dataset(str(workdir), [], 3, mode=mode, separator=separator,
                          **{f"{mode}_path": str(list_path)})
    except GcsegError:
        return
    assert all(isinstance(img, str) for img, _ in dataset.file_list)


def test_fuzzing_reaches_the_builders():
    """The strategies name registered components, so building gets exercised too."""
    assert {"Cityscapes", "CrossEntropyLoss", "PolynomialDecay", "Normalize"} <= set(TYPE_NAMES)
