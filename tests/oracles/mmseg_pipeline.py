"""Runs MMSegmentation's own GCNet data pipelines, in the mmseg oracle environment (never beside
Paddle): the train or test pipeline of a row's config as the wheel ships it, then the row's
SegDataPreProcessor (BGR -> RGB, mean/std, padding to the crop size when training).

    python mmseg_pipeline.py request.json result.npz

request.json: a list of {"key", "config" (e.g. gcnet_r50-d8_4xb2-40k_cityscapes-512x1024),
"pipeline" ("train" | "test"), "img_path", "seg_map_path", "seed"}; numpy is seeded with
"seed" just before the pipeline runs. result.npz holds "<key>/img" (float32 [3, H, W], what the
model gets) and "<key>/label" (the label the metric or loss gets).
"""
import json
import sys
from pathlib import Path

import numpy as np
import mmseg
from mmengine.config import Config
from mmengine.dataset import Compose
from mmseg.registry import MODELS
from mmseg.utils import register_all_modules

CONFIG_DIR = Path(mmseg.__file__).parent / ".mim" / "configs" / "gcnet"


def run_case(case: dict) -> dict:
    cfg = Config.fromfile(str(CONFIG_DIR / f"{case['config']}.py"))
    steps = cfg[f"{case['pipeline']}_pipeline"]
    pipeline = Compose(steps)
    preprocessor = MODELS.build(cfg.model.data_preprocessor)
    # the dataset class tells LoadAnnotations this flag; the pipeline's own value is the same
    reduce_zero_label = any(step.get("reduce_zero_label", False) for step in steps)
    np.random.seed(case["seed"])
    packed = pipeline({"img_path": case["img_path"], "seg_map_path": case["seg_map_path"],
                       "reduce_zero_label": reduce_zero_label, "seg_fields": []})
    batch = preprocessor({"inputs": [packed["inputs"]], "data_samples": [packed["data_samples"]]},
                         training=case["pipeline"] == "train")
    label = batch["data_samples"][0].gt_sem_seg.data[0]
    return {f"{case['key']}/img": batch["inputs"][0].numpy().astype(np.float32),
            f"{case['key']}/label": label.numpy().astype(np.int64)}


def main() -> None:
    register_all_modules()
    request, result = sys.argv[1:3]
    arrays = {}
    for case in json.loads(Path(request).read_text()):
        arrays.update(run_case(case))
    np.savez(result, **arrays)


if __name__ == "__main__":
    main()
