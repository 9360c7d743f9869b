"""Failures that stop a training run, turned into one-line :class:`TrainingError` messages.

Paddle reports a device out of memory as ``MemoryError`` or as an error whose type or text says
``ResourceExhausted`` / ``Out of memory``; a full disk surfaces as ``OSError`` with ``ENOSPC``
(``EDQUOT`` over a quota, ``EFBIG`` past a file-size limit). The trainer wraps its loop::

    except Exception as exc:
        error = as_training_error(exc, self.iter, self.last_checkpoint())
        if error is None:
            raise
        raise error from exc
"""
import errno
from typing import Optional

from gcseg.errors import GcsegError, TrainingError, first_line

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_OOM_MARKERS = ("resourceexhausted", "out of memory", "out_of_memory", "cuda error(2)")
OOM_ADVICE = ("reduce batch_size or the crop size (RandomPaddingCrop crop_size), or train with "
              "--precision fp16")


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = f"{type(exc).__name__} {exc}".lower()
    return any(marker in text for marker in _OOM_MARKERS)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def disk_full_error(exc: BaseException, what: str) -> Optional[TrainingError]:
    """A TrainingError for a full disk (or file-size limit) while writing ``what``, else None."""
    if not is_disk_full(exc):
        return None
    return TrainingError(f"{what}: cannot write, {errno.errorcode.get(exc.errno, exc.errno)} "
                         f"({exc.strerror or 'no space left'}); free some disk space or choose "
                         "another --save_dir; the checkpoints saved before are intact")


def as_training_error(exc: BaseException, iteration: int,
                      last_checkpoint: Optional[str] = None) -> Optional[TrainingError]:
    """The one-line TrainingError for an out-of-memory or disk-full ``exc`` raised at
    ``iteration``, or None when ``exc`` is something else (let it propagate as it is)."""
    if isinstance(exc, GcsegError):
        return None
    resume = f"; resume with --resume_model {last_checkpoint}" if last_checkpoint else ""
    if is_out_of_memory(exc):
        return TrainingError(f"iter {iteration}: out of memory on the device "
                             f"({first_line(exc)}); {OOM_ADVICE}{resume}")
    disk_full = disk_full_error(exc, f"iter {iteration}: {getattr(exc, 'filename', None) or 'disk'}")
    if disk_full is not None:
        return TrainingError(f"{disk_full}{resume}")
    return None
