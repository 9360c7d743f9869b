"""Benchmark gcseg against PaddleSeg 2.8 (the oracle) in one process, same weights and inputs.

    python scripts/benchmark.py --config C [--input_size W H] [--vs paddleseg]
        [--json out.json] [--repeats N] [--no_deploy] [--no_memory]
        [--val_images N [--val_repeats R]] [--train_iters N]

Prints a markdown table with the gcseg/PaddleSeg ratio per row.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gcseg import cli  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.config_parser(__doc__)
    parser.add_argument("--input_size", nargs=2, type=int, default=(512, 256),
                        metavar=("W", "H"))
    parser.add_argument("--vs", choices=("paddleseg",), default="paddleseg")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--no_deploy", action="store_true",
                        help="skip the Paddle Inference fp32/bf16 and ONNX Runtime rows "
                             "(the ONNX rows need gcseg[onnx])")
    parser.add_argument("--no_memory", action="store_true",
                        help="skip the peak-memory rows (child processes; with the deploy "
                             "rows and gcseg[onnx]: ONNX Runtime vs Paddle Inference too)")
    parser.add_argument("--val_images", type=int, default=0,
                        help="add the whole-process rows: scripts/val.py vs PaddleSeg's "
                             "evaluate on this many generated images of --input_size")
    parser.add_argument("--val_repeats", type=int, default=1)
    parser.add_argument("--train_iters", type=int, default=0,
                        help="add the training data-pipeline row: reader_cost / batch_cost "
                             "over this many real training steps (2 or more)")
    parser.add_argument("--work_dir", default="output/benchmark")
    return parser


def main() -> int:
    args = get_args_parser().parse_args()
    from benchmarks.compare import format_table, run_benchmark, write_json

    cli.select_device(args)
    result = run_benchmark(args.config, tuple(args.input_size), args.repeats,
                           opts=args.opts or [], deploy=not args.no_deploy,
                           memory=not args.no_memory, work_dir=args.work_dir,
                           val_images=args.val_images, val_repeats=args.val_repeats,
                           train_iters=args.train_iters)
    print(format_table(result))
    print(f"load average during the run: {result['meta']['load_average']}")
    if args.json:
        write_json(result, args.json)
    return 0


if __name__ == "__main__":
    cli.run(main)
