"""Command-line plumbing shared by the commands: flags, config loading, one-line errors.

Commands (:mod:`gcseg.commands`) stay thin: parse flags with these helpers, then make one
library call inside :func:`main_guard`, which turns every :class:`~gcseg.errors.GcsegError` into
one line on stderr and exit code 2 (``--debug`` or ``GCSEG_DEBUG=1`` shows the traceback instead).
"""
import argparse
import contextlib
import os
import shlex
import sys
from typing import Any, Callable, Dict, Iterator, List, Optional

from gcseg.errors import DataError, GcsegError, UsageError
from gcseg.paddle_install import check_paddle

DEBUG_ENV = "GCSEG_DEBUG"


def debug_requested(argv: Optional[List[str]] = None) -> bool:
    argv = sys.argv if argv is None else argv
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def main_guard(main: Callable[[], Optional[int]], needs_paddle: bool = True) -> None:
    """Run a script's ``main`` and exit: 0, its own code, 2 on a user error, 130 on Ctrl-C,
    143 on SIGTERM. Signals end the run even when it is blocked (see
    :mod:`gcseg.stopping`), and an exit that hangs (a stuck loader worker) is forced.

    A script that ``needs_paddle`` first checks the installed Paddle: none or two builds stop it
    with one line saying how to install or repair, an untested version is named in one line."""
    from gcseg import stopping
    try:
        if needs_paddle:
            for line in check_paddle():
                print(f"warning: {line}", file=sys.stderr)
        with stopping.handling_signals():
            code = main() or 0
    except GcsegError as error:
        if debug_requested():
            stopping.exit_soon(2)
            raise
        print(f"error: {error}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except stopping.Terminated as stop:
        print(str(stop), file=sys.stderr)
        code = 128 + stop.signum
    sys.stdout.flush()
    sys.stderr.flush()
    stopping.exit_soon(code)
    sys.exit(code)


def run(main: Callable[[], Optional[int]], training: bool = False) -> None:
    """A command's entry point: the CPU environment first (it only works before Paddle is
    imported, see :mod:`gcseg.cpu_env`; malloc is tuned differently for ``training``), then
    ``main`` under :func:`main_guard`."""
    from gcseg import cpu_env
    cpu_env.configure(training=training)
    main_guard(main)


def positive(kind: Callable[[str], Any], flag: str) -> Callable[[str], Any]:
    """An argparse ``type`` for ``flag`` accepting values of ``kind`` above 0. A bad value is a
    one-line :class:`UsageError` at the flag (``--iters -1`` is not reported later as a config
    override)."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0:
            noun = "an integer" if kind is int else "a number"
            raise UsageError(f"{flag}: expected {noun} above 0, got {text!r}")
        return value
    return parse


def add_common_args(parser: argparse.ArgumentParser, config_required: bool = True) -> None:
    parser.add_argument("--config", required=config_required, help="YAML config file")
    parser.add_argument("--opts", nargs="+", default=None, metavar="KEY=VALUE",
                        help="override config keys, e.g. --opts batch_size=4 "
                             "model.backbone.output_stride=16")
    parser.add_argument("--device", default=None,
                        help=f"{', '.join(DEVICES)}, or gpu:N (default: the config's "
                             "global.device, else gpu when Paddle has CUDA, else cpu)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("--no_cpu_tuning", action="store_true",
                        help="leave OMP_NUM_THREADS / MKL_DEBUG_CPU_TYPE as they are")


def config_parser(description: str) -> argparse.ArgumentParser:
    """A command's parser: ``description`` shown as written, and :func:`add_common_args`."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    return parser


def _add_switch(group: argparse._ArgumentGroup, name: str, text: str,
                alias: Optional[str] = None) -> None:
    """``--name`` turns an option on, ``--no_name`` off; neither leaves it None (not given).
    ``alias`` is a second spelling of both."""
    spellings = [name] + ([alias] if alias else [])
    group.add_argument(*(f"--{spelling}" for spelling in spellings), dest=name,
                       action="store_true", default=None,
                       help=f"{text} (--no_{name}: off; default: the config's test.{name})")
    group.add_argument(*(f"--no_{spelling}" for spelling in spellings), dest=name,
                       action="store_false", default=None, help=argparse.SUPPRESS)


def add_loader_timeout_arg(parser: argparse.ArgumentParser) -> None:
    from gcseg.data.guard import DEFAULT_LOADER_TIMEOUT
    parser.add_argument("--loader_timeout", type=positive(float, "--loader_timeout"),
                        default=None, metavar="SECONDS",
                        help="end the run when the data loader produces nothing for this long "
                             f"(default {DEFAULT_LOADER_TIMEOUT:g})")


def loader_timeout(args: argparse.Namespace) -> Dict[str, float]:
    """``{"loader_timeout": --loader_timeout}`` when the flag is given, else nothing."""
    return {} if args.loader_timeout is None else {"loader_timeout": args.loader_timeout}


def add_inference_args(parser: argparse.ArgumentParser, aug_alias: Optional[str] = None) -> None:
    """Test-time flags; unset flags fall back to the config's ``test:`` section. ``aug_alias``
    is another name for ``--aug_eval`` (predict.py: PaddleSeg's ``--aug_pred``)."""
    group = parser.add_argument_group("inference")
    _add_switch(group, "aug_eval", "test-time augmentation: --scales and flips", aug_alias)
    group.add_argument("--scales", nargs="+", type=float, default=None,
                       help="scales for --aug_eval, e.g. 0.75 1.0 1.25")
    _add_switch(group, "flip_horizontal", "horizontal flip for --aug_eval")
    _add_switch(group, "flip_vertical", "vertical flip for --aug_eval")
    _add_switch(group, "is_slide", "sliding-window inference with --crop_size and --stride")
    group.add_argument("--crop_size", nargs=2, type=int, default=None, metavar=("W", "H"))
    group.add_argument("--stride", nargs=2, type=int, default=None, metavar=("W", "H"))
    group.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default=None,
                       help="inference precision (default fp32)")
    group.add_argument("--tta_average", choices=("logits", "probs"), default=None,
                       help="average the views' logits (PaddleSeg, default) or their softmax "
                            "probabilities (MMSegmentation)")


def boolean(flag: str) -> Callable[[str], bool]:
    """An argparse ``type`` for PaddleSeg's ``flag True|False`` (where Python's
    ``bool('False')`` would be True)."""
    def parse(text: str) -> bool:
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off", "none"):
            return False
        raise UsageError(f"{flag}: expected True or False, got {text!r}")
    return parse


def add_model_layout_args(parser: argparse.ArgumentParser) -> None:
    """PaddleSeg's ``--data_format`` and ``--use_multilabel``; see :func:`check_model_layout`."""
    parser.add_argument("--data_format", choices=("NCHW", "NHWC"), default=None,
                        help="tensor layout inside the model (default: the config's "
                             "global.data_format); GCNet runs NCHW")
    parser.add_argument("--use_multilabel", action="store_true",
                        help="PaddleSeg's multi-label mode (not supported for GCNet)")


def check_model_layout(args: argparse.Namespace, cfg) -> None:
    """One line and exit 2 for what GCNet cannot do: PaddleSeg runs NHWC for DeepLabV3P only
    and multi-label for models with one sigmoid output per class."""
    data_format = args.data_format or cfg.runtime("global")["data_format"]
    source = "--data_format" if args.data_format else "global.data_format"
    if data_format != "NCHW":
        raise UsageError(f"{source} {data_format}: not supported for GCNet, which runs NCHW "
                         "(PaddleSeg runs NHWC for DeepLabV3P only)")
    if args.use_multilabel:
        raise UsageError("--use_multilabel: not supported for GCNet, which predicts one class "
                         "per pixel")


def auc_roc_setting(args: argparse.Namespace, cfg) -> bool:
    """``--auc_roc``, else the config's ``test.auc_roc``."""
    if args.auc_roc is not None:
        return args.auc_roc
    value = cfg.runtime("test")["auc_roc"]
    if not isinstance(value, bool):
        raise UsageError(f"test.auc_roc: expected True or False, got {value!r}")
    return value


def inference_settings(args: argparse.Namespace, cfg):
    """The test-time flags over the config's ``test:`` section, as an
    :class:`~gcseg.engine.inference.InferenceSettings`."""
    from gcseg.engine.inference import InferenceSettings
    flags = {key: getattr(args, key, None) for key in InferenceSettings.names()}
    return InferenceSettings.from_config(cfg, **flags)


@contextlib.contextmanager
def naming_the_config(args: argparse.Namespace) -> Iterator[None]:
    """A :class:`~gcseg.errors.DataError` raised inside names this run's ``--config`` (and
    ``--opts``) in its check_dataset hint, where the dataset code, which does not know them,
    wrote a placeholder."""
    from gcseg.data.check import CONFIG_PLACEHOLDER
    try:
        yield
    except DataError as error:
        config = shlex.join([args.config, *(["--opts", *args.opts] if args.opts else [])])
        error.args = (str(error).replace(CONFIG_PLACEHOLDER, config),)
        raise


def load_config(args: argparse.Namespace, extra_opts: Optional[List[str]] = None,
                load_pretrained: bool = True):
    """The config of ``--config`` with ``--opts`` (and ``extra_opts``) applied."""
    from gcseg.config import Config
    return Config(args.config, list(args.opts or []) + list(extra_opts or []),
                  load_pretrained=load_pretrained)


def config_on_device(args: argparse.Namespace, extra_opts: Optional[List[str]] = None,
                     load_pretrained: bool = True):
    """:func:`load_config`, then :func:`select_device` for it; returns the config."""
    cfg = load_config(args, extra_opts, load_pretrained)
    select_device(args, cfg)
    return cfg


# PaddleSeg's --device values. npu and mlu are plug-in ("custom") devices in Paddle >= 2.5.
DEVICES = ("cpu", "gpu", "xpu", "npu", "mlu")
_DEVICE_BUILDS = {"gpu": "paddlepaddle-gpu", "xpu": "Paddle's XPU build",
                  "npu": "Paddle's NPU plug-in (paddle-custom-npu)",
                  "mlu": "Paddle's MLU plug-in (paddle-custom-mlu)"}


def device_available(kind: str) -> bool:
    """Whether this Paddle can run on devices of ``kind`` (one of :data:`DEVICES`)."""
    import paddle
    if kind == "cpu":
        return True
    if kind == "gpu":
        return paddle.is_compiled_with_cuda()
    if kind == "xpu":
        return paddle.is_compiled_with_xpu()
    return kind in paddle.device.get_all_custom_device_type()


def check_device(device: str, source: str = "--device") -> None:
    """A one-line UsageError unless ``device`` (``gpu``, ``gpu:1``, ...) names a device kind
    PaddleSeg knows and this Paddle has."""
    kind, _, index = device.partition(":")
    if kind not in DEVICES or (index and not index.isdigit()):
        raise UsageError(f"{source} {device}: expected one of {', '.join(DEVICES)}, "
                         "optionally with :N (gpu:1)")
    if not device_available(kind):
        raise UsageError(f"{source} {device}: this Paddle has no {kind} support (install "
                         f"{_DEVICE_BUILDS[kind]}, or use --device cpu)")


def _configured_device(cfg) -> Optional[str]:
    """The config's ``global.device`` if this Paddle has it, else None (an unknown name is an
    error)."""
    configured = cfg.runtime("global")["device"] if cfg is not None else None
    if not configured:
        return None
    try:
        check_device(str(configured), "global.device")
    except UsageError:
        if str(configured).partition(":")[0] not in DEVICES:
            raise
        return None
    return str(configured)


def select_device(args: argparse.Namespace, cfg=None) -> str:
    """Set Paddle's device from --device (and --device_id), else the config's global.device,
    else what exists.

    A config asking for a device this Paddle lacks falls back to the CPU (PaddleSeg's
    runtime.yml says ``device: gpu``); an explicit ``--device gpu`` there is an error.
    """
    import paddle
    wanted = getattr(args, "device", None)
    if wanted is None:
        wanted = _configured_device(cfg) or ("gpu" if paddle.is_compiled_with_cuda() else "cpu")
    else:
        check_device(wanted)
    device_id = getattr(args, "device_id", None)
    if device_id is not None and wanted != "cpu" and ":" not in wanted:
        wanted = f"{wanted}:{device_id}"
    try:
        paddle.set_device(wanted)
    except (ValueError, RuntimeError) as error:
        raise UsageError(f"--device {wanted}: {str(error).splitlines()[0]}") from None
    return wanted
