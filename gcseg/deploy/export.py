"""Export a trained model as a static Paddle program + ``deploy.yaml`` for Paddle Inference.

The exported graph is the inference model, not the training one: BatchNorm is folded into the
convolutions (:func:`gcseg.deploy.fold_bn.fold_batchnorm`) and every bilinear resize is built
from matmuls (:mod:`gcseg.models.resize`), so the program runs under Paddle Inference's
*default* CPU configuration (oneDNN on), where ``bilinear_interp`` is rejected. Height, width
and batch stay dynamic unless ``input_shape`` fixes them.

``deploy.yaml`` follows PaddleSeg's layout (``Deploy: model, params, transforms, input_shape,
output_op``) and adds ``normalize`` (mean/std) and ``to_rgb``, everything a deployer needs to
feed the program. ``export_format="onnx"`` converts that program with paddle2onnx
(:mod:`gcseg.deploy.onnx_export`) and writes ``model.onnx`` + ``deploy.yaml`` instead.
"""
import os
import tempfile
from typing import Any, Dict, List, Optional, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import yaml

from gcseg.compat import isolated_static_trace, saved_program_file
from gcseg.deploy.deploy_yml import DEPLOY_FILE, FASTDEPLOY_DEPLOY_FILE
from gcseg.deploy.fold_bn import fold_batchnorm
from gcseg.errors import UsageError
from gcseg.models.resize import deploy_resize_mode

OUTPUT_OPS = ("argmax", "softmax", "none")
EXPORT_FORMATS = ("paddle", "onnx")
MODEL_PREFIX = "model"
# FastDeploy's names for the model files (PaddleSeg's ``export.py --for_fd``).
FASTDEPLOY_PREFIX = "inference"
INPUT_NAME = "x"


class InferenceModel(nn.Layer):
    """The main head's logits ``[N, K, H, W]`` followed by the chosen output op:
    ``argmax`` -> int32 ``[N, H, W]``, ``softmax`` -> probabilities, ``none`` -> logits."""

    def __init__(self, model: nn.Layer, output_op: str = "argmax") -> None:
        super().__init__()
        if output_op not in OUTPUT_OPS:
            raise UsageError(f"output_op must be one of {', '.join(OUTPUT_OPS)}, "
                             f"got {output_op!r}")
        self.model = model
        self.output_op = output_op

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        logits = self.model(x)[0]
        if self.output_op == "argmax":
            return paddle.argmax(logits, axis=1, dtype="int32")
        if self.output_op == "softmax":
            return F.softmax(logits, axis=1)
        return logits


def _input_spec(input_shape: Optional[Sequence[int]]) -> List[paddle.static.InputSpec]:
    shape = [None, 3, None, None] if input_shape is None else [int(v) for v in input_shape]
    if len(shape) != 4 or shape[1] != 3:
        raise UsageError(f"--input_shape: expected 4 values N 3 H W (-1 leaves a size dynamic), "
                         f"got {' '.join(str(v) for v in input_shape)}")
    shape = [None if v is None or v <= 0 else v for v in shape]
    return [paddle.static.InputSpec(shape=shape, dtype="float32", name=INPUT_NAME)]


def normalize_of(val_transforms: Optional[Sequence[Dict[str, Any]]]) -> Dict[str, List[float]]:
    """Mean/std of the ``Normalize`` in a config's val transforms (PaddleSeg's 0.5 defaults)."""
    for transform in val_transforms or []:
        if transform.get("type") == "Normalize":
            return {"mean": list(transform.get("mean", [0.5, 0.5, 0.5])),
                    "std": list(transform.get("std", [0.5, 0.5, 0.5]))}
    return {"mean": [0.0, 0.0, 0.0], "std": [1.0 / 255] * 3}


def export_model(model: nn.Layer, save_dir: str, *, input_shape: Optional[Sequence[int]] = None,
                 output_op: str = "argmax",
                 val_transforms: Optional[Sequence[Dict[str, Any]]] = None,
                 to_rgb: bool = True, fold_bn: bool = True, export_format: str = "paddle",
                 opset: Optional[int] = None, for_fd: bool = False) -> Dict[str, str]:
    """Save ``model`` (a GCNet or any model returning ``[logits, ...]``) to ``save_dir`` as a
    Paddle program or (``export_format="onnx"``, ONNX ``opset``, default 17) an ONNX model;
    returns the paths of the files written. ``model`` is not changed. ``for_fd`` names the
    Paddle files as FastDeploy expects: ``inference.*`` and ``inference.yml``."""
    if export_format not in EXPORT_FORMATS:
        raise UsageError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, "
                         f"got {export_format!r}")
    options = dict(input_shape=input_shape, output_op=output_op, val_transforms=val_transforms,
                   to_rgb=to_rgb, fold_bn=fold_bn)
    if export_format == "paddle":
        return _export_paddle(model, save_dir, for_fd=for_fd, **options)
    from gcseg.deploy.onnx_export import DEFAULT_OPSET, convert_export_to_onnx, import_paddle2onnx
    import_paddle2onnx()  # a missing extra is reported before the export's work
    with tempfile.TemporaryDirectory(prefix="gcseg_onnx_") as paddle_dir:
        _export_paddle(model, paddle_dir, **options)
        return convert_export_to_onnx(paddle_dir, save_dir,
                                      DEFAULT_OPSET if opset is None else opset)


def _export_paddle(model: nn.Layer, save_dir: str, *, input_shape: Optional[Sequence[int]],
                   output_op: str, val_transforms: Optional[Sequence[Dict[str, Any]]],
                   to_rgb: bool, fold_bn: bool, for_fd: bool = False) -> Dict[str, str]:
    model_prefix, deploy_file = ((FASTDEPLOY_PREFIX, FASTDEPLOY_DEPLOY_FILE) if for_fd
                                 else (MODEL_PREFIX, DEPLOY_FILE))
    inference = InferenceModel(fold_batchnorm(model) if fold_bn else model, output_op)
    inference.eval()
    os.makedirs(save_dir, exist_ok=True)
    prefix = os.path.join(save_dir, model_prefix)
    with deploy_resize_mode(), isolated_static_trace():
        static = paddle.jit.to_static(inference, input_spec=_input_spec(input_shape),
                                      full_graph=True)
        paddle.jit.save(static, prefix)
    model_file = saved_program_file(save_dir, model_prefix)
    deploy = {"Deploy": {
        "model": model_file,
        "params": f"{model_prefix}.pdiparams",
        "transforms": [dict(t) for t in (val_transforms or [])],
        "normalize": normalize_of(val_transforms),
        "to_rgb": bool(to_rgb),
        "input_name": INPUT_NAME,
        "input_shape": [v if v is not None else -1 for v in _input_spec(input_shape)[0].shape],
        "output_op": output_op,
        "output_dtype": "int32" if output_op == "argmax" else "float32",
    }}
    deploy_path = os.path.join(save_dir, deploy_file)
    with open(deploy_path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(deploy, handle, sort_keys=False)
    return {"model": os.path.join(save_dir, model_file),
            "params": f"{prefix}.pdiparams", "deploy": deploy_path}


def export_from_config(cfg, model_path: Optional[str], save_dir: str, *,
                       input_shape: Optional[Sequence[int]] = None,
                       output_op: str = "argmax", export_format: str = "paddle",
                       opset: Optional[int] = None, for_fd: bool = False) -> Dict[str, str]:
    """Build ``cfg.model``, load ``model_path`` (if given) and export it with the config's
    val-transform preprocessing, as a Paddle program or an ONNX model."""
    from gcseg.models.weights import load_weights
    _input_spec(input_shape)  # a bad shape is reported before the model is built
    model = cfg.model
    if model_path:
        load_weights(model, model_path)
    val = cfg.dic.get("val_dataset") or {}
    return export_model(model, save_dir, input_shape=input_shape, output_op=output_op,
                        val_transforms=val.get("transforms"), to_rgb=val.get("to_rgb", True),
                        export_format=export_format, opset=opset, for_fd=for_fd)
