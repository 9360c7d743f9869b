"""Evaluate a trained model on the config's val_dataset.

The ``gcseg-val`` command (gcseg/commands/val.py); ``--help`` lists its flags.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gcseg.commands.val import run  # noqa: E402

if __name__ == "__main__":
    run()
