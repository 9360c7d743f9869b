"""Generate the built-in quickstart dataset (procedural street scenes, Cityscapes layout).

The ``gcseg-make-quickstart-data`` command (gcseg/commands/make_quickstart_data.py);
``--help`` lists its flags.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gcseg.commands.make_quickstart_data import run  # noqa: E402

if __name__ == "__main__":
    run()
