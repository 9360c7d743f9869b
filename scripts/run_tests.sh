#!/usr/bin/env bash
# Installs everything the test suite needs into .venv (Paddle 3.x), .venv-paddle26
# (Paddle 2.6.2) and .venv-mmseg (the MMSegmentation oracle, run in subprocesses), then runs
# the suite on Paddle 2.6 (all but the slow quickstart run) and the whole suite on Paddle 3.
# Safe to re-run: installs are skipped when already satisfied.
#   bash scripts/run_tests.sh            # everything
#   GCSEG_SKIP_PADDLE26=1 bash scripts/run_tests.sh   # Paddle 3 only
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PIP_FLAGS=(--quiet --disable-pip-version-check)

make_venv() {  # make_venv DIR
  [ -x "$1/bin/python" ] || "$PYTHON" -m venv "$1"
  "$1/bin/python" -m pip install "${PIP_FLAGS[@]}" --upgrade pip
}

echo "== installing Paddle 3 environment (.venv)"
make_venv .venv
.venv/bin/pip install "${PIP_FLAGS[@]}" -r requirements-cpu.txt -r requirements.txt -r requirements-test.txt
.venv/bin/pip install "${PIP_FLAGS[@]}" --no-deps -e .
# The PaddleSeg oracle: --no-deps (its pins break numpy 2); the few modules it imports.
.venv/bin/pip install "${PIP_FLAGS[@]}" --no-deps paddleseg==2.8.0
.venv/bin/pip install "${PIP_FLAGS[@]}" filelock scipy prettytable scikit-learn

echo "== installing the MMSegmentation oracle (.venv-mmseg, for the parity tests)"
PYTHON="$PYTHON" bash scripts/install_mmseg_oracle.sh .venv-mmseg

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
grep -q AuthenticAMD /proc/cpuinfo 2>/dev/null && export MKL_DEBUG_CPU_TYPE=${MKL_DEBUG_CPU_TYPE:-5}

if [ "${GCSEG_SKIP_PADDLE26:-0}" = "0" ]; then
  echo "== installing Paddle 2.6.2 environment (.venv-paddle26)"
  make_venv .venv-paddle26
  .venv-paddle26/bin/pip install "${PIP_FLAGS[@]}" "paddlepaddle==2.6.2" "numpy<2" \
    "opencv-python-headless<4.11" Pillow pyyaml tqdm visualdl safetensors pytest hypothesis \
    setuptools wheel "scipy<1.14" "scikit-learn<1.6" filelock prettytable matplotlib \
    cityscapesscripts imgviz "paddle2onnx==1.3.1" onnxruntime
  .venv-paddle26/bin/pip install "${PIP_FLAGS[@]}" --no-deps -e . paddleseg==2.8.0
  echo "== Paddle 2.6.2: the suite but its slow end-to-end quickstart run"
  .venv-paddle26/bin/python -m pytest -q -p no:cacheprovider -m "not paddle3_only and not slow" \
    tests
fi

echo "== Paddle 3: the whole suite"
.venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
