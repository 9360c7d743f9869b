"""Segment images with an exported model (scripts/export.py) through Paddle Inference or
ONNX Runtime, with the flags of PaddleSeg's deploy/python/infer.py.

    python scripts/infer.py --config D/deploy.yaml --image_path FILE|DIR|LIST.txt --save_dir OUT
    python scripts/infer.py --model_dir D ...                          # gcseg's spelling
        [--batch_size N] [--device cpu|gpu|xpu|npu] [--cpu_threads K] [--enable_mkldnn True|False]
        [--precision fp32|bf16] [--use_trt True --precision fp32|fp16|int8
        --min_subgraph_size 3 --enable_auto_tune True --auto_tuned_shape_file F]
        [--benchmark True --model_name NAME] [--with_argmax] [--print_detail True]
        [--custom_color R G B ...] [--runtime auto|paddle|onnxruntime]

The runtime follows what D holds (deploy.yaml's model: model.onnx runs with ONNX Runtime, a
Paddle program with Paddle Inference) unless --runtime says otherwise. Writes OUT/<name>.png,
palette PNGs whose pixel values are the class ids. A flag this Paddle cannot honour (TensorRT
or fp16 on a CPU build, bf16 on a CPU without bf16 instructions) stops the run with one line.
"""
import argparse
import contextlib
import os
import sys
from typing import Dict, Iterator

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
    parser.add_argument("--batch_size", type=cli.positive(int, "--batch_size"), default=1,
                        help="images per forward (consecutive images of one size)")
    add_device_args(parser)
    add_tensorrt_args(parser)
    add_output_args(parser)
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("--no_cpu_tuning", action="store_true",
                        help="leave OMP_NUM_THREADS / MKL_DEBUG_CPU_TYPE as they are")
    return parser


def add_device_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("cpu", "gpu", "xpu", "npu"), default=None,
                        help="default: gpu when Paddle has CUDA and the model is a Paddle "
                             "program, else cpu (ONNX Runtime runs on the CPU)")
    parser.add_argument("--cpu_threads", type=cli.positive(int, "--cpu_threads"), default=None,
                        help="CPU threads (default: OMP_NUM_THREADS as gcseg sets it, else the "
                             "usable cores)")
    parser.add_argument("--enable_mkldnn", type=cli.boolean("--enable_mkldnn"), default=None,
                        metavar="True|False",
                        help="Paddle Inference's oneDNN: True caches 10 input shapes, False "
                             "runs plain CPU kernels (default: Paddle's, on)")
    parser.add_argument("--disable_onednn", dest="enable_mkldnn", action="store_const",
                        const=False, help="as --enable_mkldnn False")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8", "bf16"), default="fp32",
                        help="fp16/int8: TensorRT's (with --use_trt); bf16: oneDNN on CPUs with "
                             "AVX512-BF16 / AMX-BF16")
    parser.add_argument("--bf16", dest="precision", action="store_const", const="bf16",
                        help="as --precision bf16")


def add_tensorrt_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--use_trt", type=cli.boolean("--use_trt"), nargs="?", const=True,
                        default=False, metavar="True|False",
                        help="TensorRT subgraphs (Paddle built with CUDA + TensorRT, --device gpu)")
    parser.add_argument("--min_subgraph_size", type=cli.positive(int, "--min_subgraph_size"),
                        default=None, help="TensorRT's smallest subgraph (default 3)")
    parser.add_argument("--enable_auto_tune", type=cli.boolean("--enable_auto_tune"),
                        default=False, metavar="True|False",
                        help="collect TensorRT's dynamic shapes from the first 10 images")
    parser.add_argument("--auto_tuned_shape_file", default=None,
                        help="where auto-tune keeps the shapes during the run (default "
                             "auto_tune_tmp.pbtxt)")


def add_output_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--benchmark", type=cli.boolean("--benchmark"), nargs="?", const=True,
                        default=False, metavar="True|False",
                        help="print the preprocess / inference / postprocess time per image")
    parser.add_argument("--model_name", default="", help="named in --benchmark's report")
    parser.add_argument("--with_argmax", action="store_true",
                        help="accepted for PaddleSeg's command lines: the labels are always the "
                             "argmax of what the export outputs (deploy.yaml's output_op)")
    parser.add_argument("--print_detail", type=cli.boolean("--print_detail"), default=False,
                        metavar="True|False", help="show Paddle Inference's (glog) log")
    parser.add_argument("--custom_color", nargs="+", type=int, default=None, metavar="VALUE",
                        help="colours of classes 0, 1, ... as R G B values (palette of the PNGs)")


TRT_ONLY_FLAGS = ("min_subgraph_size", "auto_tuned_shape_file")
AUTO_TUNE_SHAPE_FILE = "auto_tune_tmp.pbtxt"  # PaddleSeg's default


def note_ignored_flags(args: argparse.Namespace) -> None:
    """Flags that change nothing in this run are named on stderr (PaddleSeg ignores them)."""
    given = [f"--{name}" for name in TRT_ONLY_FLAGS if getattr(args, name) is not None]
    if given and not args.use_trt:
        print(f"note: {', '.join(given)} ignored: TensorRT settings (with --use_trt True)",
              file=sys.stderr)
    if args.model_name and not args.benchmark:
        print("note: --model_name ignored: it names the model in --benchmark's report",
              file=sys.stderr)


def inference_options(args: argparse.Namespace, runtime: str) -> Dict:
    """The :class:`~gcseg.deploy.inference_options.InferenceOptions` of the flags."""
    import paddle
    from gcseg.cpu_env import cpu_threads
    note_ignored_flags(args)
    if args.device:
        cli.check_device(args.device)
    device = args.device or ("gpu" if runtime == "paddle" and paddle.is_compiled_with_cuda()
                             else "cpu")
    options = dict(device=device, precision=args.precision, use_trt=args.use_trt,
                   batch_size=args.batch_size, cpu_threads=args.cpu_threads or cpu_threads(),
                   use_onednn=args.enable_mkldnn, print_detail=args.print_detail)
    if args.min_subgraph_size is not None:
        options["min_subgraph_size"] = args.min_subgraph_size
    if args.enable_auto_tune:
        options["tuned_shape_file"] = args.auto_tuned_shape_file or AUTO_TUNE_SHAPE_FILE
    return options


@contextlib.contextmanager
def auto_tuned(model_dir: str, images, options: Dict) -> Iterator[None]:
    """With ``tuned_shape_file`` in ``options``: collect it first, remove it afterwards (it is
    PaddleSeg's temporary file) unless it was there before."""
    shape_file = options.get("tuned_shape_file")
    if not shape_file:
        yield
        return
    from gcseg.deploy.infer import tune_trt_shapes
    existed = os.path.exists(shape_file)
    tune_trt_shapes(model_dir, images, shape_file, **options)
    try:
        yield
    finally:
        if not existed and os.path.exists(shape_file):
            os.remove(shape_file)


def main() -> int:
    args = get_args_parser().parse_args()
    from gcseg.deploy.infer import StageTimer, infer_images
    from gcseg.deploy.inference_options import InferenceOptions
    from gcseg.deploy.runtime import DeployedModel, check_runtime_options, resolve_runtime
    from gcseg.data.images import collect_images

    images, _ = collect_images(args.image_path)
    model_dir = model_dir_of(args)
    runtime = resolve_runtime(model_dir, args.runtime)
    options = inference_options(args, runtime)
    check_runtime_options(model_dir, runtime, InferenceOptions(**options))  # before auto-tune
    timer = StageTimer() if args.benchmark else None
    with auto_tuned(model_dir, images, options):
        model = DeployedModel(model_dir, runtime, **options)
        written = infer_images(model, images, args.save_dir, batch_size=args.batch_size,
                               custom_color=args.custom_color, timer=timer)
    print(f"wrote {len(written)} label images to {args.save_dir}")
    if timer is not None:
        print("\n".join(timer.report(model.runner.description, args.batch_size,
                                     args.model_name)))
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
