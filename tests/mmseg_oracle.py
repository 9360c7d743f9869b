"""The MMSegmentation oracle environment, run as a subprocess so torch and Paddle never share a
process. Its python is $GCSEG_MMSEG_PYTHON, else <repo>/.venv-mmseg/bin/python (built by
scripts/install_mmseg_oracle.sh). Without it a test skips, except under CI (CI=true), where a
missing oracle fails the test."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORACLES = Path(__file__).parent / "oracles"
TIMEOUT_SECONDS = 600


def oracle_python() -> Path:
    """The oracle's python, or skip (fail under CI) when it is absent."""
    python = Path(os.environ.get("GCSEG_MMSEG_PYTHON") or ROOT / ".venv-mmseg" / "bin" / "python")
    if python.is_file():
        return python
    message = f"mmseg oracle environment not found ({python}; scripts/install_mmseg_oracle.sh)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def run_oracle(script: str, *args: str) -> None:
    """Run tests/oracles/<script> in the oracle environment; its stderr on failure."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    done = subprocess.run([str(oracle_python()), str(ORACLES / script), *map(str, args)],
                          env=env, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise AssertionError(f"mmseg oracle {script} exited {done.returncode}: "
                             f"{done.stderr.strip().splitlines()[-1:]}")
