"""Train a model from a config (PaddleSeg's tools/train.py flags).

    python scripts/train.py --config C [--do_eval] [--use_vdl] [--save_dir D] [--iters N]
        [--batch_size B] [--learning_rate LR] [--resume_model D/iter_N] [--precision fp16]
    python -m paddle.distributed.launch --nproc_per_node K scripts/train.py ...  # batch per process

Unset flags fall back to the config's ``train:`` / ``global:`` sections.
"""
import argparse
import logging
import os

from gcseg import cli


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.config_parser(__doc__)
    parser.add_argument("--iters", type=cli.positive(int, "--iters"), default=None,
                        help="overrides the config's iters")
    parser.add_argument("--batch_size", type=cli.positive(int, "--batch_size"), default=None,
                        help="per process; overrides the config's batch_size")
    parser.add_argument("--learning_rate", type=cli.positive(float, "--learning_rate"),
                        default=None,
                        help="overrides lr_scheduler.learning_rate")
    parser.add_argument("--save_dir", default=None)
    parser.add_argument("--save_interval", type=cli.positive(int, "--save_interval"),
                        default=None,
                        help="checkpoint (and evaluate with --do_eval) every N iters")
    parser.add_argument("--resume_model", default=None, help="a checkpoint dir: output/iter_N")
    parser.add_argument("--keep_checkpoint_max", type=cli.positive(int, "--keep_checkpoint_max"),
                        default=None)
    parser.add_argument("--num_workers", type=int, default=None)
    cli.add_loader_timeout_arg(parser)
    parser.add_argument("--do_eval", action="store_true", default=None)
    parser.add_argument("--log_iters", type=cli.positive(int, "--log_iters"), default=None)
    parser.add_argument("--use_vdl", action="store_true", default=None,
                        help="VisualDL logs in <save_dir>/vdl")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default=None)
    parser.add_argument("--amp_level", choices=("O1", "O2"), default=None)
    parser.add_argument("--use_ema", action="store_true", default=None,
                        help="also keep, evaluate and save an exponential moving average of "
                             "the weights (ema_model.pdparams, ema_best_model/)")
    parser.add_argument("--early_stop_intervals",
                        type=cli.positive(int, "--early_stop_intervals"), default=None,
                        help="with --do_eval: stop after N evaluations below the best mIoU")
    parser.add_argument("--profiler_options", default=None,
                        help='Paddle profiler over some steps, PaddleSeg\'s format: '
                             '"batch_range=[10, 20]; profile_path=output/profile.json"')
    parser.add_argument("--to_static_training", action="store_true", default=None,
                        help="run the forward pass as a dygraph-to-static program")
    parser.add_argument("--repeats", type=cli.positive(int, "--repeats"), default=None,
                        help="each epoch visits the training list this many times")
    parser.add_argument("--data_format", default=None, help="NCHW (GCNet has no NHWC)")
    parser.add_argument("--use_multilabel", action="store_true", default=None,
                        help="PaddleSeg's multilabel mode: not supported for GCNet")
    return parser


def config_overrides(args: argparse.Namespace) -> list:
    """--iters / --batch_size / --learning_rate as config opts."""
    keys = {"iters": "iters", "batch_size": "batch_size",
            "learning_rate": "lr_scheduler.learning_rate"}
    return [f"{key}={getattr(args, flag)}" for flag, key in keys.items()
            if getattr(args, flag) is not None]


def setup_logging(is_first_rank: bool) -> None:
    """gcseg's log lines on stderr (INFO on rank 0). A handler of our own: Paddle 2.6
    reconfigures the root logger when it is imported."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log = logging.getLogger("gcseg")
    log.addHandler(handler)
    log.setLevel(logging.INFO if is_first_rank else logging.WARNING)
    log.propagate = False


def main() -> int:
    args = get_args_parser().parse_args()
    setup_logging(is_first_rank=os.environ.get("PADDLE_TRAINER_ID", "0") == "0")
    from gcseg.engine.distributed import init_distributed
    from gcseg.engine.trainer import TrainSettings, train

    cfg = cli.config_on_device(args, config_overrides(args))
    # a resumed run's checkpoint replaces the pretrained weights: never download them for it
    cfg.load_pretrained = not (args.resume_model or cfg.runtime("train").get("resume_model"))
    init_distributed()
    names = [field for field in TrainSettings.__dataclass_fields__]
    with cli.naming_the_config(args):
        train(cfg, **{name: getattr(args, name) for name in names})
    return 0


def run() -> None:
    """Entry point of gcseg-train and scripts/train.py."""
    cli.run(main, training=True)
