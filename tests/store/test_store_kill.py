"""SIGKILL a process that is writing the device store, hundreds of times, at random
moments and at chosen ones (inside the rename window): the store always loads, and holds
the last completed write or the one in flight, never a mix.

The writer updates three records in every write: "a" and "b" hold the same counter, and
"blob" alternates between a short and a long value, so a torn or mixed write would show.
To fit hundreds of kills in a few seconds, a fork server started with ``python -c``
imports the store once and forks one writer per kill (forking is milliseconds, starting
Python is tens of them); each writer is a separate process killed with SIGKILL.

SIGKILL keeps the kernel's page cache, so this proves the write protocol (temporary file,
rename, no in-place writes) and the lock, not what a power cut does to unsynced data;
that part rests on write_atomic's fsyncs.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cbor2
import pytest

from bleprov.store.device_store import STORE_FILE_NAME, DeviceStore
from bleprov.store.keys import KEY_FILE_NAME, KeyFileProvider

REPO = Path(__file__).resolve().parents[2]
KILLS = 500
TIME_BUDGET = 30.0

FORK_SERVER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path

    import cbor2

    from bleprov.store.device_store import DeviceStore
    from bleprov.store.keys import KeyFileProvider

    directory = Path(sys.argv[1])

    def report(line):
        os.write(1, (line + "\\n").encode())

    def pause_in_rename_window(where):
        real_replace = os.replace

        def replace(src, dst):
            if where == "before-rename":
                report("window")
                signal.pause()
            real_replace(src, dst)
            if where == "after-rename":
                report("window")
                signal.pause()

        os.replace = replace

    def write_forever(where):
        if where != "anywhere":
            pause_in_rename_window(where)
        store = DeviceStore(directory, KeyFileProvider(directory / "store.key"))
        start = cbor2.loads(store.get("a"))
        report(f"start {start}")
        for value in range(start + 1, start + 100_000):  # bounded, should a kill go amiss
            blob = bytes([value % 251]) * (1 if value % 2 else 3000)
            store.update({"a": cbor2.dumps(value), "b": cbor2.dumps(value), "blob": blob})
            report(f"done {value}")

    for line in sys.stdin:
        pid = os.fork()
        if pid == 0:
            try:
                write_forever(line.strip())
            finally:
                os._exit(1)
        report(f"pid {pid}")
        _, status = os.waitpid(pid, 0)
        report(f"exit {pid} {status}")
    """
)


@dataclass
class Run:
    """What one writer reported before it died."""

    pid: int = 0
    start: int | None = None
    done: list[int] = field(default_factory=list)
    window: bool = False
    status: int | None = None


class ForkServer:
    def __init__(self, directory: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", FORK_SERVER, str(directory)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=REPO,
        )
        self.writer: Run | None = None

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        assert line, "the fork server died"
        return line.strip()

    def _absorb(self, run: Run, line: str) -> None:
        word, _, rest = line.partition(" ")
        if word == "pid":
            run.pid = int(rest)
        elif word == "start":
            run.start = int(rest)
        elif word == "done":
            run.done.append(int(rest))
        elif word == "window":
            run.window = True
        elif word == "exit":
            run.status = int(rest.split()[1])
        else:
            raise AssertionError(f"unexpected line from the writer: {line!r}")

    def run_and_kill(self, where: str, delay: float) -> Run:
        """Fork a writer; kill it ``delay`` s after it starts writing (or, with a
        ``where``, as soon as it reports being in the rename window)."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"{where}\n".encode())
        self.process.stdin.flush()
        run = Run()
        self.writer = run
        while run.pid == 0 or (run.start is None if where == "anywhere" else not run.window):
            self._absorb(run, self._line())
        if where == "anywhere":
            time.sleep(delay)
        os.kill(run.pid, signal.SIGKILL)
        while run.status is None:
            self._absorb(run, self._line())
        assert os.WIFSIGNALED(run.status)
        assert os.WTERMSIG(run.status) == signal.SIGKILL
        return run

    def close(self) -> None:
        """Stop the server; after a failed assertion, kill a writer left running first."""
        if self.writer is not None and self.writer.pid and self.writer.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.writer.pid, signal.SIGKILL)
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            status = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        assert status == 0


@pytest.fixture
def started(tmp_path: Path) -> Iterator[tuple[Path, ForkServer]]:
    directory = tmp_path / "device"
    store = DeviceStore(directory, KeyFileProvider(directory / KEY_FILE_NAME))
    store.update({"a": cbor2.dumps(0), "b": cbor2.dumps(0), "blob": b""})
    server = ForkServer(directory)
    try:
        yield directory, server
    finally:
        server.close()


def consistent_value(directory: Path) -> tuple[int, int]:
    """Load the store as a restarted device would: (counter, generation)."""
    store = DeviceStore(directory, KeyFileProvider(directory / KEY_FILE_NAME))
    records = store.load()
    value = cbor2.loads(records["a"])
    assert cbor2.loads(records["b"]) == value
    assert records["blob"] == bytes([value % 251]) * (1 if value % 2 else 3000) or value == 0
    # Every write adds one to the counter and one to the generation.
    assert store.generation == value + 1
    return value, store.generation


def stale_temporaries(directory: Path) -> list[Path]:
    return list(directory.glob(f".{STORE_FILE_NAME}.*.tmp"))


def test_hundreds_of_random_kills_leave_a_consistent_store(
    started: tuple[Path, ForkServer],
) -> None:
    directory, server = started
    rng = random.Random(os.environ.get("BLEPROV_KILL_SEED", time.time_ns()))
    began = time.monotonic()
    generation = 1
    previous_value = 0
    outcomes = {"last reported write": 0, "write in flight": 0}
    kills_while_writing = kills_before_rename = 0
    for kill in range(KILLS):
        run = server.run_and_kill("anywhere", rng.uniform(0.0, 0.006))
        assert run.start == previous_value, kill
        last_reported = run.done[-1] if run.done else run.start
        value, new_generation = consistent_value(directory)
        # The last completed write, or the one the writer was in (its rename happened
        # but the kill came before it could report).
        assert value in (last_reported, last_reported + 1), (kill, run)
        outcomes["last reported write" if value == last_reported else "write in flight"] += 1
        assert new_generation >= generation
        generation, previous_value = new_generation, value
        leftovers = len(stale_temporaries(directory))
        assert leftovers <= 1
        kills_before_rename += leftovers
        kills_while_writing += bool(run.done or value != run.start or leftovers)
    elapsed = time.monotonic() - began
    print(
        f"\n{KILLS} kills in {elapsed:.1f} s, {kills_while_writing} after writing had begun, "
        f"{kills_before_rename} between a temporary file's creation and its rename; "
        f"store after the kill held: {outcomes}; final generation {generation}"
    )
    assert kills_while_writing > KILLS // 2
    assert outcomes["write in flight"] > 0
    assert elapsed < TIME_BUDGET


@pytest.mark.parametrize(
    ("where", "expected_shift"),
    [("before-rename", 0), ("after-rename", 1)],
)
def test_a_kill_inside_the_rename_window(
    started: tuple[Path, ForkServer], where: str, expected_shift: int
) -> None:
    """Killed after fsyncing the temporary file but before the rename: the old store,
    and a complete temporary that the next writer removes. Killed after the rename but
    before the directory fsync: the new store."""
    directory, server = started
    value = 0
    for _ in range(10):
        run = server.run_and_kill(where, 0.0)
        assert run.start == value
        assert run.done == []
        value, _generation = consistent_value(directory)
        assert value == run.start + expected_shift
        leftovers = stale_temporaries(directory)
        assert len(leftovers) == (1 if where == "before-rename" else 0)
    DeviceStore(directory, KeyFileProvider(directory / KEY_FILE_NAME)).update({"c": b"1"})
    assert stale_temporaries(directory) == []
