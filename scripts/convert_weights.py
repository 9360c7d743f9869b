"""Convert model weights to .pdparams or .safetensors (the formats follow the extensions).

    python scripts/convert_weights.py IN OUT [--force] [--trust_pickle]

IN is a .pdparams, .safetensors or a PyTorch .pth/.pt checkpoint (MMSegmentation's segmentor
checkpoints, MMCV's ImageNet backbones; both torch formats). A .pth is read without torch and
without running its pickle code, and its MMSeg/MMCV keys are renamed to gcseg's, so OUT loads
into ``GCNet(ResNet*_v1c, head_style: mmseg)`` (or the backbone alone) as it is.

A .pdparams file is a Python pickle, and unpickling can run arbitrary code. This script reads
.pdparams with a restricted unpickler that rebuilds numpy arrays and plain containers only and
refuses anything else, so turning a .pdparams from an untrusted source into .safetensors (which
holds raw tensors and no code) is safe. ``--trust_pickle`` reads with ``paddle.load`` instead,
for files you trust that the restricted reader refuses. The output is written atomically, read
back and compared tensor by tensor with the input; OUT is never overwritten without --force.
"""
import argparse
import os
import pickle
import sys
from typing import Dict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gcseg import cpu_env  # noqa: E402

cpu_env.configure()

import numpy as np  # noqa: E402

from gcseg import cli  # noqa: E402
from gcseg.errors import CheckpointError, UsageError  # noqa: E402

# What a state dict pickled by paddle.save (Paddle 2.x/3.x, numpy 1.x/2.x) needs to rebuild.
SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
}


class ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays; any other class or function
    (the way a malicious pickle runs code) is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) not in SAFE_GLOBALS:
            raise CheckpointError(f"{self.path}: refuses to unpickle {module}.{name} (not a "
                                  "plain array; a .pdparams pickle can run code - pass "
                                  "--trust_pickle only if you trust where the file came from)")
        return super().find_class(module, name)

    def __init__(self, file, path: str) -> None:
        super().__init__(file)
        self.path = path


def read_pdparams_safely(path: str) -> Dict[str, np.ndarray]:
    if not os.path.isfile(path):
        raise CheckpointError(f"weights file not found: {path}")
    try:
        with open(path, "rb") as file:
            raw = ArraysOnlyUnpickler(file, path).load()
    except CheckpointError:
        raise
    except Exception as error:  # noqa: BLE001 - a corrupt pickle raises many types
        raise CheckpointError(f"{path}: cannot read weights, the file is truncated or corrupt "
                              f"({type(error).__name__}: {str(error)[:120]})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(raw).__name__}")
    state = {key: value for key, value in raw.items() if isinstance(value, np.ndarray)}
    if not state:
        raise CheckpointError(f"{path}: the file holds no tensors")
    return state


def read_weights(path: str, trust_pickle: bool) -> Dict[str, np.ndarray]:
    from gcseg.models.weights import load_state_dict_file
    if path.lower().endswith(".pdparams") and not trust_pickle:
        return read_pdparams_safely(path)
    return load_state_dict_file(path)


def verify_round_trip(source: Dict[str, np.ndarray], out: str) -> None:
    """``out`` read back holds exactly ``source``: same keys, dtypes, shapes and bytes."""
    from gcseg.models.weights import load_state_dict_file
    written = load_state_dict_file(out)
    if written.keys() != source.keys():
        differ = sorted(written.keys() ^ source.keys())[:3]
        raise CheckpointError(f"{out}: round trip changed the keys (e.g. {differ})")
    for key, value in source.items():
        back = written[key]
        if back.dtype != value.dtype or back.shape != value.shape or \
                back.tobytes() != np.ascontiguousarray(value).tobytes():
            raise CheckpointError(f"{out}: round trip changed {key} ({value.dtype}{list(value.shape)}"
                                  f" -> {back.dtype}{list(back.shape)})")


def convert(src: str, out: str, force: bool = False, trust_pickle: bool = False) -> int:
    """Write ``src``'s tensors to ``out``; returns how many. Removes ``out`` if it fails the
    round-trip check."""
    from gcseg.models.weights import READABLE_EXTENSIONS, WEIGHT_EXTENSIONS, save_weights
    for path, allowed in ((src, READABLE_EXTENSIONS), (out, WEIGHT_EXTENSIONS)):
        if not path.lower().endswith(allowed):
            raise UsageError(f"{path}: expected a {', '.join(allowed)} file name")
    if os.path.abspath(src) == os.path.abspath(out):
        raise UsageError(f"{out}: the output is the input")
    if os.path.exists(out) and not force:
        raise UsageError(f"{out} exists; pass --force to overwrite it")
    state = read_weights(src, trust_pickle)
    save_weights(state, out)
    try:
        verify_round_trip(state, out)
    except CheckpointError:
        os.remove(out)
        raise
    return len(state)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="a .pdparams, .safetensors or torch .pth/.pt file")
    parser.add_argument("output", help="a .pdparams or .safetensors file name")
    parser.add_argument("--force", action="store_true", help="overwrite the output")
    parser.add_argument("--trust_pickle", action="store_true",
                        help="read .pdparams with paddle.load (runs any code the pickle holds)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return parser


def main() -> int:
    args = get_args_parser().parse_args()
    count = convert(args.input, args.output, force=args.force, trust_pickle=args.trust_pickle)
    print(f"wrote {count} tensors to {args.output} (verified against {args.input})")
    return 0


if __name__ == "__main__":
    cli.main_guard(main)
