"""Make PASCAL VOC 2012 "trainaug": SBD masks as VOC2012/SegmentationClassAug/*.png plus
VOC2012/ImageSets/Segmentation/aug.txt, the layout PaddleSeg's PascalVOC(mode=trainaug) reads.
Needs scipy to read SBD's .mat files.

    python scripts/prepare_voc.py data/VOCdevkit data/benchmark_RELEASE
"""
import argparse

from gcseg import cli


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("voc_root", help="VOCdevkit directory (holding VOC2012/)")
    parser.add_argument("sbd_root", help="SBD benchmark_RELEASE directory (holding dataset/cls)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args()
    from gcseg.data.prepare import prepare_voc_aug
    count = prepare_voc_aug(args.voc_root, args.sbd_root)
    print(f"aug.txt lists {count} SBD images; trainaug = train.txt + aug.txt")
    return 0


def run() -> None:
    """Entry point of gcseg-prepare-voc and scripts/prepare_voc.py."""
    cli.main_guard(main, needs_paddle=False)
