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

from gcseg import cli


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
    from gcseg.models.weights import convert_weights
    count = convert_weights(args.input, args.output, force=args.force,
                            trust_pickle=args.trust_pickle)
    print(f"wrote {count} tensors to {args.output} (verified against {args.input})")
    return 0


def run() -> None:
    """Entry point of gcseg-convert-weights and scripts/convert_weights.py."""
    cli.run(main)
