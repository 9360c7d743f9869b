"""Evaluate a trained model on the config's val_dataset.

    python scripts/val.py --config C --model_path M [--save_dir D] [--aug_eval --scales 0.75 1.0
        --flip_horizontal] [--is_slide --crop_size W H --stride W H] [--auc_roc True]
    python -m paddle.distributed.launch --nproc_per_node K scripts/val.py ...   # sharded
"""
import argparse

from gcseg import cli


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.config_parser(__doc__)
    parser.add_argument("--model_path", required=True, help="trained weights (.pdparams or "
                                                            ".safetensors)")
    parser.add_argument("--save_dir", default=None,
                        help="write eval_results.json and confusion_matrix.png here")
    parser.add_argument("--num_workers", type=int, default=None,
                        help="data loading processes (default: the config's global.num_workers)")
    cli.add_loader_timeout_arg(parser)
    parser.add_argument("--engine", choices=("auto", "predictor", "onnxruntime", "dygraph"),
                        default="auto",
                        help="forward pass: Paddle Inference predictor (oneDNN, faster on CPU), "
                             "ONNX Runtime (needs gcseg[onnx]), dygraph, or auto (on a CPU the "
                             "faster of predictor and ONNX Runtime that matches dygraph)")
    parser.add_argument("--auc_roc", nargs="?", const=True, default=None,
                        type=cli.boolean("--auc_roc"), metavar="True|False",
                        help="also the area under the ROC curve, one class against the rest "
                             "(default: the config's test.auc_roc)")
    cli.add_model_layout_args(parser)
    cli.add_inference_args(parser)
    return parser


def main() -> int:
    args = get_args_parser().parse_args()
    from gcseg.engine.evaluator import evaluate_from_config

    cfg = cli.load_config(args, load_pretrained=False)
    cli.check_model_layout(args, cfg)
    cli.select_device(args, cfg)
    with cli.naming_the_config(args):
        evaluate_from_config(cfg, args.model_path, cli.inference_settings(args, cfg),
                             backend=args.engine, save_dir=args.save_dir,
                             num_workers=args.num_workers,
                             auc_roc=cli.auc_roc_setting(args, cfg), **cli.loader_timeout(args))
    return 0


def run() -> None:
    """Entry point of gcseg-val and scripts/val.py."""
    cli.run(main)
