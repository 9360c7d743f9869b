"""Every shipped config loads, says what its name says, builds its model and datasets, and (one per
dataset) trains one step; the README's results table and the PaddleSeg-layout fixtures agree
with them."""
import json
import re
from pathlib import Path

import numpy as np
import paddle
import pytest

import datagen
from gcseg.config import Config
from gcseg.losses import combine
from conftest import ROOT

CONFIG_DIR = ROOT / "configs"
CONFIGS = sorted(p for p in CONFIG_DIR.rglob("*.yml") if "_base_" not in p.parts)
ROW_CONFIGS = [p for p in CONFIGS if p.parent == CONFIG_DIR]
PADDLESEG_GCNET = Path(__file__).parent / "fixtures" / "paddleseg_configs" / "configs" / "gcnet"
NAME = re.compile(r"gcnet_resnet(?P<depth>50|101)_os8_(?P<dataset>cityscapes|ade20k|voc12aug)_"
                  r"(?P<w>\d+)x(?P<h>\d+)_(?P<kiters>\d+)k\.yml")
DATASET_TYPES = {"cityscapes": ("Cityscapes", "train", 19), "ade20k": ("ADE20K", "train", 150),
                 "voc12aug": ("PascalVOC", "trainaug", 21)}
PRETRAINED = {"50": "https://bj.bcebos.com/paddleseg/dygraph/resnet50_vd_ssld_v2.tar.gz",
              "101": "https://bj.bcebos.com/paddleseg/dygraph/resnet101_vd_ssld.tar.gz"}
NO_PRETRAINED = ["model.backbone.pretrained=null"]
TRAIN_STEP_CONFIGS = ["gcnet_resnet50_os8_cityscapes_1024x512_80k.yml",
                      "gcnet_resnet50_os8_ade20k_512x512_80k.yml",
                      "gcnet_resnet50_os8_voc12aug_512x512_40k.yml"]
BUILT_MODELS = {}  # model spec (JSON) -> model: each distinct architecture is built once


def model_key(cfg: Config) -> str:
    return json.dumps([cfg.dic["model"], cfg.dataset_num_classes()], sort_keys=True)


def built_model(cfg: Config):
    if model_key(cfg) not in BUILT_MODELS:
        BUILT_MODELS[model_key(cfg)] = cfg.model
    return BUILT_MODELS[model_key(cfg)]


def state_shapes(model) -> dict:
    return {name: list(tensor.shape) for name, tensor in model.state_dict().items()}


@pytest.fixture(scope="module")
def data_roots(tmp_path_factory) -> dict:
    """Tiny trees in each dataset's layout, by dataset type."""
    base = tmp_path_factory.mktemp("data")
    return {"Cityscapes": datagen.make_cityscapes_tree(base / "cityscapes"),
            "ADE20K": datagen.make_ade20k_tree(base / "ade20k"),
            "PascalVOC": datagen.make_voc_tree(base / "VOCdevkit")}


def data_opts(path: Path, data_roots: dict) -> list:
    dic = Config(path).dic
    return [f"{key}.dataset_root={data_roots[dic[key]['type']]}"
            for key in ("train_dataset", "val_dataset")]


# ----------------------------------------------------------------------------- one training step
@pytest.mark.parametrize("name", TRAIN_STEP_CONFIGS)
def test_one_training_step_at_a_tiny_crop(name, data_roots):
    """The config's own model, loss and optimizer, with its train transforms at a 64x64 crop."""
    path = CONFIG_DIR / name
    transforms = Config(path).dic["train_dataset"]["transforms"]
    for transform in transforms:
        if transform["type"] == "RandomPaddingCrop":
            transform["crop_size"] = [64, 64]
    cfg = Config(path, NO_PRETRAINED + data_opts(path, data_roots) + [
        f"train_dataset.transforms={json.dumps(transforms)}", "batch_size=2"])
    samples = [cfg.train_dataset[i] for i in range(cfg.batch_size)]
    images = paddle.to_tensor(np.stack([s["img"] for s in samples]))  # [2, 3, 64, 64]
    labels = paddle.to_tensor(np.stack([s["label"] for s in samples]).astype("int64"))
    model = cfg.model  # the one cfg.optimizer updates
    BUILT_MODELS.setdefault(model_key(cfg), model)
    model.train()
    head_before = model.head.conv.weight.numpy().copy()

    logits_list = model(images)
    total, per_head = combine(logits_list, labels, cfg.loss)
    total.backward()
    cfg.optimizer.step()
    cfg.optimizer.clear_grad()
    cfg.lr_scheduler.step()

    assert [list(logit.shape) for logit in logits_list] == [[2, cfg.dataset_num_classes(), 64,
                                                             64]] * 2
    main, aux = (float(loss) for loss in per_head)
    assert np.isfinite(float(total)) and float(total) == pytest.approx(main + aux, rel=1e-5)
    # an untrained head predicts roughly uniformly: cross entropy near log(num_classes)
    assert main == pytest.approx(np.log(cfg.dataset_num_classes()), rel=0.5)
    assert not np.allclose(model.head.conv.weight.numpy(), head_before)


# ----------------------------------------------------------------------------- the walk
@pytest.mark.parametrize("path", ROW_CONFIGS, ids=lambda p: p.stem)
def test_config_name_agrees_with_its_contents(path):
    match = NAME.fullmatch(path.name)
    assert match, f"{path.name} does not follow gcnet_<backbone>_os8_<dataset>_<W>x<H>_<iters>"
    depth, dataset = match["depth"], match["dataset"]
    cfg = Config(path)
    dic = cfg.dic
    backbone = dic["model"]["backbone"]
    assert dic["model"]["type"] == "GCNet"
    assert (backbone["type"], backbone["output_stride"]) == (f"ResNet{depth}_vd", 8)
    assert backbone["pretrained"] == PRETRAINED[depth] and dic["model"]["pretrained"] is None
    assert dic["iters"] == int(match["kiters"]) * 1000
    dataset_type, train_mode, num_classes = DATASET_TYPES[dataset]
    assert (dic["train_dataset"]["type"], dic["val_dataset"]["type"]) == (dataset_type,) * 2
    assert (dic["train_dataset"]["mode"], dic["val_dataset"]["mode"]) == (train_mode, "val")
    assert cfg.dataset_num_classes() == num_classes
    crops = [t["crop_size"] for t in dic["train_dataset"]["transforms"]
             if t["type"] == "RandomPaddingCrop"]
    assert crops == [[int(match["w"]), int(match["h"])]]
    assert cfg.batch_size == (2 if dataset == "cityscapes" else 4)
    test = cfg.runtime("test")
    if match["w"] == "769":
        assert (test["is_slide"], test["crop_size"], test["stride"]) == (True, [769, 769],
                                                                         [513, 513])
    else:
        assert test["is_slide"] is False


@pytest.mark.parametrize("path", ROW_CONFIGS, ids=lambda p: p.stem)
def test_one_recipe_for_every_row(path):
    dic = Config(path).dic
    model = {k: v for k, v in dic["model"].items() if k != "backbone"}
    assert model == {"type": "GCNet", "backbone_indices": [2, 3], "gc_channels": 512,
                     "ratio": 0.25, "enable_auxiliary_loss": True, "align_corners": False,
                     "pretrained": None}
    assert dic["optimizer"] == {"type": "SGD", "momentum": 0.9, "weight_decay": 4.0e-5}
    assert dic["lr_scheduler"] == {"type": "PolynomialDecay", "learning_rate": 0.01,
                                   "end_lr": 1.0e-5, "power": 0.9}
    assert dic["loss"] == {"types": [{"type": "CrossEntropyLoss"}], "coef": [1, 0.4]}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_builds_model_and_datasets(path, data_roots):
    cfg = Config(path, NO_PRETRAINED + data_opts(path, data_roots))
    model = built_model(cfg)
    num_classes = cfg.dataset_num_classes()
    shapes = state_shapes(model)
    assert shapes["head.conv.weight"][0] == num_classes
    assert shapes["head.auxlayer.conv.weight"][0] == num_classes
    depth = NAME.fullmatch(path.name)["depth"] if NAME.fullmatch(path.name) else None
    if depth:  # PaddleSeg's checkpoint layouts: 311 tensors with R50, 566 with R101
        assert len(shapes) == {"50": 311, "101": 566}[depth]
    train, val = cfg.train_dataset, cfg.val_dataset
    assert len(train) > 0 and len(val) > 0 and train.num_classes == num_classes
    item = val[0]
    assert item["img"].dtype == np.float32 and item["img"].shape[0] == 3
    assert item["label"].ndim == 2


# ----------------------------------------------------------------------------- PaddleSeg's files
@pytest.mark.parametrize("name", sorted(p.name for p in PADDLESEG_GCNET.glob("*.yml")))
def test_paddleseg_config_loads_unchanged_and_matches_ours(name):
    """PaddleSeg's own files build the same model, data and schedule as gcseg's config."""
    theirs = Config(PADDLESEG_GCNET / name, NO_PRETRAINED)
    ours = Config(CONFIG_DIR / name, NO_PRETRAINED)
    assert state_shapes(theirs.model) == state_shapes(built_model(ours))

    def same_recipe(dic):
        dic = dict(dic, optimizer=dict(dic["optimizer"], type=dic["optimizer"]["type"].upper()))
        for key in ("train_dataset", "val_dataset"):
            dic[key] = dict(dic[key], dataset_root=dic[key]["dataset_root"].rstrip("/"))
        return {key: dic[key] for key in ("batch_size", "iters", "train_dataset", "val_dataset",
                                          "optimizer", "lr_scheduler", "loss", "test")}

    assert same_recipe(theirs.dic) == same_recipe(ours.dic)
    assert type(theirs.optimizer).__name__ == "Momentum"


# ----------------------------------------------------------------------------- README results
def results_rows() -> list:
    text = (ROOT / "README.md").read_text()
    lines = [line for line in text.splitlines() if line.startswith("| `configs/")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_results_table_covers_every_published_row_and_every_config():
    rows = results_rows()
    sources = [row[1] for row in rows]
    assert (sources.count("PaddleSeg"), sources.count("MMSeg")) == (4, 16)
    listed = {row[0].strip("`") for row in rows}
    assert listed == {f"configs/{p.name}" for p in ROW_CONFIGS}
    for config, source, *_, miou, flip, ms_flip, measured, command in rows:
        assert measured == "", f"{config}: the measured column is filled by measuring only"
        assert ("-" == flip) == (source == "MMSeg")
        scales = "0.75 1.0 1.25" if source == "PaddleSeg" else "0.5 0.75 1.0 1.25 1.5 1.75"
        assert command == (f"`python scripts/val.py --config {config.strip('`')} --model_path "
                           f"output/{Path(config.strip('`')).stem}/best_model/model.pdparams "
                           f"--aug_eval --flip_horizontal --scales {scales}`")


def test_config_headers_quote_the_published_numbers_of_their_rows():
    for config, source, _, _, _, _, miou, flip, ms_flip, *_ in results_rows():
        header = (ROOT / config.strip("`")).read_text().split("_base_")[0]
        numbers = f"{miou} / {flip} / {ms_flip}" if source == "PaddleSeg" else f"{miou} / {ms_flip}"
        assert f"{source} " in header and numbers in header, config
