"""A short training run from a configs/mmseg recipe on the quickstart scenes: MMSeg's pipeline
(RandomResize, RandomCrop with cat_max_ratio, RandomFlip, PhotoMetricDistortion, Pad), loss
(cross entropy over all pixels, 1 x main + 0.4 x aux), SGD and poly schedule, at an eighth of
the image sizes, lowers the loss."""
import json
from typing import Dict, List

import numpy as np

from gcseg.config import Config
from gcseg.data.quickstart import make_quickstart_dataset
from gcseg.engine.trainer import Hook, StepResult, Trainer, TrainSettings
from conftest import ROOT

RECIPE = ROOT / "configs" / "mmseg" / \
    "gcnet_r50-d8_4xb2-40k_cityscapes-512x1024.yml"
SHRINK = 8  # 2048x1024 scale -> 256x128, 512x1024 crops -> 64x128
TINY_MODEL = {"type": "GCNet", "head_style": "mmseg",
              "backbone": {"type": "ResNet18_v1c", "output_stride": 8, "contract_dilation": True},
              "gc_channels": 32, "ratio": 0.25, "enable_auxiliary_loss": True,
              "align_corners": False}


class LossRecorder(Hook):
    def __init__(self) -> None:
        self.losses: Dict[int, float] = {}

    def after_step(self, trainer: Trainer, step: StepResult) -> None:
        self.losses[trainer.iter] = step.loss


def shrunk_transforms(transforms: List[dict]) -> List[dict]:
    """The recipe's train transforms with every size divided by ``SHRINK``."""
    sizes = {"RandomResize": "scale", "RandomCrop": "crop_size", "Pad": "size"}
    for transform in transforms:
        key = sizes.get(transform["type"])
        if key:
            transform[key] = [side // SHRINK for side in transform[key]]
    return transforms


def test_a_short_run_of_an_mmseg_recipe_lowers_the_loss(tmp_path):
    root = make_quickstart_dataset(tmp_path / "data", num_train=8, num_val=2, size=(256, 128))
    transforms = shrunk_transforms(Config(RECIPE).dic["train_dataset"]["transforms"])
    assert [t["type"] for t in transforms] == ["RandomResize", "RandomCrop", "RandomFlip",
                                               "PhotoMetricDistortion", "Normalize", "Pad"]
    cfg = Config(RECIPE, [f"train_dataset.dataset_root={root}",
                          f"train_dataset.transforms={json.dumps(transforms)}",
                          f"model={json.dumps(TINY_MODEL)}", "iters=16", "val_dataset=null"])
    assert cfg.dic["optimizer"]["weight_decay"] == 5.0e-4 and cfg.loss["coef"] == [1.0, 0.4]
    trainer = Trainer(cfg, TrainSettings.from_config(cfg, save_dir=str(tmp_path / "out"),
                                                     seed=0, log_iters=4, save_interval=16))
    recorder = LossRecorder()
    trainer.hooks.append(recorder)
    trainer.train()

    losses = [recorder.losses[i] for i in range(1, 17)]
    assert all(np.isfinite(losses))
    # an untrained head predicts about uniformly over 19 classes: 1.4 x log(19) in total
    assert abs(losses[0] - 1.4 * np.log(19)) < 0.5 * 1.4 * np.log(19)
    assert np.mean(losses[-4:]) < 0.95 * np.mean(losses[:4])
    assert trainer.optimizer.get_lr() < 0.01  # the poly schedule ran
