"""Evaluate a trained model on the config's val_dataset.

    python scripts/val.py --config C --model_path M [--save_dir D] [--aug_eval --scales 0.75 1.0
        --flip_horizontal] [--is_slide --crop_size W H --stride W H] [--auc_roc True]
    python -m paddle.distributed.launch --nproc_per_node K scripts/val.py ...   # sharded
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gcseg import cpu_env  # noqa: E402

cpu_env.configure()

from gcseg import cli  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_common_args(parser)
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
    from gcseg.engine.distributed import init_distributed
    from gcseg.engine.evaluator import evaluate
    from gcseg.models.weights import load_weights

    cfg = cli.load_config(args, load_pretrained=False)
    cli.check_model_layout(args, cfg)
    cli.select_device(args, cfg)
    init_distributed()
    model = cfg.model
    load_weights(model, args.model_path)
    evaluate(model, cfg.val_dataset, **cli.inference_settings(args, cfg),
             engine=args.engine, save_dir=args.save_dir, **cli.loader_timeout(args),
             num_workers=cfg.runtime("global")["num_workers"] if args.num_workers is None
             else args.num_workers,
             config_path=str(cfg.path), model_path=args.model_path, release_model=True,
             auc_roc=cli.auc_roc_setting(args, cfg))
    return 0


if __name__ == "__main__":
    cli.main_guard(main)
