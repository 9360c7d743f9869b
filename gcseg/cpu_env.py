"""CPU set-up that must happen before Paddle is imported.

Measured on this project's 2-core AMD machine: Paddle uses one thread unless told, and the MKL
inside Paddle's CPU wheel takes a slow code path on AMD processors unless ``MKL_DEBUG_CPU_TYPE=5``
is set before it loads (GCNet-R50 forward 6.0 s -> 1.56 s). Scripts call :func:`configure`
first thing. A user's own settings always win; ``--no_cpu_tuning`` or ``GCSEG_NO_CPU_TUNING=1``
turns the set-up off.
"""
import os
import sys
import warnings
from typing import Dict, Optional, Sequence

OPT_OUT_FLAG = "--no_cpu_tuning"
OPT_OUT_ENV = "GCSEG_NO_CPU_TUNING"


def cpu_vendor() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


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


def configure(argv: Optional[Sequence[str]] = None, announce: bool = True) -> Dict[str, str]:
    """Set the recommended CPU variables the user has not set; returns what was set."""
    argv = sys.argv if argv is None else argv
    # Paddle 3 warns at every import that the C++ extension builder lacks ccache; gcseg builds
    # no extensions, so the warning is noise for our users.
    warnings.filterwarnings("ignore", message="No ccache found")
    if OPT_OUT_FLAG in argv or os.environ.get(OPT_OUT_ENV, "") not in ("", "0"):
        return {}
    applied = {key: value for key, value in recommended_settings().items()
               if key not in os.environ}
    os.environ.update(applied)
    is_first_rank = os.environ.get("PADDLE_TRAINER_ID", "0") == "0"
    if announce and applied and is_first_rank:
        late = " (paddle was already imported: takes effect in new processes only)" \
            if "paddle" in sys.modules else ""
        described = ", ".join(f"{key}={value}" for key, value in applied.items())
        print(f"gcseg cpu setup: {described} ({cpu_vendor()}, {usable_cores()} cores){late}; "
              f"opt out with {OPT_OUT_FLAG} or {OPT_OUT_ENV}=1", file=sys.stderr)
    return applied
