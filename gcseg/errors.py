"""The error types users see.

Every mistake a user can make (a config, a data file, a checkpoint, a command-line flag) raises a
subclass of :class:`GcsegError` whose message is one line naming the file, key or value and what
was expected. The scripts print that line and exit with code 2 (see :mod:`gcseg.cli`).
"""


class GcsegError(Exception):
    """Base of every user-facing gcseg error."""


class ConfigError(GcsegError):
    """A YAML config (or an --opts override) is wrong: unknown type, missing key, bad value."""


class DataError(GcsegError):
    """A dataset file is missing, unreadable or inconsistent with its label."""


class CheckpointError(GcsegError):
    """A weights/checkpoint file is missing, corrupt or does not fit the model."""


class DownloadError(CheckpointError):
    """Weights named by a URL cannot be downloaded (offline, blocked, HTTP error)."""


class UsageError(GcsegError):
    """A command-line flag has an invalid value."""


class TrainingError(GcsegError):
    """Training cannot go on (non-finite loss, out of memory, disk full)."""


def first_line(error: BaseException, limit: int = 160) -> str:
    """The first non-empty line of ``error``'s message (its type name if it has none), for
    one-line reports of errors that are not gcseg's own (Paddle's span many lines)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:limit]
