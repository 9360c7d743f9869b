"""Convert model weights between .pdparams and .safetensors (the direction follows the extensions).

The ``gcseg-convert-weights`` command (gcseg/commands/convert_weights.py);
``--help`` lists its flags.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gcseg.commands.convert_weights import run  # noqa: E402

if __name__ == "__main__":
    run()
