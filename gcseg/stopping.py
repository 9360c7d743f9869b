"""How a gcseg process stops on SIGINT / SIGTERM, even when it is blocked.

Python runs a signal handler only when the main thread next executes Python code, and a main
thread blocked inside Paddle (waiting for a batch, in a collective another process never joins,
in a long forward pass) may never do so. So besides the handler, :func:`handling_signals`
points Python's signal wakeup file descriptor at a pipe read by a watchdog thread, which sees
every signal at once:

- the first SIGINT / SIGTERM is recorded (:func:`requested`). Inside :func:`cooperative` (the
  training loop) the code stops at its next check, saving a checkpoint first; elsewhere the
  handler raises :class:`KeyboardInterrupt` (SIGINT) or :class:`Terminated` (SIGTERM);
- if the process still runs :data:`GRACE_SECONDS` later, the watchdog runs the
  :func:`last_resort` callbacks (the trainer saves a checkpoint when that is safe), prints one
  line and ends the process with ``128 + signum``;
- a second SIGINT ends the process at once (exit code 130).
"""
import contextlib
import os
import signal
import sys
import threading
from typing import Callable, Iterator, List, Optional

GRACE_SECONDS = 20.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(SystemExit):
    """Raised for SIGTERM where SIGINT raises KeyboardInterrupt: a SystemExit with code
    ``128 + signum``, as a process killed by the signal reports it."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(128 + signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"stopped by {signal.Signals(self.signum).name}"


class StopRequested(Exception):
    """A stop signal arrived while code inside :func:`cooperative` waited; the caller stops
    at this point (the trainer saves its checkpoint, then raises the signal's exception)."""


class _State:
    def __init__(self) -> None:
        self.received: Optional[int] = None
        self.cooperative = 0
        self.installed = 0
        self.last_resort: List[Callable[[], None]] = []
        self.previous: dict = {}
        self.previous_wakeup_fd = -1
        self.wakeup_fd: Optional[int] = None  # the watchdog's pipe, made once per process
        self.timer: Optional[threading.Timer] = None  # the forced exit after a first signal


_state = _State()


def requested() -> Optional[int]:
    """The first stop signal received (``signal.SIGINT`` / ``SIGTERM``), or None."""
    return _state.received


def signal_exception(signum: int) -> BaseException:
    """What a stop by ``signum`` raises: KeyboardInterrupt for SIGINT, else Terminated."""
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def _handle(signum: int, frame: object) -> None:
    _state.received = _state.received or signum
    if not _state.cooperative:
        raise signal_exception(signum)


def _force_exit(signum: int) -> None:
    for callback in list(_state.last_resort):
        try:
            callback()
        except Exception as error:  # the exit must happen whatever the callback does
            print(f"error: while stopping: {error}", file=sys.stderr, flush=True)
    print(f"error: still running {GRACE_SECONDS:.0f} s after {signal.Signals(signum).name}; "
          f"ended by force", file=sys.stderr, flush=True)
    os._exit(128 + signum)


def _watch(read_fd: int) -> None:
    """The watchdog thread: reads the signal numbers Python writes to the wakeup pipe."""
    while True:
        try:
            signum = os.read(read_fd, 1)[0]
        except (OSError, IndexError):
            return
        if signum not in STOP_SIGNALS or not _state.installed:  # e.g. SIGCHLD of workers
            continue
        if _state.timer is None:
            _state.timer = threading.Timer(GRACE_SECONDS, _force_exit, (signum,))
            _state.timer.daemon = True
            _state.timer.start()
        elif signum == signal.SIGINT:
            print("interrupted (second Ctrl-C)", file=sys.stderr, flush=True)
            os._exit(128 + signal.SIGINT)


def _install() -> None:
    if _state.wakeup_fd is None:
        read_fd, _state.wakeup_fd = os.pipe()
        os.set_blocking(_state.wakeup_fd, False)
        threading.Thread(target=_watch, args=(read_fd,), name="gcseg-stop-watchdog",
                         daemon=True).start()
        os.register_at_fork(after_in_child=_forget_in_child)
    _state.previous = {sig: signal.signal(sig, _handle) for sig in STOP_SIGNALS}
    _state.previous_wakeup_fd = signal.set_wakeup_fd(_state.wakeup_fd, warn_on_full_buffer=False)


def _restore_handlers() -> None:
    signal.set_wakeup_fd(_state.previous_wakeup_fd)
    for sig, handler in _state.previous.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _uninstall() -> None:
    _restore_handlers()
    if _state.timer is not None:
        _state.timer.cancel()
    _state.timer, _state.received = None, None


def _forget_in_child() -> None:
    """A forked data loader worker neither shares the watchdog's pipe nor stops cooperatively."""
    if _state.installed:
        _restore_handlers()
    _state.__init__()


@contextlib.contextmanager
def handling_signals() -> Iterator[None]:
    """Install the stop handlers and the watchdog for the enclosed code (outside the main
    thread, where Python allows no handlers, this does nothing). Nested uses share them and
    install the handlers again: importing Paddle replaces them with its own."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _state.installed:
        for sig in STOP_SIGNALS:
            signal.signal(sig, _handle)
    else:
        _install()
    _state.installed += 1
    try:
        yield
    finally:
        _state.installed -= 1
        if not _state.installed:
            _uninstall()


@contextlib.contextmanager
def cooperative() -> Iterator[None]:
    """Within: a stop signal is only recorded; the code checks :func:`requested` and stops
    itself (see :class:`StopRequested`)."""
    with handling_signals():
        _state.cooperative += 1
        try:
            yield
        finally:
            _state.cooperative -= 1


@contextlib.contextmanager
def last_resort(callback: Callable[[], None]) -> Iterator[None]:
    """Run ``callback`` in the watchdog thread before it ends a process that did not stop."""
    _state.last_resort.append(callback)
    try:
        yield
    finally:
        _state.last_resort.remove(callback)


def exit_soon(code: int, seconds: float = 5.0) -> None:
    """Make sure the process ends with ``code``: if the normal exit (joining data loader
    workers and threads) has not finished after ``seconds``, end it by force."""
    timer = threading.Timer(seconds, os._exit, (code,))
    timer.daemon = True
    timer.start()
