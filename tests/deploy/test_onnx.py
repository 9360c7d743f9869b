"""ONNX export (paddle2onnx) and ONNX Runtime, on the installed Paddle (2.6 or 3.x).

A small GCNet (ResNet18_vd, BN statistics randomised so that folding matters) exported to
``model.onnx`` gives, under ONNX Runtime, the dygraph logits and Paddle Inference's logits
within 1e-4 (relative) at two sizes through one dynamic-shape model; a fixed-shape export
fixes its input; scripts/export.py --format onnx + scripts/infer.py write the dygraph argmax;
without the optional packages the scripts stop with one line naming the extra; ``auto`` picks
the faster of the engines that agree with dygraph, once per process.
"""
import gc
import subprocess
import sys
import weakref

import numpy as np
import paddle
import pytest
import yaml
from PIL import Image

from gcseg.config import Config
from gcseg.deploy.export import export_model
from gcseg.deploy.onnx_export import MIN_OPSET
from gcseg.deploy.runtime import DeployedModel
from gcseg.engine import forward
from gcseg.engine.evaluator import evaluate
from gcseg.engine.forward import backend_name, inference_forward, max_relative_difference
from gcseg.errors import UsageError
from gcseg.models.weights import load_weights
from conftest import ROOT, TinyDataset, write_run

pytest.importorskip("onnxruntime")
pytest.importorskip("paddle2onnx")

NORMALIZE = [{"type": "Normalize", "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}]
SHAPES = [(1, 3, 64, 96), (2, 3, 71, 53)]  # one dynamic model, an odd size and a batch of 2


@pytest.fixture(scope="module")
def exports(gcnet, tmp_path_factory):
    """The same model exported for Paddle Inference and as ONNX (dynamic N, H, W)."""
    root = tmp_path_factory.mktemp("exports")
    export_model(gcnet, str(root / "paddle"), output_op="none", val_transforms=NORMALIZE)
    export_model(gcnet, str(root / "onnx"), output_op="none", val_transforms=NORMALIZE,
                 export_format="onnx")
    return root


@pytest.fixture
def fresh_auto_choice(monkeypatch):
    """Each test decides ``auto`` anew, as a new process would."""
    monkeypatch.setattr(forward, "_AUTO_CHOICE", {})


@pytest.fixture(scope="module")
def compiled_engines(gcnet):
    """Both real compiled engines of ``gcnet``, built (and checked against dygraph) once."""
    compiled = forward.compile_backends(gcnet, forward.COMPILED_BACKENDS)
    assert [backend_name(compiled[name]) for name in forward.COMPILED_BACKENDS] == \
        list(forward.COMPILED_BACKENDS)
    return compiled


@pytest.fixture
def reuse_compiled(monkeypatch, compiled_engines):
    """``auto`` gets the engines compiled once for this module instead of compiling anew."""
    monkeypatch.setattr(forward, "_checked", lambda backend, *args: compiled_engines[backend])


def run_script(name, *args, hide=(), timeout=300):
    """Run scripts/<name> in a fresh interpreter; ``hide`` lists modules made unimportable
    there, as if they were not installed (``sys.modules[name] = None``)."""
    code = ("import runpy, sys; sys.argv = sys.argv[1:]\n"
            f"for name in {list(hide)!r}: sys.modules[name] = None\n"
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code, str(ROOT / "scripts" / name),
                           *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_onnx_runtime_matches_dygraph_and_paddle_inference(gcnet, exports):
    onnx_model = DeployedModel(str(exports / "onnx"))
    paddle_model = DeployedModel(str(exports / "paddle"))
    assert type(onnx_model.runner).__name__ == "OnnxRuntimeRunner"  # chosen by model.onnx
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        batch = rng.standard_normal(shape).astype(np.float32)
        with paddle.no_grad():
            dygraph = gcnet(paddle.to_tensor(batch))[0].numpy()
        onnx_logits = onnx_model.run(batch)
        assert onnx_logits.shape == dygraph.shape
        assert np.abs(dygraph).max() > 0.1
        assert max_relative_difference(onnx_logits, dygraph) <= 1e-4
        assert max_relative_difference(onnx_logits, paddle_model.run(batch)) <= 1e-4


def test_onnx_deploy_yml_names_the_model_and_keeps_the_preprocessing(exports):
    deploy = yaml.safe_load((exports / "onnx" / "deploy.yaml").read_text())["Deploy"]
    paddle_deploy = yaml.safe_load((exports / "paddle" / "deploy.yaml").read_text())["Deploy"]
    assert deploy["model"] == "model.onnx" and "params" not in deploy
    assert deploy["onnx_opset"] == 17
    assert deploy["normalize"] == paddle_deploy["normalize"] == {"mean": [0.4, 0.5, 0.6],
                                                                  "std": [0.2, 0.25, 0.3]}
    assert deploy["input_shape"] == [-1, 3, -1, -1]
    assert sorted(p.name for p in (exports / "onnx").iterdir()) == ["deploy.yaml", "model.onnx"]
    session = DeployedModel(str(exports / "onnx")).runner.session
    batch, channels, height, width = session.get_inputs()[0].shape
    assert channels == 3 and not any(isinstance(v, int) for v in (batch, height, width))


def test_fixed_shape_export_and_low_opset(gcnet, tmp_path, capsys):
    export_model(gcnet, str(tmp_path), output_op="argmax", input_shape=[1, 3, 64, 96],
                 val_transforms=NORMALIZE, export_format="onnx", opset=11)
    assert f"opset 11 raised to {MIN_OPSET}" in capsys.readouterr().err
    deploy = yaml.safe_load((tmp_path / "deploy.yaml").read_text())["Deploy"]
    assert deploy["onnx_opset"] == MIN_OPSET and deploy["input_shape"] == [1, 3, 64, 96]
    model = DeployedModel(str(tmp_path))
    assert model.runner.session.get_inputs()[0].shape == [1, 3, 64, 96]
    batch = np.random.default_rng(1).standard_normal((1, 3, 64, 96)).astype(np.float32)
    with paddle.no_grad():
        expected = gcnet(paddle.to_tensor(batch))[0].argmax(axis=1).numpy()
    labels = model.run(batch)
    assert labels.shape == (1, 64, 96)
    assert (labels == expected).mean() > 0.999  # float rounding may flip a near-tie


def test_export_and_infer_scripts_end_to_end(tmp_path):
    config_path, model_path = write_run(tmp_path, num_val=2)
    images = sorted((tmp_path / "data" / "leftImg8bit" / "val").rglob("*.png"))
    export_dir, out_dir = tmp_path / "onnx", tmp_path / "labels"
    export = run_script("export.py", "--config", config_path, "--model_path", model_path,
                        "--save_dir", export_dir, "--format", "onnx")
    assert export.returncode == 0, export.stderr[-2000:]
    infer = run_script("infer.py", "--model_dir", export_dir, "--image_path",
                       images[0].parent, "--save_dir", out_dir, "--cpu_threads", "2")
    assert infer.returncode == 0, infer.stderr[-2000:]
    assert "wrote 2 label images" in infer.stdout

    model = Config(config_path).model
    load_weights(model, str(model_path))
    model.eval()
    deployed = DeployedModel(str(export_dir))
    for image in images:
        with paddle.no_grad():
            logits = model(paddle.to_tensor(deployed.preprocess(str(image))))[0]
        expected = logits.argmax(axis=1)[0].numpy()
        label = np.asarray(Image.open(out_dir / image.name))
        assert label.shape == expected.shape == (37, 61)  # the image's own size
        assert (label == expected).mean() > 0.999


def test_infer_runtime_flag_and_what_a_directory_holds(exports):
    with pytest.raises(UsageError, match="holds an ONNX model only"):
        DeployedModel(str(exports / "onnx"), runtime="paddle")
    with pytest.raises(UsageError, match="no model.onnx"):
        DeployedModel(str(exports / "paddle"), runtime="onnxruntime")
    with pytest.raises(UsageError, match="--precision bf16 apply to Paddle Inference"):
        DeployedModel(str(exports / "onnx"), precision="bf16")


@pytest.mark.parametrize("script, hidden, package", [
    ("export.py", "paddle2onnx", "paddle2onnx"),
    ("infer.py", "onnxruntime", "onnxruntime"),
])
def test_missing_extra_is_one_line_naming_it(exports, tmp_path, script, hidden, package):
    if script == "export.py":
        config_path, model_path = write_run(tmp_path, num_val=1)
        args = ["--config", config_path, "--model_path", model_path, "--format", "onnx",
                "--save_dir", tmp_path / "out"]
    else:
        args = ["--model_dir", exports / "onnx", "--image_path", tmp_path, "--save_dir",
                tmp_path / "out"]
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "image.png")
    run = run_script(script, *args, hide=[hidden])
    extra = "onnx" if paddle.__version__.startswith("3") else "onnx-paddle26"
    assert run.returncode == 2
    lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert lines == [f'error: {"ONNX export" if script == "export.py" else "running an ONNX model"}'
                     f' needs {package}, which is not installed: pip install "gcseg[{extra}]" '
                     f'(or pip install -e ".[{extra}]" in a clone)']
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_onnxruntime_engine_equals_dygraph(gcnet, compiled_engines):
    image = paddle.to_tensor(np.random.default_rng(2).standard_normal((2, 3, 71, 53))
                             .astype("float32"))
    with paddle.no_grad():
        expected = gcnet(image)[0].numpy()
    logits = compiled_engines["onnxruntime"](image)[0].numpy()
    assert logits.shape == expected.shape
    assert max_relative_difference(logits, expected) <= 1e-4


def test_evaluate_with_onnxruntime_gives_the_dygraph_metrics(gcnet):
    dataset = TinyDataset(num_images=3)  # odd sizes, padding and resize in trans_info
    results = {name: evaluate(gcnet, dataset, backend=name, print_detail=False)
               for name in ("onnxruntime", "dygraph")}
    assert results["onnxruntime"]["engine"] == "onnxruntime"
    np.testing.assert_array_equal(results["onnxruntime"]["confusion_matrix"],
                                  results["dygraph"]["confusion_matrix"])


def test_without_the_extra_onnxruntime_is_a_usage_error_and_auto_takes_the_predictor(
        gcnet, compiled_engines, monkeypatch, fresh_auto_choice, capsys, request):
    # compiled_engines is built before onnxruntime is hidden (this test may be the module's
    # first in its pytest worker)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(UsageError, match=r"--engine onnxruntime needs onnxruntime.*\[onnx"):
        inference_forward(gcnet, "onnxruntime")
    request.getfixturevalue("reuse_compiled")  # real engines; auto asks for the predictor only
    assert backend_name(inference_forward(gcnet)) == "predictor"
    assert ("evaluation backend predictor for this process (ONNX Runtime: "
            "onnxruntime/paddle2onnx not installed)") in capsys.readouterr().err


@pytest.mark.parametrize("onnx_seconds, expected", [(0.5, "onnxruntime"), (2.0, "predictor")])
def test_auto_takes_the_faster_engine_once_per_process(gcnet, monkeypatch, fresh_auto_choice,
                                                       reuse_compiled, capsys, onnx_seconds,
                                                       expected):
    """The timings are set (timing the real engines decides by load, not by the rule); the
    engines are real, compiled and checked against dygraph once for the module."""
    timed = []

    def median_seconds(compiled):
        timed.append(compiled.backend)
        return {"predictor": 1.0, "onnxruntime": onnx_seconds}[compiled.backend]

    monkeypatch.setattr(forward, "_median_seconds", median_seconds)
    assert backend_name(inference_forward(gcnet)) == expected
    assert backend_name(inference_forward(gcnet)) == expected  # the cached decision
    assert timed == ["predictor", "onnxruntime"]
    lines = [line for line in capsys.readouterr().err.splitlines() if "evaluation backend" in line]
    assert lines == [f"gcseg: evaluation backend {expected} for this process (ONNX Runtime took "
                     f"{onnx_seconds:.2f}x Paddle Inference's time on a 256x128 image)"]


@pytest.mark.parametrize("onnx_seconds", [0.5, 2.0])
def test_auto_never_holds_two_engines_at_once(gcnet, monkeypatch, fresh_auto_choice,
                                              onnx_seconds):
    """Each engine holds its own copy of the weights: auto times them one after the other,
    the first freed before the second loads, and keeps only the winner."""
    alive = []

    def median_seconds(compiled):
        gc.collect()
        alive.append([runner() is not None for runner in runners])
        runners.append(weakref.ref(compiled.runner))
        return {"predictor": 1.0, "onnxruntime": onnx_seconds}[compiled.backend]

    runners = []
    monkeypatch.setattr(forward, "_median_seconds", median_seconds)
    chosen = inference_forward(gcnet)
    gc.collect()
    assert alive == [[], [False]]  # the predictor was gone when ONNX Runtime was timed
    assert [runner() is not None for runner in runners] == \
        ([False, True] if onnx_seconds < 1 else [False, False])  # the winner reopened
    assert backend_name(chosen) == ("onnxruntime" if onnx_seconds < 1 else "predictor")


def test_auto_never_takes_an_engine_that_disagrees_with_dygraph(gcnet, monkeypatch,
                                                                fresh_auto_choice, capsys):
    from gcseg.deploy.onnx_runtime import OnnxRuntimeRunner
    correct_run = OnnxRuntimeRunner.run
    monkeypatch.setattr(OnnxRuntimeRunner, "run", lambda self, batch: correct_run(self, batch)
                        * np.float32(1.001))  # a broken runtime: every logit 0.1% off
    assert backend_name(inference_forward(gcnet)) == "predictor"
    assert "ONNX Runtime differs from dygraph by" in capsys.readouterr().err
