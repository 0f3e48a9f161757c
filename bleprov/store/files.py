"""Atomic files: a write is all or nothing, whatever moment the power goes.

The new content goes to a temporary file in the same directory, is flushed and fsynced,
then renamed over the old one (rename is atomic on POSIX file systems), and the
directory is fsynced so the rename itself is durable. A reader sees the old content or
the new, never a mix.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably; permissions ``mode``.

    Plain ``os`` calls rather than ``tempfile``/``pathlib``: the device writes its attempt
    reservation this way at every session, and those layers cost more CPU than the
    system calls (the steps, the fsyncs and their order are the same)."""
    target = os.fspath(path)
    directory = os.path.dirname(target) or "."
    prefix = f".{os.path.basename(target)}."
    while True:
        tmp_name = os.path.join(directory, f"{prefix}{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            continue
        except FileNotFoundError:  # the first write into a new directory
            os.makedirs(directory, exist_ok=True)
            continue
        break
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_optional(path: Path) -> bytes | None:
    """The file's bytes, or None if it does not exist (``os`` calls: a daemon reads its
    store several times per session)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


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
