"""Process-group helpers: rank, world size, the main process, a summing all-reduce, flags
agreed by all processes, sharding, DataParallel and SyncBatchNorm wrapping.

Everything here degrades to the single-process case, so callers never branch on whether they
run under ``python -m paddle.distributed.launch``.
"""
from typing import List

import paddle
import paddle.distributed as dist

from gcseg.errors import TrainingError, first_line


def get_rank() -> int:
    return dist.get_rank()


def get_world_size() -> int:
    return dist.get_world_size()


def is_main_process() -> bool:
    return get_rank() == 0


def init_distributed() -> None:
    """Join the process group started by the launcher (once; a no-op for one process)."""
    if get_world_size() > 1 and not dist.is_initialized():
        dist.init_parallel_env()


def all_reduce_sum(tensor: paddle.Tensor) -> paddle.Tensor:
    """Sum ``tensor`` over all processes, in place; returns it for chaining."""
    if get_world_size() > 1:
        init_distributed()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_process(*flags: bool) -> List[bool]:
    """Each flag OR-ed over all processes, so that every process takes the same branch (one
    that stopped alone would leave the others waiting in their next collective)."""
    if get_world_size() <= 1:
        return list(flags)
    try:
        counts = all_reduce_sum(paddle.to_tensor([float(flag) for flag in flags]))
    except Exception as error:  # e.g. gloo's TIMEOUT once a peer process has ended
        raise TrainingError(f"rank {get_rank()}: another process has ended (all-reduce failed: "
                            f"{first_line(error)})") from error
    return [bool(count > 0) for count in counts.numpy()]


def shard_indices(length: int) -> List[int]:
    """This process's share of ``range(length)``: every index on exactly one rank, none repeated.

    Unlike ``DistributedBatchSampler`` nothing is padded, so metrics summed over ranks count
    every sample once.
    """
    return list(range(get_rank(), length, get_world_size()))


def sync_batch_norm(model: paddle.nn.Layer) -> paddle.nn.Layer:
    """SyncBatchNorm for multi-GPU training (batch statistics over all GPUs); else ``model``.

    The converted layers share the original parameters, so an optimizer built before stays valid.
    """
    on_gpu = paddle.is_compiled_with_cuda() and paddle.get_device().startswith("gpu")
    if get_world_size() > 1 and on_gpu:
        return paddle.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def data_parallel(model: paddle.nn.Layer) -> paddle.nn.Layer:
    """``paddle.DataParallel(model)`` under the launcher (gradients averaged over processes)."""
    if get_world_size() <= 1:
        return model
    init_distributed()
    return paddle.DataParallel(model)
