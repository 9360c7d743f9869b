"""Generate the built-in quickstart dataset (procedural street scenes, Cityscapes layout).

    python scripts/make_quickstart_data.py data/quickstart --num-train 64 --num-val 16
"""
import argparse

from gcseg import cli


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="data/quickstart", help="output directory")
    parser.add_argument("--num-train", type=int, default=64)
    parser.add_argument("--num-val", type=int, default=16)
    parser.add_argument("--size", type=int, nargs=2, default=(256, 128), metavar=("W", "H"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args()
    from gcseg.data.quickstart import make_quickstart_dataset
    root = make_quickstart_dataset(args.root, num_train=args.num_train, num_val=args.num_val,
                                   size=tuple(args.size), seed=args.seed)
    print(f"quickstart dataset ready in {root} (use type: Cityscapes, dataset_root: {root})")
    return 0


def run() -> None:
    """Entry point of gcseg-make-quickstart-data and scripts/make_quickstart_data.py."""
    cli.main_guard(main, needs_paddle=False)
