"""Check a config's train and val datasets before training on them.

The ``gcseg-check-dataset`` command (gcseg/commands/check_dataset.py); ``--help`` lists its flags.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gcseg.commands.check_dataset import run  # noqa: E402

if __name__ == "__main__":
    run()
