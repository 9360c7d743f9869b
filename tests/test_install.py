"""Installing gcseg never pulls a Paddle build the user did not choose, and a broken Paddle
installation is named in one line before Paddle loads.

Everything runs offline in fresh virtual environments (no system site-packages): gcseg's wheel is
built from a copy of this checkout, and every distribution it could need (Paddle's CPU and GPU
builds, numpy, opencv, ...) is a tiny local wheel holding only its metadata. pip resolves against
those exactly as it would against PyPI, so what it installs is what the real command installs.
"""
import base64
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, List

import pytest

from gcseg import paddle_install
from conftest import ROOT

TIMEOUT = 300
PADDLE_VERSIONS = {"paddlepaddle": "3.3.1", "paddlepaddle-gpu": "2.6.2"}


def record_line(path: str, text: str) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
    return f"{path},sha256={digest.decode()},{len(text.encode())}"


def write_metadata_wheel(directory: Path, name: str, version: str) -> Path:
    """A wheel of ``name`` holding only its ``.dist-info`` (what pip and importlib.metadata read)."""
    info = f"{re.sub(r'[-_.]+', '_', name)}-{version}.dist-info"
    files = {f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: gcseg-tests\n"
                              "Root-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [record_line(path, text) for path, text in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = "\n".join(record) + "\n"
    path = directory / f"{info[:-len('.dist-info')]}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name_in_wheel, text in files.items():
            wheel.writestr(name_in_wheel, text)
    return path


def gcseg_requirements(wheel: Path) -> List[str]:
    """The distribution names gcseg's wheel requires, its extras' included."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(archive.read(name).decode() for name in archive.namelist()
                        if name.endswith(".dist-info/METADATA"))
    return [re.match(r"Requires-Dist:\s*([A-Za-z0-9_.-]+)", line).group(1)
            for line in metadata.splitlines() if line.startswith("Requires-Dist:")]


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    """gcseg's wheel (built offline from a copy of this checkout) beside metadata-only wheels of
    both Paddle builds and of every other distribution gcseg's metadata names."""
    work = tmp_path_factory.mktemp("install")
    source, wheels = work / "source", work / "wheels"
    source.mkdir(), wheels.mkdir()
    for name in ("setup.py", "README.md", "requirements.txt", "requirements-cpu.txt",
                 "requirements-test.txt"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "gcseg", source / "gcseg", ignore=shutil.ignore_patterns("__pycache__"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--wheel-dir", str(wheels), str(source)])
    gcseg_wheel = next(wheels.glob("gcseg-*.whl"))
    for name in set(gcseg_requirements(gcseg_wheel)) - set(PADDLE_VERSIONS):
        write_metadata_wheel(wheels, name, "1.0")
    for name, version in PADDLE_VERSIONS.items():
        write_metadata_wheel(wheels, name, version)
    return wheels


def offline_environment() -> Dict[str, str]:
    """This process's environment without pip configuration or indexes: pip sees only the
    wheelhouse."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    environment.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1",
                       PYTHONDONTWRITEBYTECODE="1")
    return environment


def run(command: List[str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT,
                            env=offline_environment(), cwd=ROOT)
    if check:
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
    return result


def fresh_venv(path: Path) -> Path:
    """A virtual environment without system site-packages (and without pip: this process's pip
    installs into it with --python); returns its python."""
    run([sys.executable, "-m", "venv", "--without-pip", str(path)])
    return path / "bin" / "python"


def pip_install(python: Path, wheels: Path, arguments: List[str]) -> None:
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
         "--find-links", str(wheels), *arguments])


def installed(python: Path) -> Dict[str, str]:
    listing = run([str(python), "-c", "import importlib.metadata as m; "
                   "print('\\n'.join(d.metadata['Name'].lower() + ' ' + d.version "
                   "for d in m.distributions()))"]).stdout
    return dict(line.split(" ", 1) for line in listing.splitlines() if line)


def readme_gpu_recipe() -> List[List[str]]:
    """The README's Paddle 2.6 GPU command as pip argument lists, gcseg's ``-e .`` named ``gcseg``
    (installed from the wheelhouse)."""
    line = next(line for line in (ROOT / "README.md").read_text().splitlines()
                if line.startswith("pip install paddlepaddle-gpu=="))
    commands = [shlex.split(part) for part in line.split("&&")]
    assert all(command[:2] == ["pip", "install"] for command in commands), line
    return [["gcseg" if word == "." else word for word in command[2:] if word != "-e"]
            for command in commands]


def test_the_readme_gpu_recipe_leaves_only_paddlepaddle_gpu_installed(wheelhouse, tmp_path):
    python = fresh_venv(tmp_path / "venv")
    for arguments in readme_gpu_recipe():
        pip_install(python, wheelhouse, arguments)
    packages = installed(python)
    assert packages.get("paddlepaddle-gpu") == "2.6.2"
    assert "gcseg" in packages and "paddlepaddle" not in packages, packages


def test_the_cpu_extra_installs_the_cpu_paddle_only(wheelhouse, tmp_path):
    python = fresh_venv(tmp_path / "venv")
    pip_install(python, wheelhouse, ["gcseg[cpu]"])
    packages = installed(python)
    assert packages.get("paddlepaddle") == "3.3.1"
    assert "paddlepaddle-gpu" not in packages, packages


def run_script_and_import(python: Path) -> List[subprocess.CompletedProcess]:
    """A script (its Paddle check runs before it parses flags) and the library's first name
    that needs Paddle, in the environment of ``python``."""
    return [run([str(python), str(ROOT / "scripts" / "val.py"), "--config", "missing.yml"],
                check=False),
            run([str(python), "-c", "import gcseg; gcseg.Config"], check=False)]


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Failed, and one line of stderr holds every fragment (a script: exactly one error line)."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len([line for line in lines if line.startswith("error:")]) <= 1, result.stderr
    assert any(all(fragment in line for fragment in fragments) for line in lines), result.stderr


def test_without_any_paddle_scripts_and_import_say_which_paddle_to_install(wheelhouse, tmp_path):
    python = fresh_venv(tmp_path / "venv")
    pip_install(python, wheelhouse, ["gcseg"])
    assert not {"paddlepaddle", "paddlepaddle-gpu"} & set(installed(python))
    script, library = run_script_and_import(python)
    assert script.returncode == 2, script.stderr
    for result in (script, library):
        assert_one_line_error(result, "none is installed", 'pip install "paddlepaddle>=2.6,<3.4"',
                              "pip install paddlepaddle-gpu==2.6.2")
    assert "PaddleInstallError" in library.stderr


def test_with_both_paddle_builds_scripts_and_import_say_how_to_repair(wheelhouse, tmp_path):
    python = fresh_venv(tmp_path / "venv")
    pip_install(python, wheelhouse, ["gcseg", "paddlepaddle", "paddlepaddle-gpu"])
    script, library = run_script_and_import(python)
    assert script.returncode == 2, script.stderr
    for result in (script, library):
        assert_one_line_error(result, "both paddlepaddle 3.3.1 and paddlepaddle-gpu 2.6.2",
                              "pip uninstall -y paddlepaddle paddlepaddle-gpu")


@pytest.mark.parametrize("paddle, numpy, expected", [
    ("2.5.2", "1.26.4", "older than gcseg supports"),
    ("3.4.0", "2.1.0", "has not been tested"),
    ("0.0.0", "2.1.0", "has not been tested"),
    ("2.6.2", "2.0.1", 'numpy 2.0.1 is installed beside paddlepaddle 2.6.2, which needs numpy<2'),
    ("2.6.2", "1.26.4", None),
    ("3.0.0rc1", "2.1.0", None),
    ("3.3.1", "2.4.0", None),
])
def test_a_paddle_or_numpy_outside_the_tested_range_is_named(paddle, numpy, expected):
    warning = paddle_install.version_warning("paddlepaddle", paddle, numpy)
    if expected is None:
        assert warning is None
    else:
        assert expected in warning and paddle in warning and "\n" not in warning


def test_this_environment_passes_the_check():
    """The test environments hold exactly one Paddle, of a tested version, with its numpy."""
    assert len(paddle_install.installed_paddles()) == 1, paddle_install.installed_paddles()
    assert paddle_install.check_paddle() == []
