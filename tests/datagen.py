"""Tiny dataset trees for tests: random images with valid labels, in each supported layout.

Every helper writes under ``root`` and returns ``root`` (a Path). Images are random RGB, labels
random class ids with a few ignore (255) pixels.
"""
from pathlib import Path
from typing import List, Tuple, Union

import cv2
import numpy as np
from PIL import Image

Size = Tuple[int, int]


def random_pair(rng: np.random.Generator, size: Size, num_classes: int,
                ignore_fraction: float = 0.05) -> Tuple[np.ndarray, np.ndarray]:
    """A random ``uint8 [H, W, 3]`` RGB image and ``uint8 [H, W]`` label of ``size`` (w, h)."""
    w, h = size
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    label = rng.integers(0, num_classes, (h, w), dtype=np.uint8)
    label[rng.random((h, w)) < ignore_fraction] = 255
    return image, label


def write_image(path: Path, image_rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")


def write_label(path: Path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(label).save(path)


def make_cityscapes_tree(root: Union[str, Path], n_train: int = 2, n_val: int = 2,
                         size: Size = (64, 32), seed: int = 0) -> Path:
    """leftImg8bit/<split>/<city>/*_leftImg8bit.png + gtFine/.../*_gtFine_labelTrainIds.png."""
    root, rng = Path(root), np.random.default_rng(seed)
    for split, count in (("train", n_train), ("val", n_val)):
        for i in range(count):
            city = ("aachen", "bochum")[i % 2]
            stem = f"{city}_{i:06d}_000019"
            image, label = random_pair(rng, size, 19)
            write_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", image)
            write_label(root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png", label)
    return root


def _voc_names(prefix: str, count: int) -> List[str]:
    return [f"2007_{prefix}{i:05d}" for i in range(count)]


def make_voc_tree(root: Union[str, Path], n_train: int = 2, n_val: int = 2, n_aug: int = 2,
                  size: Size = (48, 40), seed: int = 0) -> Path:
    """VOCdevkit/VOC2012 with JPEGImages, SegmentationClass (palette PNGs, as VOC ships them),
    SegmentationClassAug, and ImageSets/Segmentation/{train,val,trainval,aug}.txt."""
    root, rng = Path(root), np.random.default_rng(seed)
    voc = root / "VOC2012"
    sets = voc / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True, exist_ok=True)
    groups = {"train": _voc_names("1", n_train), "val": _voc_names("2", n_val),
              "aug": _voc_names("3", n_aug)}
    palette = _voc_palette_bytes()
    for group, names in groups.items():
        for name in names:
            image, label = random_pair(rng, size, 21)
            write_image(voc / "JPEGImages" / f"{name}.jpg", image)
            label_dir = "SegmentationClassAug" if group == "aug" else "SegmentationClass"
            png = Image.fromarray(label)
            png.putpalette(palette)  # an "L" image becomes a palette ("P") PNG
            (voc / label_dir).mkdir(parents=True, exist_ok=True)
            png.save(voc / label_dir / f"{name}.png")
        (sets / f"{group}.txt").write_text("".join(f"{n}\n" for n in names))
    (sets / "trainval.txt").write_text("".join(f"{n}\n" for n in groups["train"] + groups["val"]))
    return root


def _voc_palette_bytes() -> List[int]:
    from gcseg.data.palettes import generic_palette
    return generic_palette(256).reshape(-1).tolist()


def make_ade20k_tree(root: Union[str, Path], n_train: int = 2, n_val: int = 2,
                     size: Size = (40, 48), seed: int = 0) -> Path:
    """ADEChallengeData2016: images/{training,validation}/*.jpg, annotations/.../*.png with raw
    ADE values (0 = unlabelled, 1..150 = classes)."""
    root, rng = Path(root), np.random.default_rng(seed)
    for split, tag, count in (("training", "train", n_train), ("validation", "val", n_val)):
        for i in range(count):
            name = f"ADE_{tag}_{i + 1:08d}"
            image, _ = random_pair(rng, size, 1)
            raw = rng.integers(0, 151, (size[1], size[0]), dtype=np.uint8)
            write_image(root / "images" / split / f"{name}.jpg", image)
            write_label(root / "annotations" / split / f"{name}.png", raw)
    return root


def make_file_list_tree(root: Union[str, Path], num_classes: int = 3, n_train: int = 2,
                        n_val: int = 2, size: Size = (32, 24), seed: int = 0) -> Path:
    """images/*.png + labels/*.png with train_list.txt / val_list.txt ("image label" lines,
    relative to root), as PaddleSeg's custom Dataset reads them."""
    root, rng = Path(root), np.random.default_rng(seed)
    for split, count in (("train", n_train), ("val", n_val)):
        lines = []
        for i in range(count):
            image, label = random_pair(rng, size, num_classes)
            write_image(root / "images" / f"{split}_{i}.png", image)
            write_label(root / "labels" / f"{split}_{i}.png", label)
            lines.append(f"images/{split}_{i}.png labels/{split}_{i}.png\n")
        (root / f"{split}_list.txt").write_text("".join(lines))
    return root
