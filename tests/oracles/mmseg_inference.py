"""MMSegmentation's own inference API on photo files, in the mmseg oracle environment (never
beside Paddle): the row's config as mmsegmentation's wheel ships it, random non-trivial weights
saved as a segmentor checkpoint with ``torch.save``, then ``mmseg.apis.init_model`` +
``inference_model`` (the row's test pipeline: LoadImageFromFile, Resize keeping the ratio,
SegDataPreProcessor, whole-image inference, logits resized back to the photo).

    python mmseg_inference.py OUT_DIR '{"config": "gcnet_r50-d8_4xb4-20k_voc12aug-512x512",
        "images": ["a.png", ...], "seed": 0, "legacy_format": true}'

Writes OUT_DIR/gcnet.pth and OUT_DIR/oracle.npz with ``logits/<i>`` (float32 [C, H, W], the
``seg_logits`` of image i) and ``label/<i>`` (its ``pred_sem_seg``, [H, W]).
"""
import json
import os
import sys

import mmseg
import numpy as np
import torch
from mmengine.config import Config
from mmengine.model.utils import revert_sync_batchnorm
from mmseg.apis import inference_model, init_model
from mmseg.registry import MODELS
from mmseg.utils import register_all_modules

from mmseg_gcnet import randomise

CONFIG_DIR = os.path.join(os.path.dirname(mmseg.__file__), ".mim", "configs", "gcnet")
# conv_seg's random weights give logits within about +-1; scaled up they spread over several
# units, so the label map has many classes and few near-ties
CONV_SEG_GAIN = 8.0


def write_checkpoint(cfg: Config, settings: dict, path: str) -> None:
    model = MODELS.build(cfg.model)
    randomise(model, settings["seed"])
    with torch.no_grad():
        model.decode_head.conv_seg.weight.mul_(CONV_SEG_GAIN)
    checkpoint = {"state_dict": model.state_dict(), "meta": {"mmseg_version": mmseg.__version__}}
    torch.save(checkpoint, path, _use_new_zipfile_serialization=not settings["legacy_format"])


def main() -> None:
    out_dir, settings = sys.argv[1], json.loads(sys.argv[2])
    register_all_modules()
    cfg = Config.fromfile(os.path.join(CONFIG_DIR, f"{settings['config']}.py"))
    checkpoint = os.path.join(out_dir, "gcnet.pth")
    write_checkpoint(cfg, settings, checkpoint)
    # as mmseg's demo/image_demo.py does on a CPU: SyncBN -> BN (same eval-mode arithmetic)
    model = revert_sync_batchnorm(init_model(cfg, checkpoint, device="cpu"))
    results = {}
    with torch.no_grad():
        for index, image in enumerate(settings["images"]):
            sample = inference_model(model, image)
            results[f"logits/{index}"] = sample.seg_logits.data.numpy().astype(np.float32)
            results[f"label/{index}"] = sample.pred_sem_seg.data[0].numpy().astype(np.int64)
    np.savez(os.path.join(out_dir, "oracle.npz"), **results)


if __name__ == "__main__":
    main()
