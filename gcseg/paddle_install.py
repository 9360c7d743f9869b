"""Which Paddle is installed, and whether gcseg runs on it, read from the installed
distributions' metadata before Paddle is imported.

``paddlepaddle`` (CPU) and ``paddlepaddle-gpu`` both install the one ``paddle`` package, and pip
treats them as unrelated distributions: installing one beside the other unpacks two builds (often
of two major versions) into the same directory, and uninstalling either leaves it half removed.
So gcseg depends on neither (``pip install -e ".[cpu]"`` pulls the CPU build; GPU users install
their Paddle first), and this module says in one line what to do when no Paddle, two Paddles, or
a Paddle or numpy gcseg has not been tested with is installed.
"""
import functools
import importlib.metadata
import importlib.util
import re
from typing import Dict, List, Optional, Tuple

from gcseg.errors import GcsegError

CPU_DISTRIBUTION = "paddlepaddle"
GPU_DISTRIBUTION = "paddlepaddle-gpu"
OLDEST_SUPPORTED = (2, 6)
NEWEST_TESTED = (3, 3)
SUPPORTED_TEXT = "2.6 or 3.x up to 3.3 (tested on 2.6.2 and 3.3.1)"
INSTALL_HINT = (f"for CPU: pip install \"paddlepaddle>=2.6,<3.4\" (pip install -e \".[cpu]\" in a "
                f"gcseg clone); for NVIDIA GPUs: pip install paddlepaddle-gpu==2.6.2 \"numpy<2\" "
                f"\"opencv-python-headless<4.11\", or a Paddle 3.x GPU wheel from Paddle's own "
                f"index (README, Installation)")


class PaddleInstallError(GcsegError, ImportError):
    """No usable Paddle installation: none, or the CPU and GPU builds over each other."""


def installed_version(distribution: str) -> Optional[str]:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def installed_paddles() -> Dict[str, str]:
    """The Paddle distributions pip installed, by name: {"paddlepaddle-gpu": "2.6.2"}."""
    versions = {name: installed_version(name) for name in (CPU_DISTRIBUTION, GPU_DISTRIBUTION)}
    return {name: version for name, version in versions.items() if version is not None}


def release(version: str) -> Tuple[int, ...]:
    """The leading numbers of a version string: "3.0.0rc1" -> (3, 0, 0), "2.6.2.post1" -> (2, 6, 2)."""
    numbers = re.match(r"\d+(?:\.\d+)*", version.strip())
    return tuple(int(part) for part in numbers.group(0).split(".")) if numbers else ()


def install_problem(paddles: Dict[str, str], paddle_importable: bool) -> Optional[str]:
    """The one-line reason gcseg cannot use this installation's Paddle, or None.

    A ``paddle`` package without distribution metadata (a source build) is taken as it is."""
    if len(paddles) > 1:
        found = " and ".join(f"{name} {version}" for name, version in sorted(paddles.items()))
        return (f"both {found} are installed; they overwrite each other's files in the same "
                f"paddle/ directory. Repair: pip uninstall -y {CPU_DISTRIBUTION} "
                f"{GPU_DISTRIBUTION}, then install one of them ({INSTALL_HINT})")
    if not paddles and not paddle_importable:
        return f"gcseg needs PaddlePaddle {SUPPORTED_TEXT}, and none is installed: {INSTALL_HINT}"
    return None


def version_warning(name: str, version: str, numpy_version: Optional[str]) -> Optional[str]:
    """One line when gcseg was not made for this Paddle: older than 2.6, a version between or
    beyond the tested ones (Paddle's development builds call themselves 0.0.0), or Paddle 2.6
    beside numpy 2 (it is built against numpy 1)."""
    number = release(version)[:2]
    if (0, 0) < number < OLDEST_SUPPORTED:
        return f"{name} {version} is older than gcseg supports ({SUPPORTED_TEXT}); {INSTALL_HINT}"
    if number > NEWEST_TESTED or number == (0, 0) or OLDEST_SUPPORTED < number < (3, 0):
        return (f"{name} {version} has not been tested with gcseg, which supports "
                f"{SUPPORTED_TEXT}; if something fails, install a tested version")
    if number < (3, 0) and numpy_version and release(numpy_version)[:1] >= (2,):
        return (f"numpy {numpy_version} is installed beside {name} {version}, which needs "
                f"numpy<2: pip install \"numpy<2\" \"opencv-python-headless<4.11\"")
    return None


@functools.lru_cache(maxsize=1)
def _inspect() -> Tuple[Optional[str], Tuple[str, ...]]:
    paddles = installed_paddles()
    problem = install_problem(paddles, importlib.util.find_spec("paddle") is not None)
    numpy_version = installed_version("numpy")
    warnings = (version_warning(name, version, numpy_version) for name, version in paddles.items())
    return problem, tuple(line for line in warnings if line)


def check_paddle() -> List[str]:
    """Raise :class:`PaddleInstallError` when no usable Paddle is installed; otherwise return the
    version warnings (empty when all is as tested). Reads metadata only: Paddle is not imported."""
    problem, warnings = _inspect()
    if problem:
        raise PaddleInstallError(problem)
    return list(warnings)
