"""Convert an exported Paddle program (``export.py``'s directory) to ONNX with paddle2onnx.

paddle2onnx and onnxruntime are optional (``pip install "gcseg[onnx]"``). paddle2onnx's
releases follow Paddle's program formats, so the call is picked by the installed Paddle:

- Paddle 3.x: paddle2onnx 2.x reads the PIR program (``model.json``). It would otherwise
  constant-fold with Polygraphy, which sets ``POLYGRAPHY_AUTOINSTALL_DEPS=1`` and pip-installs
  a helper package in the middle of a conversion: ``optimize_tool="None"`` turns that off, so a
  conversion never installs anything. paddle2onnx 2.x refuses to import beside Paddle 2.6.
- Paddle 2.6: paddle2onnx 1.3 reads the ``.pdmodel`` protobuf (extra ``onnx-paddle26``).

Opset 17 is the default (ONNX's ``LayerNormalization``); opsets below 13 are raised to 13
with a note, because paddle2onnx 2.x aborts the process (no exception) on them when it may
not upgrade. paddle2onnx runs in a child process (see :func:`_convert`), and success is judged
by the file it writes. Paddle is imported only where a Paddle version is needed, so that running
an ONNX model (:mod:`gcseg.deploy.onnx_runtime`) loads no Paddle.
"""
import importlib
import importlib.util
import os
import re
import subprocess
import sys
from typing import Any, Dict

import yaml

from gcseg.deploy.deploy_yml import DEPLOY_FILE, read_deploy
from gcseg.errors import GcsegError, UsageError

ONNX_FILE = "model.onnx"
DEFAULT_OPSET = 17
MIN_OPSET = 13
CONVERSION_TIMEOUT_SECONDS = 900


def paddle_version() -> str:
    import paddle
    return paddle.__version__


def paddle_major() -> int:
    """The installed Paddle's major version (0 for a development build counts as 3)."""
    return int(paddle_version().split(".")[0]) or 3


def onnx_extra() -> str:
    """The pip extra that installs the ONNX tools matching the installed Paddle."""
    return "onnx" if paddle_major() >= 3 else "onnx-paddle26"


def missing_onnx_tool_message(purpose: str, package: str) -> str:
    """The one-line error for a missing ``package`` of the ``onnx`` extra."""
    extra = onnx_extra()
    return (f"{purpose} needs {package}, which is not installed: pip install \"gcseg[{extra}]\" "
            f"(or pip install -e \".[{extra}]\" in a clone)")


def onnx_tools_installed() -> bool:
    """True when both paddle2onnx and onnxruntime can be found (without importing them)."""
    return all(importlib.util.find_spec(name) is not None
               for name in ("paddle2onnx", "onnxruntime"))


def import_paddle2onnx(purpose: str = "ONNX export") -> Any:
    """paddle2onnx, checked to be the release line that reads this Paddle's programs; a
    one-line :class:`UsageError` naming the extra to install otherwise."""
    if importlib.util.find_spec("paddle2onnx") is None:
        raise UsageError(missing_onnx_tool_message(purpose, "paddle2onnx"))
    expected = "2.x" if paddle_major() >= 3 else "1.x"
    try:
        module = importlib.import_module("paddle2onnx")
    except (ImportError, ValueError) as error:  # 2.x raises ValueError beside Paddle 2.6
        raise UsageError(f"paddle2onnx does not import with Paddle {paddle_version()} "
                         f"(it needs paddle2onnx {expected}: pip install \"gcseg[{onnx_extra()}]"
                         f"\"): {str(error).splitlines()[0]}") from error
    major = int(module.__version__.split(".")[0])
    if (major >= 2) != (paddle_major() >= 3):
        raise UsageError(f"paddle2onnx {module.__version__} cannot read Paddle "
                         f"{paddle_version()}'s programs; install paddle2onnx {expected}: "
                         f"pip install \"gcseg[{onnx_extra()}]\"")
    return module


def supported_opset(opset: int) -> int:
    """``opset`` raised to :data:`MIN_OPSET` (with a note on stderr) when below it."""
    if opset < MIN_OPSET:
        print(f"gcseg: ONNX opset {opset} raised to {MIN_OPSET} (gcseg exports need opset "
              f"{MIN_OPSET} or later)", file=sys.stderr)
        return MIN_OPSET
    return int(opset)


def convert_in_this_process(model_file: str, params_file: str, onnx_path: str,
                            opset: str) -> None:
    """One paddle2onnx call with the options matching the installed Paddle (run in a child
    process by :func:`_convert`)."""
    options = dict(save_file=onnx_path, opset_version=int(opset), auto_upgrade_opset=True,
                   verbose=False, enable_onnx_checker=True)
    if paddle_major() >= 3:
        options["optimize_tool"] = "None"  # no Polygraphy, which would pip-install a helper
    import_paddle2onnx().export(model_file, params_file, **options)


def _error_line(output: str) -> str:
    """The last line of paddle2onnx's output that reports an error, without colour codes."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in output.splitlines()]
    errors = [line for line in lines if "error" in line.lower()]
    return errors[-1][:300] if errors else "it wrote no model and reported no error"


def _convert(model_file: str, params_file: str, onnx_path: str, opset: int) -> None:
    """Convert in a child process: on a model it cannot convert, paddle2onnx may end the
    process it runs in (2.x exits with 255 after logging; an opset it may not upgrade aborts),
    and an evaluation inside training must survive that. The child's output (paddle2onnx logs
    even with ``verbose=False``) is kept out of the user's terminal unless it fails."""
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    code = ("import sys; from gcseg.deploy.onnx_export import convert_in_this_process; "
            "convert_in_this_process(*sys.argv[1:])")
    try:
        child = subprocess.run([sys.executable, "-c", code, model_file, params_file, onnx_path,
                                str(opset)], capture_output=True, text=True, env=env,
                               timeout=CONVERSION_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise GcsegError(f"paddle2onnx did not convert {model_file} within "
                         f"{CONVERSION_TIMEOUT_SECONDS} s") from None
    # paddle2onnx 1.x writes an empty file where 2.x exits: a model has some bytes.
    converted = os.path.isfile(onnx_path) and os.path.getsize(onnx_path) > 0
    if child.returncode != 0 or not converted:
        raise GcsegError(f"paddle2onnx could not convert {model_file}: "
                         f"{_error_line(child.stdout + child.stderr)}")


def convert_export_to_onnx(paddle_dir: str, save_dir: str, opset: int = DEFAULT_OPSET
                           ) -> Dict[str, str]:
    """Convert the Paddle export in ``paddle_dir`` to ``save_dir/model.onnx`` and write a
    ``deploy.yaml`` naming it (same preprocessing, plus ``onnx_opset``); returns both paths.
    ``save_dir`` may be ``paddle_dir``."""
    import_paddle2onnx()  # the one-line error naming the extra, before any work
    deploy = read_deploy(paddle_dir)
    opset = supported_opset(opset)
    os.makedirs(save_dir, exist_ok=True)
    onnx_path = os.path.join(save_dir, ONNX_FILE)
    if os.path.exists(onnx_path):
        os.remove(onnx_path)
    _convert(os.path.join(paddle_dir, deploy["model"]),
             os.path.join(paddle_dir, deploy["params"]), onnx_path, opset)
    onnx_deploy = {key: value for key, value in deploy.items() if key != "params"}
    onnx_deploy.update(model=ONNX_FILE, onnx_opset=opset)
    deploy_path = os.path.join(save_dir, DEPLOY_FILE)
    with open(deploy_path, "w", encoding="utf-8") as handle:
        yaml.safe_dump({"Deploy": onnx_deploy}, handle, sort_keys=False)
    return {"model": onnx_path, "deploy": deploy_path}
