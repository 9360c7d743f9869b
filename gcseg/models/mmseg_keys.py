"""MMSegmentation / MMCV checkpoint keys -> gcseg's (PaddleSeg-style) keys.

MMSeg's GCNet (``ResNetV1c`` + ``GCHead`` + auxiliary ``FCNHead``) and MMCV's ImageNet
``resnet*_v1c`` hold the same tensors as gcseg's ``GCNet(ResNet*_v1c, head_style="mmseg")``
under other names: ``backbone.layer{s}.{b}.conv{k}`` is ``backbone.bb_{s-1}_{b}.conv{k-1}._conv``,
``decode_head.conv_seg`` is ``head.conv``, and so on (the table below). BatchNorm statistics
``running_mean`` / ``running_var`` become ``_mean`` / ``_variance``, ``num_batches_tracked`` is
dropped, and the GC block's LayerNorm parameters ``[C, 1, 1]`` become ``[C]``. Nothing is
transposed. Keys that match no rule (gcseg's own, an ImageNet ``fc``) pass unchanged, so the
renaming is safe on any state dict and the loader's key check names whatever does not fit.
"""
import re
from typing import Callable, Dict, List, Tuple

import numpy as np

_BACKBONE = r"^(?P<prefix>(?:backbone\.)?)"
_CONV_OR_BN = {"conv": "_conv", "bn": "_batch_norm"}


def _stem(match: re.Match) -> str:
    index = int(match["index"])  # Sequential(conv, bn, relu) x 3: 0 1 _ 3 4 _ 6 7
    part = "_conv" if index % 3 == 0 else "_batch_norm"
    return f"{match['prefix']}conv1_{index // 3 + 1}.{part}."


def _block(match: re.Match) -> str:
    stage, block = int(match["stage"]) - 1, match["block"]
    part = "_conv" if match["kind"] == "conv" else "_batch_norm"
    return f"{match['prefix']}bb_{stage}_{block}.conv{int(match['k']) - 1}.{part}."


def _shortcut(match: re.Match) -> str:
    part = "_conv" if match["index"] == "0" else "_batch_norm"
    return f"{match['prefix']}bb_{int(match['stage']) - 1}_{match['block']}.short.{part}."


def _head_conv(match: re.Match) -> str:
    return f"head.conv_bn_relu{int(match['index']) + 1}.{_CONV_OR_BN[match['kind']]}."


# (pattern on the key's start, replacement); the rest of the key is kept
_RULES: List[Tuple[re.Pattern, Callable[[re.Match], str]]] = [
    (re.compile(_BACKBONE + r"stem\.(?P<index>[0-9]+)\."), _stem),
    (re.compile(_BACKBONE + r"layer(?P<stage>[1-4])\.(?P<block>[0-9]+)\.(?P<kind>conv|bn)"
                r"(?P<k>[1-3])\."), _block),
    (re.compile(_BACKBONE + r"layer(?P<stage>[1-4])\.(?P<block>[0-9]+)\.downsample\."
                r"(?P<index>[01])\."), _shortcut),
    (re.compile(r"^decode_head\.convs\.(?P<index>[01])\.(?P<kind>conv|bn)\."), _head_conv),
    (re.compile(r"^decode_head\.conv_cat\.(?P<kind>conv|bn)\."),
     lambda m: f"head.conv_bn_relu3.{_CONV_OR_BN[m['kind']]}."),
    (re.compile(r"^decode_head\.gc_block\."), lambda m: "head.gc_block."),
    (re.compile(r"^decode_head\.conv_seg\."), lambda m: "head.conv."),
    (re.compile(r"^auxiliary_head\.convs\.0\.(?P<kind>conv|bn)\."),
     lambda m: f"head.auxlayer.conv_bn_relu.{_CONV_OR_BN[m['kind']]}."),
    (re.compile(r"^auxiliary_head\.conv_seg\."), lambda m: "head.auxlayer.conv."),
]
_BN_STATISTICS = {".running_mean": "._mean", ".running_var": "._variance"}
_LAYER_NORM = re.compile(r"head\.gc_block\.channel_add_conv\.1\.(weight|bias)$")


def mmseg_key(key: str) -> str:
    """gcseg's name for the MMSeg/MMCV tensor ``key`` (``key`` itself when no rule applies)."""
    for pattern, replacement in _RULES:
        match = pattern.match(key)
        if match:
            key = replacement(match) + key[match.end():]
            break
    for theirs, ours in _BN_STATISTICS.items():
        if key.endswith(theirs):
            return key[:-len(theirs)] + ours
    return key


def mmseg_to_gcseg(state: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """``state`` with MMSeg/MMCV keys renamed to gcseg's and BN's ``num_batches_tracked``
    dropped; the GC block's LayerNorm ``[C, 1, 1]`` parameters flattened to ``[C]``."""
    renamed = {}
    for key, value in state.items():
        if key.endswith(".num_batches_tracked"):
            continue
        ours = mmseg_key(key)
        renamed[ours] = value.reshape(-1) if _LAYER_NORM.search(ours) else value
    return renamed
