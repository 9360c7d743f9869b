"""Export a trained model for Paddle Inference (static program + deploy.yaml).

The ``gcseg-export`` command (gcseg/commands/export.py); ``--help`` lists its flags.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gcseg.commands.export import run  # noqa: E402

if __name__ == "__main__":
    run()
