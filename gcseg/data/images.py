"""Image files: reading one image or label, and finding the images a path names.

Every reader of images in gcseg goes through :func:`read_image` (OpenCV, as PaddleSeg reads
them: EXIF orientation applied, BGR turned RGB unless told) and every reader of labels through
:func:`read_label` (PIL, so a palette PNG gives its indices), so training, evaluation,
prediction, the dataset check and the exported model see the same pixels.
"""
import os
from pathlib import Path
from typing import List, Optional, Tuple, Union

import cv2
import numpy as np
from PIL import Image

from gcseg.errors import DataError, UsageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_image(path: Union[str, Path], to_rgb: bool = True) -> np.ndarray:
    """An image file as ``HWC float32`` (RGB unless ``to_rgb`` is False)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        reason = "no such file" if not Path(path).is_file() else "not a readable image"
        raise DataError(f"{path}: cannot read image ({reason})")
    if to_rgb:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image.astype(np.float32)


def read_label(path: Union[str, Path]) -> np.ndarray:
    """A label PNG as an ``HW`` array of class indices (palette PNGs give their indices)."""
    try:
        with Image.open(path) as image:
            label = np.asarray(image)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot read label ({error})") from None
    if label.ndim != 2:
        raise DataError(f"{path}: label must be a single-channel (grayscale or palette) image, "
                        f"got shape {label.shape}")
    return label


def read_image_list(list_path: Path) -> List[str]:
    """The images of a list file, one per line, as PaddleSeg reads them: the first field of
    each line (an ``image label`` line gives its image), relative to the list's folder."""
    lines = list_path.read_text(encoding="utf-8").splitlines()
    return [os.path.join(list_path.parent, line.split()[0]) for line in lines if line.strip()]


def collect_images(image_path: str) -> Tuple[List[str], Optional[str]]:
    """Image files from a file, a directory (recursively) or a ``.txt`` list (one per line);
    also the directory that output names are made relative to (None: use base names). For a
    list that is the deepest folder holding all its images, so two entries with the same file
    name in different folders keep their sub-paths instead of overwriting each other.

    ``image_path`` is the ``--image_path`` of the predict and infer commands, which the
    messages name."""
    path = Path(image_path)
    if path.is_dir():
        images = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not images:
            raise UsageError(f"--image_path {image_path}: no images in this directory")
        return images, str(path)
    if not path.is_file():
        raise UsageError(f"--image_path {image_path}: not found (expected an image, a directory "
                         "of images or a .txt list of images)")
    if path.suffix.lower() == ".txt":
        images = read_image_list(path)
        if not images:
            raise UsageError(f"--image_path {image_path}: the list is empty")
        return images, os.path.commonpath([os.path.dirname(os.path.abspath(image))
                                           for image in images])
    return [str(path)], None
