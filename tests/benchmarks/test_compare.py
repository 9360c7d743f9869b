"""The benchmark runs end to end on a tiny config; checks the table's structure, not timings."""
import json
import sys

import numpy as np
import pytest

from benchmarks.compare import (BF16_ROW, DEPLOY_MEMORY_ROW, deploy_memory_rows, format_table,
                                paddleseg_loss, run_benchmark, time_alternating, write_json)

# A complete PaddleSeg-style config: PaddleSeg's own Config (the whole-process row) insists on
# batch_size, iters, train_dataset, optimizer, lr_scheduler and loss.
TINY_CONFIG = """
batch_size: 2
iters: 10
optimizer:
  type: SGD
lr_scheduler:
  type: PolynomialDecay
  learning_rate: 0.01
loss:
  types:
    - type: CrossEntropyLoss
  coef: [1, 0.4]
model:
  type: GCNet
  num_classes: 19
  backbone:
    type: ResNet18_vd
    output_stride: 8
  gc_channels: 32
train_dataset:
  type: Cityscapes
  dataset_root: {root}
  transforms:
    - type: RandomPaddingCrop
      crop_size: [64, 64]
    - type: Normalize
  mode: train
val_dataset:
  type: Cityscapes
  dataset_root: {root}
  transforms:
    - type: Normalize
  mode: val
"""


def test_time_alternating_interleaves_calls():
    calls = []
    medians = time_alternating({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                               repeats=3, warmup=1)
    assert set(medians) == {"a", "b"} and all(v >= 0 for v in medians.values())
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]


@pytest.mark.filterwarnings("ignore")
def test_benchmark_end_to_end_table(tmp_path):
    config = tmp_path / "tiny.yml"
    config.write_text(TINY_CONFIG.format(root=tmp_path / "data"))
    result = run_benchmark(str(config), input_size=(96, 64), repeats=1, deploy=True,
                           memory=False, work_dir=str(tmp_path / "work"), val_images=1,
                           train_iters=3)
    rows = {row["name"]: row for row in result["rows"]}
    engine = result["meta"]["engine"]
    assert engine in ("predictor", "onnxruntime")  # the faster on this CPU, as evaluate() picks
    for name in ("parameters", f"eval forward latency ({engine})",
                 "train step (batch 2, each package's loss from the config)",
                 "eval forward latency (dygraph, BN folded)", "metric accumulation / image",
                 f"fraction of numpy SGEMM peak ({engine})",
                 "ONNX Runtime forward (vs Paddle Inference fp32)",
                 "ONNX Runtime forward (vs PaddleSeg dygraph)"):
        assert name in rows
    assert any(name.startswith(BF16_ROW) for name in rows)  # measured, or "not supported"
    assert DEPLOY_MEMORY_ROW not in rows  # a memory row: memory=False leaves it out
    assert rows["ONNX Runtime max |logit - Paddle Inference| / max |logit|"]["gcseg"] <= 1e-4
    whole = [row for name, row in rows.items() if name.startswith("val.py whole process")]
    assert len(whole) == 2 and all(row["gcseg"] > 0 and row["paddleseg"] > 0 for row in whole)
    assert any(name.startswith("multi-scale") for name in rows)
    assert any(name.startswith("sliding window") for name in rows)
    (reader,) = [row for name, row in rows.items() if name.startswith("training reader_cost")]
    assert "0 workers, batch 2, 96x64 crops" in reader["name"] and 0 < reader["gcseg"] < 100
    assert rows["parameters"]["ratio"] == pytest.approx(1.0)  # same architecture, same weights
    assert rows["max |logit gcseg folded - paddleseg|"]["gcseg"] < 1e-3
    timed = rows[f"eval forward latency ({engine})"]
    assert timed["ratio"] == pytest.approx(timed["gcseg"] / timed["paddleseg"])

    table = format_table(result)
    assert table.splitlines()[0].startswith("| row | unit | gcseg | PaddleSeg |")
    assert len(table.splitlines()) == len(result["rows"]) + 2
    write_json(result, str(tmp_path / "out.json"))
    assert json.loads((tmp_path / "out.json").read_text())["rows"][0]["name"] == "parameters"


@pytest.mark.parametrize("arguments", [{}, {"avg_non_ignore": False}, {"ignore_index": 3}])
def test_train_row_losses_agree_with_paddleseg(arguments):
    """The train row times each package's own loss: both must compute the same number."""
    pytest.importorskip("paddleseg")
    import paddle
    from gcseg.losses import CrossEntropyLoss, combine
    rng = np.random.default_rng(0)
    logits = [paddle.to_tensor(rng.normal(size=(2, 5, 6, 7)).astype(np.float32))
              for _ in range(2)]
    label = rng.integers(0, 5, (2, 6, 7))
    label[0, :2] = arguments.get("ignore_index", 255)
    label = paddle.to_tensor(label.astype(np.int64))
    spec = {"types": [{"type": "CrossEntropyLoss", **arguments}], "coef": [1, 0.4]}
    ours = combine(logits, label, {"types": [CrossEntropyLoss(**arguments)], "coef": [1, 0.4]})
    theirs = paddleseg_loss(spec)(logits, label)
    assert float(ours[0]) == pytest.approx(float(theirs), rel=1e-5)


def test_the_peak_rss_of_a_script_and_of_code_is_measured_in_the_child(tmp_path):
    """Whole-process peak RSS comes from the child's own VmHWM, so a child allocating 300 MB
    reports at least that, and a small one far less, whatever this process holds."""
    from benchmarks.compare import _run, plain_environment
    script = tmp_path / "allocate.py"
    script.write_text("import sys\nblock = bytearray(int(sys.argv[1]) * 2 ** 20)\n"
                      "block[::4096] = b'x' * len(block[::4096])\nsys.exit(0)\n")
    env = plain_environment()
    big = _run([sys.executable, str(script), "300"], env)
    small = _run([sys.executable, str(script), "1"], env)
    code = _run([sys.executable, "-c", "import sys; b = bytearray(int(sys.argv[1]) * 2 ** 20); "
                 "b[::4096] = b'x' * len(b[::4096])", "200"], env)
    assert big >= 300 and small < 100 and 200 <= code < 300, (big, small, code)


def test_the_deploy_memory_row_measures_onnx_runtime_without_paddle(gcnet, tmp_path):
    """Two fresh processes load the same export and run one forward: ONNX Runtime's never
    imports Paddle (its child fails if it does), so it stays far below Paddle Inference's,
    whose import alone is hundreds of MB."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("paddle2onnx")
    (row,) = deploy_memory_rows(gcnet, (96, 64), str(tmp_path))
    assert row.name == DEPLOY_MEMORY_ROW and row.unit == "MB"
    assert 0 < row.gcseg < row.paddleseg, (row.gcseg, row.paddleseg)
    assert (tmp_path / "memory_export" / "onnx" / "model.onnx").is_file()
