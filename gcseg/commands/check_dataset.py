"""Check a config's train and val datasets before training on them.

    python scripts/check_dataset.py --config C [--opts KEY=VALUE ...] [--no_progress]

Reports every missing file, unreadable or corrupt image/label, image/label size mismatch, label
value that is neither a class nor the ignore index, and duplicate entry, then each dataset's
class pixel histogram. Exit code 0 when the datasets are clean, 1 when problems were found,
2 when the config itself is wrong.
"""
import argparse

from gcseg import cli

PROBLEMS_FOUND = 1


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.config_parser(__doc__)
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def main() -> int:
    args = get_args_parser().parse_args()
    from gcseg.data.check import check_config

    cfg = cli.load_config(args, load_pretrained=False)
    reports = check_config(cfg, progress=not args.no_progress)
    print("\n\n".join(report.format() for report in reports))
    return 0 if all(report.ok for report in reports) else PROBLEMS_FOUND


def run() -> None:
    """Entry point of gcseg-check-dataset and scripts/check_dataset.py."""
    cli.run(main)
