"""Whole-image, sliding-window and test-time-augmented inference, and the reverse of the val
transforms.

:func:`infer_logits` is the one inference path used by evaluation, prediction and benchmarks.
With ``tta_average="logits"`` it reproduces PaddleSeg's ``aug_inference``/``inference``: every
view's logits are flipped back, resized to the input size and averaged, then ``trans_info`` is
undone. ``tta_average="probs"`` averages softmax probabilities instead, as MMSegmentation does:
each view's logits are first mapped back to the label's resolution (through ``trans_info``) and
only then softmaxed, so the softmax sees the same logits as a single-view prediction would.
Sizes given as pairs (``crop_size``, ``stride``) are ``(width, height)``, as in PaddleSeg configs.
Logits are resized back (to the input, then to the label) with ``align_corners`` False, as
PaddleSeg does; ``align_corners=True`` resizes them as MMSegmentation does for a model that
itself resizes with ``align_corners=True`` (its 769x769 Cityscapes rows).
"""
import contextlib
import dataclasses
import math
from typing import (Any, Callable, ContextManager, Iterator, List, Optional, Sequence, Tuple,
                    Union)

import numpy as np
import paddle
import paddle.nn.functional as F

from gcseg.config import RUNTIME_DEFAULTS
from gcseg.engine.amp import check_precision
from gcseg.errors import DataError, UsageError

Size = Tuple[int, int]
Flip = Tuple[bool, bool]  # (horizontal, vertical)
# a model, or anything called like one (gcseg.engine.forward.CompiledModel): images -> [logits]
Forward = Callable[[paddle.Tensor], Sequence[paddle.Tensor]]
# what one TTA view adds to the average, from its logits at the input size
ViewOutput = Callable[[paddle.Tensor], paddle.Tensor]

# PaddleSeg's runtime.yml test: section, the defaults of the settings it names
TEST_DEFAULTS = RUNTIME_DEFAULTS["test"]
AUTOCAST_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}
TTA_AVERAGES = ("logits", "probs")
# TTA views and sliding windows run batched, at most this many input pixels per forward (bounds
# memory); a single view or window larger than this still runs, alone.
MAX_BATCH_PIXELS = 4 * 512 * 1024


def _pair(name: str, value: Optional[Sequence[int]]) -> Optional[Size]:
    if value is None:
        return None
    if isinstance(value, int):
        value = (value, value)
    if len(value) != 2 or any(int(v) <= 0 for v in value):
        raise UsageError(f"{name} must be two positive integers (width height), got {value!r}")
    return int(value[0]), int(value[1])


@dataclasses.dataclass(frozen=True)
class InferenceSettings:
    """How to turn one image into logits (PaddleSeg's runtime.yml ``test:`` keys + extras): the
    one type the command line, the config's ``test:`` section, the trainer's periodic evaluation,
    :func:`gcseg.engine.evaluator.evaluate` and prediction pass around."""

    aug_eval: bool = TEST_DEFAULTS["aug_eval"]
    scales: Union[float, Sequence[float]] = TEST_DEFAULTS["scales"]
    flip_horizontal: bool = TEST_DEFAULTS["flip_horizontal"]
    flip_vertical: bool = TEST_DEFAULTS["flip_vertical"]
    is_slide: bool = TEST_DEFAULTS["is_slide"]
    crop_size: Optional[Sequence[int]] = TEST_DEFAULTS["crop_size"]
    stride: Optional[Sequence[int]] = TEST_DEFAULTS["stride"]
    precision: str = "fp32"
    tta_average: str = "logits"
    align_corners: bool = False

    def __post_init__(self) -> None:
        scales = self.scales if isinstance(self.scales, (list, tuple)) else (self.scales,)
        try:
            scales = tuple(float(s) for s in scales)
        except (TypeError, ValueError):
            raise UsageError(f"scales: expected numbers, got {self.scales!r}") from None
        if not scales or any(s <= 0 for s in scales):
            raise UsageError(f"scales must be positive numbers, got {self.scales!r}")
        object.__setattr__(self, "scales", scales)
        object.__setattr__(self, "crop_size", _pair("crop_size", self.crop_size))
        object.__setattr__(self, "stride", _pair("stride", self.stride))
        if self.is_slide and (self.crop_size is None or self.stride is None):
            raise UsageError("is_slide needs crop_size and stride (width height)")
        if self.is_slide and any(s > c for s, c in zip(self.stride, self.crop_size)):
            raise UsageError(f"stride {self.stride} larger than crop_size {self.crop_size} "
                             f"would leave pixels unpredicted")
        if self.tta_average not in TTA_AVERAGES:
            raise UsageError(f"tta_average must be logits or probs, got {self.tta_average!r}")
        check_precision(self.precision, "O1")

    @classmethod
    def names(cls) -> Tuple[str, ...]:
        return tuple(field.name for field in dataclasses.fields(cls))

    @classmethod
    def from_config(cls, cfg: Any, **overrides: Any) -> "InferenceSettings":
        """``cfg``'s ``test:`` section (PaddleSeg's runtime.yml), each key overridden by an
        ``overrides`` value that is not None (a command-line flag that was given)."""
        values = {key: value for key, value in cfg.runtime("test").items() if key in cls.names()}
        values.update({key: value for key, value in overrides.items() if value is not None})
        if values.get("is_slide") and (not values.get("crop_size") or not values.get("stride")):
            raise UsageError("--is_slide needs --crop_size W H and --stride W H "
                             "(or test.crop_size / test.stride in the config)")
        return cls(**values)

    def views(self) -> Tuple[Tuple[float, ...], List[Flip]]:
        """The scales and flips to run; without ``aug_eval`` only the image itself."""
        if not self.aug_eval:
            return (1.0,), [(False, False)]
        flips = [(False, False)]
        if self.flip_horizontal:
            flips.append((True, False))
        if self.flip_vertical:
            flips.append((False, True))
            if self.flip_horizontal:
                flips.append((True, True))
        return self.scales, flips

    @property
    def averages_probs(self) -> bool:
        """Whether :func:`infer_logits` gives probabilities: ``tta_average: probs`` averages the
        softmax of several views as MMSegmentation's TTA does; a single view keeps its logits,
        as MMSegmentation's whole-image and sliding-window inference return them."""
        scales, flips = self.views()
        return self.tta_average == "probs" and len(scales) * len(flips) > 1

    def describe_views(self) -> str:
        """The views :meth:`views` runs, in words: ``scales 0.75, 1.0; flips: none, horizontal
        (4 views per image, logits averaged)``."""
        scales, flips = self.views()
        names = {(False, False): "none", (True, False): "horizontal", (False, True): "vertical",
                 (True, True): "horizontal+vertical"}
        return (f"scales {', '.join(str(float(scale)) for scale in scales)}; flips: "
                f"{', '.join(names[flip] for flip in flips)} ({len(scales) * len(flips)} views "
                f"per image, {self.tta_average} averaged)")

    def autocast(self) -> ContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(dtype=AUTOCAST_DTYPES[self.precision], level="O1")


def resize_bilinear(x: paddle.Tensor, size: Sequence[int],
                    align_corners: bool = False) -> paddle.Tensor:
    """Bilinear resize of ``[N, C, H, W]`` to ``size = (h, w)``; identity when already there.
    (Models resize through :func:`gcseg.models.layers.resize`, which export can swap.)"""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=list(size), mode="bilinear", align_corners=align_corners)


def flip(x: paddle.Tensor, direction: Flip) -> paddle.Tensor:
    axes = [axis for axis, on in zip((3, 2), direction) if on]
    return paddle.flip(x, axis=axes) if axes else x


def reverse_transform(logits: paddle.Tensor, trans_info: Sequence,
                      align_corners: bool = False) -> paddle.Tensor:
    """Map logits back to the label's resolution by undoing ``trans_info`` in reverse order."""
    for op, (height, width) in reversed(list(trans_info)):
        if op == "resize":
            logits = resize_bilinear(logits, (height, width), align_corners)
        elif op == "padding":
            logits = logits[:, :, :height, :width]
        else:
            raise DataError(f"trans_info: unknown op {op!r} (expected resize or padding)")
    return logits


def window_origins(length: int, crop: int, stride: int) -> List[int]:
    """Start offsets of the windows along one axis; the last one is clamped to the border."""
    if length <= crop:
        return [0]
    count = math.ceil((length - crop) / stride) + 1
    return [min(i * stride, length - crop) for i in range(count)]


def model_logits(model: Forward, images: paddle.Tensor) -> paddle.Tensor:
    """The main head's logits ``[N, K, H, W]`` as float32."""
    outputs = model(images)
    if not isinstance(outputs, (list, tuple)):
        raise TypeError(f"model must return a list of logits, got {type(outputs).__name__}")
    return outputs[0].astype("float32")


def window_grid(height: int, width: int, crop_size: Size, stride: Size) -> List[Tuple[int, int]]:
    """``(top, left)`` of every sliding window, row by row, as PaddleSeg orders them."""
    (crop_w, crop_h), (stride_w, stride_h) = crop_size, stride
    return [(top, left) for top in window_origins(height, crop_h, stride_h)
            for left in window_origins(width, crop_w, stride_w)]


def window_size(height: int, width: int, crop_size: Size) -> Size:
    """``(h, w)`` of the sliding windows over a ``height x width`` image (clipped to it)."""
    return min(crop_size[1], height), min(crop_size[0], width)


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    """``items`` in consecutive pieces of at most ``size``."""
    for first in range(0, len(items), size):
        yield items[first:first + size]


def _items_per_forward(item_pixels: int) -> int:
    """How many items of ``item_pixels`` input pixels fit in one forward (at least one)."""
    return max(1, MAX_BATCH_PIXELS // item_pixels)


def slide_logits(model: Forward, images: paddle.Tensor, crop_size: Size,
                 stride: Size) -> paddle.Tensor:
    """Average the logits of overlapping ``crop_size`` windows.

    The windows all have one size, so they run as batches of up to ``MAX_BATCH_PIXELS``
    pixels (one forward instead of one per window) and are summed into place on the device;
    the per-pixel window count depends on the geometry only and is built on the host once.
    """
    batch, _, height, width = images.shape
    crop_h, crop_w = window_size(height, width, crop_size)
    origins = window_grid(height, width, crop_size, stride)
    total, count = None, np.zeros([1, 1, height, width], dtype="float32")
    for chunk in _chunks(origins, _items_per_forward(batch * crop_h * crop_w)):
        windows = paddle.concat([images[:, :, top:top + crop_h, left:left + crop_w]
                                 for top, left in chunk])  # [len(chunk) * N, 3, ch, cw]
        logits = model_logits(model, windows).split(len(chunk))
        if total is None:
            total = paddle.zeros([batch, logits[0].shape[1], height, width], dtype="float32")
        for (top, left), window in zip(chunk, logits):
            total[:, :, top:top + crop_h, left:left + crop_w] += window
            count[:, :, top:top + crop_h, left:left + crop_w] += 1
    return total / paddle.to_tensor(count)


def _pixels_per_view(height: int, width: int, settings: InferenceSettings) -> int:
    """Input pixels one view of a ``height x width`` image puts into a forward: a sliding
    window's, or the whole image's."""
    if settings.is_slide:
        crop_h, crop_w = window_size(height, width, settings.crop_size)
        return crop_h * crop_w
    return height * width


def _flipped_views_logits(model: Forward, image: paddle.Tensor, flips: Sequence[Flip],
                          settings: InferenceSettings) -> paddle.Tensor:
    """Logits of ``image [1, 3, h, w]`` seen through each of ``flips`` in one batch, flipped
    back: ``[len(flips), K, h, w]``."""
    batch = paddle.concat([flip(image, f) for f in flips], axis=0)  # [V, 3, h, w]
    with settings.autocast():
        if settings.is_slide:
            logits = slide_logits(model, batch, settings.crop_size, settings.stride)
        else:
            logits = model_logits(model, batch)
    return paddle.concat([flip(view, f) for view, f in zip(logits.split(len(flips)), flips)])


def _view_output(settings: InferenceSettings, trans_info: Sequence) -> ViewOutput:
    """What a view contributes to the average, given its logits at the input size.

    ``logits``: the logits themselves (PaddleSeg; ``trans_info`` is undone after averaging).
    ``probs``: the softmax of the logits mapped back through ``trans_info`` first, because
    MMSegmentation resizes each view's logits to the original image before its softmax, and
    softmax does not commute with resizing.
    """
    if not settings.averages_probs:
        return lambda logits: logits
    return lambda logits: F.softmax(reverse_transform(logits, trans_info, settings.align_corners),
                                    axis=1)


def _scale_sum(model: Forward, image: paddle.Tensor, scale: float, flips: List[Flip],
               settings: InferenceSettings, output: ViewOutput) -> paddle.Tensor:
    """Sum over ``flips`` of ``output`` of one scale's logits resized back to the input size.

    The flipped views run batched, at most ``MAX_BATCH_PIXELS`` per forward: four views of a
    1024x2048 image at scale 1.75 would be 25M pixels in one batch.
    """
    height, width = image.shape[-2:]
    scaled = resize_bilinear(image, (int(height * scale + 0.5), int(width * scale + 0.5)))
    per_forward = _items_per_forward(_pixels_per_view(*scaled.shape[-2:], settings))
    total = None
    for group in _chunks(flips, per_forward):
        logits = resize_bilinear(_flipped_views_logits(model, scaled, group, settings),
                                 (height, width), settings.align_corners)
        views = output(logits).sum(axis=0, keepdim=True)  # [1, K, H, W] or [1, K, h, w]
        total = views if total is None else total + views
    return total


@paddle.no_grad()
def infer_logits(model: Forward, image: paddle.Tensor, settings: InferenceSettings,
                 trans_info: Optional[Sequence] = None) -> paddle.Tensor:
    """Logits (or probabilities) ``[1, K, h, w]`` of ``image [1, 3, H, W]``, averaged over the
    TTA views and mapped back through ``trans_info`` to the label's resolution."""
    trans_info = trans_info or []
    scales, flips = settings.views()
    output = _view_output(settings, trans_info)
    total = _scale_sum(model, image, scales[0], flips, settings, output)
    for scale in scales[1:]:
        total += _scale_sum(model, image, scale, flips, settings, output)
    average = total / (len(scales) * len(flips))
    if settings.averages_probs:
        return average  # already at the label's resolution
    return reverse_transform(average, trans_info, settings.align_corners)
