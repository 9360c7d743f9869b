"""CPU set-up that must happen before Paddle is imported.

Measured on this project's 2-core AMD machine: Paddle uses one thread unless told, and the MKL
inside Paddle's CPU wheel takes a slow code path on AMD processors unless
``MKL_DEBUG_CPU_TYPE=5`` is set before it loads (GCNet-R50 forward 6.0 s -> 1.56 s). glibc's
malloc hands every freed block above its mmap threshold back to the system, so a training step,
which frees and allocates gigabytes of activations, page-faults them all in again. Keeping them
in the heap, on a GCNet-R50 step (batch 2, 512x256; six alternating pairs of whole processes,
2026-11-23): minor faults 3.0M -> 0.8M and system time 0.41-0.58x in every pair, step time
0.87-1.02x (median 0.93x), peak RSS +7-17% (median +12%). Only training keeps them: evaluation
gains no measured speed from them, and a val.py process (GCNet-R50, 512x256, 4 images, Intel
Xeon, 2026-11-26) peaked at 1101 MB with them, 1176 MB with glibc's defaults and 1015 MB with
``RETURNING_MALLOC_SETTINGS``, which the other commands get (PaddleSeg's val.py: 1056-1058 MB).
Scripts call :func:`configure` first thing. A user's own settings always win;
``--no_cpu_tuning`` or ``GCSEG_NO_CPU_TUNING=1`` turns the set-up off.
"""
import contextlib
import ctypes
import importlib.abc
import importlib.util
import os
import platform
import sys
import warnings
from typing import Dict, Iterator, Optional, Sequence, Tuple

OPT_OUT_FLAG = "--no_cpu_tuning"
OPT_OUT_ENV = "GCSEG_NO_CPU_TUNING"
# (mallopt parameter, its number in glibc's malloc.h, value, the variable a user sets it with)
MALLOC_SETTINGS = (("M_MMAP_MAX", -4, 0, "MALLOC_MMAP_MAX_"),
                   ("M_TRIM_THRESHOLD", -1, 1 << 30, "MALLOC_TRIM_THRESHOLD_"))
# For every other command: glibc's default trim threshold, but fixed. Setting it stops glibc from
# raising its mmap threshold each time a large block is freed, which otherwise moves later large
# blocks into the heap, where they fragment it (GCNet-R50 val.py peak: 1176 MB -> 1015 MB).
RETURNING_MALLOC_SETTINGS = (("M_TRIM_THRESHOLD", -1, 128 * 1024, "MALLOC_TRIM_THRESHOLD_"),)
# What Paddle prints on stderr at import whenever OMP_NUM_THREADS > 1 (paddle/base/__init__.py,
# 2.6 and 3.x): a caution about data parallelism and OpenBLAS builds, neither of which applies to
# the threads configure() sets.
PADDLE_OMP_WARNING = ("WARNING: OMP_NUM_THREADS set to ", "PLEASE USE OMP_NUM_THREADS WISELY.")


# Either flag means the CPU computes in bfloat16 natively (AVX512-BF16 dot products, AMX tiles).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpuinfo_field(name: str, cpuinfo: str = "/proc/cpuinfo") -> str:
    """The value of the first ``name : value`` line of ``cpuinfo`` ("" when absent)."""
    try:
        with open(cpuinfo, encoding="utf-8") as lines:
            for line in lines:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return ""


def cpu_vendor() -> str:
    return cpuinfo_field("vendor_id") or "unknown"


def cpu_supports_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU has AVX512-BF16 or AMX-BF16 (``flags`` of ``cpuinfo``)."""
    flags = set(cpuinfo_field("flags", cpuinfo).split())
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_threads() -> int:
    """The thread count the CPU set-up chose (``OMP_NUM_THREADS``), else every usable core."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else usable_cores()


def processes_per_node() -> int:
    """Processes sharing this machine under ``paddle.distributed.launch`` (1 otherwise)."""
    for key in ("PADDLE_LOCAL_SIZE", "PADDLE_TRAINERS_NUM"):
        value = os.environ.get(key, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def recommended_settings() -> Dict[str, str]:
    settings = {"OMP_NUM_THREADS": str(max(1, usable_cores() // processes_per_node()))}
    if cpu_vendor() == "AuthenticAMD":
        settings["MKL_DEBUG_CPU_TYPE"] = "5"
    return settings


def malloc_environment() -> Dict[str, str]:
    """``MALLOC_SETTINGS`` as the glibc variables that set them when a process starts."""
    return {variable: str(value) for _, _, value, variable in MALLOC_SETTINGS}


def user_tunes_malloc() -> bool:
    return (any(variable in os.environ for variable in malloc_environment())
            or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""))


# glibc's own values of MALLOC_SETTINGS' parameters (malloc.h: DEFAULT_MMAP_MAX,
# DEFAULT_TRIM_THRESHOLD), for the spans where gcseg lifts its setting again.
MALLOC_DEFAULTS = {"M_MMAP_MAX": 65536, "M_TRIM_THRESHOLD": 128 * 1024}
_MALLOC_APPLIED: Dict[str, str] = {}


def _glibc(function: str):
    """glibc's ``function`` (``mallopt``, ``malloc_trim``), or None (another C library, another
    system)."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return getattr(ctypes.CDLL(None), function)
    except (OSError, AttributeError):
        return None


def tune_malloc(settings: Sequence[Tuple[str, int, int, str]] = MALLOC_SETTINGS
                ) -> Dict[str, str]:
    """Apply ``settings`` (``MALLOC_SETTINGS``: keep freed memory in the heap, for training;
    ``RETURNING_MALLOC_SETTINGS``: hand it back, for the rest) to this process's glibc malloc
    (not on other C libraries, not where the user tunes malloc); returns what was set."""
    mallopt = _glibc("mallopt")
    if mallopt is None or user_tunes_malloc():
        return {}
    _MALLOC_APPLIED.update({name: str(value) for name, number, value, _ in settings
                            if mallopt(number, value) == 1})
    return dict(_MALLOC_APPLIED)


@contextlib.contextmanager
def freed_memory_returned() -> Iterator[None]:
    """glibc's default malloc inside, where :func:`tune_malloc` keeps freed memory in the heap:
    large blocks mapped and unmapped on their own. For one-off work that allocates and frees
    large transient buffers (a runtime loading a model): kept in the heap they fragment it and
    raise the process's peak (ONNX Runtime loading GCNet-R50: +760 MB instead of +470)."""
    mallopt = _glibc("mallopt")
    kept = [(number, value, MALLOC_DEFAULTS[name]) for name, number, value, _ in MALLOC_SETTINGS
            if _MALLOC_APPLIED.get(name) == str(value)]
    if mallopt is None or not kept:
        yield
        return
    for number, _, default in kept:
        mallopt(number, default)
    try:
        yield
    finally:
        for number, value, _ in kept:
            mallopt(number, value)


def return_freed_memory() -> bool:
    """Hand the heap's free pages back to the system (glibc ``malloc_trim``); False where the
    C library has no such call. For after a large object is dropped: freed blocks between
    live ones otherwise stay in the process's RSS, and the next large object adds to them."""
    malloc_trim = _glibc("malloc_trim")
    return malloc_trim is not None and bool(malloc_trim(0))


class _LineFilter:
    """``sys.stderr`` minus whole lines starting with ``dropped``, while ``active``; after that
    a plain pass-through (Paddle's loggers keep the stream they saw while it was imported)."""

    def __init__(self, target, dropped: Tuple[str, ...]) -> None:
        self.target, self.dropped, self.pending, self.active = target, dropped, "", True

    def write(self, text: str) -> int:
        if not self.active:
            return self.target.write(text)
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            if not line.startswith(self.dropped):
                self.target.write(line + "\n")
        return len(text)

    def close_filter(self) -> None:
        self.active = False
        self.target.write(self.pending)
        self.pending = ""
        self.target.flush()

    def __getattr__(self, name: str):
        return getattr(self.target, name)  # flush, fileno, isatty, encoding, ...


@contextlib.contextmanager
def stderr_without(dropped: Tuple[str, ...]) -> Iterator[None]:
    """Within the block, lines written to ``sys.stderr`` that start with ``dropped`` vanish."""
    stream = _LineFilter(sys.stderr, dropped)
    try:
        with contextlib.redirect_stderr(stream):
            yield
    finally:
        stream.close_filter()


class _QuietPaddleImport(importlib.abc.MetaPathFinder):
    """Imports ``paddle`` (once, whenever that happens) without ``PADDLE_OMP_WARNING``."""

    def find_spec(self, name, path=None, target=None):
        if name != "paddle":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            load = spec.loader.exec_module

            def exec_module(module) -> None:
                with stderr_without(PADDLE_OMP_WARNING):
                    load(module)
            spec.loader.exec_module = exec_module
        return spec


def silence_paddle_omp_warning() -> None:
    """Drop Paddle's import-time OMP_NUM_THREADS warning (once Paddle has been imported there is
    nothing left to drop)."""
    if "paddle" not in sys.modules and \
            not any(isinstance(finder, _QuietPaddleImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietPaddleImport())


def configure(argv: Optional[Sequence[str]] = None, announce: bool = True,
              training: bool = True) -> Dict[str, str]:
    """Set the recommended CPU variables the user has not set and tune malloc (for training
    or for the other commands); returns what was set."""
    argv = sys.argv if argv is None else argv
    # Paddle 3 warns at every import that the C++ extension builder lacks ccache; gcseg builds
    # no extensions, so the warning is noise for our users.
    warnings.filterwarnings("ignore", message="No ccache found")
    if OPT_OUT_FLAG in argv or os.environ.get(OPT_OUT_ENV, "") not in ("", "0"):
        return {}
    variables = {key: value for key, value in recommended_settings().items()
                 if key not in os.environ}
    os.environ.update(variables)
    if "OMP_NUM_THREADS" in variables:
        silence_paddle_omp_warning()
    applied = {**variables,
               **tune_malloc(MALLOC_SETTINGS if training else RETURNING_MALLOC_SETTINGS)}
    is_first_rank = os.environ.get("PADDLE_TRAINER_ID", "0") == "0"
    if announce and applied and is_first_rank:
        late = " (paddle was already imported: the variables take effect in new processes " \
               "only)" if variables and "paddle" in sys.modules else ""
        described = ", ".join(f"{key}={value}" for key, value in applied.items())
        print(f"gcseg cpu setup: {described} ({cpu_vendor()}, {usable_cores()} cores){late}; "
              f"opt out with {OPT_OUT_FLAG} or {OPT_OUT_ENV}=1", file=sys.stderr)
    return applied
