from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def requirements(name: str) -> list:
    lines = (ROOT / name).read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


setup(
    name="gcseg",
    version="0.1.0",
    description="GCNet semantic segmentation on PaddlePaddle: train, evaluate, deploy and "
                "reproduce GCNet",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["gcseg", "gcseg.*"]),
    python_requires=">=3.9",
    install_requires=requirements("requirements.txt"),
    extras_require={"cpu": requirements("requirements-cpu.txt"),
                    "test": requirements("requirements-test.txt")},
    license="Apache-2.0",
)
