"""A real terminal for prompt tests: a tmux pane (a terminal emulator, so what a test
reads is what a person would see, and Ctrl-C is the terminal's own SIGINT).

A command runs from a shell script that prints ``EXIT=<code>`` when it ends and stays
open, so the test reads the exit code and the last screen."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Skip marker for tests that need tmux.
needs_tmux = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="needs tmux (a terminal emulator)"
)


@dataclass
class Terminal:
    """One tmux server of our own (its own socket) with one pane running a command."""

    socket: Path

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-S", str(self.socket), *args], capture_output=True, text=True, timeout=10
        )
        return done.stdout

    def start(self, script: Path) -> None:
        self.tmux("new-session", "-d", "-x", "160", "-y", "40", f"sh {shlex.quote(str(script))}")

    def screen(self) -> str:
        """The visible screen, as a person sees it now."""
        return self.tmux("capture-pane", "-p")

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-l", text)
        self.tmux("send-keys", "Enter")

    def ctrl_c(self) -> None:
        """The user presses Ctrl-C once (the terminal sends SIGINT)."""
        self.tmux("send-keys", "C-c")

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.screen())
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} not on the screen within {timeout} s:\n{self.screen()}")

    def exit_code(self, timeout: float) -> int:
        """The command's exit code, once the script prints it."""
        return int(self.wait_for(r"EXIT=(\d+)", timeout).group(1))

    def kill(self) -> None:
        self.tmux("kill-server")


def command_script(
    path: Path, argv: Sequence[str], env: Mapping[str, str], unset: Sequence[str] = ()
) -> Path:
    """A shell script that runs ``argv`` with ``env`` exported (as a person's shell would
    have it), then prints ``EXIT=<code>`` and waits. The shell itself ignores Ctrl-C
    (a trap, which its children do not inherit) so that it lives to print the code."""
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    unsets = "".join(f"unset {name}\n" for name in unset)
    command = " ".join(shlex.quote(a) for a in argv)
    path.write_text(f"trap : INT\n{exports}{unsets}{command}\necho EXIT=$?\nsleep 60\n")
    return path


@contextmanager
def open_terminal() -> Iterator[Terminal]:
    """A terminal of our own, killed afterwards (a test module's fixture wraps it)."""
    # A short socket path (sun_path is 108 bytes at most).
    directory = Path(tempfile.mkdtemp(prefix="bleprov-tmux-", dir="/tmp"))
    term = Terminal(directory / "s")
    try:
        yield term
    finally:
        term.kill()
        shutil.rmtree(directory, ignore_errors=True)
