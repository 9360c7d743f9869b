"""Dataset layouts on tiny generated trees, palettes, preparation scripts' library and quickstart."""
import numpy as np
import pytest
from PIL import Image

import datagen
from gcseg.data import ADE20K, Cityscapes, Dataset, PascalVOC, palettes, prepare
from gcseg.data import transforms as T
from gcseg.data.quickstart import QUICKSTART_TRAIN_IDS, make_quickstart_dataset
from gcseg.errors import ConfigError, DataError


def train_transforms():
    return [T.ResizeStepScaling(0.5, 2.0, 0.25), T.RandomPaddingCrop([24, 16]),
            T.RandomHorizontalFlip(), T.Normalize()]


def check_item(item, shape=None):
    assert item["img"].dtype == np.float32 and item["img"].shape[0] == 3
    assert item["label"].dtype == np.int64 and item["label"].ndim == 2
    if shape is not None:
        assert item["img"].shape[1:] == item["label"].shape == shape
    assert isinstance(item["img_path"], str) and isinstance(item["label_path"], str)


def test_cityscapes_train_and_val(tmp_path):
    root = datagen.make_cityscapes_tree(tmp_path, n_train=3, n_val=2, size=(40, 20))
    train = Cityscapes(transforms=train_transforms(), dataset_root=str(root), mode="train")
    assert len(train) == 3 and train.num_classes == 19 and train.ignore_index == 255
    assert train.class_names[0] == "road" and train.palette.shape == (19, 3)
    assert train.file_list[0][1].endswith("aachen_000000_000019_gtFine_labelTrainIds.png")
    check_item(train[0], shape=(16, 24))
    val = Cityscapes(transforms=[T.Padding([48, 24]), T.Normalize()], dataset_root=str(root),
                     mode="val")
    item = val[1]
    original = np.asarray(Image.open(val.file_list[1][1]))
    assert item["img"].shape == (3, 24, 48) and item["trans_info"] == [("padding", (20, 40))]
    assert np.array_equal(item["label"], original)  # val labels stay at original resolution


def test_train_augmentation_depends_only_on_seed_epoch_and_index(tmp_path):
    root = datagen.make_cityscapes_tree(tmp_path, n_train=2, n_val=0, size=(40, 20))
    first = Cityscapes(transforms=train_transforms(), dataset_root=str(root))
    second = Cityscapes(transforms=train_transforms(), dataset_root=str(root))
    a1, _ = first[1], second[0]  # different access order
    b1 = second[1]
    assert np.array_equal(a1["img"], b1["img"]) and np.array_equal(a1["label"], b1["label"])
    draws = set()
    for epoch in range(6):
        first.set_epoch(epoch)
        draws.add(first[1]["img"].tobytes())
    assert len(draws) > 1
    first.set_epoch(0)
    by_seed = set()
    for seed in range(6):
        first.seed = seed
        by_seed.add(first[1]["img"].tobytes())
    assert len(by_seed) > 1


def test_cityscapes_missing_labels_are_named_with_a_count(tmp_path):
    root = datagen.make_cityscapes_tree(tmp_path, n_train=5, n_val=0)
    for label in sorted((root / "gtFine" / "train").rglob("*.png"))[:4]:
        label.unlink()
    with pytest.raises(DataError, match=r"4 of 10 files missing: .*_gtFine_labelTrainIds.png.* "
                                        r"and 1 more"):
        Cityscapes(transforms=[], dataset_root=str(root))
    with pytest.raises(DataError, match="leftImg8bit/val"):
        Cityscapes(transforms=[], dataset_root=str(root), mode="val")
    with pytest.raises(DataError, match="nowhere: Cityscapes dataset_root is not a directory"):
        Cityscapes(transforms=[], dataset_root=str(root / "nowhere"))
    with pytest.raises(ConfigError, match="Cityscapes.mode"):
        Cityscapes(transforms=[], dataset_root=str(root), mode="trainaug")


def test_bad_label_values_name_the_file_and_values(tmp_path):
    root = datagen.make_cityscapes_tree(tmp_path, n_train=1, n_val=0)
    dataset = Cityscapes(transforms=[T.Normalize()], dataset_root=str(root))
    label = np.zeros((32, 64), np.uint8)
    label[0, :2] = (19, 40)
    Image.fromarray(label).save(dataset.file_list[0][1])
    with pytest.raises(DataError, match=r"labelTrainIds.png: label values \[19, 40\] are neither"):
        dataset[0]


def test_image_and_label_size_mismatch(tmp_path):
    root = datagen.make_cityscapes_tree(tmp_path, n_train=1, n_val=0)
    dataset = Cityscapes(transforms=[T.Normalize()], dataset_root=str(root))
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(dataset.file_list[0][1])
    with pytest.raises(DataError, match="is 64x32 but label .* is 8x8"):
        dataset[0]


def test_voc_modes_and_palette_labels(tmp_path):
    root = datagen.make_voc_tree(tmp_path, n_train=2, n_val=1, n_aug=3)
    sizes = {mode: len(PascalVOC(transforms=[], dataset_root=str(root), mode=mode))
             for mode in ("train", "val", "trainval", "trainaug")}
    assert sizes == {"train": 2, "val": 1, "trainval": 3, "trainaug": 5}
    aug = PascalVOC(transforms=train_transforms(), dataset_root=str(root), mode="trainaug")
    assert [p.split("/")[-2] for _, p in aug.file_list] == ["SegmentationClass"] * 2 + [
        "SegmentationClassAug"] * 3
    check_item(aug[4], shape=(16, 24))
    val = PascalVOC(transforms=[T.Normalize()], dataset_root=str(root), mode="val")
    raw = Image.open(val.file_list[0][1])
    assert raw.mode == "P"
    assert np.array_equal(val[0]["label"], np.asarray(raw))  # palette indices, not colours
    assert val.class_names[15] == "person" and val.palette.shape == (21, 3)
    (root / "VOC2012" / "ImageSets" / "Segmentation" / "aug.txt").unlink()
    with pytest.raises(DataError, match="aug.txt: image set list not found .*prepare_voc.py"):
        PascalVOC(transforms=[], dataset_root=str(root), mode="trainaug")


def test_ade20k_shifts_labels_and_ignores_class_zero(tmp_path):
    root = datagen.make_ade20k_tree(tmp_path, n_train=1, n_val=1, size=(4, 2))
    raw = np.array([[0, 1, 2, 150], [150, 75, 0, 1]], np.uint8)
    Image.fromarray(raw).save(root / "annotations" / "validation" / "ADE_val_00000001.png")
    dataset = ADE20K(transforms=[T.Normalize()], dataset_root=str(root), mode="val")
    assert dataset.num_classes == 150 and len(dataset.class_names) == 150
    assert dataset[0]["label"].tolist() == [[255, 0, 1, 149], [149, 74, 255, 0]]
    Image.fromarray(np.full((2, 4), 151, np.uint8)).save(dataset.file_list[0][1])
    with pytest.raises(DataError, match=r"label values \[150\]"):
        dataset[0]


def test_file_list_dataset(tmp_path):
    root = datagen.make_file_list_tree(tmp_path, num_classes=3)
    dataset = Dataset(dataset_root=str(root), transforms=train_transforms(), num_classes=3,
                      mode="train", train_path="train_list.txt")  # found under dataset_root
    assert len(dataset) == 2 and dataset.palette.shape == (3, 3)
    check_item(dataset[1], shape=(16, 24))
    (root / "bad_list.txt").write_text("images/val_0.png labels/val_0.png\nonly_one_item\n")
    with pytest.raises(DataError, match=r"bad_list.txt:2: expected 'image label'"):
        Dataset(dataset_root=str(root), transforms=[], num_classes=3, mode="val",
                val_path=str(root / "bad_list.txt"))
    with pytest.raises(ConfigError, match="Dataset.val_path: required"):
        Dataset(dataset_root=str(root), transforms=[], num_classes=3, mode="val")
    (root / "test_list.txt").write_text("images/val_0.png labels/val_0.png\nimages/val_1.png\n")
    test = Dataset(dataset_root=str(root), transforms=[T.Normalize()], num_classes=3,
                   mode="test", test_path=str(root / "test_list.txt"))
    assert test.file_list[1][1] is None and "label" not in test[1] and "label" in test[0]


def test_palettes():
    imgviz = pytest.importorskip("imgviz")
    assert np.array_equal(palettes.voc_palette(), imgviz.label_colormap()[:21])
    assert palettes.voc_palette()[:3].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
    labels = pytest.importorskip("cityscapesscripts.helpers.labels")
    official = {l.trainId: l.color for l in labels.labels if 0 <= l.trainId < 19}
    assert palettes.cityscapes_palette().tolist() == [list(official[i]) for i in range(19)]
    assert len(palettes.ADE20K_CLASSES) == 150


def test_colorize_and_blend():
    palette = np.array([[10, 20, 30], [200, 100, 0]], np.uint8)
    colored = palettes.colorize(np.array([[0, 1, 255]]), palette)
    assert colored.tolist() == [[[10, 20, 30], [200, 100, 0], [0, 0, 0]]]
    image = np.full((1, 3, 3), 100, np.uint8)
    assert palettes.blend(image, colored, 0.6)[0, 1].tolist() == [160, 100, 40]  # .4*100+.6*c


def test_convert_cityscapes_label_ids_to_train_ids(tmp_path):
    source = tmp_path / "gtFine" / "val" / "lindau" / "lindau_000000_000019_gtFine_labelIds.png"
    source.parent.mkdir(parents=True)
    Image.fromarray(np.array([[7, 26, 0, 33, 1, 24]], np.uint8)).save(source)
    assert prepare.convert_cityscapes(tmp_path, progress=False) == 1
    target = source.with_name("lindau_000000_000019_gtFine_labelTrainIds.png")
    assert np.asarray(Image.open(target)).tolist() == [[0, 13, 255, 18, 255, 11]]
    assert prepare.convert_cityscapes(tmp_path, progress=False) == 0  # already converted
    assert prepare.cityscapes_id_to_train_id() == prepare.CITYSCAPES_ID_TO_TRAIN_ID


def test_prepare_voc_aug_from_sbd_mat_files(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    voc = datagen.make_voc_tree(tmp_path / "VOCdevkit", n_train=1, n_val=1, n_aug=0)
    sbd = tmp_path / "benchmark_RELEASE" / "dataset"
    (sbd / "cls").mkdir(parents=True)
    (sbd / "train.txt").write_text("2007_100000\n2008_000009\n")  # the first is in VOC train
    (sbd / "val.txt").write_text("2008_000003\n")
    mask = np.array([[0, 15], [255, 1]], np.uint8)
    for name in ("2007_100000", "2008_000009", "2008_000003"):
        scipy_io.savemat(str(sbd / "cls" / f"{name}.mat"),  # a dict saves as a MATLAB struct
                         {"GTcls": {"Segmentation": mask, "CategoriesPresent": [1, 15]}})
    count = prepare.prepare_voc_aug(voc, sbd.parent, progress=False)
    aug_list = voc / "VOC2012" / "ImageSets" / "Segmentation" / "aug.txt"
    assert count == 2 and aug_list.read_text() == "2008_000003\n2008_000009\n"
    written = voc / "VOC2012" / "SegmentationClassAug" / "2008_000003.png"
    assert np.asarray(Image.open(written)).tolist() == mask.tolist()


def test_quickstart_is_deterministic_and_loads_as_cityscapes(tmp_path):
    kwargs = dict(num_train=3, num_val=1, size=(64, 32), seed=5)
    first = make_quickstart_dataset(tmp_path / "a", **kwargs)
    second = make_quickstart_dataset(tmp_path / "b", **kwargs)
    files = sorted(p.relative_to(first) for p in first.rglob("*.png"))
    assert len(files) == 8
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    stamp = (first / files[0]).stat().st_mtime_ns
    make_quickstart_dataset(first, **kwargs)  # complete: left as it is
    assert (first / files[0]).stat().st_mtime_ns == stamp
    dataset = Cityscapes(transforms=[T.Normalize()], dataset_root=str(first), mode="train")
    labels = np.concatenate([dataset[i]["label"].ravel() for i in range(3)])
    assert set(np.unique(labels)) <= set(QUICKSTART_TRAIN_IDS)
    assert len(np.unique(labels)) >= 5
