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
SKIP_PADDLE26=${GCSEG_SKIP_PADDLE26:-0}
LOGS=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$LOGS"' EXIT

make_venv() {  # make_venv DIR
  [ -x "$1/bin/python" ] || "$PYTHON" -m venv "$1"
  "$1/bin/python" -m pip install "${PIP_FLAGS[@]}" --upgrade pip
}

install_paddle3() {
  make_venv .venv
  # The PaddleSeg oracle's few imports (it is installed --no-deps below: its pins break numpy 2).
  .venv/bin/pip install "${PIP_FLAGS[@]}" -r requirements-cpu.txt -r requirements.txt \
    -r requirements-test.txt filelock scipy prettytable scikit-learn
}

install_paddle26() {
  make_venv .venv-paddle26
  .venv-paddle26/bin/pip install "${PIP_FLAGS[@]}" "paddlepaddle==2.6.2" "numpy<2" \
    "opencv-python-headless<4.11" Pillow pyyaml tqdm visualdl safetensors pytest pytest-xdist \
    hypothesis setuptools wheel "scipy<1.14" "scikit-learn<1.6" filelock prettytable matplotlib \
    cityscapesscripts imgviz "paddle2onnx==1.3.1" onnxruntime
}

install_gcseg_and_paddleseg() {  # install_gcseg_and_paddleseg VENV (setuptools is installed)
  "$1/bin/pip" install "${PIP_FLAGS[@]}" --no-deps --no-build-isolation -e . paddleseg==2.8.0
}

declare -A PIDS
start() {  # start NAME COMMAND...: run in the background, output to NAME's log
  "${@:2}" > "$LOGS/$1.log" 2>&1 &
  PIDS[$1]=$!
}

finish() {  # finish NAME: wait for it and show its output; a failure stops the script
  local status=0
  wait "${PIDS[$1]}" || status=$?
  cat "$LOGS/$1.log"
  if [ "$status" != 0 ]; then
    echo "== installing $1 failed (exit $status)" >&2
    exit "$status"
  fi
}

# The environments install side by side: pip spends its time on one core unpacking wheels and
# waiting on the package index, so on a 2-core machine this takes minutes less than one by one.
echo "== installing Paddle 3 (.venv), the MMSegmentation oracle (.venv-mmseg, for the parity" \
  "tests) and, unless skipped, Paddle 2.6.2 (.venv-paddle26)"
start paddle3 install_paddle3
start mmseg env PYTHON="$PYTHON" bash scripts/install_mmseg_oracle.sh .venv-mmseg
if [ "$SKIP_PADDLE26" = 0 ]; then
  start paddle26 install_paddle26
fi
finish paddle3
# one editable install at a time: each writes gcseg.egg-info in this directory
install_gcseg_and_paddleseg .venv
if [ "$SKIP_PADDLE26" = 0 ]; then
  finish paddle26
  install_gcseg_and_paddleseg .venv-paddle26
fi
finish mmseg

# The suite needs about 2 GB free beyond the environments (a passing test's files are deleted
# as it ends, pytest.ini); a full disk shows up as many unrelated errors, so say what is free.
echo "== free disk space: $(df -h --output=avail . | tail -1 | tr -d ' ') here," \
  "$(df -h --output=avail "${TMPDIR:-/tmp}" | tail -1 | tr -d ' ') in ${TMPDIR:-/tmp}"

# One pytest worker per core (at most 4), each computing on one thread: most tests run small
# models and subprocesses that do not use two threads well, so two workers on a 2-core machine
# take about half the time of one worker on two threads. Each test file stays on one worker, in
# its order (tests/conftest.py), and the tests that start paddle.distributed.launch share one
# (xdist_group "launch"), so no two launches compete for ports.
CORES=$(nproc)
WORKERS=${GCSEG_TEST_WORKERS:-$(( CORES < 4 ? CORES : 4 ))}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( CORES / WORKERS > 0 ? CORES / WORKERS : 1 ))}
grep -q AuthenticAMD /proc/cpuinfo 2>/dev/null && export MKL_DEBUG_CPU_TYPE=${MKL_DEBUG_CPU_TYPE:-5}
PYTEST=(-m pytest -q -p no:cacheprovider --durations=25 -n "$WORKERS" --dist loadgroup)

if [ "$SKIP_PADDLE26" = 0 ]; then
  echo "== Paddle 2.6.2: the suite but its slow end-to-end quickstart run"
  .venv-paddle26/bin/python "${PYTEST[@]}" -m "not paddle3_only and not slow" tests
fi

echo "== Paddle 3: the whole suite"
.venv/bin/python "${PYTEST[@]}" tests "$@"
