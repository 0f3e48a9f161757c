"""Where the device's CPU goes in a handshake, piece by piece, as :mod:`benchmarks.cpu`
runs it (the device on its own thread, whole messages over memory).

Each piece is the device thread's CPU time (``time.thread_time``) spent inside a few
functions, exclusive of the other pieces they call; "rest" is the handshake's total less
the pieces: the event loop, its wake-ups, the in-memory transport and everything else.
Medians over ``runs`` handshakes per mode, each on a fresh device (as benchmarks.cpu).
The wrappers cost about a microsecond per call, so the total is a little above
benchmarks.cpu's.

    python -m benchmarks.device_cpu --runs 25 --modes qr,code
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks import cpu
from benchmarks.common import MODES, ZONE, BenchHub, Factory
from bleprov.core import advertising
from bleprov.core.session import device as core_device
from bleprov.service import device_runtime, enrolment
from bleprov.session import attempts
from bleprov.store import device_store

#: (owner, attribute, piece): what is timed, and under which name.
PIECES: list[tuple[Any, str, str]] = [
    (device_store, "write_atomic", "store write: file, fsync, rename (reservation)"),
    (device_store.DeviceStore, "_write", "store write: CBOR, encryption"),
    (device_store.DeviceStore, "_read", "store reads (file, decryption if changed)"),
    (attempts.AttemptLedger, "cover", "attempt ledger (covers, parses, lock)"),
    (attempts.AttemptLedger, "_start_write", "attempt ledger (covers, parses, lock)"),
    (attempts.AttemptLedger, "settle_soon", "attempt ledger (covers, parses, lock)"),
    (device_runtime.DeviceRuntime, "current_info", "info (build and encode)"),
    (advertising.DeviceInfo, "encode", "info (build and encode)"),
    (core_device.DeviceSession, "__init__", "session machine (sans-IO protocol)"),
    (core_device.DeviceSession, "receive", "session machine (sans-IO protocol)"),
    (enrolment.EnrolmentService, "opened", "enrolment opened (zone key and proof)"),
]


class Pieces:
    """Exclusive thread CPU per piece, on one thread, while :attr:`on`."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)
        self.on = False
        self.thread: int | None = None
        self._stack: list[list[Any]] = []

    def wrap(self, function: Callable[..., Any], piece: str) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.on or threading.get_ident() != self.thread:
                return function(*args, **kwargs)
            start = time.thread_time()
            if self._stack:
                self.spent[self._stack[-1][0]] += start - self._stack[-1][1]
            self._stack.append([piece, start])
            try:
                return function(*args, **kwargs)
            finally:
                end = time.thread_time()
                name, since = self._stack.pop()
                self.spent[name] += end - since
                if self._stack:
                    self._stack[-1][1] = end

        return timed

    @contextmanager
    def installed(self) -> Iterator[None]:
        saved = [(owner, name, getattr(owner, name)) for owner, name, _ in PIECES]
        for owner, name, piece in PIECES:
            setattr(owner, name, self.wrap(getattr(owner, name), piece))
        try:
            yield
        finally:
            for owner, name, original in saved:
                setattr(owner, name, original)

    def reset(self) -> None:
        self.spent.clear()
        self._stack.clear()


async def measure(runs: int, modes: list[str]) -> dict[str, tuple[float, dict[str, float]]]:
    """Per mode: the median handshake total (ms) and the median of each piece (ms)."""
    pieces = Pieces()
    samples: list[dict[str, float]] = []
    factory = Factory.create()
    device = cpu.DeviceThread()
    pieces.thread = device._thread.ident
    measured_cpu = device.cpu
    calls = 0

    async def switching_cpu() -> float:
        # one_enrolment reads the device's CPU three times: before the handshake, after
        # it, after the commit. The pieces are recorded between the first two.
        nonlocal calls
        calls += 1

        async def switch(on: bool) -> float:
            now = time.thread_time()
            if on:
                pieces.reset()
            pieces.on = on
            return now

        if calls % 3 == 1:
            return await device.run(switch(True))
        if calls % 3 == 2:
            now = await device.run(switch(False))
            samples.append(dict(pieces.spent))
            return now
        return await measured_cpu()

    device.cpu = switching_cpu  # type: ignore[method-assign]
    by_label = {mode.label: mode for mode in MODES}
    result: dict[str, tuple[float, dict[str, float]]] = {}
    try:
        with pieces.installed(), tempfile.TemporaryDirectory(prefix="bleprov-bench-") as name:
            work = Path(name)
            hub = BenchHub.create(work / "hub")
            try:
                for label in modes:
                    samples.clear()
                    totals = []
                    for _ in range(runs + 1):  # the first run warms caches and imports
                        directory = Path(tempfile.mkdtemp(dir=work))
                        timing = await cpu.one_enrolment(
                            device, factory, hub, directory, mode=by_label[label], variant=ZONE
                        )
                        totals.append(timing[1])
                    total = statistics.median(totals[1:]) * 1000
                    names = sorted({piece for _, _, piece in PIECES})
                    medians = {
                        piece: statistics.median(s.get(piece, 0.0) for s in samples[1:]) * 1000
                        for piece in names
                    }
                    result[label] = (total, medians)
            finally:
                hub.close()
    finally:
        device.stop()
    return result


def render(result: dict[str, tuple[float, dict[str, float]]]) -> str:
    labels = list(result)
    names = list(next(iter(result.values()))[1]) if result else []
    lines = [
        "| piece | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    for piece in names:
        cells = " | ".join(f"{result[label][1][piece]:.2f} ms" for label in labels)
        lines.append(f"| {piece} | {cells} |")
    rest = " | ".join(
        f"{result[label][0] - sum(result[label][1].values()):.2f} ms" for label in labels
    )
    lines.append(f"| rest (event loop, wake-ups, in-memory transport) | {rest} |")
    totals = " | ".join(f"{result[label][0]:.2f} ms" for label in labels)
    lines.append(f"| handshake, device thread (median) | {totals} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--modes", default=",".join(mode.label for mode in MODES))
    args = parser.parse_args()
    print(render(asyncio.run(measure(args.runs, args.modes.split(",")))))


if __name__ == "__main__":
    main()
