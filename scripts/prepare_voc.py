"""Make PASCAL VOC 2012 "trainaug" from SBD masks (PaddleSeg's PascalVOC trainaug layout).

The ``gcseg-prepare-voc`` command (gcseg/commands/prepare_voc.py); ``--help`` lists its flags.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gcseg.commands.prepare_voc import run  # noqa: E402

if __name__ == "__main__":
    run()
