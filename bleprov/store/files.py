"""Atomic files: a write is all or nothing, whatever moment the power goes.

The new content goes to a temporary file in the same directory, is flushed and fsynced,
then renamed over the old one (rename is atomic on POSIX file systems), and the
directory is fsynced so the rename itself is durable. A reader sees the old content or
the new, never a mix.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably; permissions ``mode``."""
    path = Path(path)
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_optional(path: Path) -> bytes | None:
    """The file's bytes, or None if it does not exist."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None


class FileAttemptStore:
    """The device's failed-attempt counter in a file, written atomically.

    The counter is not secret (a count and a lock flag); what matters is that it
    survives power cuts and cannot be rolled back by one. The encrypted device store
    (Device enrolment issue) will hold it alongside the secrets.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> bytes | None:
        return read_optional(self.path)

    def save(self, state: bytes) -> None:
        write_atomic(self.path, state)
