"""Segment images with an exported model (scripts/export.py) through Paddle Inference or
ONNX Runtime.

    python scripts/infer.py --model_dir D --image_path FILE|DIR|LIST.txt --save_dir OUT
    python scripts/infer.py --config D/deploy.yaml --image_path ...   # PaddleSeg's spelling
        [--runtime auto|paddle|onnxruntime] [--disable_onednn] [--bf16] [--cpu_threads K]
        [--device gpu]

The runtime follows what D holds (deploy.yaml's model: model.onnx runs with ONNX Runtime, a
Paddle program with Paddle Inference) unless --runtime says otherwise. Writes OUT/<name>.png
label images (pixel value = class id).
"""
import argparse
import os

from gcseg import cli


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--model_dir", help="directory written by export.py")
    model.add_argument("--config", help="its deploy file, as PaddleSeg's deploy/python/infer.py "
                                        "takes it: D/deploy.yaml")
    parser.add_argument("--image_path", required=True,
                        help="an image, a directory of images, or a .txt list of image paths")
    parser.add_argument("--save_dir", default="output/infer")
    parser.add_argument("--runtime", choices=("auto", "paddle", "onnxruntime"), default="auto",
                        help="auto: by the model file deploy.yaml names")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="gpu: Paddle Inference only")
    parser.add_argument("--disable_onednn", action="store_true",
                        help="Paddle Inference fallback: plain CPU kernels instead of oneDNN")
    parser.add_argument("--bf16", action="store_true",
                        help="Paddle Inference: oneDNN bfloat16 (AVX512-BF16 CPUs)")
    parser.add_argument("--cpu_threads", type=int, default=None)
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("--no_cpu_tuning", action="store_true",
                        help="leave OMP_NUM_THREADS / MKL_DEBUG_CPU_TYPE as they are")
    return parser


def main() -> int:
    args = get_args_parser().parse_args()
    from gcseg.deploy.runtime import infer_images
    from gcseg.data.images import collect_images

    images, _ = collect_images(args.image_path)
    written = infer_images(model_dir_of(args), images, args.save_dir, args.runtime,
                           use_onednn=not args.disable_onednn, bf16=args.bf16,
                           cpu_threads=args.cpu_threads, use_gpu=args.device == "gpu")
    print(f"wrote {len(written)} label images to {args.save_dir}")
    return 0


def model_dir_of(args: argparse.Namespace) -> str:
    """``--model_dir``, or the folder of the deploy file ``--config`` names."""
    from gcseg.errors import UsageError
    if args.model_dir is not None:
        return args.model_dir
    if not os.path.isfile(args.config):
        raise UsageError(f"--config {args.config}: no such deploy file (export.py writes "
                         "<save_dir>/deploy.yaml)")
    return os.path.dirname(os.path.abspath(args.config))


def run() -> None:
    """Entry point of gcseg-infer and scripts/infer.py."""
    cli.run(main)
