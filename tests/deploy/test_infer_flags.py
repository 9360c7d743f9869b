"""scripts/infer.py takes PaddleSeg's deploy/python/infer.py flags, with their meaning where
they apply here (real exports of a small GCNet-R18, real Paddle Inference / ONNX Runtime):

- ``--batch_size 2`` writes the labels of ``--batch_size 1`` (images of another size start a
  new batch); ``--with_argmax`` changes nothing (labels are always class ids); the PNGs are
  palette PNGs, ``--custom_color`` colours their classes;
- ``--cpu_threads`` and ``--enable_mkldnn`` reach the runtime's config, read back from it;
  ``--print_detail True`` shows Paddle Inference's own log; ``--benchmark`` prints the stage
  times per image;
- what this CPU-only Paddle cannot do (TensorRT, its fp16/int8, auto-tune, a GPU, bf16 on a CPU
  without bf16 instructions, bf16 that Paddle computes as fp32) is one line and exit 2.
"""
import re

import numpy as np
import paddle
import pytest
from PIL import Image

from gcseg.data.palettes import generic_palette
from gcseg.deploy.export import export_model
from gcseg.deploy.infer import StageTimer, infer_images
from gcseg.deploy.inference_options import InferenceOptions
from gcseg.deploy.runtime import DeployedModel, check_runtime_options
from gcseg.errors import UsageError
from conftest import assert_one_line_error, error_lines, run_script

NORMALIZE = [{"type": "Normalize", "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}]
IMAGE_SIZES = [(96, 64), (96, 64), (80, 72), (96, 64)]  # W, H: the third breaks a batch of 2
cpu_build_only = pytest.mark.skipif(paddle.is_compiled_with_cuda(),
                                    reason="the refusals of a Paddle without CUDA")


@pytest.fixture(scope="module")
def exports(gcnet, tmp_path_factory):
    root = tmp_path_factory.mktemp("infer_flags")
    export_model(gcnet, str(root / "logits"), output_op="none", val_transforms=NORMALIZE)
    export_model(gcnet, str(root / "argmax"), output_op="argmax", val_transforms=NORMALIZE)
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("infer_images")
    rng = np.random.default_rng(0)
    for index, (width, height) in enumerate(IMAGE_SIZES):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"image{index}.png")
    return sorted(folder.glob("*.png"))


def read_labels(folder):
    return {path.name: np.asarray(Image.open(path)) for path in sorted(folder.glob("*.png"))}


def one_at_a_time(model_dir, images, **options):
    model = DeployedModel(str(model_dir), **options)
    return {image.name: model.predict_file(str(image)) for image in images}


def test_batches_of_two_give_the_labels_of_one_image_at_a_time(exports, images, tmp_path):
    model = DeployedModel(str(exports / "logits"), cpu_threads=2)
    timer = StageTimer()
    infer_images(model, [str(image) for image in images], str(tmp_path), batch_size=2,
                 timer=timer)
    assert (timer.images, timer.batches) == (4, 3)  # [0, 1], [2] (another size), [3]
    written = read_labels(tmp_path)
    expected = one_at_a_time(exports / "logits", images, cpu_threads=2)
    assert sorted(written) == sorted(expected)
    for name, label in written.items():
        assert label.shape == expected[name].shape
        assert (label == expected[name]).mean() > 0.999  # batching may flip a float near-tie
        assert len(np.unique(label)) > 1


def test_labels_are_palette_pngs_with_custom_colours(exports, images, tmp_path):
    model = DeployedModel(str(exports / "argmax"))
    infer_images(model, [str(images[0])], str(tmp_path), custom_color=[255, 0, 0, 0, 255, 0])
    with Image.open(tmp_path / images[0].name) as png:
        assert png.mode == "P"
        palette = np.asarray(png.getpalette()[:3 * 256], dtype=np.uint8).reshape(-1, 3)
        label = np.asarray(png)
    assert palette[:2].tolist() == [[255, 0, 0], [0, 255, 0]]
    assert (palette[2:] == generic_palette(256)[2:]).all()
    np.testing.assert_array_equal(label, model.predict_file(str(images[0])))


def test_a_fixed_batch_export_refuses_another_batch_size(gcnet, images, tmp_path):
    export_model(gcnet, str(tmp_path / "fixed"), output_op="argmax", val_transforms=NORMALIZE,
                 input_shape=[1, 3, 64, 96])
    with pytest.raises(UsageError, match=r"^--batch_size 2: this export takes batches of 1 "):
        infer_images(DeployedModel(str(tmp_path / "fixed")), [str(images[0])],
                     str(tmp_path / "out"), batch_size=2)


def test_threads_and_onednn_reach_the_predictor_config(exports, images):
    batch = DeployedModel(str(exports / "logits")).preprocess(str(images[0]))
    outputs = {}
    for threads, onednn in ((3, None), (1, True), (2, False)):
        model = DeployedModel(str(exports / "logits"), cpu_threads=threads, use_onednn=onednn)
        state = "off" if onednn is False else "on"
        assert model.runner.description == (f"Paddle Inference on the CPU, {threads} threads, "
                                            f"oneDNN {state}, fp32")
        outputs[threads] = model.run(batch)
    scale = max(1.0, float(np.abs(outputs[1]).max()))
    assert np.abs(outputs[3] - outputs[2]).max() <= 1e-4 * scale
    assert np.abs(outputs[1] - outputs[2]).max() <= 1e-4 * scale


def test_print_detail_shows_paddle_inferences_own_log(exports, images, capfd):
    batch = np.zeros([1, 3, 64, 96], dtype=np.float32)
    capfd.readouterr()
    DeployedModel(str(exports / "argmax"), print_detail=False).run(batch)
    quiet = capfd.readouterr().err
    DeployedModel(str(exports / "argmax"), print_detail=True).run(batch)
    detailed = capfd.readouterr().err
    assert len(detailed.splitlines()) > len(quiet.splitlines()) + 5, (quiet, detailed)


def test_the_benchmark_report_gives_milliseconds_per_image():
    timer = StageTimer({"preprocess": 0.3, "inference": 1.5, "postprocess": 0.03}, images=3,
                       batches=2)
    lines = timer.report("Paddle Inference on the CPU, 2 threads, oneDNN on, fp32", 2, "R18")
    assert lines == [
        "benchmark: model R18, Paddle Inference on the CPU, 2 threads, oneDNN on, fp32, "
        "batch_size 2",
        "benchmark: 3 images in 2 batches after 1 warm-up batch; per image: preprocess 100.00 ms, "
        "inference 500.00 ms, postprocess 10.00 ms; total 610.00 ms (1.64 images/s)"]


@cpu_build_only
@pytest.mark.parametrize("options, message", [
    ({"use_trt": True}, "--use_trt: TensorRT needs Paddle built with CUDA and TensorRT; this "
                        "Paddle {version} is a CPU build"),
    ({"use_trt": True, "tuned_shape_file": "shapes.pbtxt"}, "--use_trt: TensorRT needs Paddle"),
    ({"tuned_shape_file": "shapes.pbtxt"}, "--enable_auto_tune: tunes TensorRT's dynamic "
                                           "shapes, so it needs --use_trt True"),
    ({"precision": "fp16"}, "--precision fp16: a TensorRT precision, it needs --use_trt True"),
    ({"precision": "int8"}, "--precision int8: a TensorRT precision"),
    ({"device": "gpu"}, "--device gpu: this Paddle {version} has no gpu support"),
    ({"precision": "bf16", "device": "gpu"}, "--device gpu: this Paddle"),
    ({"precision": "bf16", "use_onednn": False}, "--precision bf16: oneDNN's bfloat16 on the "
                                                 "CPU only"),
])
def test_what_this_paddle_cannot_run_is_refused_naming_the_flag(options, message):
    with pytest.raises(UsageError) as raised:
        check_runtime_options("model_dir", "paddle", InferenceOptions(**options))
    assert str(raised.value).startswith(message.format(version=paddle.__version__))
    assert "\n" not in str(raised.value)


def test_bf16_is_refused_on_a_cpu_without_bf16_instructions(exports, monkeypatch):
    from gcseg import cpu_env
    monkeypatch.setattr(cpu_env, "cpu_supports_bf16", lambda cpuinfo=None: False)
    with pytest.raises(UsageError, match=r"^--precision bf16: this CPU has no bf16 "
                                         r"instructions .*; use --precision fp32$"):
        DeployedModel(str(exports / "logits"), precision="bf16")


def test_bf16_that_paddle_computes_as_fp32_is_refused(exports, images, monkeypatch):
    """With the CPU check passed, the runtime's probe still compares real bf16 and fp32
    predictors: bit-identical logits are refused; bf16 that computes is kept and differs."""
    from gcseg import cpu_env
    monkeypatch.setattr(cpu_env, "cpu_supports_bf16", lambda cpuinfo=None: True)
    try:
        model = DeployedModel(str(exports / "logits"), precision="bf16")
    except UsageError as error:
        assert re.match(r"--precision bf16: Paddle \S+'s oneDNN computed a probe image bit for "
                        r"bit as in fp32 \(bf16 accepted but not applied", str(error))
        return
    batch = model.preprocess(str(images[0]))
    assert not np.array_equal(model.run(batch), DeployedModel(str(exports / "logits")).run(batch))


def test_onnx_runtime_batches_and_threads(gcnet, exports, images, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("paddle2onnx")
    export_model(gcnet, str(tmp_path / "onnx"), output_op="none", val_transforms=NORMALIZE,
                 export_format="onnx")
    model = DeployedModel(str(tmp_path / "onnx"), cpu_threads=1)
    assert model.runner.description.endswith("on the CPU, 1 threads, fp32")
    infer_images(model, [str(image) for image in images], str(tmp_path / "out"), batch_size=2)
    expected = one_at_a_time(exports / "logits", images)
    for name, label in read_labels(tmp_path / "out").items():
        assert (label == expected[name]).mean() > 0.999
    with pytest.raises(UsageError, match="--use_trt apply to Paddle Inference, not to ONNX"):
        DeployedModel(str(tmp_path / "onnx"), use_trt=True)


def test_paddleseg_command_line_runs_unchanged(exports, images, tmp_path):
    """PaddleSeg's flags as its users type them; --with_argmax and --batch_size 2 leave the
    PNGs of a plain run; --benchmark reports what ran and the stage times."""
    folder = images[0].parent
    paddleseg = run_script(
        "infer.py", "--config", exports / "logits" / "deploy.yaml", "--image_path", folder,
        "--save_dir", tmp_path / "paddleseg", "--batch_size", "2", "--device", "cpu",
        "--use_trt", "False", "--precision", "fp32", "--cpu_threads", "1",
        "--enable_mkldnn", "True", "--benchmark", "True", "--model_name", "GCNet-R18",
        "--with_argmax", "--print_detail", "False")
    assert paddleseg.returncode == 0, paddleseg.stderr[-3000:]
    assert error_lines(paddleseg.stderr) == []
    lines = paddleseg.stdout.splitlines()
    assert lines[0] == f"wrote 4 label images to {tmp_path / 'paddleseg'}"
    assert lines[1] == ("benchmark: model GCNet-R18, Paddle Inference on the CPU, 1 threads, "
                        "oneDNN on, fp32, batch_size 2")
    assert re.fullmatch(r"benchmark: 4 images in 3 batches after 1 warm-up batch; per image: "
                        r"preprocess [\d.]+ ms, inference [\d.]+ ms, postprocess [\d.]+ ms; "
                        r"total [\d.]+ ms \([\d.]+ images/s\)", lines[2]), lines[2]
    plain = run_script("infer.py", "--model_dir", exports / "logits", "--image_path", folder,
                       "--save_dir", tmp_path / "plain", "--cpu_threads", "1")
    assert plain.returncode == 0, plain.stderr[-3000:]
    written, expected = read_labels(tmp_path / "paddleseg"), read_labels(tmp_path / "plain")
    assert sorted(written) == sorted(expected) == [image.name for image in images]
    for name, label in written.items():
        assert (label == expected[name]).mean() > 0.999


@cpu_build_only
@pytest.mark.parametrize("flags, names", [
    (["--use_trt", "True"], ["--use_trt: TensorRT needs Paddle built with CUDA", "CPU build"]),
    (["--enable_auto_tune", "True"], ["--enable_auto_tune: tunes TensorRT's dynamic shapes"]),
])
def test_flags_this_paddle_cannot_honour_stop_the_script_in_one_line(exports, images, tmp_path,
                                                                      flags, names):
    result = run_script("infer.py", "--config", exports / "argmax" / "deploy.yaml",
                        "--image_path", images[0], "--save_dir", tmp_path / "out", *flags)
    assert_one_line_error(result, *names)
    assert not (tmp_path / "out").exists()
