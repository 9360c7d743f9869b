"""Data loading that cannot hang: bad samples travel as data, waits have a limit.

Paddle's DataLoader reads samples in a thread (``num_workers=0``) or in worker processes. An
exception raised there is printed by that thread or worker and the main process then waits
for the batch forever. So every sample is read through :func:`load_sample`, which turns any
exception into a *failure item* ``{FAILURE_KEY: message}`` that the loader hands over like
a sample; :class:`WaitedBatches` re-raises it in the main process as one
:class:`~gcseg.errors.DataError` line naming the file.

:class:`WaitedBatches` also keeps the main thread out of Paddle's blocking read: a helper
thread pulls the batches and the main thread waits on a queue, in short steps, so it notices a
stop signal (:mod:`gcseg.stopping`) and a loader that produced nothing for
``timeout`` seconds (a worker stuck on a network file system). It is a context manager: leaving
the block early (an error, a stop, the last training iteration mid-epoch) closes it, so no
helper thread or loader worker outlives the loop.
"""
import queue
import threading
import time
from typing import Any, Dict, Iterable, Iterator, Optional, Tuple

import numpy as np
import paddle

from gcseg.data.check import FULL_CHECK_HINT
from gcseg.stopping import StopRequested, requested
from gcseg.errors import DataError, GcsegError, first_line

FAILURE_KEY = "gcseg_sample_failure"
DEFAULT_LOADER_TIMEOUT = 300.0
POLL_SECONDS = 0.2


def sample_name(dataset: Any, idx: int) -> str:
    """The image (and label) files of sample ``idx``, or its index for other datasets."""
    file_list = getattr(dataset, "file_list", None)
    if file_list is None or not 0 <= idx < len(file_list):
        return f"sample {idx} of {type(dataset).__name__}"
    img_path, label_path = file_list[idx]
    return img_path + (f" (label {label_path})" if label_path else "")


def failure_item(message: str) -> Dict[str, Any]:
    """A failure as data. The small array keeps the item a batch Paddle can pass along."""
    return {FAILURE_KEY: f"{message} ({FULL_CHECK_HINT})", "marker": np.zeros(1, np.uint8)}


def failure_of(item: Any) -> Optional[str]:
    """The message of a failure item, else None."""
    if isinstance(item, dict) and FAILURE_KEY in item:
        return item[FAILURE_KEY]
    return None


def load_sample(dataset: Any, idx: int) -> Dict[str, Any]:
    """``dataset[idx]``, or a failure item for any exception reading or transforming it."""
    try:
        return dataset[idx]
    except DataError as error:
        return failure_item(str(error))
    except Exception as error:  # undecodable image, OSError, a transform failing on a shape
        return failure_item(f"{sample_name(dataset, idx)}: {type(error).__name__}: "
                            f"{first_line(error)}")


class SafeDataset(paddle.io.Dataset):
    """``dataset`` read through :func:`load_sample`."""

    def __init__(self, dataset: Any) -> None:
        super().__init__()
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> Dict[str, Any]:
        return load_sample(self.dataset, idx)


def _shut_down(iterator: Iterator) -> None:
    """End a Paddle DataLoader iterator's reader thread and worker processes, as Paddle does
    itself once the iterator is exhausted. An iterator dropped before its end is never shut
    down: its reader thread keeps it alive, with its workers."""
    shut_down = getattr(iterator, "_try_shutdown_all", None)  # Paddle 2.6 and 3.x
    if shut_down is not None:
        shut_down()


class WaitedBatches:
    """Iterate ``loader`` (made an iterator here, in the calling thread, as Paddle requires)
    from a helper thread. ``next()`` raises :class:`DataError` for a failure item, for a
    loader error, and after ``timeout`` seconds without a batch; inside
    :func:`gcseg.stopping.cooperative` it raises :class:`StopRequested` on a signal. Read it
    in a ``with`` block, which closes it on the way out."""

    def __init__(self, loader: Iterable, timeout: float, what: str) -> None:
        self.length = len(loader) if hasattr(loader, "__len__") else None
        self.timeout, self.what = timeout, what
        self._results: "queue.Queue[Tuple[str, Any]]" = queue.Queue(maxsize=1)
        self._closed = threading.Event()
        self._iterator: Optional[Iterator] = iter(loader)
        threading.Thread(target=self._feed, name="gcseg-batches", daemon=True).start()

    def close(self) -> None:
        """Read no further: once the batch it is reading arrives, the helper thread shuts
        Paddle's iterator down and ends (otherwise both, and the loader's worker processes,
        stay alive, blocked, for the rest of the process)."""
        self._closed.set()

    def __enter__(self) -> "WaitedBatches":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _feed(self) -> None:
        while not self._closed.is_set():
            try:
                result = ("batch", next(self._iterator))
            except StopIteration:
                result = ("end", None)
            except BaseException as error:  # reported in the main thread
                result = ("error", error)
            if not self._hand_over(result) or result[0] != "batch":
                break
        iterator, self._iterator = self._iterator, None
        _shut_down(iterator)

    def _hand_over(self, result: Tuple[str, Any]) -> bool:
        """Queue ``result`` for the main thread; False when the batches were closed first."""
        while not self._closed.is_set():
            try:
                self._results.put(result, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                pass
        return False

    def __len__(self) -> int:
        return self.length or 0

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        kind, value = self._wait()
        if kind == "end":
            raise StopIteration
        if kind == "error":
            if isinstance(value, GcsegError):
                raise value
            raise DataError(f"{self.what}: the data loader failed ({type(value).__name__}: "
                            f"{first_line(value)})") from value
        message = failure_of(value)
        if message is not None:
            raise DataError(message)
        return value

    def _wait(self) -> Tuple[str, Any]:
        start = time.monotonic()
        while True:
            try:
                return self._results.get(timeout=POLL_SECONDS)
            except queue.Empty:
                pass
            if requested() is not None:
                raise StopRequested
            if time.monotonic() - start > self.timeout:
                raise DataError(f"{self.what}: no data for {self.timeout:g} s (a loader worker "
                                f"may be stuck reading a file, e.g. on a network file system); "
                                f"--loader_timeout changes the limit ({FULL_CHECK_HINT})")
