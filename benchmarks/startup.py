"""Start-up benchmark: how long a ``bleprov`` command takes before it does anything.

Every figure is a fresh process (``python -m bleprov ...``), timed from its spawn, run
``runs`` times; the commands take turns round by round, so that a change in the shared
machine's load hits them alike. The floor, ``python -c "import typer, rich"``, is what
any typer + rich command pays before its own code, measured in the same run: ratios to
it compare runs on different machines and loads, seconds do not.

- ``--version``, ``--help``, ``scan --help``: to the process's exit.
- ``scan``, first line: to the first visible text on a terminal (a pseudo-terminal, so
  that rich shows its spinner as a person sees it), on a virtual radio (a ``bleprov
  radio hub`` controller over loopback, started here).
- ``scan``, scanning: to the spinner's "scanning on" (the radio stack imported and the
  radio open).

One unrecorded run of each command first writes the bytecode cache (an installed package
has it; ``PYTHONDONTWRITEBYTECODE`` is dropped for the children) and warms the file cache.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

#: The issue's targets (seconds, median of the runs).
HELP_TARGET: Final = 0.3
SCAN_FIRST_LINE_TARGET: Final = 0.5
#: The floor on the machine where the targets were set: the targets in floor units
#: (0.3 s = 3.3x, 0.5 s = 5.6x), for a run on a slower or a busier machine.
TARGET_FLOOR: Final = 0.09
#: Listening time of the timed ``scan`` (the figures stop before it starts).
SCAN_SECONDS: Final = 0.2
#: Give up on a child after this long.
CHILD_TIMEOUT: Final = 60.0

_ANSI: Final = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")


@dataclass
class Row:
    """One command's start-up over the runs."""

    what: str
    seconds: list[float]
    target: float | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> tuple[float, float]:
        return min(self.seconds), max(self.seconds)

    def verdict(self, floor: float) -> str:
        """The target, in seconds and in floor units, and whether the median meets each."""
        if self.target is None:
            return ""
        ratio = self.target / TARGET_FLOOR

        def met(yes: bool) -> str:
            return "met" if yes else "**not met**"

        return (
            f"<= {self.target:g} s: {met(self.median <= self.target)}; "
            f"<= {ratio:.1f}x: {met(self.median / floor <= ratio)}"
        )


def child_env() -> dict[str, str]:
    """Ours, with the bytecode cache allowed (as an installed package has it), a wide
    terminal, and a terminal type rich animates on."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["COLUMNS"] = "120"
    if env.get("TERM", "dumb") == "dumb":
        env["TERM"] = "xterm-256color"
    env.pop("NO_COLOR", None)
    return env


def time_to_exit(argv: Sequence[str], env: dict[str, str]) -> float:
    """Seconds from spawning ``argv`` to its exit (its output read and dropped)."""
    start = time.perf_counter()
    done = subprocess.run(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr!r}")
    return seconds


def time_to_text(argv: Sequence[str], env: dict[str, str], marks: Sequence[bytes]) -> list[float]:
    """Seconds from spawning ``argv`` on a pseudo-terminal to the first visible text
    (``b""``) or to each text in ``marks``, in order; the child runs to its end."""
    import pty

    parent, child = pty.openpty()
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdin=child, stdout=child, stderr=child, close_fds=True)
    os.close(child)
    seen: list[float] = []
    text = b""
    try:
        deadline = start + CHILD_TIMEOUT
        while time.perf_counter() < deadline:
            ready, _, _ = select.select([parent], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(parent, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            now = time.perf_counter()
            text += chunk
            visible = _ANSI.sub(b"", text)
            while len(seen) < len(marks) and _shows(visible, marks[len(seen)]):
                seen.append(now - start)
        code = proc.wait(CHILD_TIMEOUT)
    finally:
        os.close(parent)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if code != 0 or len(seen) < len(marks):
        shown = _ANSI.sub(b"", text)[-400:]
        raise RuntimeError(f"{' '.join(argv)} exited {code} before {marks[len(seen) :]}: {shown!r}")
    return seen


def _shows(visible: bytes, mark: bytes) -> bool:
    return mark in visible if mark else visible.strip() != b""


@contextmanager
def radio_hub() -> Iterator[str]:
    """A virtual radio hub process with one controller; its bumble transport."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bleprov.radio.virtual", "hub", "--ports", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        transport = None
        for line in proc.stdout:
            if line.startswith("controller "):
                transport = line.split()[2]
            if line.startswith("ready"):
                break
        if transport is None:
            raise RuntimeError(f"the radio hub did not start (exit {proc.poll()})")
        yield transport
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_all(quick: bool, runs: int | None = None) -> list[Row]:
    """Every command ``runs`` times (10; 2 with ``quick``), round by round."""
    runs = runs or (2 if quick else 10)
    env = child_env()
    python, bleprov = [sys.executable], [sys.executable, "-m", "bleprov"]
    with radio_hub() as transport:
        scan = [*bleprov, "scan", "--radio", f"bumble:{transport}", "--timeout", f"{SCAN_SECONDS}"]
        to_exit: dict[str, Callable[[], list[float]]] = {
            'python -c "import typer, rich" (floor)': lambda: [
                time_to_exit([*python, "-c", "import typer, rich"], env)
            ],
            "bleprov --version": lambda: [time_to_exit([*bleprov, "--version"], env)],
            "bleprov --help": lambda: [time_to_exit([*bleprov, "--help"], env)],
            "bleprov scan --help": lambda: [time_to_exit([*bleprov, "scan", "--help"], env)],
            "bleprov scan: first line / scanning": lambda: time_to_text(
                scan, env, [b"", b"scanning on"]
            ),
        }
        for measure in to_exit.values():  # bytecode cache and file cache
            measure()
        samples: dict[str, list[list[float]]] = {what: [] for what in to_exit}
        for round_ in range(runs):
            for what, measure in to_exit.items():
                samples[what].append(measure())
            print(f"  round {round_ + 1}/{runs}", flush=True)
    first_line, scanning = zip(*samples.pop("bleprov scan: first line / scanning"), strict=True)
    rows = [Row(what, [s[0] for s in values]) for what, values in samples.items()]
    for row in rows:
        if row.what == "bleprov --help":
            row.target = HELP_TARGET
    rows.append(Row("bleprov scan: first line", list(first_line), SCAN_FIRST_LINE_TARGET))
    rows.append(Row("bleprov scan: scanning (radio open)", list(scanning)))
    return rows


def render(rows: list[Row]) -> str:
    floor = rows[0].median
    runs = len(rows[0].seconds)
    lines = [
        f"Fresh processes, {runs} runs each, median and spread (fastest - slowest); "
        "x floor is the median over the floor's median. Targets: in seconds, and in "
        f"floor units (the seconds over the {TARGET_FLOOR:g} s floor of the machine they "
        "were set on), the verdict to read on a busier or slower machine.",
        "",
        "| command | median | spread | x floor | target |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        low, high = row.spread
        lines.append(
            f"| {row.what} | {row.median:.3f} s | {low:.3f} - {high:.3f} s "
            f"| {row.median / floor:.1f}x | {row.verdict(floor)} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 runs each (smoke run)")
    parser.add_argument("--runs", type=int, help="runs of each command (default 10)")
    args = parser.parse_args(argv)
    print(render(run_all(args.quick, args.runs)))


if __name__ == "__main__":
    main()
