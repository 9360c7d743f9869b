"""Every shipped config loads, says what its name says, builds its model and datasets, and (one per
dataset) trains one step; the README's results table and the PaddleSeg-layout fixtures agree
with them. configs/ holds PaddleSeg's 4 GCNet rows, configs/mmseg/ MMSegmentation's 16."""
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
MMSEG_DIR = CONFIG_DIR / "mmseg"
MMSEG_CONFIGS = [p for p in CONFIGS if p.parent == MMSEG_DIR]
PADDLESEG_GCNET = Path(__file__).parent / "fixtures" / "paddleseg_configs" / "configs" / "gcnet"
NAME = re.compile(r"gcnet_resnet(?P<depth>50|101)_os8_(?P<dataset>cityscapes|ade20k|voc12aug)_"
                  r"(?P<w>\d+)x(?P<h>\d+)_(?P<kiters>\d+)k\.yml")
DATASET_TYPES = {"cityscapes": ("Cityscapes", "train", 19), "ade20k": ("ADE20K", "train", 150),
                 "voc12aug": ("PascalVOC", "trainaug", 21)}
PRETRAINED = {"50": "https://bj.bcebos.com/paddleseg/dygraph/resnet50_vd_ssld_v2.tar.gz",
              "101": "https://bj.bcebos.com/paddleseg/dygraph/resnet101_vd_ssld.tar.gz"}
NO_PRETRAINED = ["model.backbone.pretrained=null"]
MMSEG_NAME = re.compile(r"gcnet_r(?P<depth>50|101)-d8_4xb(?P<batch>[24])-(?P<kiters>\d+)k_"
                        r"(?P<dataset>cityscapes|ade20k|voc12aug)-(?P<h>\d+)x(?P<w>\d+)\.yml")
# MMSeg's test/train resize scale (w, h) per dataset and crop, from its dataset configs
MMSEG_SCALES = {("cityscapes", "512"): [2048, 1024], ("cityscapes", "769"): [2049, 1025],
                ("ade20k", "512"): [2048, 512], ("voc12aug", "512"): [2048, 512]}
MMSEG_MEAN_STD = ([123.675, 116.28, 103.53], [58.395, 57.12, 57.375])  # RGB, on 0..255
MMSEG_CHECKPOINT = re.compile(r"https://download\.openmmlab\.com/mmsegmentation/v0\.5/gcnet/"
                              r"\S+\.pth")
TRAIN_STEP_CONFIGS = ["gcnet_resnet50_os8_cityscapes_1024x512_80k.yml",
                      "mmseg/gcnet_r50-d8_4xb4-80k_ade20k-512x512.yml",
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


def tiny_crop(transforms: list) -> list:
    """The train transforms with 64x64 crops (PaddleSeg's or MMSeg's) from small images."""
    for transform in transforms:
        if transform["type"] in ("RandomPaddingCrop", "RandomCrop", "Pad"):
            key = {"RandomPaddingCrop": "crop_size", "RandomCrop": "crop_size"}.get(
                transform["type"], "size")
            transform[key] = [64, 64]
        if transform["type"] == "RandomResize":
            transform["scale"] = [512, 128]  # short side >= 64 at every ratio
    return transforms


# ----------------------------------------------------------------------------- one training step
@pytest.mark.parametrize("name", TRAIN_STEP_CONFIGS)
def test_one_training_step_at_a_tiny_crop(name, data_roots):
    """The config's own model, loss and optimizer, with its train transforms at a 64x64 crop."""
    path = CONFIG_DIR / name
    transforms = tiny_crop(Config(path).dic["train_dataset"]["transforms"])
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


def transform_of(transforms: list, name: str) -> dict:
    (found,) = [t for t in transforms if t["type"] == name]
    return {key: value for key, value in found.items() if key != "type"}


def test_mmseg_has_one_config_per_published_row():
    assert len(MMSEG_CONFIGS) == 16
    assert all(MMSEG_NAME.fullmatch(path.name) for path in MMSEG_CONFIGS)


@pytest.mark.parametrize("path", MMSEG_CONFIGS, ids=lambda p: p.stem)
def test_mmseg_config_name_agrees_with_its_contents(path):
    """MMSeg 1.x's name says backbone, GPUs x batch, iterations, dataset and crop (h x w)."""
    match = MMSEG_NAME.fullmatch(path.name)
    depth, dataset, crop_h, crop_w = match["depth"], match["dataset"], match["h"], match["w"]
    cfg = Config(path)
    dic = cfg.dic
    assert dic["model"]["backbone"] == {"type": f"ResNet{depth}_v1c", "output_stride": 8,
                                        "contract_dilation": True,
                                        "pretrained": f"open-mmlab://resnet{depth}_v1c"}
    assert dic["model"]["align_corners"] is (crop_h == "769")
    assert (dic["iters"], cfg.batch_size) == (int(match["kiters"]) * 1000, int(match["batch"]))
    dataset_type, train_mode, num_classes = DATASET_TYPES[dataset]
    assert (dic["train_dataset"]["type"], dic["val_dataset"]["type"]) == (dataset_type,) * 2
    assert (dic["train_dataset"]["mode"], dic["val_dataset"]["mode"]) == (train_mode, "val")
    assert cfg.dataset_num_classes() == num_classes
    train, val = dic["train_dataset"]["transforms"], dic["val_dataset"]["transforms"]
    scale = MMSEG_SCALES[(dataset, crop_h)]
    assert transform_of(train, "RandomResize") == {"scale": scale, "ratio_range": [0.5, 2.0],
                                                   "keep_ratio": True}
    assert transform_of(train, "RandomCrop") == {"crop_size": [int(crop_h), int(crop_w)],
                                                 "cat_max_ratio": 0.75}
    assert transform_of(train, "Pad")["size"] == [int(crop_w), int(crop_h)]
    assert transform_of(val, "Resize") == {"scale": scale, "keep_ratio": True}
    for transforms in (train, val):
        normalize = transform_of(transforms, "Normalize")
        assert np.allclose(np.array(normalize["mean"]) * 255, MMSEG_MEAN_STD[0])
        assert np.allclose(np.array(normalize["std"]) * 255, MMSEG_MEAN_STD[1])
    test = cfg.runtime("test")
    assert test["is_slide"] is (crop_h == "769")
    assert test.get("align_corners", False) is dic["model"]["align_corners"]  # resized back alike
    if crop_h == "769":
        assert (test["crop_size"], test["stride"]) == ([769, 769], [513, 513])


@pytest.mark.parametrize("path", MMSEG_CONFIGS, ids=lambda p: p.stem)
def test_mmseg_recipe_for_every_mmseg_row(path):
    dic = Config(path).dic
    model = {k: v for k, v in dic["model"].items() if k not in ("backbone", "align_corners")}
    assert model == {"type": "GCNet", "head_style": "mmseg", "backbone_indices": [2, 3],
                     "gc_channels": 512, "ratio": 0.25, "enable_auxiliary_loss": True,
                     "pretrained": None}
    assert dic["optimizer"] == {"type": "SGD", "momentum": 0.9, "weight_decay": 5.0e-4}
    assert dic["lr_scheduler"] == {"type": "PolynomialDecay", "learning_rate": 0.01,
                                   "end_lr": 1.0e-4, "power": 0.9}
    assert dic["loss"] == {"types": [{"type": "CrossEntropyLoss", "avg_non_ignore": False}],
                           "coef": [1.0, 0.4]}
    test = Config(path).runtime("test")
    assert (test["aug_eval"], test["scales"], test["flip_horizontal"], test["tta_average"]) == (
        False, [0.5, 0.75, 1.0, 1.25, 1.5, 1.75], True, "probs")


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
    """PaddleSeg's rows: the trained checkpoint's ms+flip command. MMSeg's rows: configs/mmseg/
    and the command evaluating MMSeg's released checkpoint (ms+flip as the config's test:)."""
    rows = results_rows()
    sources = [row[1] for row in rows]
    assert (sources.count("PaddleSeg"), sources.count("MMSeg")) == (4, 16)
    listed = {row[0].strip("`"): row[1] for row in rows}
    assert listed == {**{f"configs/{p.name}": "PaddleSeg" for p in ROW_CONFIGS},
                      **{f"configs/mmseg/{p.name}": "MMSeg" for p in MMSEG_CONFIGS}}
    for config, source, *_, miou, flip, ms_flip, measured, command in rows:
        config = config.strip("`")
        assert measured == "", f"{config}: the measured column is filled by measuring only"
        assert ("-" == flip) == (source == "MMSeg")
        if source == "PaddleSeg":
            assert command == (f"`python scripts/val.py --config {config} --model_path "
                               f"output/{Path(config).stem}/best_model/model.pdparams "
                               f"--aug_eval --flip_horizontal --scales 0.75 1.0 1.25`")
        else:
            (url,) = MMSEG_CHECKPOINT.findall((ROOT / config).read_text())
            assert command == (f"`python scripts/val.py --config {config} --model_path {url} "
                               f"--aug_eval`")


def test_config_headers_quote_the_published_numbers_of_their_rows():
    for config, source, _, _, _, _, miou, flip, ms_flip, *_ in results_rows():
        header = (ROOT / config.strip("`")).read_text().split("_base_")[0]
        numbers = f"{miou} / {flip} / {ms_flip}" if source == "PaddleSeg" else f"{miou} / {ms_flip}"
        assert f"{source} " in header and numbers in header, config
