"""Running the MMSegmentation oracle: its own Python environment, always in a subprocess, so
that torch and Paddle never share a process.

The oracle's Python is ``$GCSEG_MMSEG_PYTHON`` or the repository's ``.venv-mmseg`` (built by
``scripts/install_mmseg_oracle.sh``). Without it the tests that need it skip, except in CI
(``CI=true``), where a missing oracle is a failure.
"""
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Optional

import pytest

from conftest import ROOT

ORACLES = ROOT / "tests" / "oracles"
ORACLE_CACHE = ROOT / "build" / "mmseg-oracle"
TIMEOUT_SECONDS = 900


def oracle_python() -> Optional[str]:
    """The oracle environment's interpreter, or None when there is none."""
    candidate = os.environ.get("GCSEG_MMSEG_PYTHON") or str(ROOT / ".venv-mmseg" / "bin" / "python")
    return candidate if os.access(candidate, os.X_OK) else None


def require_oracle_python() -> str:
    """The oracle's interpreter; skips the test without one (fails in CI)."""
    python = oracle_python()
    if python is None:
        reason = ("no mmseg oracle environment: run scripts/install_mmseg_oracle.sh or set "
                  "GCSEG_MMSEG_PYTHON")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return python


def run_oracle(script: str, *args: str) -> str:
    """Run ``tests/oracles/<script>`` with the oracle's Python; returns its stdout."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    result = subprocess.run([require_oracle_python(), str(ORACLES / script), *args],
                            capture_output=True, text=True, timeout=TIMEOUT_SECONDS, env=env)
    if result.returncode != 0:
        raise AssertionError(f"oracle {script} failed (rc {result.returncode}):\n"
                             f"{result.stderr[-3000:]}")
    return result.stdout


def run_gcnet_oracle(out_dir: Path, **settings) -> Path:
    """Run the mmseg GCNet oracle (see tests/oracles/mmseg_gcnet.py) into ``out_dir``."""
    run_oracle("mmseg_gcnet.py", str(out_dir), json.dumps(settings))
    return out_dir


def cached_oracle_outputs(script: str, settings: dict, produce: Callable[[Path], None]) -> Path:
    """The folder ``produce(folder)`` fills by running oracle ``script`` with ``settings``,
    computed once per checkout: the Paddle 2.6 and 3.x runs of the suite share it (keyed by the
    oracle's code, its Python and the settings). It lives in the checkout's ignored ``build/``
    (about 0.9 GB), so it goes with the checkout instead of piling up in the system's temp."""
    python = require_oracle_python()
    code = (ORACLES / script).read_bytes()
    key = hashlib.sha256(code + python.encode() + json.dumps(settings, sort_keys=True).encode())
    cached = ORACLE_CACHE / key.hexdigest()[:16]
    if not (cached / "oracle.npz").is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cached.parent))
        try:
            produce(staging)
            if not cached.exists():  # else another run of the suite finished first
                os.replace(staging, cached)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return cached
