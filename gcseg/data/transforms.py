"""Compose and the PaddleSeg-named transforms, with PaddleSeg's arguments and semantics.

``Resize`` serves both vocabularies: PaddleSeg's ``target_size`` or MMSegmentation's ``scale``
(mmcv's sizes and uint8 pixels); MMSeg's training transforms live in
gcseg/data/mmseg_transforms.py and share the mmcv helpers below.

Every transform is ``__call__(data: dict) -> dict`` (see docs/ARCHITECTURE.md, "Transform"):
``data["img"]`` is an ``HWC float32`` RGB image, ``data["label"]`` (when present) an ``HW``
label transformed together with the image, and shape-changing transforms that inference must
undo append ``(op, (h, w))`` to ``data["trans_info"]``. Random transforms draw from
``np.random`` only, so the dataset's per-sample seed fixes every augmentation.

Deliberate differences from PaddleSeg 2.8 (bugs there, not semantics):
- RandomPaddingCrop with ``category_max_ratio < 1`` crops the image with the accepted window
  (PaddleSeg stores the label crop in the image).
- RandomFlips and RandomDistort draw from ``np.random`` instead of Python's ``random``.
- RandomDistort's hue shift wraps around the colour circle.
- ResizeByShort picks a random ``short_size`` from a list per call, not once at construction.
"""
import math
from numbers import Real
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from PIL import Image, ImageEnhance

from gcseg.data.images import read_image, read_label
from gcseg.errors import ConfigError, DataError
from gcseg.registry import TRANSFORMS

Data = Dict[str, Any]
INTERPOLATIONS = {
    "NEAREST": cv2.INTER_NEAREST,
    "LINEAR": cv2.INTER_LINEAR,
    "CUBIC": cv2.INTER_CUBIC,
    "AREA": cv2.INTER_AREA,
    "LANCZOS4": cv2.INTER_LANCZOS4,
}


# ----------------------------------------------------------------------------- argument checks
def _size_pair(transform: str, arg: str, value: Any, allow_int: bool = False,
               order: str = "width, height") -> Tuple[int, int]:
    """``value`` as a pair of two positive ints, (w, h) unless ``order`` says otherwise (an int
    means a square when ``allow_int``)."""
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    if not ok:
        expected = "an int or " if allow_int else ""
        raise ConfigError(f"{transform}.{arg}: expected {expected}[{order}] of 2 positive "
                          f"ints, got {value!r}")
    return int(value[0]), int(value[1])


def _number(transform: str, arg: str, value: Any, low: float = -math.inf,
            high: float = math.inf) -> float:
    if not isinstance(value, Real) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{transform}.{arg}: expected a number in [{low}, {high}], "
                          f"got {value!r}")
    return float(value)


def _probability(transform: str, arg: str, value: Any) -> float:
    return _number(transform, arg, value, 0.0, 1.0)


def _where(data: Data) -> str:
    return str(data.get("img_path", "<image array>"))


def check_same_size(image: np.ndarray, label: np.ndarray, img_path: Any, label_path: Any) -> None:
    if image.shape[:2] != label.shape[:2]:
        raise DataError(f"image {img_path} is {image.shape[1]}x{image.shape[0]} but label "
                        f"{label_path} is {label.shape[1]}x{label.shape[0]} (W x H)")


# ----------------------------------------------------------------------------- geometry helpers
def _resize(data: Data, size: Tuple[int, int], interp: int = cv2.INTER_LINEAR) -> None:
    """Resize the image with ``interp`` and the label (if any) with nearest, to (w, h)."""
    data["img"] = cv2.resize(data["img"], size, interpolation=interp)
    if "label" in data:
        data["label"] = cv2.resize(data["label"], size, interpolation=cv2.INTER_NEAREST)


def _pad_bottom_right(data: Data, pad_h: int, pad_w: int, im_value: float,
                      label_value: int) -> None:
    if pad_h <= 0 and pad_w <= 0:
        return
    pad_h, pad_w = max(pad_h, 0), max(pad_w, 0)
    data["img"] = cv2.copyMakeBorder(data["img"], 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT,
                                     value=(im_value,) * 3)
    if "label" in data:
        data["label"] = cv2.copyMakeBorder(data["label"], 0, pad_h, 0, pad_w,
                                           cv2.BORDER_CONSTANT, value=label_value)


def _scaled_size(h: int, w: int, scale: float) -> Tuple[int, int]:
    """(w, h) scaled by ``scale``, rounded as PaddleSeg does."""
    return int(round(w * scale)), int(round(h * scale))


def _record(data: Data, op: str) -> None:
    h, w = data["img"].shape[:2]
    data["trans_info"].append((op, (int(h), int(w))))


# ----------------------------------------------------------------------------- mmcv's resizing
def keep_ratio_size(h: int, w: int, scale: Tuple[int, int]) -> Tuple[int, int]:
    """(w, h) as ``mmcv.rescale_size`` makes it: the factor that fits the long side into
    ``max(scale)`` and the short side into ``min(scale)``, each side ``int(side * f + 0.5)``."""
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(w * factor + 0.5), int(h * factor + 0.5)


def uint8_image(data: Data, transform: str) -> np.ndarray:
    """The image as the uint8 array mmcv works on; the float32 image must hold exactly those
    values (it does from reading until Normalize), else a DataError says where to move
    ``transform``."""
    image = data["img"]
    pixels = image.astype(np.uint8)
    if not np.array_equal(pixels, image):
        raise DataError(f"{_where(data)}: {transform} works on the 0..255 image, as mmcv does; "
                        f"place it before Normalize")
    return pixels


def resize_as_mmcv(data: Data, size: Tuple[int, int], transform: str) -> None:
    """``mmcv.imresize`` to (w, h): cv2 bilinear on the uint8 image, nearest on the label."""
    pixels = cv2.resize(uint8_image(data, transform), size, interpolation=cv2.INTER_LINEAR)
    data["img"] = pixels.astype(np.float32)
    if "label" in data:
        data["label"] = cv2.resize(data["label"], size, interpolation=cv2.INTER_NEAREST)


def balanced_window(window: np.ndarray, ignore_index: int, max_ratio: float) -> bool:
    """True when at least two classes (``ignore_index`` aside) show in the label ``window`` and
    none covers ``max_ratio`` or more of its non-ignored pixels."""
    values, counts = np.unique(window, return_counts=True)
    counts = counts[values != ignore_index]
    return len(counts) > 1 and counts.max() / counts.sum() < max_ratio


# ----------------------------------------------------------------------------- Compose
@TRANSFORMS.register
class Compose:
    """Reads the image (and label) when given paths, runs the transforms, returns CHW arrays.

    ``data["img"]`` / ``data["label"]`` may be paths or arrays; ``img_path`` / ``label_path``
    keys, when present, name the files in error messages. The result holds ``img`` as
    ``float32 [3, H, W]`` and ``label`` as ``int64 [H, W]``.
    """

    def __init__(self, transforms: Sequence[Callable], to_rgb: bool = True) -> None:
        if not isinstance(transforms, (list, tuple)):
            raise ConfigError(f"Compose.transforms: expected a list of transforms, "
                              f"got {transforms!r}")
        for i, op in enumerate(transforms):
            if not callable(op):
                raise ConfigError(f"Compose.transforms[{i}]: expected a transform object, "
                                  f"got {op!r}")
        self.transforms = list(transforms)
        self.to_rgb = to_rgb

    def __call__(self, data: Data) -> Data:
        self._load(data)
        data.setdefault("trans_info", [])
        for op in self.transforms:
            data = op(data)
        data["img"] = np.ascontiguousarray(data["img"].transpose(2, 0, 1), dtype=np.float32)
        if "label" in data:
            data["label"] = np.ascontiguousarray(data["label"], dtype=np.int64)
        return data

    def _load(self, data: Data) -> None:
        if "img" not in data:
            raise DataError("Compose: the data has no 'img'")
        if isinstance(data["img"], (str, Path)):
            data.setdefault("img_path", str(data["img"]))
            data["img"] = read_image(data["img"], self.to_rgb)
        else:
            data["img"] = np.asarray(data["img"], dtype=np.float32)
        if data["img"].ndim != 3 or data["img"].shape[2] != 3:
            raise DataError(f"{_where(data)}: expected an HWC image with 3 channels, "
                            f"got shape {data['img'].shape}")
        if data.get("label") is None:
            data.pop("label", None)
            return
        if isinstance(data["label"], (str, Path)):
            data.setdefault("label_path", str(data["label"]))
            data["label"] = read_label(data["label"])
        check_same_size(data["img"], data["label"], _where(data),
                        data.get("label_path", "<label array>"))


# ----------------------------------------------------------------------------- flips
def flip(data: Data, axes: Tuple[int, ...]) -> Data:
    """Image and label (when present) flipped along ``axes`` (0: upside down, 1: left-right)."""
    data["img"] = np.ascontiguousarray(np.flip(data["img"], axes))
    if "label" in data:
        data["label"] = np.ascontiguousarray(np.flip(data["label"], axes))
    return data


class _RandomFlipAlong:
    """Flip image and label along ``axes`` with probability ``prob``."""

    def __init__(self, prob: float, axes: Tuple[int, ...]) -> None:
        self.prob = _probability(type(self).__name__, "prob", prob)
        self.axes = axes

    def __call__(self, data: Data) -> Data:
        return flip(data, self.axes) if np.random.random() < self.prob else data


@TRANSFORMS.register
class RandomHorizontalFlip(_RandomFlipAlong):
    """Flip image and label left-right with probability ``prob``."""

    def __init__(self, prob: float = 0.5) -> None:
        super().__init__(prob, axes=(1,))


@TRANSFORMS.register
class RandomVerticalFlip(_RandomFlipAlong):
    """Flip image and label upside down with probability ``prob``."""

    def __init__(self, prob: float = 0.1) -> None:
        super().__init__(prob, axes=(0,))


# ----------------------------------------------------------------------------- resizing
@TRANSFORMS.register
class Resize:
    """Resize in PaddleSeg's vocabulary or in MMSegmentation's, told apart by the size argument;
    both record ("resize", hw) so inference maps the logits back to the label.

    - ``target_size: [w, h]`` (PaddleSeg): to that size, or with ``keep_ratio`` the largest size
      within it (sides rounded with ``round``); ``size_divisor`` rounds up, ``interp`` picks the
      interpolation. Works on the float image anywhere in the pipeline.
    - ``scale: [w, h]`` (MMSeg, ``mmcv.transforms.Resize``): to that size, or with ``keep_ratio``
      the largest size whose long side fits ``max(scale)`` and short side ``min(scale)``, each
      side ``int(side * factor + 0.5)``; cv2 bilinear on the uint8 image, pixel for pixel as
      mmcv, so it must come before Normalize.
    """

    def __init__(self, target_size: Optional[Sequence[int]] = None, keep_ratio: bool = False,
                 size_divisor: Optional[int] = None, interp: str = "LINEAR",
                 scale: Union[int, Sequence[int], None] = None) -> None:
        if interp != "RANDOM" and interp not in INTERPOLATIONS:
            raise ConfigError(f"Resize.interp: expected one of "
                              f"{', '.join([*INTERPOLATIONS, 'RANDOM'])}, got {interp!r}")
        if size_divisor is not None and (not isinstance(size_divisor, int) or size_divisor < 1):
            raise ConfigError(f"Resize.size_divisor: expected a positive int or null, "
                              f"got {size_divisor!r}")
        self.scale = None
        if scale is not None:
            if target_size is not None or size_divisor is not None or interp != "LINEAR":
                raise ConfigError("Resize: scale (MMSeg's argument) goes with keep_ratio only, "
                                  "not with PaddleSeg's target_size, size_divisor or interp")
            self.scale = _size_pair("Resize", "scale", scale, allow_int=True)
        self.target_size = _size_pair("Resize", "target_size",
                                      (512, 512) if target_size is None else target_size)
        self.keep_ratio = keep_ratio
        self.size_divisor = size_divisor
        self.interp = interp

    def _size_for(self, h: int, w: int) -> Tuple[int, int]:
        size = self.target_size
        if self.keep_ratio:
            scale = min(max(size) / max(h, w), min(size) / min(h, w))
            size = (round(w * scale), round(h * scale))
        if self.size_divisor:
            size = tuple(math.ceil(s / self.size_divisor) * self.size_divisor for s in size)
        return int(size[0]), int(size[1])

    def __call__(self, data: Data) -> Data:
        _record(data, "resize")
        h, w = data["img"].shape[:2]
        if self.scale is not None:
            size = keep_ratio_size(h, w, self.scale) if self.keep_ratio else self.scale
            resize_as_mmcv(data, size, "Resize")
            return data
        name = self.interp
        if name == "RANDOM":
            name = list(INTERPOLATIONS)[np.random.randint(len(INTERPOLATIONS))]
        _resize(data, self._size_for(h, w), INTERPOLATIONS[name])
        return data


@TRANSFORMS.register
class ResizeByLong:
    """Scale so that the long side becomes ``long_size``; records ("resize", hw)."""

    def __init__(self, long_size: int) -> None:
        self.long_size = int(_number("ResizeByLong", "long_size", long_size, 1))

    def __call__(self, data: Data) -> Data:
        _record(data, "resize")
        h, w = data["img"].shape[:2]
        _resize(data, _scaled_size(h, w, self.long_size / max(h, w)))
        return data


@TRANSFORMS.register
class ResizeByShort:
    """Scale so that the short side becomes ``short_size`` (one picked at random per call from a
    list), unless the long side would exceed ``max_size``; records ("resize", hw)."""

    def __init__(self, short_size: Union[int, Sequence[int]], max_size: float = 1e10) -> None:
        sizes = list(short_size) if isinstance(short_size, (list, tuple)) else [short_size]
        if not sizes:
            raise ConfigError("ResizeByShort.short_size: expected an int or a non-empty list")
        self.short_sizes = [int(_number("ResizeByShort", "short_size", s, 1)) for s in sizes]
        self.max_size = _number("ResizeByShort", "max_size", max_size, 1)

    def __call__(self, data: Data) -> Data:
        _record(data, "resize")
        h, w = data["img"].shape[:2]
        short = self.short_sizes[0]
        if len(self.short_sizes) > 1:
            short = self.short_sizes[np.random.randint(len(self.short_sizes))]
        if short / min(h, w) * max(h, w) > self.max_size:
            short = int(self.max_size / max(h, w) * min(h, w))
        _resize(data, _scaled_size(h, w, short / min(h, w)))
        return data


@TRANSFORMS.register
class ResizeStepScaling:
    """Scale by a factor drawn from ``min..max`` in steps of ``scale_step_size`` (uniformly
    from the range when the step is 0). Training-only: records nothing."""

    def __init__(self, min_scale_factor: float = 0.75, max_scale_factor: float = 1.25,
                 scale_step_size: float = 0.25) -> None:
        self.min_scale_factor = _number("ResizeStepScaling", "min_scale_factor",
                                        min_scale_factor, 1e-6)
        self.max_scale_factor = _number("ResizeStepScaling", "max_scale_factor",
                                        max_scale_factor, self.min_scale_factor)
        self.scale_step_size = _number("ResizeStepScaling", "scale_step_size",
                                       scale_step_size, 0)

    def _draw_scale(self) -> float:
        low, high = self.min_scale_factor, self.max_scale_factor
        if low == high:
            return low
        if self.scale_step_size == 0:
            return float(np.random.uniform(low, high))
        num_steps = int((high - low) / self.scale_step_size + 1)
        factors = np.linspace(low, high, num_steps).tolist()
        np.random.shuffle(factors)
        return factors[0]

    def __call__(self, data: Data) -> Data:
        h, w = data["img"].shape[:2]
        _resize(data, _scaled_size(h, w, self._draw_scale()))
        return data


# ----------------------------------------------------------------------------- padding, cropping
@TRANSFORMS.register
class Padding:
    """Pad bottom and right up to ``target_size`` (w, h); records ("padding", hw)."""

    def __init__(self, target_size: Union[int, Sequence[int]], im_padding_value: float = 127.5,
                 label_padding_value: int = 255) -> None:
        self.target_size = _size_pair("Padding", "target_size", target_size, allow_int=True)
        self.im_padding_value = im_padding_value
        self.label_padding_value = label_padding_value

    def __call__(self, data: Data) -> Data:
        _record(data, "padding")
        h, w = data["img"].shape[:2]
        target_w, target_h = self.target_size
        if h > target_h or w > target_w:
            raise DataError(f"{_where(data)}: image is {w}x{h}, larger than Padding.target_size "
                            f"{target_w}x{target_h}")
        _pad_bottom_right(data, target_h - h, target_w - w, self.im_padding_value,
                          self.label_padding_value)
        return data


@TRANSFORMS.register
class RandomPaddingCrop:
    """Crop a random ``crop_size`` (w, h) window, first padding bottom/right when smaller.

    With ``category_max_ratio < 1`` up to ``loop_times`` windows are tried until no class
    (``ignore_index`` aside) covers more than that share of the window and at least two classes
    show; otherwise the last window drawn is used.
    """

    def __init__(self, crop_size: Sequence[int] = (512, 512), im_padding_value: float = 127.5,
                 label_padding_value: int = 255, category_max_ratio: float = 1.0,
                 ignore_index: int = 255, loop_times: int = 10) -> None:
        self.crop_size = _size_pair("RandomPaddingCrop", "crop_size", crop_size)
        self.im_padding_value = im_padding_value
        self.label_padding_value = label_padding_value
        self.category_max_ratio = _number("RandomPaddingCrop", "category_max_ratio",
                                          category_max_ratio, 1e-12)
        self.ignore_index = ignore_index
        self.loop_times = int(_number("RandomPaddingCrop", "loop_times", loop_times, 1))

    def _draw_window(self, h: int, w: int) -> Tuple[int, int]:
        crop_w, crop_h = self.crop_size
        top = np.random.randint(0, max(h - crop_h, 0) + 1)
        left = np.random.randint(0, max(w - crop_w, 0) + 1)
        return top, left

    def _balanced(self, label: np.ndarray, top: int, left: int) -> bool:
        crop_w, crop_h = self.crop_size
        return balanced_window(label[top:top + crop_h, left:left + crop_w], self.ignore_index,
                               self.category_max_ratio)

    def __call__(self, data: Data) -> Data:
        crop_w, crop_h = self.crop_size
        h, w = data["img"].shape[:2]
        if (h, w) == (crop_h, crop_w):
            return data
        _pad_bottom_right(data, crop_h - h, crop_w - w, self.im_padding_value,
                          self.label_padding_value)
        h, w = data["img"].shape[:2]
        top, left = self._draw_window(h, w)
        if self.category_max_ratio < 1.0 and "label" in data:
            for _ in range(self.loop_times - 1):
                if self._balanced(data["label"], top, left):
                    break
                top, left = self._draw_window(h, w)
        data["img"] = data["img"][top:top + crop_h, left:left + crop_w]
        if "label" in data:
            data["label"] = data["label"][top:top + crop_h, left:left + crop_w]
        return data


# ----------------------------------------------------------------------------- geometric jitter
@TRANSFORMS.register
class RandomRotation:
    """Rotate by an angle drawn from [-max_rotation, max_rotation] degrees, growing the canvas to
    hold the whole rotated image; new pixels get the padding values."""

    def __init__(self, max_rotation: float = 15, im_padding_value: float = 127.5,
                 label_padding_value: int = 255) -> None:
        self.max_rotation = _number("RandomRotation", "max_rotation", max_rotation, 0)
        self.im_padding_value = im_padding_value
        self.label_padding_value = label_padding_value

    def __call__(self, data: Data) -> Data:
        if self.max_rotation <= 0:
            return data
        h, w = data["img"].shape[:2]
        angle = np.random.uniform(-self.max_rotation, self.max_rotation)
        center_x, center_y = w // 2, h // 2
        matrix = cv2.getRotationMatrix2D((center_x, center_y), angle, 1.0)
        cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
        new_w, new_h = int(h * sin + w * cos), int(h * cos + w * sin)
        matrix[0, 2] += new_w / 2 - center_x
        matrix[1, 2] += new_h / 2 - center_y
        data["img"] = cv2.warpAffine(data["img"], matrix, (new_w, new_h), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_CONSTANT,
                                     borderValue=(self.im_padding_value,) * 3)
        if "label" in data:
            data["label"] = cv2.warpAffine(data["label"], matrix, (new_w, new_h),
                                           flags=cv2.INTER_NEAREST,
                                           borderMode=cv2.BORDER_CONSTANT,
                                           borderValue=self.label_padding_value)
        return data


@TRANSFORMS.register
class RandomScaleAspect:
    """Crop a window of random area (``min_scale``..1 of the image) and aspect ratio
    (``aspect_ratio``..1/``aspect_ratio``), then resize it back to the image size."""

    def __init__(self, min_scale: float = 0.5, aspect_ratio: float = 0.33) -> None:
        self.min_scale = _number("RandomScaleAspect", "min_scale", min_scale, 0, 1)
        self.aspect_ratio = _number("RandomScaleAspect", "aspect_ratio", aspect_ratio, 0, 1)

    def _draw_window(self, h: int, w: int) -> Optional[Tuple[int, int, int, int]]:
        for _ in range(10):
            area = h * w * np.random.uniform(self.min_scale, 1.0)
            aspect = np.random.uniform(self.aspect_ratio, 1.0 / self.aspect_ratio)
            crop_w, crop_h = int(np.sqrt(area * aspect)), int(np.sqrt(area / aspect))
            if np.random.randint(10) < 5:
                crop_w, crop_h = crop_h, crop_w
            if crop_h < h and crop_w < w:
                top = np.random.randint(0, h - crop_h)
                left = np.random.randint(0, w - crop_w)
                return top, left, crop_h, crop_w
        return None

    def __call__(self, data: Data) -> Data:
        if self.min_scale == 0 or self.aspect_ratio == 0:
            return data
        h, w = data["img"].shape[:2]
        window = self._draw_window(h, w)
        if window is None:
            return data
        top, left, crop_h, crop_w = window
        data["img"] = data["img"][top:top + crop_h, left:left + crop_w]
        if "label" in data:
            data["label"] = data["label"][top:top + crop_h, left:left + crop_w]
        _resize(data, (w, h))
        return data


# ----------------------------------------------------------------------------- photometric
def _shift_hue(image: Image.Image, delta: float) -> Image.Image:
    hsv = np.asarray(image.convert("HSV")).copy()
    hsv[..., 0] = np.mod(np.round(hsv[..., 0].astype(np.float64) + delta), 256).astype(np.uint8)
    return Image.fromarray(hsv, mode="HSV").convert("RGB")


_ENHANCERS = {
    "brightness": ImageEnhance.Brightness,
    "contrast": ImageEnhance.Contrast,
    "saturation": ImageEnhance.Color,
    "sharpness": ImageEnhance.Sharpness,
}


@TRANSFORMS.register
class RandomDistort:
    """Brightness, contrast, saturation, hue and sharpness jitter, in a random order, each applied
    with its probability. A factor is drawn from [1 - range, 1 + range]; the hue shift from
    [-hue_range, hue_range] on PIL's 0..255 hue circle."""

    def __init__(self, brightness_range: float = 0.5, brightness_prob: float = 0.5,
                 contrast_range: float = 0.5, contrast_prob: float = 0.5,
                 saturation_range: float = 0.5, saturation_prob: float = 0.5,
                 hue_range: float = 18, hue_prob: float = 0.5, sharpness_range: float = 0.5,
                 sharpness_prob: float = 0) -> None:
        given = {"brightness": (brightness_range, brightness_prob),
                 "contrast": (contrast_range, contrast_prob),
                 "saturation": (saturation_range, saturation_prob),
                 "hue": (hue_range, hue_prob),
                 "sharpness": (sharpness_range, sharpness_prob)}
        self.ops = {name: (_number("RandomDistort", f"{name}_range", value_range, 0),
                           _probability("RandomDistort", f"{name}_prob", prob))
                    for name, (value_range, prob) in given.items()}

    def __call__(self, data: Data) -> Data:
        image = Image.fromarray(np.clip(data["img"], 0, 255).astype(np.uint8))
        names = list(self.ops)
        for i in np.random.permutation(len(names)):
            value_range, prob = self.ops[names[i]]
            if np.random.uniform(0, 1) >= prob:
                continue
            delta = np.random.uniform(-value_range, value_range)
            if names[i] == "hue":
                image = _shift_hue(image, delta)
            else:
                image = _ENHANCERS[names[i]](image).enhance(1.0 + delta)
        data["img"] = np.asarray(image, dtype=np.float32)
        return data


@TRANSFORMS.register
class RandomBlur:
    """Blur with probability about ``prob`` (1 in int(1/prob) draws, as PaddleSeg), with an odd
    kernel of 3..9 pixels; ``blur_type`` gaussian, median, blur or random."""

    BLUR_TYPES = ("gaussian", "median", "blur", "random")

    def __init__(self, prob: float = 0.1, blur_type: str = "gaussian") -> None:
        self.prob = _probability("RandomBlur", "prob", prob)
        if blur_type not in self.BLUR_TYPES:
            raise ConfigError(f"RandomBlur.blur_type: expected one of "
                              f"{', '.join(self.BLUR_TYPES)}, got {blur_type!r}")
        self.blur_type = blur_type

    def __call__(self, data: Data) -> Data:
        if self.prob <= 0:
            return data
        n = 1 if self.prob >= 1 else int(1.0 / self.prob)
        if np.random.randint(0, n) != 0:
            return data
        radius = min(np.random.randint(3, 10) | 1, 9)
        kind = self.blur_type
        if kind == "random":
            kind = ("gaussian", "median", "blur")[np.random.randint(3)]
        image = np.clip(data["img"], 0, 255).astype(np.uint8)
        if kind == "gaussian":
            image = cv2.GaussianBlur(image, (radius, radius), 0, 0)
        elif kind == "median":
            image = cv2.medianBlur(image, radius)
        else:
            image = cv2.blur(image, (radius, radius))
        data["img"] = image.astype(np.float32)
        return data


@TRANSFORMS.register
class Normalize:
    """``(img / 255 - mean) / std`` per channel (one value or three)."""

    def __init__(self, mean: Sequence[float] = (0.5,), std: Sequence[float] = (0.5,)) -> None:
        self.mean = self._values("mean", mean)
        self.std = self._values("std", std)
        if np.any(self.std == 0):
            raise ConfigError(f"Normalize.std: must not contain 0, got {list(std)}")

    @staticmethod
    def _values(arg: str, values: Any) -> np.ndarray:
        ok = isinstance(values, (list, tuple)) and len(values) in (1, 3) and all(
            isinstance(v, Real) and not isinstance(v, bool) for v in values)
        if not ok:
            raise ConfigError(f"Normalize.{arg}: expected a list of 1 or 3 numbers, "
                              f"got {values!r}")
        return np.asarray(values, dtype=np.float32)

    def __call__(self, data: Data) -> Data:
        data["img"] = (data["img"].astype(np.float32) / 255.0 - self.mean) / self.std
        return data
