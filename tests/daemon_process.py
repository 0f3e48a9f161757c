"""A child process read line by line on a thread: the device daemon, the radio hub.

Shared by tests/test_device_daemon.py and hw_tests/test_hw_device.py.
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import threading
import time


def daemon_env(**extra: str) -> dict[str, str]:
    """The environment for a child: ours, unbuffered, plus ``extra``."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


class Process:
    """A child process whose stdout lines are read on a thread, to wait for markers."""

    def __init__(self, argv: list[str], env: dict[str, str], *, stdin: bool = False) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, prefix: str, timeout: float = 20.0, *, anywhere: bool = False) -> str:
        """The next line starting with ``prefix`` (or holding it, ``anywhere``); earlier
        lines are kept in ``lines``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {prefix!r} within {timeout} s: {self.lines}") from None
            if line is None:
                raise AssertionError(f"process exited before {prefix!r}: {self.lines}")
            self.lines.append(line)
            if line.startswith(prefix) or (anywhere and prefix in line):
                return line

    async def expect(self, prefix: str, timeout: float = 20.0, *, anywhere: bool = False) -> str:
        """:meth:`wait_for` without blocking the event loop (the hub serves on it)."""
        return await asyncio.to_thread(self.wait_for, prefix, timeout, anywhere=anywhere)

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"did not stop on signal {signum}: {self.lines}") from None
        finally:
            if self.proc.stdin is not None:
                self.proc.stdin.close()

    def kill(self) -> None:
        """Teardown: end it if it still runs, and close our end of its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdin is not None:
            self.proc.stdin.close()

    def rest(self) -> list[str]:
        """Every line after the process ended."""
        while (line := self._queue.get(timeout=10)) is not None:
            self.lines.append(line)
        return self.lines
