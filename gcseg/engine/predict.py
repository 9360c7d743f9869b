"""``predict(...)``: segment image files and save PaddleSeg-style results.

For every image ``save_dir/pseudo_color_prediction/<name>.png`` holds the class ids as a
palette PNG (the pixel values are class ids, shown in the dataset's colours) and
``save_dir/added_prediction/<name>`` the colours blended over the image. An image that cannot
be read or transformed is reported by path and skipped; the rest are still processed.

:func:`predict_from_config` needs no dataset on disk: it takes the val transforms from the
config and the palette from the ``val_dataset`` class.
"""
import os
from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import paddle
from PIL import Image
from tqdm import tqdm

from gcseg.builder import ComponentBuilder
from gcseg.config import Config
from gcseg.data.datasets import SegDataset
from gcseg.data.images import collect_images, read_image
from gcseg.data.palettes import blend, colorize, with_custom_colors
from gcseg.data.transforms import Compose
from gcseg.engine.evaluator import eval_mode
from gcseg.engine.inference import InferenceSettings, infer_logits
from gcseg.stopping import handling_signals
from gcseg.errors import ConfigError, DataError, first_line
from gcseg.models.weights import load_weights
from gcseg.registry import DATASETS

PSEUDO_DIR = "pseudo_color_prediction"
ADDED_DIR = "added_prediction"


def val_transforms_and_palette(cfg: Config) -> Tuple[Compose, np.ndarray]:
    """The ``val_dataset`` transforms and class colours, from the config and the dataset class
    alone: the dataset itself (whose files may be absent) is never built. Without a ``type``
    the colours are the generic ones, as PaddleSeg colours every prediction."""
    builder = ComponentBuilder(cfg.origins, cfg.path)
    spec = cfg.section("val_dataset")
    if "transforms" not in spec:
        raise builder.fail("val_dataset", "val_dataset.transforms: missing (predict "
                                          "preprocesses images with the val transforms)")
    try:
        dataset_class = DATASETS.get(spec["type"]) if "type" in spec else SegDataset
    except ConfigError as error:
        raise builder.fail("val_dataset.type", f"val_dataset.type: {error}") from None
    transforms = builder.build_value(spec["transforms"], "transforms", "val_dataset.transforms")
    compose = builder.construct(Compose, {"transforms": transforms}, "val_dataset.transforms")
    num_classes = spec.get("num_classes", dataset_class.NUM_CLASSES)
    return compose, dataset_class.palette_for(num_classes or cfg.model.num_classes)


def output_name(image: str, image_dir: Optional[str]) -> str:
    if image_dir is None:
        return os.path.basename(image)
    return os.path.relpath(os.path.abspath(image), os.path.abspath(image_dir))


def save_prediction(pred: np.ndarray, image: np.ndarray, name: str, save_dir: str,
                    palette: np.ndarray) -> None:
    """``pred`` ``HW`` class ids, ``image`` ``HWC`` RGB of the same size."""
    pseudo_path = os.path.join(save_dir, PSEUDO_DIR, os.path.splitext(name)[0] + ".png")
    added_path = os.path.join(save_dir, ADDED_DIR, name)
    for path in (pseudo_path, added_path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    pseudo = Image.fromarray(pred.astype(np.uint8), mode="P")
    pseudo.putpalette(np.asarray(palette, dtype=np.uint8).flatten().tolist())
    pseudo.save(pseudo_path)
    added = blend(image.astype(np.uint8), colorize(pred, palette))
    cv2.imwrite(added_path, cv2.cvtColor(added, cv2.COLOR_RGB2BGR))


def _prepare(transforms: Callable, image_path: str) -> dict:
    """``image_path`` read and transformed; any failure is a :class:`DataError` naming it."""
    try:
        return transforms({"img": image_path, "trans_info": []})
    except DataError:
        raise
    except Exception as error:  # a decoder or a transform failing on an odd image
        raise DataError(f"{image_path}: {type(error).__name__}: {first_line(error)}") from error


def _predict_one(model: paddle.nn.Layer, transforms: Callable, image_path: str,
                 settings: InferenceSettings) -> np.ndarray:
    data = _prepare(transforms, image_path)
    image = paddle.to_tensor(data["img"]).unsqueeze(0)  # [1, 3, H, W]
    logits = infer_logits(model, image, settings, data["trans_info"])
    return logits.argmax(axis=1)[0].numpy()


def predict(model: paddle.nn.Layer, transforms: Callable, image_list: Sequence[str],
            save_dir: str, *, palette: np.ndarray, image_dir: Optional[str] = None,
            settings: Optional[InferenceSettings] = None) -> List[Tuple[str, str]]:
    """Segment every image of ``image_list`` with ``transforms`` (the val dataset's Compose) and
    ``settings`` (default: whole-image fp32); returns the images that failed as
    ``(path, reason)``, after processing all the others."""
    inference = settings or InferenceSettings()
    failed = []
    with eval_mode(model), handling_signals():
        for image_path in tqdm(image_list, desc="predict", unit="img", dynamic_ncols=True):
            try:
                pred = _predict_one(model, transforms, image_path, inference)
                image = read_image(image_path)
            except DataError as error:
                tqdm.write(f"skipped: {error}")
                failed.append((image_path, str(error)))
                continue
            save_prediction(pred, image, output_name(image_path, image_dir), save_dir, palette)
    return failed


def predict_from_config(cfg: Config, model_path: str, image_path: str, save_dir: str,
                        settings: Optional[InferenceSettings] = None, *,
                        custom_color: Optional[Sequence[int]] = None
                        ) -> Tuple[int, List[Tuple[str, str]]]:
    """:func:`predict` the images of ``image_path`` (see :func:`~gcseg.data.images.collect_images`)
    with ``cfg.model`` loaded from ``model_path``; returns the number of images and the failures.
    ``custom_color`` (flat R G B values) replaces the first colours of the dataset's palette."""
    images, image_dir = collect_images(image_path)
    transforms, palette = val_transforms_and_palette(cfg)
    if custom_color:
        palette = with_custom_colors(palette, custom_color)
    model = cfg.model
    load_weights(model, model_path)
    failed = predict(model, transforms, images, save_dir, palette=palette, image_dir=image_dir,
                     settings=settings)
    return len(images), failed
