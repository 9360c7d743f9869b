"""Predict segmentation maps for images with a trained model.

The ``gcseg-predict`` command (gcseg/commands/predict.py); ``--help`` lists its flags.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gcseg.commands.predict import run  # noqa: E402

if __name__ == "__main__":
    run()
