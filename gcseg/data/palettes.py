"""Class names and colour palettes of the supported datasets, and label-map colouring."""
from typing import List, Sequence

import numpy as np

from gcseg.errors import UsageError

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle")

# The official Cityscapes colours of the 19 training classes, in trainId order.
CITYSCAPES_COLORS = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32))

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor")

# ADE20K SceneParsing (ADEChallengeData2016) classes 1..150, i.e. training indices 0..149.
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug",
    "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
    "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter",
    "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs",
    "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier", "awning",
    "streetlight", "booth", "television receiver", "airplane", "dirt track", "apparel", "pole",
    "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van",
    "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool",
    "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball",
    "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light",
    "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board",
    "shower", "radiator", "glass", "clock", "flag")


def generic_palette(num_classes: int) -> np.ndarray:
    """The PASCAL VOC colour map for ``num_classes`` classes: ``uint8 [num_classes, 3]``.

    Class ``c`` spreads its bits over the colour channels, most significant first: bit ``3k``
    of ``c`` goes to red bit ``7 - k``, bit ``3k + 1`` to green, bit ``3k + 2`` to blue.
    PaddleSeg colours predictions of every dataset this way.
    """
    ids = np.arange(num_classes)
    palette = np.zeros((num_classes, 3), dtype=np.int64)
    for k in range(8):
        for channel in range(3):
            bit = (ids >> (3 * k + channel)) & 1
            palette[:, channel] |= bit << (7 - k)
    return palette.astype(np.uint8)


def cityscapes_palette() -> np.ndarray:
    return np.asarray(CITYSCAPES_COLORS, dtype=np.uint8)


def voc_palette() -> np.ndarray:
    return generic_palette(len(VOC_CLASSES))


def ade20k_palette() -> np.ndarray:
    return generic_palette(len(ADE20K_CLASSES))


def generic_class_names(num_classes: int) -> List[str]:
    return [f"class_{i}" for i in range(num_classes)]


def with_custom_colors(palette: np.ndarray, custom_color: Sequence[int]) -> np.ndarray:
    """``palette [K, 3]`` with its first colours replaced by ``custom_color``, a flat list of
    R G B values (PaddleSeg's ``--custom_color``: ``255 0 0 0 255 0`` paints class 0 red and
    class 1 green; later classes keep their colours)."""
    values = [int(value) for value in custom_color]
    if not values or len(values) % 3 or len(values) > 3 * 256 \
            or not all(0 <= value <= 255 for value in values):
        raise UsageError(f"--custom_color: expected R G B values from 0 to 255, three per class "
                         f"(at most 256 classes), got {' '.join(map(str, values))}")
    colors = np.asarray(values, dtype=np.uint8).reshape(-1, 3)
    return np.concatenate([colors, np.asarray(palette, dtype=np.uint8)[len(colors):]])


def colorize(label: np.ndarray, palette: np.ndarray, ignore_index: int = 255,
             ignore_color: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """An ``HW`` label map as an ``HW3 uint8`` RGB image; ``ignore_index`` and any value outside
    the palette get ``ignore_color``."""
    label = np.asarray(label)
    palette = np.asarray(palette, dtype=np.uint8)
    table = np.tile(np.asarray(ignore_color, dtype=np.uint8), (max(int(label.max(initial=0)) + 1,
                                                                len(palette)), 1))
    table[:len(palette)] = palette
    if 0 <= ignore_index < len(table):
        table[ignore_index] = ignore_color
    return table[np.clip(label, 0, len(table) - 1)]


def blend(image: np.ndarray, colored: np.ndarray, weight: float = 0.6) -> np.ndarray:
    """``(1 - weight) * image + weight * colored`` as ``uint8`` (PaddleSeg's added-prediction
    view uses weight 0.6). Both are ``HW3`` in the same colour order."""
    if image.shape != colored.shape:
        raise ValueError(f"blend: image {image.shape} and colour map {colored.shape} differ")
    mixed = (1.0 - weight) * image.astype(np.float32) + weight * colored.astype(np.float32)
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)
