"""Make Cityscapes *_gtFine_labelTrainIds.png from *_gtFine_labelIds.png (19 classes, 255 ignore).

    python scripts/prepare_cityscapes.py data/cityscapes
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gcseg.cli import main_guard  # noqa: E402


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


if __name__ == "__main__":
    main_guard(main, needs_paddle=False)
