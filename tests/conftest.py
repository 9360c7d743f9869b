"""Test session set-up and the helpers the test modules share (test modules never import each
other; they import from here).

The CPU environment must be configured before Paddle is imported, so that happens first.
"""
import functools
import http.server
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from gcseg.cpu_env import configure  # noqa: E402

configure(argv=[], announce=False)

import numpy as np  # noqa: E402
import paddle  # noqa: E402
import paddle.nn as nn  # noqa: E402
import paddle.nn.functional as F  # noqa: E402
import pytest  # noqa: E402

from gcseg.config import Config  # noqa: E402
from gcseg.data.quickstart import make_quickstart_dataset  # noqa: E402
from gcseg.engine.inference import InferenceSettings, infer_logits  # noqa: E402
from gcseg.engine.trainer import Hook, StepResult, Trainer, TrainSettings  # noqa: E402
from gcseg.models import GCNet, ResNet18_vd, load_weights  # noqa: E402
from gcseg.models.weights import save_weights  # noqa: E402


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups (--dist loadgroup)
def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    """Under pytest-xdist (scripts/run_tests.sh: ``-n N --dist loadgroup``) each test file runs
    on one worker, in its own order, as in a single process: a module-scoped fixture is built
    by the file's first test, as the file was written for. A test's own ``xdist_group`` mark
    (``launch``: the paddle.distributed.launch runs, one at a time) takes precedence."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(Path(str(item.fspath)).stem))


# ----------------------------------------------------------------------------- command lines
SCRIPTS = ROOT / "scripts"


NOISE = [
    re.compile(r"^WARNING: OMP_NUM_THREADS set to \d+, not 1\."),  # paddle/__init__.py
    re.compile(r"^PLEASE USE OMP_NUM_THREADS WISELY\.$"),  # ... its second line
    re.compile(r".*UserWarning: No ccache found\."),  # paddle.utils.cpp_extension at import
    re.compile(r".*UserWarning: When training, we now always track global mean and "
               r"variance\."),  # paddle.nn.BatchNorm at the first training step
    re.compile(r"^\s+warnings\.warn\("),  # ... the source line Python shows under a warning
    re.compile(r"^gcseg cpu setup: "),  # gcseg.cpu_env.configure
    re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (INFO|WARNING) "),  # train.py's log lines
    re.compile(r"^\[ ?(WARN|ERROR):\d+@[\d.]+\] global "),  # OpenCV decoder warnings
]


def error_lines(stderr: str) -> List[str]:
    """stderr without the lines that are not gcseg's to control: Paddle's OMP_NUM_THREADS warning
    at import, Python's ccache and BatchNorm UserWarnings, gcseg's CPU set-up line and train.py's
    log lines (each pattern of ``NOISE`` is one of them), so anything else on stderr - a
    traceback, a second message - fails the tests."""
    return [line for line in stderr.splitlines()
            if line.strip() and not any(pattern.match(line) for pattern in NOISE)]


def run_script(script: str, *args: str, env_extra=None) -> subprocess.CompletedProcess:
    """``python scripts/<script> args`` without GCSEG_DEBUG, under a timeout."""
    env = {key: value for key, value in os.environ.items() if key != "GCSEG_DEBUG"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, str(SCRIPTS / script), *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env)


def assert_one_line_error(result: subprocess.CompletedProcess, *names: str) -> str:
    """Exit 2, exactly one ``error:`` line naming each of ``names``, no traceback."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    """A one-iteration GCNet-R18 config on a tiny Cityscapes tree (the command-line tests)."""
    from datagen import make_cityscapes_tree
    root = tmp_path_factory.mktemp("cli")
    make_cityscapes_tree(root / "data", n_train=1, n_val=1)
    path = root / "tiny.yml"
    path.write_text(f"""
batch_size: 1
iters: 1
model:
  type: GCNet
  backbone: {{type: ResNet18_vd, output_stride: 8}}
  gc_channels: 16
optimizer: {{type: SGD, momentum: 0.9}}
lr_scheduler: {{type: PolynomialDecay, learning_rate: 0.01}}
loss: {{types: [{{type: CrossEntropyLoss}}], coef: [1, 0.4]}}
train_dataset:
  type: Cityscapes
  dataset_root: {root / 'data'}
  mode: train
  transforms: [{{type: Normalize}}]
val_dataset:
  type: Cityscapes
  dataset_root: {root / 'data'}
  mode: val
  transforms: [{{type: Normalize}}]
global: {{device: cpu}}
""")
    return path


# ----------------------------------------------------------------------------- tiny training run
TINY_CONFIG = """
batch_size: 2
iters: 4
model:
  type: GCNet
  backbone: {{type: ResNet18_vd, output_stride: 8}}
  gc_channels: 16
optimizer: {{type: SGD, momentum: 0.9, weight_decay: 4.0e-5}}
lr_scheduler: {{type: PolynomialDecay, learning_rate: 0.01, end_lr: 0.0, power: 0.9,
               warmup_iters: 1, warmup_start_lr: 0.001}}
loss:
  types: [{{type: CrossEntropyLoss}}]
  coef: [1, 0.4]
train_dataset:
  type: Cityscapes
  dataset_root: {root}
  mode: train
  transforms:
    - {{type: ResizeStepScaling, min_scale_factor: 0.75, max_scale_factor: 1.25,
       scale_step_size: 0.25}}
    - {{type: RandomPaddingCrop, crop_size: [64, 32]}}
    - {{type: RandomHorizontalFlip}}
    - {{type: Normalize}}
val_dataset:
  type: Cityscapes
  dataset_root: {root}
  mode: val
  transforms: [{{type: Normalize}}]
train:
  log_iters: 1
  save_interval: 2
  seed: 7
"""


def write_tiny_config(tmp_path: Path, num_train: int = 6) -> Path:
    """A tiny GCNet-R18 run on 64x32 synthetic street scenes (shared by the training tests)."""
    data_root = tmp_path / "data"
    if not data_root.exists():
        make_quickstart_dataset(data_root, num_train=num_train, num_val=2, size=(64, 32))
    path = tmp_path / "tiny.yml"
    path.write_text(TINY_CONFIG.format(root=data_root))
    return path


class LossRecorder(Hook):
    """Collects every step's per-head losses by iteration."""

    def __init__(self) -> None:
        self.losses: Dict[int, List[float]] = {}

    def after_step(self, trainer: Trainer, step: StepResult) -> None:
        self.losses[trainer.iter] = step.losses


def run_tiny(config_path: Path, save_dir: Path, opts: Optional[List[str]] = None,
             hooks: Sequence[Hook] = (), **settings) -> Trainer:
    """Train with a :class:`LossRecorder` (``trainer.recorder``) and ``hooks`` appended."""
    cfg = Config(config_path, opts)
    trainer = Trainer(cfg, TrainSettings.from_config(cfg, save_dir=str(save_dir), **settings))
    trainer.recorder = LossRecorder()
    trainer.hooks += [trainer.recorder, *hooks]
    trainer.train()
    return trainer


# ----------------------------------------------------------------------------- tiny model and data
TINY_NUM_CLASSES = 5


class TinySegNet(nn.Layer):
    """Strided conv encoder + bilinear upsampling: position-dependent, any input size."""

    def __init__(self, num_classes: int = TINY_NUM_CLASSES) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2D(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                     nn.Conv2D(8, 8, 3, stride=2, padding=1), nn.ReLU())
        self.classifier = nn.Conv2D(8, num_classes, 1)

    def forward(self, x):
        return [F.interpolate(self.classifier(self.encoder(x)), x.shape[-2:], mode="bilinear")]


# Odd sizes; image 1 was padded 21x30 -> 24x32, image 2 resized 40x23 -> 26x17.
TINY_SHAPES = [((19, 27), []), ((24, 32), [("padding", (21, 30))]),
               ((26, 17), [("resize", (40, 23))])]


class TinyDataset(paddle.io.Dataset):
    """Items as the dataset contract has them: normalised CHW image, label at original size."""

    num_classes = TINY_NUM_CLASSES
    ignore_index = 255
    class_names = ["road", "car", "sky", "tree", "unused"]

    def __init__(self, num_images: int = 3, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.items = []
        for i in range(num_images):
            (height, width), trans_info = TINY_SHAPES[i % len(TINY_SHAPES)]
            label_shape = trans_info[0][1] if trans_info else (height, width)
            label = rng.integers(0, TINY_NUM_CLASSES - 1, size=label_shape)  # class 4 never in GT
            label[rng.random(label_shape) < 0.15] = 255
            image = rng.standard_normal((3, height, width)).astype("float32")
            self.items.append({"img": image, "label": label.astype("int64"),
                               "trans_info": trans_info, "img_path": f"img{i}.png"})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int) -> dict:
        return dict(self.items[idx])


def randomise_batchnorm_statistics(model: nn.Layer) -> None:
    """Non-trivial BN statistics and affine parameters, so BN folding has something to fold."""
    for layer in model.sublayers():
        if isinstance(layer, nn.BatchNorm2D):
            channels = layer._mean.shape
            layer._mean.set_value(paddle.randn(channels) * 0.1)
            layer._variance.set_value(paddle.rand(channels) * 0.5 + 0.75)
            layer.weight.set_value(paddle.rand(channels) * 0.5 + 0.75)
            layer.bias.set_value(paddle.randn(channels) * 0.1)


# ----------------------------------------------------------------------------- a trained-model run
EVAL_CONFIG = """
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
    config_path.write_text(EVAL_CONFIG.format(root=data_root))
    paddle.seed(0)
    model_path = tmp_path / "model.pdparams"
    save_weights(Config(config_path).model, str(model_path))
    return config_path, model_path


# ----------------------------------------------------------------------------- models and services
@pytest.fixture(scope="module")
def gcnet():
    """A small GCNet (ResNet18_vd) with random BN statistics, in eval mode."""
    paddle.seed(0)
    model = GCNet(5, ResNet18_vd(output_stride=8), gc_channels=32)
    randomise_batchnorm_statistics(model)
    model.eval()
    return model


def run_predictor(predictor, batch: np.ndarray) -> np.ndarray:
    """One batch through a Paddle Inference predictor, as a deployer runs it. (Each run leaves
    MKL/OpenMP on one thread; the test process gets its threads back afterwards.)"""
    from gcseg.deploy.runtime import process_math_threads
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(list(batch.shape))
    handle.copy_from_cpu(batch)
    with process_math_threads():
        predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def expected_prediction(config_path, model_path, image_path):
    cfg = Config(config_path, load_pretrained=False)  # model_path replaces them
    model, dataset = cfg.model, cfg.val_dataset
    load_weights(model, str(model_path))
    model.eval()
    data = dataset.transforms({"img": str(image_path), "trans_info": []})
    settings = InferenceSettings(aug_eval=True, flip_horizontal=True)
    logits = infer_logits(model, paddle.to_tensor(data["img"][None]), settings, data["trans_info"])
    return logits.argmax(axis=1)[0].numpy()


@pytest.fixture
def http_root(tmp_path, monkeypatch):
    """Serve ``tmp_path/www`` on 127.0.0.1; yields (directory, base URL, list of paths served)."""
    root = tmp_path / "www"
    root.mkdir()
    served = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            served.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("GCSEG_HOME", str(tmp_path / "home"))
    yield root, f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()
    server.server_close()
