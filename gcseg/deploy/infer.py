"""Segment image files with an exported model, in batches, as PaddleSeg's
``deploy/python/infer.py`` does, optionally timed.

Every image gives ``save_dir/<name>.png``: a palette PNG whose pixel values are the class ids
(shown in the generic class colours, or ``custom_color``'s). A batch holds up to ``batch_size``
consecutive images of one size (images of different sizes cannot share a tensor; PaddleSeg's
script fails on them, here a new batch starts), so the labels equal those of one image at a time.
With a ``timer`` the first batch runs once untimed (warm-up), then every batch's preprocessing,
inference and postprocessing (class ids from the output) are timed; writing the PNGs is not.
"""
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from gcseg.data.palettes import generic_palette, with_custom_colors
from gcseg.deploy.runtime import DeployedModel
from gcseg.errors import UsageError

STAGES = ("preprocess", "inference", "postprocess")
AUTO_TUNE_IMAGES = 10  # images auto-tune runs to collect TensorRT's shape ranges (PaddleSeg's)


@dataclass
class StageTimer:
    """Seconds spent per stage over ``images`` images, the warm-up left out."""
    seconds: Dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    images: int = 0
    batches: int = 0

    def report(self, description: str, batch_size: int, model_name: str = "") -> List[str]:
        """Lines a user reads: what ran, then the per-image milliseconds of each stage."""
        name = f"model {model_name}, " if model_name else ""
        per_image = {stage: 1000 * value / max(self.images, 1)
                     for stage, value in self.seconds.items()}
        total = sum(per_image.values())
        stages = ", ".join(f"{stage} {value:.2f} ms" for stage, value in per_image.items())
        return [f"benchmark: {name}{description}, batch_size {batch_size}",
                f"benchmark: {self.images} images in {self.batches} batches after 1 warm-up "
                f"batch; per image: {stages}; total {total:.2f} ms "
                f"({1000 / total if total else 0:.2f} images/s)"]


def check_batch_size(model: DeployedModel, batch_size: int) -> None:
    """A one-line UsageError when the export fixes its batch to another size."""
    fixed = model.deploy.get("input_shape", [-1])[0]
    if fixed > 0 and fixed != batch_size:
        raise UsageError(f"--batch_size {batch_size}: this export takes batches of {fixed} "
                         f"(deploy.yaml input_shape {model.deploy['input_shape']}); export again "
                         f"with --input_shape -1 3 H W, or use --batch_size {fixed}")


def _batches(model: DeployedModel, image_paths: Sequence[str], batch_size: int,
             timer: Optional[StageTimer]) -> Iterator[Tuple[List[str], np.ndarray]]:
    """``(paths, [N, 3, H, W])`` of up to ``batch_size`` consecutive images of one size."""
    paths: List[str] = []
    arrays: List[np.ndarray] = []
    for image_path in image_paths:
        start = time.perf_counter()
        array = model.preprocess(image_path)
        if timer is not None:
            timer.seconds["preprocess"] += time.perf_counter() - start
        if arrays and (len(arrays) == batch_size or array.shape != arrays[0].shape):
            yield paths, np.concatenate(arrays)
            paths, arrays = [], []
        paths.append(image_path)
        arrays.append(array)
    if arrays:
        yield paths, np.concatenate(arrays)


def _labels(model: DeployedModel, batch: np.ndarray, timer: Optional[StageTimer]) -> np.ndarray:
    start = time.perf_counter()
    output = model.run(batch)
    middle = time.perf_counter()
    labels = model.labels(output)
    if timer is not None:
        timer.seconds["inference"] += middle - start
        timer.seconds["postprocess"] += time.perf_counter() - middle
        timer.images += len(batch)
        timer.batches += 1
    return labels


def save_label(label: np.ndarray, path: str, palette: np.ndarray) -> None:
    """``label [H, W]`` class ids as a palette PNG (the pixel values stay the class ids)."""
    image = Image.fromarray(label.astype(np.uint8), mode="P")
    image.putpalette(np.asarray(palette, dtype=np.uint8).flatten().tolist())
    image.save(path)


def tune_trt_shapes(model_dir: str, image_paths: Sequence[str], shape_file: str,
                    **options) -> None:
    """PaddleSeg's ``--enable_auto_tune``: run the first ``AUTO_TUNE_IMAGES`` images one by
    one on the GPU without TensorRT, recording every tensor's shape range in ``shape_file``,
    from which TensorRT's dynamic shapes are then set (``tuned_shape_file``)."""
    model = DeployedModel(model_dir, "paddle", **dict(options, collect_shape_file=shape_file,
                                                      tuned_shape_file=None))
    for image_path in image_paths[:AUTO_TUNE_IMAGES]:
        model.run(model.preprocess(image_path))


def infer_images(model: DeployedModel, image_paths: Sequence[str], save_dir: str, *,
                 batch_size: int = 1, custom_color: Optional[Sequence[int]] = None,
                 timer: Optional[StageTimer] = None) -> List[str]:
    """Segment ``image_paths`` with ``model``; writes ``save_dir/<name>.png`` (see the module
    docstring) and returns their paths. ``timer`` collects the stage times."""
    check_batch_size(model, batch_size)
    palette = generic_palette(256)
    if custom_color:
        palette = with_custom_colors(palette, custom_color)
    if timer is not None and image_paths:
        _, warmup = next(_batches(model, image_paths[:batch_size], batch_size, None))
        _labels(model, warmup, None)
    os.makedirs(save_dir, exist_ok=True)
    written = []
    for paths, batch in _batches(model, image_paths, batch_size, timer):
        for image_path, label in zip(paths, _labels(model, batch, timer)):
            out_path = os.path.join(save_dir, Path(image_path).stem + ".png")
            save_label(label, out_path, palette)
            written.append(out_path)
    return written
