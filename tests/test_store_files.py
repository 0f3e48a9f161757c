"""Atomic files and the attempt counter on disk."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

from bleprov.core.attempts import AttemptLimiter
from bleprov.store.files import FileAttemptStore, read_optional, write_atomic


def test_write_atomic_replaces_and_sets_permissions(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "state"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["state"]  # no temp files left


def test_read_optional(tmp_path: Path) -> None:
    assert read_optional(tmp_path / "missing") is None


def test_attempt_counter_survives_a_restart(tmp_path: Path) -> None:
    store = FileAttemptStore(tmp_path / "attempts")
    limiter = AttemptLimiter()
    limiter.begin_attempt(0.0)
    store.save(limiter.to_bytes())
    again = FileAttemptStore(tmp_path / "attempts")
    raw = again.load()
    assert raw is not None
    assert AttemptLimiter.from_bytes(raw).failures == 1


def test_killed_writers_leave_old_or_new_content(tmp_path: Path) -> None:
    """Kill a process that rewrites the file in a loop at random moments: every time,
    the file holds one complete version."""
    target = tmp_path / "state"
    write_atomic(target, b"A" * 4096)
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from bleprov.store.files import write_atomic
        i = 0
        while True:
            i += 1
            write_atomic(Path({str(target)!r}), bytes([65 + i % 26]) * 4096)
        """
    )
    import random
    import time

    for _ in range(15):
        proc = subprocess.Popen([sys.executable, "-c", script])
        time.sleep(random.uniform(0.05, 0.3))
        proc.kill()
        proc.wait()
        data = target.read_bytes()
        assert len(data) == 4096
        assert data == bytes([data[0]]) * 4096
    leftovers = [p for p in tmp_path.iterdir() if p.name != "state"]
    for p in leftovers:  # a killed writer may leave its temp file; never the target torn
        assert p.name.startswith(".state.")
        os.unlink(p)
