"""Train a model from a config (PaddleSeg's tools/train.py flags).

The ``gcseg-train`` command (gcseg/commands/train.py); ``--help`` lists its flags.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gcseg.commands.train import run  # noqa: E402

if __name__ == "__main__":
    run()
