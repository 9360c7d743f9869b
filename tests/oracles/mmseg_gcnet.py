"""MMSegmentation oracle for GCNet: run with the .venv-mmseg python, never inside gcseg's tests.

    python mmseg_gcnet.py OUT_DIR '{"depth": 18, "num_classes": 5, ...}'

Builds mmsegmentation's own GCNet (its ``_base_/models/gcnet_r50-d8.py`` config; SyncBN -> BN
on CPU), gives it random non-trivial weights (BatchNorm statistics far from the identity, the
GC block's last conv not zero), and writes into OUT_DIR:

- ``gcnet_zip.pth`` / ``gcnet_legacy.pth``: the segmentor checkpoint ``{"state_dict", "meta"}``
  in torch's zip format and in the legacy (pre-1.6) format;
- ``backbone_legacy.pth``: the backbone alone as MMCV's ImageNet files hold it (no
  ``backbone.`` prefix, plus an ImageNet ``fc`` classifier);
- ``oracle.npz``: the input image, the backbone's four features, and mmseg's outputs:
  ``whole`` (``encode_decode``), ``slide`` (``slide_inference``, when ``crop``/``stride`` are
  given), ``msflip_probs`` / ``msflip_label`` (every scale and flip through mmseg's
  ``predict``; the label from ``SegTTAModel.merge_preds``, the probabilities averaged as it
  averages them, since it keeps only the label).
"""
import json
import os
import sys

import mmseg
import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.structures import PixelData  # noqa: F401  (mmseg's data samples need it loaded)
from mmseg.models.segmentors.seg_tta import SegTTAModel
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmseg.utils import register_all_modules

BASE_CONFIG = os.path.join(os.path.dirname(mmseg.__file__), ".mim", "configs", "_base_",
                           "models", "gcnet_r50-d8.py")


def build_model(settings: dict) -> torch.nn.Module:
    cfg = Config.fromfile(BASE_CONFIG)
    model = cfg.model
    model.pretrained = None
    batch_norm = dict(type="BN", requires_grad=True)
    model.backbone.depth = settings["depth"]
    model.backbone.norm_cfg = batch_norm
    for head in (model.decode_head, model.auxiliary_head):
        head.norm_cfg = batch_norm
        head.num_classes = settings["num_classes"]
        head.align_corners = settings["align_corners"]
    if settings["depth"] == 18:  # MMSeg's R-18 configs: 4x narrower stages and heads
        model.decode_head.update(in_channels=512, channels=128)
        model.auxiliary_head.update(in_channels=256, channels=64)
    if settings.get("crop"):
        model.test_cfg = dict(mode="slide", crop_size=tuple(settings["crop"]),
                              stride=tuple(settings["stride"]))
    register_all_modules()
    return MODELS.build(model).eval()


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Weights and BN statistics with non-trivial values, activations kept in range."""
    generator = torch.Generator().manual_seed(seed)

    def draw(shape, low=None, high=None, std=None):
        if std is not None:
            return torch.randn(shape, generator=generator) * std
        return low + (high - low) * torch.rand(shape, generator=generator)

    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(draw(tensor.shape, 0.5, 2.0))
            elif name.endswith("running_mean") or name.endswith("bias"):
                tensor.copy_(draw(tensor.shape, std=0.2))
            elif tensor.dim() == 4:
                fan_in = tensor[0].numel()
                tensor.copy_(draw(tensor.shape, std=(1.0 / fan_in) ** 0.5))
            else:  # BN and LayerNorm weights
                tensor.copy_(draw(tensor.shape, 0.5, 1.5))


def save_checkpoints(model: torch.nn.Module, out_dir: str) -> None:
    checkpoint = {"state_dict": model.state_dict(),
                  "meta": {"mmseg_version": mmseg.__version__, "iter": 40000,
                           "CLASSES": ("a", "b"), "seed": np.int64(0)}}
    torch.save(checkpoint, os.path.join(out_dir, "gcnet_zip.pth"))
    torch.save(checkpoint, os.path.join(out_dir, "gcnet_legacy.pth"),
               _use_new_zipfile_serialization=False)
    backbone = dict(model.backbone.state_dict())
    backbone["fc.weight"] = torch.randn(1000, model.backbone.feat_dim)
    backbone["fc.bias"] = torch.zeros(1000)
    torch.save(backbone, os.path.join(out_dir, "backbone_legacy.pth"),
               _use_new_zipfile_serialization=False)


def sample(image_shape, ori_shape, flip: bool = False) -> SegDataSample:
    meta = dict(ori_shape=tuple(ori_shape), img_shape=tuple(image_shape),
                pad_shape=tuple(image_shape), flip=flip, flip_direction="horizontal",
                img_path="random.png")
    return SegDataSample(metainfo=meta)


def ms_flip(model: torch.nn.Module, image: torch.Tensor, scales) -> tuple:
    """Every scale x {no flip, horizontal flip} through mmseg's predict (inference, flip back,
    resize to the original size), merged by mmseg's TTA model."""
    height, width = image.shape[2:]
    views = []
    for scale in scales:
        size = (int(height * scale + 0.5), int(width * scale + 0.5))
        scaled = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        for flip in (False, True):
            view = scaled.flip(dims=(3,)) if flip else scaled
            views += model.predict(view, [sample(size, (height, width), flip)])
    label = SegTTAModel(module=model).merge_preds([views])[0].pred_sem_seg.data
    probs = sum(view.seg_logits.data.softmax(dim=0) for view in views) / len(views)
    return probs[None].numpy(), label.numpy()


def main() -> None:
    out_dir, settings = sys.argv[1], json.loads(sys.argv[2])
    torch.manual_seed(settings.get("seed", 0))
    model = build_model(settings)
    randomise(model, settings.get("seed", 0))
    save_checkpoints(model, out_dir)
    height, width = settings["size"]
    image = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(1))
    results = {"image": image.numpy()}
    with torch.no_grad():
        for index, feature in enumerate(model.extract_feat(image)):
            results[f"c{index + 1}"] = feature.numpy()
        results["whole"] = model.encode_decode(image, [sample((height, width),
                                                              (height, width)).metainfo]).numpy()
        if settings.get("crop"):
            metas = [sample((height, width), (height, width)).metainfo]
            results["slide"] = model.slide_inference(image, metas).numpy()
        if settings.get("scales"):
            results["msflip_probs"], results["msflip_label"] = ms_flip(model, image,
                                                                       settings["scales"])
    np.savez(os.path.join(out_dir, "oracle.npz"), **results)


if __name__ == "__main__":
    main()
