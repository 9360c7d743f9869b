"""``evaluate(model, dataset, ...)``: metrics over a validation set, with optional TTA/slide.

Under ``paddle.distributed.launch`` every process evaluates its own shard of the dataset
(every image exactly once) and the confusion matrices are summed, so the result equals the
single-process one. Call it on every rank; only the main process prints and writes files.
A bad sample or a stop signal on any rank ends the evaluation on every rank (one line, see
:mod:`gcseg.data.guard`).
"""
import contextlib
import dataclasses
import json
import math
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np
import paddle
import paddle.nn.functional as F
from tqdm import tqdm

from gcseg.data.guard import DEFAULT_LOADER_TIMEOUT, SafeDataset, WaitedBatches
from gcseg.engine.distributed import (any_process, init_distributed, is_main_process,
                                      shard_indices)
from gcseg.engine.forward import backend_name, inference_forward
from gcseg.engine.inference import Forward, InferenceSettings, infer_logits
from gcseg.engine.metrics import ConfusionMatrix, RocAuc
from gcseg.stopping import StopRequested, handling_signals
from gcseg.errors import DataError
from gcseg.models.weights import load_weights

RESULTS_FILE = "eval_results.json"
CONFUSION_FILE = "confusion_matrix.png"


@contextlib.contextmanager
def eval_mode(model: paddle.nn.Layer) -> Iterator[None]:
    """Put ``model`` in eval mode; restore training mode afterwards if it was training."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


def _single_item(batch: List[dict]) -> dict:
    return batch[0]


def shard_loader(dataset: paddle.io.Dataset, num_workers: int = 0) -> paddle.io.DataLoader:
    """Batch-1 loader over this process's shard; items come out as the dataset made them
    (or as failure items, see :mod:`gcseg.data.guard`)."""
    shard = paddle.io.Subset(SafeDataset(dataset), shard_indices(len(dataset)))
    return paddle.io.DataLoader(shard, batch_size=1, shuffle=False, num_workers=num_workers,
                                collate_fn=_single_item)


def as_tensor(array) -> paddle.Tensor:
    """The DataLoader hands out tensors, direct dataset access numpy arrays."""
    return array if isinstance(array, paddle.Tensor) else paddle.to_tensor(array)


def _update(matrix: ConfusionMatrix, model: Forward, item: dict, settings: InferenceSettings,
            roc: Optional[RocAuc] = None) -> None:
    image = as_tensor(item["img"]).unsqueeze(0)  # [1, 3, H, W]
    label = as_tensor(item["label"])  # [h, w] at the original resolution
    logits = infer_logits(model, image, settings, item.get("trans_info"))
    if tuple(logits.shape[-2:]) != tuple(label.shape[-2:]):
        raise DataError(f"{item.get('img_path', '<image>')}: prediction {logits.shape[-2:]} and "
                        f"label {label.shape[-2:]} differ in size; does trans_info record every "
                        f"resize/padding of the val transforms?")
    matrix.update(label, logits.argmax(axis=1))
    if roc is not None:  # an average of softmaxed views already is probabilities
        roc.update(label, logits if settings.averages_probs else F.softmax(logits, axis=1))


def _evaluate_shard(matrix: ConfusionMatrix, forward: Forward, batches: WaitedBatches,
                    settings: InferenceSettings, roc: Optional[RocAuc], show: bool) -> None:
    for item in tqdm(batches, desc="eval", unit="img", disable=not show, dynamic_ncols=True):
        _update(matrix, forward, item, settings, roc)


def _agree_on_ending(error: Optional[Exception]) -> None:
    """Raise on every process when any of them met a bad sample or a stop signal (the others
    would wait for it in the confusion-matrix all-reduce)."""
    failed, stopped = any_process(isinstance(error, DataError),
                                  isinstance(error, StopRequested))
    if error is not None:
        raise error
    if failed:
        raise DataError("evaluation stopped: another process met a bad sample (its log names "
                        "the file)")
    if stopped:
        raise StopRequested


def evaluate(model: paddle.nn.Layer, dataset: paddle.io.Dataset,
             settings: Optional[InferenceSettings] = None, *, backend: str = "auto",
             num_workers: int = 0, loader_timeout: float = DEFAULT_LOADER_TIMEOUT,
             print_detail: bool = True, save_dir: Optional[str] = None,
             config_path: Optional[str] = None, model_path: Optional[str] = None,
             release_model: bool = False, auc_roc: bool = False) -> Dict:
    """Evaluate ``model`` on ``dataset`` (batch 1) with ``settings`` (default: whole-image
    fp32); returns the metrics of :func:`gcseg.engine.metrics.metrics_from_confusion` plus
    ``num_images``, ``class_names``, the paths, the inference settings and, under ``engine``, the
    forward backend used (:func:`gcseg.engine.forward.inference_forward`: ``auto``,
    ``predictor``, ``onnxruntime`` or ``dygraph``), and with ``auc_roc`` the ``auc_roc`` of
    :class:`gcseg.engine.metrics.RocAuc`.
    Restores the model's train mode afterwards. ``release_model`` frees the model's weights
    once a predictor holds them (for callers that evaluate once and are done with the model)."""
    settings = settings or InferenceSettings()
    matrix = ConfusionMatrix(dataset.num_classes, dataset.ignore_index)
    roc = RocAuc(dataset.num_classes, dataset.ignore_index) if auc_roc else None
    show = print_detail and is_main_process()
    if show and settings.aug_eval:
        print(f"[EVAL] test-time augmentation: {settings.describe_views()}")
    ended_by: Optional[Exception] = None
    with eval_mode(model), handling_signals():
        forward = inference_forward(model, backend, settings.precision, release_model)
        with WaitedBatches(shard_loader(dataset, num_workers), loader_timeout,
                           "evaluation data loader") as batches:
            try:
                _evaluate_shard(matrix, forward, batches, settings, roc, show)
            except (DataError, StopRequested) as error:
                ended_by = error
    _agree_on_ending(ended_by)
    matrix.all_reduce()
    results = matrix.compute()
    if roc is not None:
        roc.all_reduce()
        results["auc_roc"] = roc.compute()
    results.update(num_images=len(dataset), class_names=class_names_of(dataset),
                   config_path=config_path, model_path=model_path,
                   inference=dataclasses.asdict(settings), engine=backend_name(forward))
    if show:
        print(format_class_table(results))
        print(summary_line(results))
    if save_dir and is_main_process():
        save_results(results, save_dir)
    return results


def evaluate_from_config(cfg: Any, model_path: str, settings: Optional[InferenceSettings] = None,
                         *, backend: str = "auto", save_dir: Optional[str] = None,
                         num_workers: Optional[int] = None, **options: Any) -> Dict:
    """:func:`evaluate` ``cfg.model`` loaded from ``model_path`` on ``cfg.val_dataset``; under
    ``paddle.distributed.launch`` each process takes its shard. ``num_workers`` None: the
    config's ``global.num_workers``. The model's weights are released once a predictor holds
    them; ``options`` are :func:`evaluate`'s ``loader_timeout`` and ``auc_roc``."""
    init_distributed()
    model = cfg.model
    load_weights(model, model_path)
    workers = cfg.runtime("global")["num_workers"] if num_workers is None else num_workers
    return evaluate(model, cfg.val_dataset, settings, backend=backend, num_workers=workers,
                    save_dir=save_dir, config_path=str(cfg.path), model_path=model_path,
                    release_model=True, **options)


def class_names_of(dataset) -> List[str]:
    names = getattr(dataset, "class_names", None)
    return list(names) if names else [str(i) for i in range(dataset.num_classes)]


def _cell(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.4f}"


def format_class_table(results: Dict) -> str:
    """Per-class IoU / precision / recall / Dice; "-" for classes absent from GT and prediction."""
    names = results["class_names"]
    width = max(len("Class"), *(len(name) for name in names))
    columns = ("class_IoU", "class_precision", "class_recall", "class_dice")
    lines = [f"{'Class':<{width}}  {'IoU':>9} {'Precision':>9} {'Recall':>9} {'Dice':>9}"]
    for i, name in enumerate(names):
        lines.append(f"{name:<{width}}  " + " ".join(f"{_cell(results[key][i]):>9}"
                                                      for key in columns))
    return "\n".join(lines)


def summary_line(results: Dict) -> str:
    line = (f"[EVAL] #Images: {results['num_images']}  mIoU: {results['mIoU']:.4f} "
            f"(mean of {results['num_classes_averaged']}/{len(results['class_IoU'])} classes "
            f"present in GT or prediction)  Acc: {results['Acc']:.4f}  "
            f"Kappa: {results['Kappa']:.4f}  Dice: {results['Dice']:.4f}")
    if "auc_roc" in results:
        line += f"  AUC-ROC: {_cell(results['auc_roc'])}"
    return line


def _json_safe(value):
    """NaN (e.g. Kappa of a one-class matrix) is not JSON: write null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def save_results(results: Dict, save_dir: str) -> None:
    """``eval_results.json`` and ``confusion_matrix.png`` (row-normalised) in ``save_dir``."""
    os.makedirs(save_dir, exist_ok=True)
    with open(os.path.join(save_dir, RESULTS_FILE), "w", encoding="utf-8") as file:
        json.dump(_json_safe(results), file, indent=2)
    plot_confusion_matrix(np.asarray(results["confusion_matrix"]), results["class_names"],
                          os.path.join(save_dir, CONFUSION_FILE))


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: str) -> None:
    """Each row (ground-truth class) divided by its total, as a heat map with class names."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    totals = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    size = 2.5 + 0.45 * len(class_names)
    figure = Figure(figsize=(size, size))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, labels=class_names, rotation=90)
    axes.set_yticks(ticks, labels=class_names)
    axes.set_xlabel("prediction")
    axes.set_ylabel("ground truth")
    axes.set_title("confusion matrix (normalised per ground-truth class)")
    if len(class_names) <= 30:
        for (row, col), value in np.ndenumerate(normalised):
            axes.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                      color="white" if value > 0.5 else "black")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
