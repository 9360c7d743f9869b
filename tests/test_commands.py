"""The console commands (setup.py's entry points) and scripts/*.py run the same functions, and
set up the CPU environment before anything imports Paddle."""
import ast
import importlib
import os
import platform
import subprocess
import sys

import pytest

from conftest import ROOT


def setup_commands():
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "COMMANDS":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py defines no COMMANDS")


COMMANDS = setup_commands()


def test_every_command_has_its_entry_point_and_its_script():
    modules = {path.stem for path in (ROOT / "gcseg" / "commands").glob("*.py")} - {"__init__"}
    assert set(COMMANDS) == modules
    for name in COMMANDS:
        assert callable(importlib.import_module(f"gcseg.commands.{name}").run)
        script = (ROOT / "scripts" / f"{name}.py").read_text(encoding="utf-8")
        assert f"from gcseg.commands.{name} import run" in script


def test_importing_the_commands_does_not_import_paddle():
    """Paddle reads the CPU variables once, when it loads; run() sets them first."""
    code = ("import sys\n" + "".join(f"import gcseg.commands.{name}\n" for name in COMMANDS)
            + "print('paddle' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("name, flag", [("val", "--model_path"), ("train", "--do_eval")])
def test_the_entry_point_sets_up_the_cpu_and_parses_the_flags(name, flag):
    env = {key: value for key, value in os.environ.items()
           if key not in ("OMP_NUM_THREADS", "GCSEG_NO_CPU_TUNING")}
    code = (f"import sys; sys.argv = ['gcseg-{name}', '--help']; "
            f"from gcseg.commands.{name} import run; run()")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: gcseg-{name}") and flag in done.stdout
    setup_line = next(line for line in done.stderr.splitlines() if "gcseg cpu setup:" in line)
    assert "OMP_NUM_THREADS=" in setup_line
    if platform.libc_ver()[0] == "glibc":  # freed memory kept in the heap for training only
        assert ("M_MMAP_MAX=0" in setup_line) == (name == "train")
        assert ("M_TRIM_THRESHOLD=131072" in setup_line) == (name != "train")
