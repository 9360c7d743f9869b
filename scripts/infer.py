"""Segment images with an exported model (scripts/export.py) through Paddle Inference or ONNX
Runtime, with the flags of PaddleSeg's deploy/python/infer.py.

The ``gcseg-infer`` command (gcseg/commands/infer.py); ``--help`` lists its flags.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gcseg.commands.infer import run  # noqa: E402

if __name__ == "__main__":
    run()
