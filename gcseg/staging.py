"""Staging names for files and directories that are written whole, then renamed into place.

``tempfile.mkdtemp`` / ``mkstemp`` create mode 0700 / 0600 whatever the umask, and the rename
would publish that mode: a checkpoint or a cached download a teammate or a serving process
cannot read. Here the staging entry is created like any other file the run writes, so its mode
follows the umask.
"""
import os
import uuid


def staging_path(parent: str, prefix: str, suffix: str = "") -> str:
    """A fresh, unused name in ``parent``: ``<prefix><random><suffix>`` (nothing is created)."""
    return os.path.join(parent, f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:12]}{suffix}")


def make_staging_dir(parent: str, prefix: str) -> str:
    """Create an empty directory in ``parent`` with the umask's mode; returns its path."""
    path = staging_path(parent, prefix)
    os.mkdir(path)
    return path
