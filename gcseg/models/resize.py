"""Bilinear resize from matmuls: the form Paddle Inference's oneDNN CPU kernels accept.

Paddle Inference 3.3.1 with its default CPU configuration (oneDNN on) cannot run a saved
``F.interpolate(mode="bilinear")``: its PIR attribute conversion rejects the ``scale`` list
("ConvertPirAttribute2RuntimeAttribute not support ArrayAttribute<DoubleAttribute>").
Bilinear resizing is separable and linear, so ``y = A_h @ x @ A_w^T`` with two interpolation
matrices gives the same numbers. The matrices are built inside the graph from the dynamic input
and output sizes (arange, floor, compare, cast), so one exported model serves every image size.

Both coordinate conventions equal ``F.interpolate(..., mode="bilinear", align_mode=0)``:
``align_corners=False`` maps output pixel ``i`` to ``(i + 0.5) * in / out - 0.5`` clamped at 0,
``align_corners=True`` maps it to ``i * (in - 1) / (out - 1)``.
"""
import contextlib
from typing import Iterator, Sequence, Union

import paddle
import paddle.nn.functional as F

_ACTIVE = [False]


def deploy_resize_active() -> bool:
    """True inside :func:`deploy_resize_mode` (read by ``gcseg.models.layers.resize``)."""
    return _ACTIVE[0]


@contextlib.contextmanager
def deploy_resize_mode(active: bool = True) -> Iterator[None]:
    """Route every model resize through :func:`matmul_resize` (used while exporting)."""
    previous = _ACTIVE[0]
    _ACTIVE[0] = active
    try:
        yield
    finally:
        _ACTIVE[0] = previous


# A length is a Python int or an integer tensor (a ``paddle.Tensor`` in dygraph, a
# ``pir.Value`` while tracing), so "not an int" is the test for "a tensor".
def _scalar(length: Union[int, paddle.Tensor]) -> Union[int, paddle.Tensor]:
    return int(length) if isinstance(length, int) else paddle.reshape(length, [])


def _as_float(length: Union[int, paddle.Tensor]) -> paddle.Tensor:
    if isinstance(length, int):
        return paddle.full([1], float(length), dtype="float32")
    return paddle.reshape(length, [1]).astype("float32")


def interpolation_matrix(in_length: Union[int, paddle.Tensor],
                         out_length: Union[int, paddle.Tensor],
                         align_corners: bool) -> paddle.Tensor:
    """``[out_length, in_length]`` matrix whose rows hold the bilinear weights.

    Output ``o`` samples input position ``s(o)``, clamped to ``[0, in - 1]`` as Paddle's kernel
    does; input ``i`` gets the "hat" weight ``max(0, 1 - |s(o) - i|)``, i.e. ``1 - frac`` for
    ``floor(s)`` and ``frac`` for ``floor(s) + 1``. As in Paddle's kernel an output of length
    1 samples position 0. (The hat form also sidesteps ``floor``: Paddle Inference 3.3.1's
    inplace pass let ``floor``/``remainder`` overwrite an input that a later op still read.)
    """
    in_f, out_f = _as_float(in_length), _as_float(out_length)
    out_index = paddle.arange(_scalar(out_length), dtype="float32")  # [out]
    many = (out_f > 1).astype("float32")
    if align_corners:
        source = out_index * (many * (in_f - 1) / paddle.maximum(out_f - 1, paddle.ones_like(out_f)))
    else:
        source = (out_index + 0.5) * (many * in_f / out_f) - 0.5
    source = paddle.clip(paddle.minimum(source, in_f - 1), min=0.0)
    in_index = paddle.arange(_scalar(in_length), dtype="float32")  # [in]
    distance = paddle.abs(source.unsqueeze(1) - in_index.unsqueeze(0))  # [out, in]
    return F.relu(1 - distance)


def matmul_resize(x: paddle.Tensor, size: Union[Sequence[int], paddle.Tensor],
                  align_corners: bool) -> paddle.Tensor:
    """Bilinear resize of ``x [N, C, h, w]`` to ``size (H, W)`` as ``A_h @ x @ A_w^T``.

    Both products are plain 2-D GEMMs on reshaped views: Paddle Inference 3.3.1's oneDNN
    matmul gave wrong numbers for a 4-D x 2-D broadcast matmul fed by a convolution.
    """
    shape = paddle.shape(x)  # [N, C, h, w]
    if isinstance(size, (list, tuple)):
        out_h, out_w = size
    else:
        out_h, out_w = size[0], size[1]
    rows = interpolation_matrix(shape[2], out_h, align_corners)  # [H, h]
    cols = interpolation_matrix(shape[3], out_w, align_corners)  # [W, w]
    y = paddle.matmul(paddle.reshape(x, [-1, shape[3]]), cols, transpose_y=True)  # [N*C*h, W]
    y = paddle.transpose(paddle.reshape(y, [shape[0], shape[1], shape[2], out_w]), [0, 1, 3, 2])
    y = paddle.matmul(paddle.reshape(y, [-1, shape[2]]), rows, transpose_y=True)  # [N*C*W, H]
    y = paddle.reshape(y, [shape[0], shape[1], out_w, out_h])
    return paddle.transpose(y, [0, 1, 3, 2])  # [N, C, H, W]
