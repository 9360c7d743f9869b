"""2-process evaluation (real paddle.distributed.launch of scripts/val.py) equals 1 process."""
import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from gcseg.config import Config
from gcseg.engine.evaluator import evaluate
from gcseg.models.weights import load_weights
from conftest import ROOT, write_run

pytestmark = pytest.mark.xdist_group("launch")  # one paddle.distributed.launch at a time


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
