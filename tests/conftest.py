"""Test session set-up: the CPU environment must be configured before Paddle is imported."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from gcseg.cpu_env import configure  # noqa: E402

configure(argv=[], announce=False)
