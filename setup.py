from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
# gcseg/commands/<name>.py runs as gcseg-<name> (underscores as dashes) and scripts/<name>.py
COMMANDS = ("train", "val", "predict", "export", "infer", "check_dataset", "convert_weights",
            "make_quickstart_data", "prepare_cityscapes", "prepare_voc")


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
    extras_require={
        "cpu": requirements("requirements-cpu.txt"),
        "test": requirements("requirements-test.txt"),
        # ONNX export (paddle2onnx) and ONNX Runtime; paddle2onnx 2.x reads Paddle 3's programs
        # and refuses to import beside Paddle 2.6, which needs 1.3 (extra onnx-paddle26).
        "onnx": ["paddle2onnx>=2.1,<3", "onnxruntime>=1.16"],
        "onnx-paddle26": ["paddle2onnx==1.3.1", "onnxruntime>=1.16"],
    },
    entry_points={"console_scripts": [
        f"gcseg-{name.replace('_', '-')} = gcseg.commands.{name}:run" for name in COMMANDS]},
    license="Apache-2.0",
)
