"""How an exported model is run: PaddleSeg's ``deploy/python/infer.py`` options as one object,
the checks that refuse what this Paddle cannot do, and the ``paddle.inference.Config`` they make.

The meanings are PaddleSeg's: ``precision`` fp16 / int8 are TensorRT precisions (they need
``use_trt`` on a GPU), ``min_subgraph_size`` and a tuned shape file are TensorRT settings, oneDNN
switched on explicitly caches 10 input shapes. gcseg adds ``precision="bf16"``: oneDNN bfloat16
on a CPU with AVX512-BF16 / AMX-BF16, refused elsewhere (:mod:`gcseg.deploy.runtime` also refuses
it where Paddle computes the logits as fp32 anyway). A request this machine's Paddle cannot honour
(TensorRT on a CPU build, say) is a one-line :class:`UsageError` naming the flag and why, never a
silent fall back to something else under the flag's name.
"""
from dataclasses import dataclass
from typing import List, Optional

from gcseg.errors import UsageError

DEVICES = ("cpu", "gpu", "xpu", "npu")
PRECISIONS = ("fp32", "fp16", "int8", "bf16")
TRT_PRECISIONS = ("fp32", "fp16", "int8")
ONEDNN_SHAPE_CACHE = 10  # input shapes oneDNN keeps primitives for (PaddleSeg's value)
GPU_MEMORY_POOL_MB = 256
TRT_WORKSPACE_BYTES = 1 << 30
# TensorRT's dynamic-shape range (H, W) when no tuned shape file is given: PaddleSeg's.
TRT_MIN_SIZE, TRT_OPT_SIZE, TRT_MAX_SIZE = (100, 100), (512, 1024), (2000, 3000)


@dataclass
class InferenceOptions:
    """One run's runtime settings (the defaults are gcseg's: CPU, fp32, Paddle's own oneDNN
    default, Paddle Inference's glog quiet)."""
    device: str = "cpu"
    device_id: int = 0
    precision: str = "fp32"
    use_trt: bool = False
    min_subgraph_size: int = 3
    tuned_shape_file: Optional[str] = None  # TensorRT shape ranges collected by auto-tune
    collect_shape_file: Optional[str] = None  # write the shape ranges seen here (auto-tune)
    batch_size: int = 1
    cpu_threads: Optional[int] = None
    use_onednn: Optional[bool] = None  # None: Paddle's default (on for a CPU build)
    shape_cache_capacity: Optional[int] = None
    print_detail: bool = False

    def paddle_only_flags(self) -> List[str]:
        """The flags set here that only Paddle Inference honours (ONNX Runtime runs on the CPU
        in float32)."""
        flags = [f"--device {self.device}"] if self.device != "cpu" else []
        flags += [f"--precision {self.precision}"] if self.precision != "fp32" else []
        flags += ["--use_trt"] if self.use_trt else []
        flags += ["--enable_auto_tune"] if self.tuned_shape_file else []
        flags += [f"--enable_mkldnn {self.use_onednn}"] if self.use_onednn is not None else []
        return flags


def _paddle_label() -> str:
    import paddle
    return f"Paddle {paddle.__version__}"


def check_trt(options: InferenceOptions) -> None:
    """A one-line UsageError unless TensorRT can run here as ``options`` ask."""
    import paddle
    from paddle import inference
    if not options.use_trt:
        if options.collect_shape_file or options.tuned_shape_file:
            raise UsageError("--enable_auto_tune: tunes TensorRT's dynamic shapes, so it needs "
                             "--use_trt True (on --device gpu)")
        if options.precision in ("fp16", "int8"):
            raise UsageError(f"--precision {options.precision}: a TensorRT precision, it needs "
                             "--use_trt True on --device gpu (on the CPU: fp32, or bf16 where "
                             "the CPU has bf16 instructions)")
        return
    if not paddle.is_compiled_with_cuda():
        raise UsageError(f"--use_trt: TensorRT needs Paddle built with CUDA and TensorRT; "
                         f"this {_paddle_label()} is a CPU build (run without --use_trt)")
    if options.device != "gpu":
        raise UsageError(f"--use_trt: TensorRT runs on an NVIDIA GPU; add --device gpu (this "
                         f"run is on {options.device})")
    if tuple(inference.get_trt_compile_version()) == (0, 0, 0):
        raise UsageError(f"--use_trt: this {_paddle_label()} was built without TensorRT "
                         "(install a paddlepaddle-gpu build with TensorRT)")
    if options.precision not in TRT_PRECISIONS:
        raise UsageError(f"--precision {options.precision}: TensorRT runs in "
                         f"{', '.join(TRT_PRECISIONS)}")


def check_options(options: InferenceOptions) -> None:
    """A one-line UsageError for options this Paddle Inference cannot run as asked (an xpu or
    npu this Paddle lacks is the command's check, :func:`gcseg.cli.check_device`)."""
    import paddle
    from gcseg.cpu_env import cpu_supports_bf16
    if options.device not in DEVICES:
        raise UsageError(f"--device {options.device}: expected one of {', '.join(DEVICES)}")
    if options.precision not in PRECISIONS:
        raise UsageError(f"--precision {options.precision}: expected one of "
                         f"{', '.join(PRECISIONS)}")
    check_trt(options)
    if options.device == "gpu" and not paddle.is_compiled_with_cuda():
        raise UsageError(f"--device gpu: this {_paddle_label()} has no gpu support (a CPU "
                         "build; install paddlepaddle-gpu, or use --device cpu)")
    if options.precision == "bf16":
        if options.device != "cpu" or options.use_onednn is False:
            raise UsageError("--precision bf16: oneDNN's bfloat16 on the CPU only (--device cpu, "
                             "without --enable_mkldnn False)")
        if not cpu_supports_bf16():
            raise UsageError("--precision bf16: this CPU has no bf16 instructions (no "
                             "avx512_bf16 / amx_bf16 in /proc/cpuinfo); use --precision fp32")


def paddle_config(model_path: str, params_path: str, options: InferenceOptions):
    """The ``paddle.inference.Config`` of ``options`` (checked by :func:`check_options`)."""
    from paddle import inference
    config = inference.Config(model_path, params_path)
    if not options.print_detail:
        config.disable_glog_info()
    if options.device == "gpu":
        config.enable_use_gpu(GPU_MEMORY_POOL_MB, options.device_id)
        if options.collect_shape_file:
            config.collect_shape_range_info(options.collect_shape_file)
        elif options.use_trt:
            _enable_tensorrt(config, options)
    elif options.device == "xpu":
        config.enable_xpu()
    elif options.device == "npu":
        config.enable_custom_device("npu", options.device_id)
    else:
        _configure_cpu(config, options)
    return config


def _configure_cpu(config, options: InferenceOptions) -> None:
    if options.use_onednn is False:
        config.disable_mkldnn()
    elif options.use_onednn or options.precision == "bf16":
        config.enable_mkldnn()
    if config.mkldnn_enabled() and (options.shape_cache_capacity or options.use_onednn):
        config.set_mkldnn_cache_capacity(options.shape_cache_capacity or ONEDNN_SHAPE_CACHE)
    if options.precision == "bf16":
        config.enable_mkldnn_bfloat16()
    if options.cpu_threads:
        config.set_cpu_math_library_num_threads(int(options.cpu_threads))


def _enable_tensorrt(config, options: InferenceOptions) -> None:
    """TensorRT subgraphs (Paddle Inference's Config API), with the shape ranges auto-tune
    collected, else PaddleSeg's fixed range for batches of up to ``batch_size``."""
    from paddle.inference import PrecisionType
    from gcseg.deploy.export import INPUT_NAME
    precision = {"fp32": PrecisionType.Float32, "fp16": PrecisionType.Half,
                 "int8": PrecisionType.Int8}[options.precision]
    config.enable_tensorrt_engine(workspace_size=TRT_WORKSPACE_BYTES,
                                  max_batch_size=options.batch_size,
                                  min_subgraph_size=options.min_subgraph_size,
                                  precision_mode=precision, use_static=False,
                                  use_calib_mode=False)
    if options.tuned_shape_file:
        config.enable_tuned_tensorrt_dynamic_shape(options.tuned_shape_file, True)
        return
    ranges = [{INPUT_NAME: [batch, 3, *size]} for batch, size in
              ((1, TRT_MIN_SIZE), (options.batch_size, TRT_MAX_SIZE), (1, TRT_OPT_SIZE))]
    config.set_trt_dynamic_shape_info(*ranges)


def describe_config(config, options: InferenceOptions) -> str:
    """What a ``paddle.inference.Config`` made from ``options`` runs with, the threads, oneDNN
    and TensorRT read back from it."""
    if config.use_gpu():
        engine = "TensorRT" if config.tensorrt_engine_enabled() else "CUDA"
        return f"Paddle Inference on GPU {config.gpu_device_id()} ({engine}), {options.precision}"
    if options.device != "cpu":
        return f"Paddle Inference on {options.device} {options.device_id}, {options.precision}"
    onednn = "on" if config.mkldnn_enabled() else "off"
    return (f"Paddle Inference on the CPU, {config.cpu_math_library_num_threads()} threads, "
            f"oneDNN {onednn}, {options.precision}")
