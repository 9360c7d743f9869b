"""2-process evaluation (real paddle.distributed.launch of scripts/val.py) equals 1 process."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle

from gcseg.config import Config
from gcseg.data.quickstart import make_quickstart_dataset
from gcseg.engine.evaluator import evaluate
from gcseg.models.weights import load_weights, save_weights

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
model:
  type: GCNet
  backbone: {{type: ResNet18_vd, output_stride: 8}}
  gc_channels: 16
  enable_auxiliary_loss: False
val_dataset:
  type: Cityscapes
  dataset_root: {root}
  mode: val
  transforms:
    - {{type: Resize, target_size: [48, 32]}}
    - {{type: Normalize}}
"""


def write_run(tmp_path: Path, num_val: int = 3):
    """A tiny Cityscapes-layout dataset (odd image size), a config and random weights."""
    data_root = make_quickstart_dataset(tmp_path / "data", num_train=1, num_val=num_val,
                                        size=(61, 37))
    config_path = tmp_path / "gcnet_tiny.yml"
    config_path.write_text(CONFIG.format(root=data_root))
    paddle.seed(0)
    model_path = tmp_path / "model.pdparams"
    save_weights(Config(config_path).model, str(model_path))
    return config_path, model_path


def test_two_process_evaluation_equals_single_process(tmp_path):
    config_path, model_path = write_run(tmp_path)
    cfg = Config(config_path)
    model = cfg.model
    load_weights(model, str(model_path))
    single = evaluate(model, cfg.val_dataset, print_detail=False)

    save_dir = tmp_path / "dist"
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
               "--log_dir", str(tmp_path / "logs"), str(ROOT / "scripts" / "val.py"),
               "--config", str(config_path), "--model_path", str(model_path),
               "--save_dir", str(save_dir), "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=240)
    logs = "".join(p.read_text() for p in sorted((tmp_path / "logs").glob("workerlog.*")))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:] + logs[-3000:]
    distributed = json.loads((save_dir / "eval_results.json").read_text())

    assert distributed["confusion_matrix"] == single["confusion_matrix"]
    assert distributed["mIoU"] == single["mIoU"]
    assert distributed["num_images"] == 3
    valid_pixels = sum(int((item["label"] != 255).sum()) for item in cfg.val_dataset)
    assert np.sum(distributed["confusion_matrix"]) == valid_pixels  # each image counted once
    assert "[EVAL] #Images: 3" in logs
