"""gcseg against the PaddleSeg 2.8 oracle, in one process, on the same weights and inputs.

Every timed row alternates the two implementations (gcseg, PaddleSeg, PaddleSeg, gcseg, ...)
so that load from other processes hits both alike; a row reports the median of ``repeats``
runs after one warm-up each. PaddleSeg is imported only here, never by the product.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import paddle

from benchmarks.deploy_memory import peak_rss_of_this_process_mb
from benchmarks.flops import count_flops, count_parameters
from gcseg.cpu_env import malloc_environment, recommended_settings
from gcseg.deploy.fold_bn import fold_batchnorm
from gcseg.deploy.onnx_export import onnx_tools_installed
from gcseg.engine.forward import backend_name, inference_forward, max_relative_difference
from gcseg.engine.inference import InferenceSettings, infer_logits
from gcseg.engine.metrics import ConfusionMatrix
from gcseg.errors import UsageError
from gcseg.losses import one_type_per_coef

TTA_SCALES = (0.75, 1.0, 1.25)


@dataclass
class Row:
    name: str
    unit: str
    gcseg: Optional[float]
    paddleseg: Optional[float]

    @property
    def ratio(self) -> Optional[float]:
        if self.paddleseg in (None, 0):
            return None
        return self.gcseg / self.paddleseg


# ----------------------------------------------------------------------------- oracle
def patch_paddleseg_calculate_area() -> None:
    """PaddleSeg 2.8's calculate_area concatenates 0-D sums (fails on Paddle 3): stack them."""
    from paddleseg.utils import metrics

    def calculate_area(pred, label, num_classes, ignore_index=255):
        if len(pred.shape) == 4:
            pred = paddle.squeeze(pred, axis=1)
        if len(label.shape) == 4:
            label = paddle.squeeze(label, axis=1)
        mask = label != ignore_index
        areas = [], [], []
        for i in range(num_classes):
            pred_i = paddle.logical_and(pred == i, mask)
            label_i = label == i
            for area, value in zip(areas, (paddle.logical_and(pred_i, label_i), pred_i, label_i)):
                area.append(paddle.sum(paddle.cast(value, "int64")).reshape([1]))
        return tuple(paddle.concat(area) for area in areas)

    metrics.calculate_area = calculate_area


def patch_paddleseg_cross_entropy() -> None:
    """PaddleSeg 2.8's CrossEntropyLoss multiplies its float mask by ``ones_like(label)``, an
    int64 tensor, which Paddle 3 rejects: hand it a float32 label when it has no class weights
    (the label is only used for comparisons there)."""
    from paddleseg.models.losses import CrossEntropyLoss
    original = CrossEntropyLoss._post_process_loss
    if getattr(original, "gcseg_patched", False):
        return

    def post_process(self, logit, label, semantic_weights, loss):
        if self.weight is None:
            label = label.astype("float32")
        return original(self, logit, label, semantic_weights, loss)

    post_process.gcseg_patched = True
    CrossEntropyLoss._post_process_loss = post_process


def paddleseg_loss(loss_cfg: Dict) -> Callable[[List[paddle.Tensor], paddle.Tensor], paddle.Tensor]:
    """PaddleSeg's own losses for the config's ``loss`` section (same types, same arguments),
    summed over the heads with the config's coefficients as its trainer does."""
    from paddleseg.models import losses
    patch_paddleseg_cross_entropy()
    coef = list(loss_cfg["coef"])
    types = [getattr(losses, item["type"])(**{k: v for k, v in item.items() if k != "type"})
             for item in one_type_per_coef(loss_cfg["types"], coef)]

    def total(logits_list, label):
        return paddle.add_n([c * loss(logit, label)
                             for loss, c, logit in zip(types, coef, logits_list)])
    return total


def paddleseg_twin(model: paddle.nn.Layer, model_cfg: Dict) -> paddle.nn.Layer:
    """PaddleSeg's GCNet built from the same config section, with a copy of ``model``'s
    weights (the state-dict keys are identical)."""
    from paddleseg.models import GCNet, backbones
    backbone_cfg = {k: v for k, v in model_cfg["backbone"].items() if k not in ("type",
                                                                               "pretrained")}
    backbone = getattr(backbones, model_cfg["backbone"]["type"])(**backbone_cfg)
    kwargs = {k: v for k, v in model_cfg.items()
              if k not in ("type", "backbone", "pretrained", "num_classes")}
    twin = GCNet(model.num_classes, backbone, **kwargs)
    missing = set(twin.state_dict()) ^ set(model.state_dict())
    if missing:
        raise UsageError(f"PaddleSeg's GCNet and gcseg's differ in keys: {sorted(missing)[:3]}")
    twin.set_state_dict(model.state_dict())
    return twin


# ----------------------------------------------------------------------------- timing
def time_alternating(functions: Dict[str, Callable[[], object]], repeats: int,
                     warmup: int = 1) -> Dict[str, float]:
    """Median seconds per call of each function, calls interleaved (order flipped per round)."""
    names = list(functions)
    for _ in range(warmup):
        for name in names:
            functions[name]()
    times: Dict[str, List[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        for name in (names if round_index % 2 == 0 else names[::-1]):
            start = time.perf_counter()
            functions[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def sync(tensor: paddle.Tensor) -> paddle.Tensor:
    """Wait for the device (a host copy of one value)."""
    float(tensor.flatten()[0])
    return tensor


def numpy_sgemm_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Peak single-precision matmul rate of numpy's BLAS on this machine, GFLOP/s."""
    a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    b = a.T.copy()
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size ** 3 / best / 1e9


def _timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- rows
def _train_step(model: paddle.nn.Layer, optimizer, images, labels,
                loss_fn: Callable[[List[paddle.Tensor], paddle.Tensor], paddle.Tensor]
                ) -> Callable[[], None]:
    def step():
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        sync(loss)
    return step


def train_batch(shape, num_classes: int) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """Batch 2 of random images of ``shape``'s size and labels with an ignored band."""
    rng = np.random.default_rng(1)
    images = paddle.to_tensor(rng.standard_normal([2, *shape[1:]]).astype(np.float32))
    label = rng.integers(0, num_classes, [2, *shape[2:]])
    label[:, : shape[2] // 8] = 255  # an ignored band, as in real labels
    return images, paddle.to_tensor(label.astype("int64"))


def own_loss(impl: str, loss_cfg: Dict) -> Callable[[List[paddle.Tensor], paddle.Tensor],
                                                     paddle.Tensor]:
    """Each package's total loss built from the config's ``loss`` section."""
    from gcseg.losses import combine
    if impl == "gcseg":
        return lambda logits, labels: combine(logits, labels, loss_cfg["built"])[0]
    return paddleseg_loss(loss_cfg["spec"])


def train_rows(model, twin, shape, loss_cfg: Dict, num_classes: int,
               repeats: int) -> List[Row]:
    """One SGD step, batch 2, each package with its own losses built from the config's
    ``loss`` section (gcseg: ``combine`` over ``Config.loss``; PaddleSeg: its loss classes)."""
    images, labels = train_batch(shape, num_classes)
    steps = {}
    for name, net in (("gcseg", model), ("paddleseg", twin)):
        net.train()
        optimizer = paddle.optimizer.SGD(learning_rate=1e-6, parameters=net.parameters())
        steps[name] = _train_step(net, optimizer, images, labels, own_loss(name, loss_cfg))
    times = time_alternating(steps, max(2, repeats))
    model.eval()
    twin.eval()
    return [Row("train step (batch 2, each package's loss from the config)", "s",
                times["gcseg"], times["paddleseg"])]


def eval_rows(forward, twin, image, repeats: int, flops: int, sgemm: float,
              suffix: str = "") -> List[Row]:
    """Latency, GFLOP/s (FLOPs of the unfolded model) and fraction of the SGEMM peak."""
    with paddle.no_grad():
        times = time_alternating({"gcseg": lambda: sync(forward(image)[0]),
                                  "paddleseg": lambda: sync(twin(image)[0])}, repeats)
    rate = {k: flops / v / 1e9 for k, v in times.items()}
    return [Row(f"eval forward latency{suffix}", "s", times["gcseg"], times["paddleseg"]),
            Row(f"eval forward GFLOP/s{suffix}", "GFLOP/s", rate["gcseg"], rate["paddleseg"]),
            Row(f"fraction of numpy SGEMM peak{suffix}", "%", 100 * rate["gcseg"] / sgemm,
                100 * rate["paddleseg"] / sgemm)]


def tta_rows(forward, twin, image, crop: Tuple[int, int], repeats: int) -> List[Row]:
    from paddleseg.core import infer
    height, width = image.shape[2:]
    trans_info = []
    ms = InferenceSettings(aug_eval=True, scales=TTA_SCALES, flip_horizontal=True)
    stride = (crop[0] * 2 // 3, crop[1] * 2 // 3)
    slide = InferenceSettings(is_slide=True, crop_size=crop, stride=stride)
    with paddle.no_grad():
        ms_times = time_alternating({
            "gcseg": lambda: sync(infer_logits(forward, image, ms, trans_info)),
            "paddleseg": lambda: sync(infer.aug_inference(
                twin, image, trans_info, scales=list(TTA_SCALES), flip_horizontal=True)[1])},
            max(2, repeats // 3))
        slide_times = time_alternating({
            "gcseg": lambda: sync(infer_logits(forward, image, slide, trans_info)),
            "paddleseg": lambda: sync(infer.inference(
                twin, image, trans_info, is_slide=True, crop_size=crop, stride=stride)[1])},
            max(2, repeats // 3))
    return [Row(f"multi-scale {list(TTA_SCALES)} + flip eval / image", "s",
                ms_times["gcseg"], ms_times["paddleseg"]),
            Row(f"sliding window {list(crop)} stride {list(stride)} / image", "s",
                slide_times["gcseg"], slide_times["paddleseg"])]


def metric_rows(shape, num_classes: int, repeats: int, eval_seconds: float) -> List[Row]:
    from paddleseg.utils import metrics
    patch_paddleseg_calculate_area()
    rng = np.random.default_rng(2)
    label = paddle.to_tensor(rng.integers(0, num_classes, shape[2:]).astype("int64"))
    pred = paddle.to_tensor(rng.integers(0, num_classes, shape[2:]).astype("int32"))
    matrix = ConfusionMatrix(num_classes)
    times = time_alternating({
        "gcseg": lambda: (matrix.update(label, pred), sync(matrix.matrix)),
        "paddleseg": lambda: sync(metrics.calculate_area(
            pred[None, None], label[None, None], num_classes)[0])}, repeats * 3)
    return [Row("metric accumulation / image", "s", times["gcseg"], times["paddleseg"]),
            Row("metric accumulation / eval forward", "%", 100 * times["gcseg"] / eval_seconds,
                100 * times["paddleseg"] / eval_seconds)]


BF16_ROW = "Paddle Inference oneDNN bf16 forward (vs gcseg fp32 engine)"


def deploy_rows(forward, model, image, repeats: int, work_dir: str,
                cpuinfo: str = "/proc/cpuinfo") -> List[Row]:
    """Paddle Inference in bf16 (oneDNN, same threads) against the fp32 engine ``forward``: on
    a CPU without bf16 instructions one row saying so; where the bf16 logits equal the fp32
    ones bit for bit (on the runtime's probe or on ``image``), the rows say that bf16 was not
    applied rather than time fp32 as bf16."""
    from gcseg.cpu_env import cpu_supports_bf16
    from gcseg.deploy.export import export_model
    from gcseg.deploy.runtime import DeployedModel
    from gcseg.cpu_env import cpu_threads
    if not cpu_supports_bf16(cpuinfo):
        return [Row(f"{BF16_ROW}: not supported on this CPU (no avx512_bf16 / amx_bf16)", "-",
                    None, None)]
    export_model(model, work_dir, output_op="none")
    batch = image.numpy()
    try:
        bf16 = DeployedModel(work_dir, precision="bf16", cpu_threads=cpu_threads())
    except UsageError as error:  # its probe: Paddle computes bf16 bit for bit as fp32 here
        return [Row(f"{BF16_ROW}: not applied ({error})", "-", None, None)]
    times = time_alternating({"bf16": lambda: bf16.run(batch),
                              "fp32": lambda: sync(forward(image)[0])}, repeats)
    out32, out16 = forward(image)[0].numpy(), bf16.run(batch)
    difference = float(np.abs(out16 - out32).max())
    agree = float((out16.argmax(1) == out32.argmax(1)).mean())
    name = BF16_ROW if difference > 0 else \
        f"{BF16_ROW}: bf16 not applied by Paddle {paddle.__version__} (logits identical to fp32)"
    return [Row(name, "s", times["bf16"], times["fp32"]),
            Row("bf16 predictor max |logit - fp32|", "abs", difference, None),
            Row("bf16 argmax agreement with fp32", "%", 100 * agree, None)]


def onnx_rows(model, twin, image, repeats: int) -> List[Row]:
    """ONNX Runtime (paddle2onnx's conversion of the BN-folded export) against Paddle Inference
    fp32 (the same export, same threads) and PaddleSeg's dygraph forward, all three alternating."""
    from gcseg.engine.forward import compile_for_inference
    onnx = compile_for_inference(model, "onnxruntime")
    predictor = compile_for_inference(model, "predictor")
    with paddle.no_grad():
        times = time_alternating({"onnxruntime": lambda: onnx(image),
                                  "predictor": lambda: predictor(image),
                                  "paddleseg": lambda: sync(twin(image)[0])}, repeats)
    difference = max_relative_difference(onnx(image)[0].numpy(), predictor(image)[0].numpy())
    return [Row("ONNX Runtime forward (vs Paddle Inference fp32)", "s", times["onnxruntime"],
                times["predictor"]),
            Row("ONNX Runtime forward (vs PaddleSeg dygraph)", "s", times["onnxruntime"],
                times["paddleseg"]),
            Row("ONNX Runtime max |logit - Paddle Inference| / max |logit|", "rel", difference,
                None)]


def peak_rss_mb(impl: str, config: str, size: Tuple[int, int], opts: Sequence[str]) -> float:
    """Peak RSS of a fresh process that builds one implementation and runs one forward."""
    code = ("import sys; from benchmarks.compare import memory_child; "
            f"memory_child({impl!r}, {config!r}, {tuple(size)!r}, {list(opts)!r})")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, env=env).stdout
    return float(out.strip().splitlines()[-1])


def memory_child(impl: str, config: str, size: Tuple[int, int], opts: Sequence[str]) -> None:
    from gcseg.config import Config
    cfg = Config(config, list(opts), load_pretrained=False)  # speed needs no trained weights
    model = cfg.model
    model.eval()
    net = inference_forward(model, release_model=True) if impl == "gcseg" \
        else paddleseg_twin(model, cfg.dic["model"])  # gcseg as val.py runs it
    del model
    with paddle.no_grad():
        sync(net(paddle.zeros([1, 3, size[1], size[0]]))[0])
    if paddle.is_compiled_with_cuda() and paddle.get_device().startswith("gpu"):
        print(paddle.device.cuda.max_memory_allocated() / 2 ** 20)
    else:
        print(peak_rss_of_this_process_mb())


def train_memory_child(impl: str, config: str, size: Tuple[int, int],
                       opts: Sequence[str]) -> None:
    """Build one implementation with SGD + momentum and run one training step (batch 2, its
    own loss); prints the peak RSS in MB."""
    from gcseg.config import Config
    cfg = Config(config, list(opts))
    model = cfg.model
    num_classes = model.num_classes
    net = model if impl == "gcseg" else paddleseg_twin(model, cfg.dic["model"])
    del model
    net.train()
    images, labels = train_batch([1, 3, size[1], size[0]], num_classes)
    optimizer = paddle.optimizer.Momentum(learning_rate=1e-6, momentum=0.9,
                                          parameters=net.parameters())
    loss = own_loss(impl, {"spec": cfg.section("loss"), "built": cfg.loss})
    _train_step(net, optimizer, images, labels, loss)()
    print(peak_rss_of_this_process_mb())


def train_memory_rows(config: str, size: Tuple[int, int], opts: Sequence[str]) -> List[Row]:
    """Peak RSS of a fresh process per implementation running one training step: gcseg with
    the malloc setting its train.py applies and without it, PaddleSeg as it ships; every child
    with the same OMP_NUM_THREADS / MKL_DEBUG_CPU_TYPE."""
    code = ("from benchmarks.compare import train_memory_child; "
            "train_memory_child({impl!r}, " f"{config!r}, {tuple(size)!r}, {list(opts)!r})")
    threads = dict(plain_environment(), **recommended_settings())
    paddleseg = _child_output_mb(code.format(impl="paddleseg"), threads)
    rows = []
    for label, env in (("gcseg with its malloc setting (as train.py runs)",
                        dict(threads, **malloc_environment())),
                       ("gcseg without the malloc setting", threads)):
        rows.append(Row(f"peak memory (RSS, build + 1 train step, batch 2), {label}", "MB",
                        _child_output_mb(code.format(impl="gcseg"), env), paddleseg))
    return rows


DEPLOY_MEMORY_ROW = ("peak memory (RSS, fresh process: load the export + 1 forward), ONNX "
                     "Runtime without Paddle (vs Paddle Inference)")


def deploy_memory_rows(model, size: Tuple[int, int], work_dir: str) -> List[Row]:
    """Peak RSS of a fresh process that loads the BN-folded export and runs one forward of
    ``size`` (W, H): ONNX Runtime on paddle2onnx's conversion of that export (the process never
    imports Paddle) against Paddle Inference (gcseg's default config); same input, same
    threads."""
    from gcseg.deploy.export import export_model
    from gcseg.deploy.onnx_export import convert_export_to_onnx
    export_dir = os.path.join(work_dir, "memory_export")
    export_model(model, export_dir, output_op="none")
    onnx_dir = os.path.join(export_dir, "onnx")
    convert_export_to_onnx(export_dir, onnx_dir)
    env = dict(plain_environment(), **recommended_settings())
    threads = int(env["OMP_NUM_THREADS"])
    peaks = {runtime: _child_output_mb(
        "from benchmarks.deploy_memory import deploy_memory_child; "
        f"deploy_memory_child({model_dir!r}, {runtime!r}, {tuple(size)!r}, {threads})", env)
        for runtime, model_dir in (("onnxruntime", onnx_dir), ("paddle", export_dir))}
    return [Row(DEPLOY_MEMORY_ROW, "MB", peaks["onnxruntime"], peaks["paddle"])]


def _child_output_mb(code: str, env: Dict[str, str]) -> float:
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, env=env, cwd=ROOT).stdout
    return float(out.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- whole process
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUNING_VARIABLES = ("OMP_NUM_THREADS", "MKL_DEBUG_CPU_TYPE", "ONEDNN_MAX_CPU_ISA",
                    "GCSEG_NO_CPU_TUNING", *malloc_environment())


def plain_environment() -> Dict[str, str]:
    """The user's environment without any CPU tuning variable (PaddleSeg as shipped)."""
    env = {k: v for k, v in os.environ.items() if k not in TUNING_VARIABLES}
    env["PYTHONPATH"] = ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")
    return env


def tuned_environment() -> Dict[str, str]:
    """The plain environment plus gcseg.cpu_env's recommended variables and its malloc
    settings as glibc's variables, for both programs."""
    return dict(plain_environment(), **recommended_settings(), **malloc_environment())


def generated_config(config_dic: Dict, work_dir: str, image_size: Tuple[int, int],
                     num_train: int, num_val: int,
                     crop_size: Optional[Tuple[int, int]] = None) -> str:
    """``config_dic`` pointed at a generated Cityscapes-layout set of ``image_size`` (W, H)
    images, without pretrained weights (and with ``crop_size`` for its train crops), written
    to ``work_dir``; returns the config's path (PaddleSeg can load it too)."""
    import yaml
    from gcseg.data.quickstart import make_quickstart_dataset
    root = str(make_quickstart_dataset(os.path.join(work_dir, "data"), num_train=num_train,
                                       num_val=num_val, size=tuple(image_size)))
    dic = json.loads(json.dumps(config_dic))  # a deep, YAML-safe copy
    dic["model"].pop("pretrained", None)
    dic["model"]["backbone"].pop("pretrained", None)
    for split in ("train_dataset", "val_dataset"):
        dic[split].update(type="Cityscapes", dataset_root=root)
    for transform in dic["train_dataset"].get("transforms", []):
        if crop_size and transform.get("type") == "RandomPaddingCrop":
            transform["crop_size"] = list(crop_size)
    config = os.path.join(work_dir, "config.yml")
    with open(config, "w", encoding="utf-8") as handle:
        yaml.safe_dump(dic, handle, sort_keys=False)
    return config


def prepare_val_run(model, config_dic: Dict, work_dir: str, input_size: Tuple[int, int],
                    num_images: int) -> Tuple[str, str]:
    """A config on a generated val set of ``input_size`` images, and the model's weights."""
    config = generated_config(config_dic, work_dir, input_size, num_train=1, num_val=num_images)
    weights = os.path.join(work_dir, "model.pdparams")
    paddle.save(model.state_dict(), weights)
    return config, weights


def reader_rows(config_dic: Dict, work_dir: str, input_size: Tuple[int, int],
                iters: int) -> List[Row]:
    """Share of a training step spent waiting for data: ``iters`` real steps of the config's
    trainer (its own train transforms and default ``num_workers``) with ``input_size`` crops
    from images twice that size (as 1024x512 crops from 2048x1024 Cityscapes frames). The
    first step (loader start-up) is left out."""
    from gcseg.config import Config
    from gcseg.engine.trainer import Hook, Trainer, TrainSettings

    class Costs(Hook):
        def __init__(self) -> None:
            self.steps: List[Tuple[float, float]] = []

        def after_step(self, trainer, step) -> None:
            self.steps.append((step.reader_cost, step.batch_cost))

    width, height = input_size
    run_dir = os.path.join(work_dir, "reader")
    cfg = Config(generated_config(config_dic, run_dir, (2 * width, 2 * height),
                                  num_train=2 * iters, num_val=1, crop_size=input_size),
                 [f"iters={iters}", "batch_size=2"])
    trainer = Trainer(cfg, TrainSettings.from_config(cfg, save_dir=os.path.join(run_dir, "out"),
                                                     save_interval=iters))
    costs = Costs()
    trainer.hooks.append(costs)
    trainer.train()
    reader, batch = (sum(values) for values in zip(*costs.steps[1:]))
    workers = trainer.settings.num_workers
    return [Row(f"training reader_cost / batch_cost ({workers} workers, batch 2, "
                f"{width}x{height} crops)", "%", 100 * reader / batch, None)]


def paddleseg_val_child(config: str, model_path: str) -> None:
    """PaddleSeg 2.8's ``tools/val.py`` steps: its config, builder, weights and evaluate (with
    the 0-D ``calculate_area`` fix, which Paddle 3 needs)."""
    from paddleseg.core import evaluate
    from paddleseg.cvlibs import Config, SegBuilder
    from paddleseg.utils import load_entire_model
    patch_paddleseg_calculate_area()
    builder = SegBuilder(Config(config))
    model = builder.model
    load_entire_model(model, model_path)
    evaluate(model, builder.val_dataset)


# Runs ``[script, args...]`` or ``["-c", code, args...]`` and writes the process's peak RSS (MB)
# to the file named first. Plain Python: the program measured imports Paddle itself, after its
# own CPU set-up.
PEAK_RSS_WRAPPER = """
import atexit, runpy, sys
def write_peak(path=sys.argv[1]):
    with open('/proc/self/status') as status:
        peak_kb = next(int(line.split()[1]) for line in status if line.startswith('VmHWM:'))
    with open(path, 'w') as out:
        out.write(str(peak_kb / 1024))
atexit.register(write_peak)
if sys.argv[2] == '-c':
    code = sys.argv[3]
    sys.argv = ['-c', *sys.argv[4:]]
    exec(compile(code, '<string>', 'exec'), {'__name__': '__main__'})
else:
    sys.argv = sys.argv[2:]
    runpy.run_path(sys.argv[0], run_name='__main__')
"""


def _run(command: List[str], env: Dict[str, str]) -> float:
    """Run ``[python, ...]`` to completion; returns its peak RSS in MB."""
    with tempfile.TemporaryDirectory(prefix="gcseg_peak_") as work_dir:
        peak_file = os.path.join(work_dir, "peak")
        wrapped = [command[0], "-c", PEAK_RSS_WRAPPER, peak_file, *command[1:]]
        done = subprocess.run(wrapped, env=env, capture_output=True, text=True, cwd=ROOT)
        if done.returncode:
            raise UsageError(f"{' '.join(command[:3])} failed: {done.stderr.strip()[-500:]}")
        with open(peak_file, encoding="utf-8") as peak:
            return float(peak.read())


def val_process_rows(model, config_dic: Dict, work_dir: str, input_size: Tuple[int, int],
                     num_images: int, repeats: int) -> List[Row]:
    """``scripts/val.py`` against PaddleSeg's evaluate, each a fresh process on the same data
    and weights: as users run them (gcseg sets up the CPU itself, PaddleSeg gets the plain
    environment) and with both in the tuned environment. Times and peak RSS."""
    config, weights = prepare_val_run(model, config_dic, work_dir, input_size, num_images)
    gcseg = [sys.executable, os.path.join(ROOT, "scripts", "val.py"), "--config", config,
             "--model_path", weights]
    paddleseg = [sys.executable, "-c", "from benchmarks.compare import paddleseg_val_child; "
                 f"paddleseg_val_child({config!r}, {weights!r})"]
    rows = []
    for label, env in (("as users run them: gcseg tunes the CPU itself, PaddleSeg plain env",
                        plain_environment()),
                       ("same env: both with OMP_NUM_THREADS + MKL_DEBUG_CPU_TYPE + MALLOC_*",
                        tuned_environment())):
        peaks: Dict[str, List[float]] = {"gcseg": [], "paddleseg": []}
        times = time_alternating(
            {"gcseg": lambda: peaks["gcseg"].append(_run(gcseg, env)),
             "paddleseg": lambda: peaks["paddleseg"].append(_run(paddleseg, env))},
            repeats, warmup=0)
        rows.append(Row(f"val.py whole process, {num_images} images, {label}", "s",
                        times["gcseg"], times["paddleseg"]))
        rows.append(Row(f"peak memory (RSS) of that val.py process, {label.split(':')[0]}",
                        "MB", max(peaks["gcseg"]), max(peaks["paddleseg"])))
    return rows


# ----------------------------------------------------------------------------- driver
def model_rows(model, twin, folded, shape) -> Tuple[List[Row], Dict[str, int]]:
    """Parameters, FLOPs and the folded model's agreement with PaddleSeg's."""
    image = paddle.to_tensor(np.random.default_rng(3).standard_normal(shape).astype(np.float32))
    with paddle.no_grad():
        diff = float(np.abs(folded(image)[0].numpy() - twin(image)[0].numpy()).max())
    flops = count_flops(model, shape)
    return [Row("parameters", "M", count_parameters(model) / 1e6, count_parameters(twin) / 1e6),
            Row("FLOPs (gcseg: BN folded)", "GFLOP", count_flops(folded, shape)["total"] / 1e9,
                count_flops(twin, shape)["total"] / 1e9),
            Row("max |logit gcseg folded - paddleseg|", "abs", diff, None)], flops


def run_benchmark(config: str, input_size: Tuple[int, int] = (512, 256), repeats: int = 5,
                  opts: Sequence[str] = (), deploy: bool = True, memory: bool = True,
                  work_dir: str = "output/benchmark", val_images: int = 0,
                  val_repeats: int = 1, train_iters: int = 0) -> Dict:
    """All rows for ``config`` at ``input_size`` (W, H); ``val_images > 0`` adds the
    whole-process val.py rows, ``train_iters > 1`` the training data-pipeline row.
    Returns ``{"rows": [...], "meta": {...}}``."""
    from gcseg.config import Config
    cfg = Config(config, list(opts), load_pretrained=False)  # speed needs no trained weights
    model = cfg.model
    model.eval()
    twin = paddleseg_twin(model, cfg.dic["model"])
    twin.eval()
    folded = fold_batchnorm(model)
    forward = inference_forward(model)  # what evaluate() runs
    width, height = input_size
    shape = [1, 3, height, width]
    image = paddle.to_tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    rows, flops = model_rows(model, twin, folded, shape)
    sgemm = numpy_sgemm_gflops()
    rows.append(Row("numpy SGEMM 2048^2", "GFLOP/s", sgemm, None))
    engine_rows = eval_rows(forward, twin, image, repeats, flops["total"], sgemm,
                            f" ({backend_name(forward)})")
    rows += engine_rows
    rows += eval_rows(folded, twin, image, repeats, flops["total"], sgemm, " (dygraph, BN folded)")
    rows += tta_rows(forward, twin, image, (width // 2, height), repeats)
    rows += metric_rows(shape, model.num_classes, repeats, engine_rows[0].gcseg)
    if deploy:
        rows += deploy_rows(forward, folded, image, repeats, os.path.join(work_dir, "exported"))
        if onnx_tools_installed():
            rows += onnx_rows(model, twin, image, repeats)
    loss_cfg = {"spec": cfg.section("loss"), "built": cfg.loss}
    rows += train_rows(model, twin, shape, loss_cfg, model.num_classes, repeats)  # changes weights
    if memory:
        rows.append(Row("peak memory (RSS, build + 1 forward)", "MB",
                        peak_rss_mb("gcseg", config, input_size, opts),
                        peak_rss_mb("paddleseg", config, input_size, opts)))
        rows += train_memory_rows(config, input_size, opts)
        if deploy and onnx_tools_installed():
            rows += deploy_memory_rows(folded, input_size, work_dir)
    if val_images:
        rows += val_process_rows(model, cfg.dic, work_dir, input_size, val_images,
                                 val_repeats)
    if train_iters > 1:
        rows += reader_rows(cfg.dic, work_dir, input_size, train_iters)
    meta = {"config": config, "input_size": list(input_size), "repeats": repeats,
            "paddle": paddle.__version__, "flops_by_kind": flops, "engine": backend_name(forward),
            "env": {k: os.environ.get(k) for k in TUNING_VARIABLES[:3]},
            "load_average": os.getloadavg()}
    return {"rows": [dict(asdict(row), ratio=row.ratio) for row in rows], "meta": meta}


def format_table(result: Dict) -> str:
    lines = ["| row | unit | gcseg | PaddleSeg | gcseg/PaddleSeg |", "|---|---|---|---|---|"]
    for row in result["rows"]:
        cells = [_fmt(row["gcseg"]), _fmt(row["paddleseg"]), _fmt(row["ratio"], ratio=True)]
        lines.append(f"| {row['name']} | {row['unit']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value: Optional[float], ratio: bool = False) -> str:
    if value is None:
        return "-"
    if ratio:
        return f"{value:.2f}"
    return f"{value:.4g}"


def write_json(result: Dict, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)
