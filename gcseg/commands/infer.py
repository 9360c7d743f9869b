"""Segment images with an exported model (scripts/export.py) through Paddle Inference or
ONNX Runtime.

    python scripts/infer.py --model_dir D --image_path FILE|DIR|LIST.txt --save_dir OUT
        [--runtime auto|paddle|onnxruntime] [--disable_onednn] [--bf16] [--cpu_threads K]
        [--device gpu]

The runtime follows what D holds (deploy.yml's model: model.onnx runs with ONNX Runtime, a
Paddle program with Paddle Inference) unless --runtime says otherwise. Writes OUT/<name>.png
label images (pixel value = class id).
"""
import argparse

from gcseg import cli


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", required=True, help="directory written by export.py")
    parser.add_argument("--image_path", required=True,
                        help="an image, a directory of images, or a .txt list of image paths")
    parser.add_argument("--save_dir", default="output/infer")
    parser.add_argument("--runtime", choices=("auto", "paddle", "onnxruntime"), default="auto",
                        help="auto: by the model file deploy.yml names")
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
    from gcseg.engine.predict import collect_images

    images, _ = collect_images(args.image_path)
    written = infer_images(args.model_dir, images, args.save_dir, args.runtime,
                           use_onednn=not args.disable_onednn, bf16=args.bf16,
                           cpu_threads=args.cpu_threads, use_gpu=args.device == "gpu")
    print(f"wrote {len(written)} label images to {args.save_dir}")
    return 0


def run() -> None:
    """Entry point of gcseg-infer and scripts/infer.py."""
    cli.run(main)
