"""Scale: one host process enrolling N devices at once, and a device daemon's memory.

Concurrency: N devices (:class:`DeviceRuntime`, qr mode) and N host radios share one
virtual radio in this process (no connection-interval model: the radio is not the
bottleneck here, the software is); one hub enrols them all into its zone at once. Figures:
devices per wall second from the first connection to the last commit, failures, and the
process's CPU per device (host, hub and device work together: they share the process).

Memory: a device daemon (``benchmarks.device_process``: a DeviceRuntime on a virtual
controller served over loopback TCP by :class:`VirtualRadioHub`) in its own process; its
resident set (``VmRSS``) once advertising and idle, and its peak (sampled every 5 ms, and
``VmHWM``) while this process enrols it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import (
    ZONE,
    BenchHub,
    Factory,
    enrol,
    enrol_with,
    start_device,
    start_host,
)
from bleprov.core.session.messages import Mode
from bleprov.radio.host_link import CentralRadio
from bleprov.radio.virtual import VirtualLink, VirtualRadioHub, open_hci_device
from bleprov.service.host_session import DeviceAuthentication
from bleprov.store.device_store import DeviceStore
from bleprov.store.keys import KeyFileProvider


@dataclass
class ScaleRow:
    devices: int
    enrolled: int
    failures: int
    seconds: float
    cpu_seconds: float
    errors: list[str]


async def concurrent(n: int) -> ScaleRow:
    factory = Factory.create()
    link = VirtualLink()
    devices = []
    with tempfile.TemporaryDirectory(prefix="bleprov-bench-") as name:
        work = Path(name)
        hub = BenchHub.create(work / "hub")
        try:
            for i in range(n):
                directory = work / f"d{i}"
                directory.mkdir()
                devices.append(
                    await start_device(link, factory, directory, index=i, discriminator=i)
                )
            radios = [await start_host(link, index=i) for i in range(n)]
            cpu, start = time.process_time(), time.perf_counter()
            results = await asyncio.gather(
                *(
                    enrol(r, d, factory, mode=Mode.QR, variant=ZONE, hub=hub)
                    for r, d in zip(radios, devices, strict=True)
                ),
                return_exceptions=True,
            )
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        finally:
            for d in devices:
                await d.close()
            hub.close()
            link.close()
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    return ScaleRow(n, n - len(errors), len(errors), seconds, cpu, errors)


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


@dataclass
class MemoryRow:
    idle_kib: int
    peak_kib: int
    hwm_kib: int
    after_kib: int


async def device_memory() -> MemoryRow:
    factory = Factory.create()
    with tempfile.TemporaryDirectory(prefix="bleprov-bench-") as name:
        work = Path(name)
        provisioning, label = factory.device(discriminator=77)
        DeviceStore(work / "store", KeyFileProvider(work / "store.key")).put_provisioning(
            provisioning
        )
        hub = BenchHub.create(work / "hub")
        radio_hub = await VirtualRadioHub.start([0, 0])
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.device_process",
            radio_hub.transport_specs[0],
            str(work),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        host_device, transport = None, None
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            if line.strip() != b"ready":
                raise RuntimeError("the device process did not start")
            await asyncio.sleep(1.0)  # settle: advertising, background scan
            idle = rss_kib(proc.pid)
            host_device, transport = await open_hci_device(
                radio_hub.transport_specs[1], name="bench-host", address="C0:B1:EE:00:00:01"
            )
            await host_device.power_on()
            peak = idle
            done = asyncio.Event()

            async def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, rss_kib(proc.pid))
                    await asyncio.sleep(0.005)

            sampler = asyncio.create_task(sample())
            try:
                await enrol_with(
                    CentralRadio.bumble(host_device, mtu=247),
                    DeviceAuthentication.from_qr_text(label.qr_text),
                    factory.trust,
                    variant=ZONE,
                    hub=hub,
                )
            finally:
                done.set()
                await sampler
            await asyncio.sleep(0.5)
            return MemoryRow(idle, peak, rss_kib(proc.pid, "VmHWM"), rss_kib(proc.pid))
        finally:
            if proc.stdin is not None:
                proc.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 15)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            if transport is not None:
                await transport.close()
            await radio_hub.close()
            hub.close()


async def run_all(quick: bool) -> tuple[list[ScaleRow], MemoryRow]:
    rows = []
    for n in (1, 3) if quick else (1, 10, 50):
        t = time.perf_counter()
        rows.append(await concurrent(n))
        print(f"  scale N={n}: {time.perf_counter() - t:.1f} s wall", flush=True)
    return rows, await device_memory()


def render(rows: Sequence[ScaleRow], memory: MemoryRow) -> str:
    lines = [
        "| devices at once | enrolled | failures | wall time | devices per second "
        "| process CPU per device |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.devices} | {r.enrolled} | {r.failures} | {r.seconds:.2f} s "
            f"| {r.enrolled / r.seconds:.1f} | {r.cpu_seconds / r.devices * 1000:.0f} ms |"
        )
    for r in rows:
        for error in r.errors[:3]:
            lines.append(f"\nN={r.devices}: {error}")
    lines += [
        "",
        "| device daemon (own process) | resident memory |",
        "|---|---|",
        f"| advertising, idle | {memory.idle_kib / 1024:.1f} MiB |",
        f"| peak during an enrolment (5 ms samples) | {memory.peak_kib / 1024:.1f} MiB |",
        f"| high-water mark (VmHWM) | {memory.hwm_kib / 1024:.1f} MiB |",
        f"| after the enrolment | {memory.after_kib / 1024:.1f} MiB |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(render(*asyncio.run(run_all(args.quick))))


if __name__ == "__main__":
    main()
