"""Export a trained model for Paddle Inference (static program + deploy.yml).

    python scripts/export.py --config C --model_path M --save_dir D
        [--input_shape N C H W] [--output_op argmax|softmax|none]

BatchNorm is folded and resizes are built from matmuls, so the program runs under Paddle
Inference's default CPU configuration (oneDNN on). Shapes stay dynamic unless --input_shape.
"""
import argparse
import os

from gcseg import cli


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.config_parser(__doc__)
    parser.add_argument("--model_path", default=None, help="trained weights (.pdparams or "
                                                           ".safetensors)")
    parser.add_argument("--save_dir", default="output/inference_model")
    parser.add_argument("--input_shape", nargs=4, type=int, default=None,
                        metavar=("N", "C", "H", "W"), help="fix the input shape (default: "
                                                           "dynamic batch, height and width)")
    parser.add_argument("--output_op", choices=("argmax", "softmax", "none"), default="argmax")
    return parser


def main() -> int:
    args = get_args_parser().parse_args()
    from gcseg.deploy.export import export_from_config

    cfg = cli.config_on_device(args)
    paths = export_from_config(cfg, args.model_path, args.save_dir,
                               input_shape=args.input_shape, output_op=args.output_op)
    print(f"exported to {args.save_dir}: " + ", ".join(os.path.basename(p)
                                                        for p in paths.values()))
    return 0


def run() -> None:
    """Entry point of gcseg-export and scripts/export.py."""
    cli.run(main)
