#!/usr/bin/env bash
# Builds the MMSegmentation oracle environment the parity tests run in subprocesses:
# .venv-mmseg with torch (CPU), mmsegmentation 1.2.2, mmengine, mmcv-lite (no compiled ops)
# and a stand-in for mmcv.ops, which mmseg imports at start-up but GCNet never calls.
# Safe to re-run: pip skips what is already satisfied.
#   bash scripts/install_mmseg_oracle.sh [VENV_DIR]     # default .venv-mmseg
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${1:-.venv-mmseg}
PIP_FLAGS=(--quiet --disable-pip-version-check)

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install "${PIP_FLAGS[@]}" --upgrade pip
"$VENV/bin/pip" install "${PIP_FLAGS[@]}" "torch==2.13.0" "numpy<2" "mmengine==0.10.7" \
  "mmcv-lite==2.1.0" "mmsegmentation==1.2.2" ftfy regex
SITE=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
mkdir -p "$SITE/mmcv/ops"
cp tests/oracles/mmcv_ops_standin.py "$SITE/mmcv/ops/__init__.py"
"$VENV/bin/python" -c "import mmseg.models, mmseg.apis; print('mmseg oracle ready')"
