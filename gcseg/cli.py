"""Command-line plumbing shared by the scripts: flags, config loading, one-line errors.

Scripts stay thin: parse flags with these helpers, then make one library call inside
:func:`main_guard`, which turns every :class:`~gcseg.errors.GcsegError` into one line on stderr
and exit code 2 (``--debug`` or ``GCSEG_DEBUG=1`` shows the traceback instead).
"""
import argparse
import os
import sys
from typing import Any, Callable, Dict, List, Optional

from gcseg.errors import GcsegError, UsageError

DEBUG_ENV = "GCSEG_DEBUG"


def debug_requested(argv: Optional[List[str]] = None) -> bool:
    argv = sys.argv if argv is None else argv
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def main_guard(main: Callable[[], Optional[int]]) -> None:
    """Run a script's ``main`` and exit: 0, its own code, 2 on a user error, 130 on Ctrl-C,
    143 on SIGTERM. Signals end the run even when it is blocked (see
    :mod:`gcseg.engine.stopping`), and an exit that hangs (a stuck loader worker) is forced."""
    from gcseg.engine import stopping
    try:
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
                        help="cpu, gpu or gpu:N (default: the config's global.device, else gpu "
                             "when Paddle has CUDA, else cpu)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("--no_cpu_tuning", action="store_true",
                        help="leave OMP_NUM_THREADS / MKL_DEBUG_CPU_TYPE as they are")


def _add_switch(group: argparse._ArgumentGroup, name: str, text: str) -> None:
    """``--name`` turns an option on, ``--no_name`` off; neither leaves it None (not given)."""
    group.add_argument(f"--{name}", dest=name, action="store_true", default=None,
                       help=f"{text} (--no_{name}: off; default: the config's test.{name})")
    group.add_argument(f"--no_{name}", dest=name, action="store_false", default=None,
                       help=argparse.SUPPRESS)


def add_loader_timeout_arg(parser: argparse.ArgumentParser) -> None:
    from gcseg.data.guard import DEFAULT_LOADER_TIMEOUT
    parser.add_argument("--loader_timeout", type=positive(float, "--loader_timeout"),
                        default=None, metavar="SECONDS",
                        help="end the run when the data loader produces nothing for this long "
                             f"(default {DEFAULT_LOADER_TIMEOUT:g})")


def loader_timeout(args: argparse.Namespace) -> Dict[str, float]:
    """``{"loader_timeout": --loader_timeout}`` when the flag is given, else nothing."""
    return {} if args.loader_timeout is None else {"loader_timeout": args.loader_timeout}


def add_inference_args(parser: argparse.ArgumentParser) -> None:
    """Test-time flags; unset flags fall back to the config's ``test:`` section."""
    group = parser.add_argument_group("inference")
    _add_switch(group, "aug_eval", "test-time augmentation: --scales and flips")
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


def inference_settings(args: argparse.Namespace, cfg) -> Dict[str, Any]:
    """The test-time flags over the config's ``test:`` section, as :func:`evaluate` takes them."""
    from gcseg.engine.evaluator import SETTING_NAMES, settings_from_config
    return settings_from_config(cfg, **{key: getattr(args, key, None) for key in SETTING_NAMES})


def load_config(args: argparse.Namespace, extra_opts: Optional[List[str]] = None,
                load_pretrained: bool = True):
    """The config of ``--config`` with ``--opts`` (and ``extra_opts``) applied."""
    from gcseg.config import Config
    return Config(args.config, list(args.opts or []) + list(extra_opts or []),
                  load_pretrained=load_pretrained)


def select_device(args: argparse.Namespace, cfg=None) -> str:
    """Set Paddle's device from --device, else the config's global.device, else what exists.

    A config asking for a GPU on a CPU-only Paddle falls back to the CPU (PaddleSeg's
    runtime.yml says ``device: gpu``); an explicit ``--device gpu`` there is an error.
    """
    import paddle
    has_cuda = paddle.is_compiled_with_cuda()
    wanted = getattr(args, "device", None)
    if wanted is None:
        configured = cfg.runtime("global")["device"] if cfg is not None else None
        wanted = configured if configured and (has_cuda or not configured.startswith("gpu")) \
            else ("gpu" if has_cuda else "cpu")
    elif wanted.startswith("gpu") and not has_cuda:
        raise UsageError(f"--device {wanted}: this Paddle build has no CUDA support "
                         "(install paddlepaddle-gpu, or use --device cpu)")
    try:
        paddle.set_device(wanted)
    except (ValueError, RuntimeError) as error:
        raise UsageError(f"--device {wanted}: {str(error).splitlines()[0]}") from None
    return wanted
