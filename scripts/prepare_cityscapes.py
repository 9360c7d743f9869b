"""Make Cityscapes *_gtFine_labelTrainIds.png from *_gtFine_labelIds.png (19 classes, 255 ignore).

The ``gcseg-prepare-cityscapes`` command (gcseg/commands/prepare_cityscapes.py);
``--help`` lists its flags.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gcseg.commands.prepare_cityscapes import run  # noqa: E402

if __name__ == "__main__":
    run()
