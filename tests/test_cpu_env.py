"""The CPU set-up scripts run before Paddle loads: recommended variables where the user set
none, glibc malloc keeping freed blocks (counted in page faults, not timed), opt-outs."""
import os
import platform
import subprocess
import sys

import pytest

from gcseg import cpu_env
from conftest import ROOT


# Allocates, fills and frees a 64 MiB block 20 times with the C library's malloc (above glibc's
# largest automatic mmap threshold, 32 MiB, so untuned every block is a fresh mapping) and
# prints the minor page faults that took.
# With --returned the loop runs inside cpu_env.freed_memory_returned(), and once more after it.
FAULTS_OF_REUSE = """
import contextlib, ctypes, resource, sys
sys.path.insert(0, {root!r})
from gcseg import cpu_env
print(cpu_env.configure(argv=sys.argv, announce=False))
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 64 << 20

def faults_of_reuse():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        block = libc.malloc(size)
        ctypes.memset(block, 1, size)
        libc.free(block)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

returned = "--returned" in sys.argv
with cpu_env.freed_memory_returned() if returned else contextlib.nullcontext():
    print(faults_of_reuse())
if returned:
    print(faults_of_reuse())
"""


def run_faults(*argv: str, **env: str):
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", cpu_env.OPT_OUT_ENV)}
    out = subprocess.run([sys.executable, "-c", FAULTS_OF_REUSE.format(root=str(ROOT)), *argv],
                         env={**clean, **env}, capture_output=True, text=True, check=True)
    applied, *faults = out.stdout.splitlines()
    return (applied, *map(int, faults))


glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")


@glibc_only
def test_tuned_malloc_reuses_freed_blocks_instead_of_faulting_them_in_again():
    applied, tuned = run_faults()
    assert "'M_MMAP_MAX': '0'" in applied
    _, untuned = run_faults("--no_cpu_tuning")
    # untuned every block is faulted in afresh, tuned the first one only (how many faults a
    # block takes depends on the kernel's page sizes; the ratio does not)
    assert untuned > 5 * tuned


@glibc_only
def test_freed_memory_is_returned_inside_the_span_and_kept_after_it():
    """Inside ``freed_memory_returned`` glibc maps and unmaps large blocks again (every block
    faulted in afresh, as untuned); after it, gcseg's setting is back."""
    _, tuned = run_faults()
    _, inside, after = run_faults("--returned")
    assert inside > 5 * tuned
    assert after <= 2 * tuned + 100


@glibc_only
def test_a_users_own_malloc_setting_wins():
    _, tuned = run_faults()
    applied, faults = run_faults(MALLOC_MMAP_MAX_="65536")
    assert "M_MMAP_MAX" not in applied and "M_TRIM_THRESHOLD" not in applied
    assert faults > 5 * tuned
    applied, _ = run_faults(GLIBC_TUNABLES="glibc.malloc.trim_threshold=0")
    assert "M_" not in applied


def test_user_variables_win_and_the_opt_outs_set_nothing(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")  # no mallopt in the test process
    applied = cpu_env.configure(argv=[], announce=False)
    assert "OMP_NUM_THREADS" not in applied and os.environ["OMP_NUM_THREADS"] == "7"
    assert cpu_env.configure(argv=["train.py", cpu_env.OPT_OUT_FLAG], announce=False) == {}
    monkeypatch.setenv(cpu_env.OPT_OUT_ENV, "1")
    assert cpu_env.configure(argv=[], announce=False) == {}


def test_threads_are_shared_among_the_processes_of_a_node(monkeypatch):
    monkeypatch.setattr(cpu_env, "usable_cores", lambda: 8)
    monkeypatch.setenv("PADDLE_LOCAL_SIZE", "4")
    assert cpu_env.recommended_settings()["OMP_NUM_THREADS"] == "2"
    monkeypatch.setenv("PADDLE_LOCAL_SIZE", "16")
    assert cpu_env.recommended_settings()["OMP_NUM_THREADS"] == "1"


IMPORT_PADDLE = """
import os, sys
sys.path.insert(0, {root!r})
from gcseg import cpu_env
cpu_env.configure(argv=[], announce=False)
import paddle
print(os.environ["OMP_NUM_THREADS"])
"""


def import_paddle_after_configure(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OMP_NUM_THREADS", cpu_env.OPT_OUT_ENV)}
    return subprocess.run([sys.executable, "-c", IMPORT_PADDLE.format(root=str(ROOT))],
                          env={**clean, **env}, capture_output=True, text=True, check=True,
                          timeout=300)


def test_paddles_omp_warning_is_dropped_when_gcseg_sets_the_threads():
    quiet = import_paddle_after_configure()
    assert quiet.stdout.split() == [str(cpu_env.usable_cores())]
    if cpu_env.usable_cores() > 1:
        assert "OMP_NUM_THREADS" not in quiet.stderr, quiet.stderr
        # the user's own setting is the user's: Paddle's warning stays
        own = import_paddle_after_configure(OMP_NUM_THREADS="2")
        assert "WARNING: OMP_NUM_THREADS set to 2, not 1" in own.stderr
        assert "PLEASE USE OMP_NUM_THREADS WISELY." in own.stderr


def test_stderr_filter_drops_only_whole_matching_lines(capsys):
    with cpu_env.stderr_without(cpu_env.PADDLE_OMP_WARNING):
        print("WARNING: OMP_NUM_THREADS set to 2, not 1. The computation ...", file=sys.stderr)
        print("PLEASE USE OMP_NUM_THREADS WISELY.", file=sys.stderr)
        print("another line, PLEASE USE OMP_NUM_THREADS WISELY.", file=sys.stderr)
        sys.stderr.write("no newline yet")
    assert capsys.readouterr().err == ("another line, PLEASE USE OMP_NUM_THREADS WISELY.\n"
                                       "no newline yet")
