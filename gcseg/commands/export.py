"""Export a trained model for Paddle Inference (static program + deploy.yaml) or as ONNX.

    python scripts/export.py --config C --model_path M --save_dir D
        [--input_shape N 3 H W] [--output_op argmax|softmax|none] [--for_fd]
        [--format paddle|onnx] [--opset 17]

BatchNorm is folded and resizes are built from matmuls, so the program runs under Paddle
Inference's default CPU configuration (oneDNN on). Shapes stay dynamic unless --input_shape
fixes them (-1 keeps one dynamic: --input_shape -1 3 512 1024). With --model_path the config's
pretrained weights are not loaded (nor downloaded). --format onnx converts that program with
paddle2onnx to model.onnx (pip install "gcseg[onnx]").
"""
import argparse
import os

from gcseg import cli


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.config_parser(__doc__)
    parser.add_argument("--model_path", default=None, help="trained weights (.pdparams or "
                                                           ".safetensors)")
    parser.add_argument("--save_dir", default="output/inference_model")
    parser.add_argument("--input_shape", nargs="+", type=int, default=None, metavar="SIZE",
                        help="N 3 H W: fix the input shape, -1 for a dynamic size (default: "
                             "dynamic batch, height and width)")
    parser.add_argument("--output_op", choices=("argmax", "softmax", "none"), default="argmax")
    parser.add_argument("--for_fd", action="store_true",
                        help="FastDeploy's file names: inference.* and inference.yml "
                             "(default: model.* and deploy.yaml)")
    parser.add_argument("--format", choices=("paddle", "onnx"), default="paddle",
                        help="paddle: model.json/.pdmodel + .pdiparams for Paddle Inference; "
                             "onnx: model.onnx through paddle2onnx (optional extra gcseg[onnx])")
    parser.add_argument("--opset", type=int, default=None,
                        help="ONNX opset (default 17; below 13 is raised to 13)")
    return parser


def main() -> int:
    args = get_args_parser().parse_args()
    from gcseg.deploy.export import export_from_config

    cfg = cli.config_on_device(args, load_pretrained=args.model_path is None)
    paths = export_from_config(cfg, args.model_path, args.save_dir,
                               input_shape=args.input_shape, output_op=args.output_op,
                               for_fd=args.for_fd, export_format=args.format, opset=args.opset)
    print(f"exported to {args.save_dir}: " + ", ".join(os.path.basename(p)
                                                        for p in paths.values()))
    return 0


def run() -> None:
    """Entry point of gcseg-export and scripts/export.py."""
    cli.run(main)
