"""MMSegmentation's training transforms, under MMSeg's names and with its arguments.

``RandomResize``, ``RandomCrop``, ``RandomFlip``, ``PhotoMetricDistortion`` and ``Pad`` do what
mmcv 2.x / mmsegmentation 1.x do with the same arguments, and draw the same numbers from
``np.random`` in the same order: under one numpy seed they give mmseg's pixels exactly
(tests/test_mmseg_transforms.py runs mmsegmentation itself). MMSeg's test-time
``Resize(scale, keep_ratio)`` is gcseg's ``Resize`` given ``scale`` (gcseg/data/transforms.py).

MMSeg's conventions are kept, so values copy over from MMSeg configs unchanged: ``scale`` and
``Pad.size`` are (w, h), ``RandomCrop.crop_size`` is (h, w). mmcv resizes and distorts uint8
images; gcseg's float32 image holds those same integers until ``Normalize``, and the uint8 steps
convert it exactly (placed after ``Normalize`` they stop with an error). The image stays RGB:
the HSV steps convert from RGB, which gives the values mmcv's BGR conversion gives.
"""
from numbers import Real
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from gcseg.data.transforms import (Data, _number, _pad_bottom_right, _record, _size_pair,
                                   balanced_window, flip, keep_ratio_size, resize_as_mmcv,
                                   uint8_image)
from gcseg.errors import ConfigError
from gcseg.registry import TRANSFORMS

FLIP_AXES = {"horizontal": (1,), "vertical": (0,), "diagonal": (0, 1)}


def _range(transform: str, arg: str, value: Any, low: float = 0.0) -> Tuple[float, float]:
    """``[min, max]`` of two numbers with ``low <= min <= max``."""
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, Real) and not isinstance(v, bool) for v in value)
    if not ok or not low <= value[0] <= value[1]:
        raise ConfigError(f"{transform}.{arg}: expected [min, max] with {low} <= min <= max, "
                          f"got {value!r}")
    return float(value[0]), float(value[1])


# ----------------------------------------------------------------------------- geometry
@TRANSFORMS.register
class RandomResize:
    """mmcv's RandomResize: ``scale`` [w, h] times a ratio drawn uniformly from ``ratio_range``
    (each side truncated to an int), or, given two sizes ``[[w0, h0], [w1, h1]]``, each side
    drawn as an int between them; then mmcv's Resize to that scale (``keep_ratio``: the largest
    size fitting it). Training-only: records nothing."""

    def __init__(self, scale: Sequence[Any], ratio_range: Optional[Sequence[float]] = None,
                 keep_ratio: bool = False) -> None:
        self.ratio_range = None
        if ratio_range is not None:
            self.ratio_range = _range("RandomResize", "ratio_range", ratio_range, low=1e-6)
        is_pair_of_sizes = isinstance(scale, (list, tuple)) and len(scale) == 2 and all(
            isinstance(s, (list, tuple)) for s in scale)
        if is_pair_of_sizes:
            self.scales = [_size_pair("RandomResize", "scale", s) for s in scale]
        else:
            self.scales = [_size_pair("RandomResize", "scale", scale)]
            if self.ratio_range is None:
                raise ConfigError("RandomResize.ratio_range: required with a single scale "
                                  "[w, h] (or give scale as two sizes [[w0, h0], [w1, h1]])")
        self.keep_ratio = keep_ratio

    def _draw_scale(self) -> Tuple[int, int]:
        if len(self.scales) == 2:
            (w0, h0), (w1, h1) = self.scales
            return (np.random.randint(min(w0, w1), max(w0, w1) + 1),
                    np.random.randint(min(h0, h1), max(h0, h1) + 1))
        low, high = self.ratio_range
        ratio = np.random.random_sample() * (high - low) + low
        width, height = self.scales[0]
        return int(width * ratio), int(height * ratio)

    def __call__(self, data: Data) -> Data:
        scale = self._draw_scale()
        h, w = data["img"].shape[:2]
        size = keep_ratio_size(h, w, scale) if self.keep_ratio else scale
        resize_as_mmcv(data, size, "RandomResize")
        return data


@TRANSFORMS.register
class RandomCrop:
    """mmseg's RandomCrop: a random ``crop_size`` (h, w) window, smaller where the image is
    (no padding). With ``cat_max_ratio < 1`` up to 10 more windows are drawn until one shows at
    least two classes and none covering ``cat_max_ratio`` or more of it (``ignore_index``
    aside); otherwise the last window drawn is used."""

    ATTEMPTS = 10

    def __init__(self, crop_size: Union[int, Sequence[int]], cat_max_ratio: float = 1.0,
                 ignore_index: int = 255) -> None:
        self.crop_size = _size_pair("RandomCrop", "crop_size", crop_size, allow_int=True,
                                    order="height, width")  # as MMSeg's configs write it
        self.cat_max_ratio = _number("RandomCrop", "cat_max_ratio", cat_max_ratio, 1e-12)
        self.ignore_index = ignore_index

    def _draw_window(self, h: int, w: int) -> Tuple[slice, slice]:
        crop_h, crop_w = self.crop_size
        top = np.random.randint(0, max(h - crop_h, 0) + 1)
        left = np.random.randint(0, max(w - crop_w, 0) + 1)
        return slice(top, top + crop_h), slice(left, left + crop_w)

    def __call__(self, data: Data) -> Data:
        h, w = data["img"].shape[:2]
        rows, cols = self._draw_window(h, w)
        if self.cat_max_ratio < 1.0 and "label" in data:
            for _ in range(self.ATTEMPTS):
                if balanced_window(data["label"][rows, cols], self.ignore_index,
                                   self.cat_max_ratio):
                    break
                rows, cols = self._draw_window(h, w)
        data["img"] = data["img"][rows, cols]
        if "label" in data:
            data["label"] = data["label"][rows, cols]
        return data


@TRANSFORMS.register
class RandomFlip:
    """mmcv's RandomFlip: flip image and label in ``direction`` (horizontal, vertical or
    diagonal) with probability ``prob``; for a list of directions, ``prob`` is shared equally
    among them, or given per direction as a list."""

    def __init__(self, prob: Union[float, Sequence[float]] = 0.5,
                 direction: Union[str, Sequence[str]] = "horizontal") -> None:
        directions = [direction] if isinstance(direction, str) else list(direction)
        unknown = [d for d in directions if d not in FLIP_AXES]
        if not directions or unknown:
            raise ConfigError(f"RandomFlip.direction: expected horizontal, vertical, diagonal "
                              f"or a list of them, got {direction!r}")
        if isinstance(prob, (list, tuple)):
            probs = [_number("RandomFlip", "prob", p, 0, 1) for p in prob]
            if len(probs) != len(directions) or sum(probs) > 1:
                raise ConfigError(f"RandomFlip.prob: a list needs one probability per direction "
                                  f"summing to at most 1, got {prob!r}")
        else:
            share = _number("RandomFlip", "prob", prob, 0, 1) / len(directions)
            probs = [share] * len(directions)
        self.choices: List[Optional[str]] = [*directions, None]  # None: no flip
        self.probs = [*probs, 1.0 - sum(probs)]

    def __call__(self, data: Data) -> Data:
        direction = self.choices[np.random.choice(len(self.choices), p=self.probs)]
        if direction is None:
            return data
        return flip(data, FLIP_AXES[direction])


@TRANSFORMS.register
class Pad:
    """mmcv's Pad: pad bottom and right to ``size`` [w, h] or up to multiples of
    ``size_divisor``; the image with ``pad_val`` (a number, or ``{img: v, seg: v}``), the label
    with ``seg_pad_val`` (255). Records ("padding", hw)."""

    def __init__(self, size: Optional[Sequence[int]] = None, size_divisor: Optional[int] = None,
                 pad_val: Union[float, Dict[str, float]] = 0, seg_pad_val: int = 255) -> None:
        if (size is None) == (size_divisor is None):
            raise ConfigError(f"Pad: expected exactly one of size and size_divisor, got size="
                              f"{size!r}, size_divisor={size_divisor!r}")
        self.size = None if size is None else _size_pair("Pad", "size", size, allow_int=True)
        self.size_divisor = None if size_divisor is None else int(
            _number("Pad", "size_divisor", size_divisor, 1))
        if isinstance(pad_val, dict):
            seg_pad_val = pad_val.get("seg", seg_pad_val)
            pad_val = pad_val.get("img", 0)
        self.pad_val = _number("Pad", "pad_val", pad_val)
        self.seg_pad_val = int(_number("Pad", "seg_pad_val", seg_pad_val, 0, 255))

    def _target(self, h: int, w: int) -> Tuple[int, int]:
        if self.size is not None:
            return self.size[1], self.size[0]
        divisor = self.size_divisor
        return -(-h // divisor) * divisor, -(-w // divisor) * divisor

    def __call__(self, data: Data) -> Data:
        _record(data, "padding")
        h, w = data["img"].shape[:2]
        target_h, target_w = self._target(h, w)
        _pad_bottom_right(data, target_h - h, target_w - w, self.pad_val, self.seg_pad_val)
        return data


# ----------------------------------------------------------------------------- photometric
def _scale_and_shift(values: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """``values * alpha + beta`` in float32, clipped to 0..255 and truncated to uint8."""
    return np.clip(values.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


@TRANSFORMS.register
class PhotoMetricDistortion:
    """mmseg's PhotoMetricDistortion on the uint8 image, each step with probability 1/2:
    brightness shift in [-brightness_delta, brightness_delta], contrast factor (before or, at
    random, after the HSV steps), saturation factor, hue shift in [-hue_delta, hue_delta) on
    OpenCV's 0..179 hue circle."""

    def __init__(self, brightness_delta: float = 32,
                 contrast_range: Sequence[float] = (0.5, 1.5),
                 saturation_range: Sequence[float] = (0.5, 1.5), hue_delta: int = 18) -> None:
        self.brightness_delta = _number("PhotoMetricDistortion", "brightness_delta",
                                        brightness_delta, 0, 255)
        self.contrast_range = _range("PhotoMetricDistortion", "contrast_range", contrast_range)
        self.saturation_range = _range("PhotoMetricDistortion", "saturation_range",
                                       saturation_range)
        self.hue_delta = int(_number("PhotoMetricDistortion", "hue_delta", hue_delta, 1, 179))

    def _brightness(self, image: np.ndarray) -> np.ndarray:
        if np.random.randint(2):
            delta = self.brightness_delta
            return _scale_and_shift(image, beta=np.random.uniform(-delta, delta))
        return image

    def _contrast(self, image: np.ndarray) -> np.ndarray:
        if np.random.randint(2):
            return _scale_and_shift(image, alpha=np.random.uniform(*self.contrast_range))
        return image

    def _saturation(self, image: np.ndarray) -> np.ndarray:
        if np.random.randint(2):
            hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
            hsv[..., 1] = _scale_and_shift(hsv[..., 1],
                                           alpha=np.random.uniform(*self.saturation_range))
            return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        return image

    def _hue(self, image: np.ndarray) -> np.ndarray:
        if np.random.randint(2):
            hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
            shift = np.random.randint(-self.hue_delta, self.hue_delta)
            hsv[..., 0] = (hsv[..., 0].astype(np.int64) + shift) % 180
            return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        return image

    def __call__(self, data: Data) -> Data:
        image = self._brightness(uint8_image(data, "PhotoMetricDistortion"))
        contrast_first = np.random.randint(2) == 1
        if contrast_first:
            image = self._contrast(image)
        image = self._hue(self._saturation(image))
        if not contrast_first:
            image = self._contrast(image)
        data["img"] = image.astype(np.float32)
        return data
