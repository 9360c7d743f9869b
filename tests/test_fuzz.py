"""Fuzzing the two text inputs users write by hand: config YAML (with ``_base_`` and ``--opts``)
and dataset file lists. Whatever the text, the result is a gcseg error or a working object,
never another exception."""
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gcseg.config import Config, register_components
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


ACCESSORS = [lambda cfg: [cfg.runtime(section) for section in ("global", "train", "test")],
             lambda cfg: cfg.batch_size, lambda cfg: cfg.iters,
             lambda cfg: cfg.dataset_num_classes(), lambda cfg: cfg.loss,
             lambda cfg: cfg.lr_scheduler, lambda cfg: cfg.train_dataset,
             lambda cfg: cfg.val_dataset, lambda cfg: cfg.dump()]


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
