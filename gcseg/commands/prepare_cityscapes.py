"""Make Cityscapes *_gtFine_labelTrainIds.png from *_gtFine_labelIds.png (19 classes, 255 ignore).

    python scripts/prepare_cityscapes.py data/cityscapes
"""
import argparse

from gcseg import cli


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="Cityscapes root holding leftImg8bit/ and gtFine/")
    parser.add_argument("--overwrite", action="store_true", help="rewrite existing outputs")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args()
    from gcseg.data.prepare import convert_cityscapes
    written = convert_cityscapes(args.root, overwrite=args.overwrite)
    print(f"wrote {written} labelTrainIds files under {args.root}/gtFine")
    return 0


def run() -> None:
    """Entry point of gcseg-prepare-cityscapes and scripts/prepare_cityscapes.py."""
    cli.main_guard(main, needs_paddle=False)
