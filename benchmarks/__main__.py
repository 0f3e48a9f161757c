"""``python -m benchmarks``: every benchmark in one run, written to docs/performance.md
(and every PDU of one qr + zone enrolment to docs/trace.md, as ``python -m
benchmarks.trace`` does).

``--quick`` uses tiny counts (a smoke run: the figures mean nothing) and prints the
report instead of writing it unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import ssl
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import bumble
import cryptography
from cryptography.hazmat.backends.openssl.backend import backend as openssl_backend

from benchmarks import (
    anchors,
    cpu,
    enrolment,
    growth,
    link,
    protocol,
    scale,
    session,
    startup,
    targets,
    trace,
    wire,
    zone,
)
from benchmarks.air import TRACE_MODES
from benchmarks.anchors import AnchorRow
from benchmarks.common import ZONE, Enrolled
from benchmarks.cpu import CpuRow
from benchmarks.enrolment import Row as ScanRow
from benchmarks.growth import ChainRow
from benchmarks.link import Row as LinkRow
from benchmarks.protocol import Case
from benchmarks.scale import MemoryRow, ScaleRow
from benchmarks.session import Row as SessionRow
from benchmarks.startup import Row as StartupRow
from benchmarks.wire import WireResults
from benchmarks.zone import RateRow, StepRow

REPORT: Final = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


@dataclass
class Results:
    quick: bool
    started: datetime
    seconds: float
    protocol: list[tuple[Case, Enrolled]]
    sessions: list[SessionRow]
    scrypt_ms: float | None
    handshakes: list[CpuRow]
    enrolments: list[CpuRow]
    anchors: list[AnchorRow]
    scale: list[ScaleRow]
    memory: MemoryRow
    steps: list[StepRow]
    rates: list[RateRow]
    scan: list[ScanRow]
    chains: list[ChainRow]
    link: list[LinkRow]
    startup: list[StartupRow]
    wire: WireResults


def _step(name: str) -> None:
    print(f"{name}...", flush=True)


async def collect(quick: bool) -> Results:
    """Run everything; ``quick`` for tiny counts."""
    started, t = datetime.now(UTC), time.perf_counter()
    _step("every PDU of one enrolment per mode and trust step (traced, link model)")
    wire_results = await wire.run_all(quick)
    _step("protocol cost and time per mode (virtual radio, modelled intervals)")
    protocol_rows = await protocol.run_all(quick)
    _step("handshakes, sans-IO")
    sessions = session.run(3 if quick else 50)
    scrypt_ms = None if quick else session.scrypt_default_ms()
    _step("CPU per handshake and enrolment, and the anchors")
    handshakes, enrolments, anchor_rows = await cpu.run_all(2 if quick else 25)
    _step("scale and memory")
    scale_rows, memory = await scale.run_all(quick)
    _step("zone: certificate step and CA rates")
    steps, rates = await zone.run_all(quick)
    _step("growth: scan lists")
    scan = await enrolment.run_all(quick)
    chains = growth.run()
    _step("link: framing and flow control")
    link_rows = await link.run_all(quick)
    _step("start-up: fresh bleprov processes")
    startup_rows = startup.run_all(quick)
    return Results(
        quick,
        started,
        time.perf_counter() - t,
        protocol_rows,
        sessions,
        scrypt_ms,
        handshakes,
        enrolments,
        anchor_rows,
        scale_rows,
        memory,
        steps,
        rates,
        scan,
        chains,
        link_rows,
        startup_rows,
        wire_results,
    )


def machine() -> list[str]:
    model = "unknown CPU"
    with_cpuinfo = Path("/proc/cpuinfo")
    if with_cpuinfo.exists():
        for line in with_cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        total = int(meminfo.read_text().split()[1])
        memory = f", {total / 1024 / 1024:.1f} GiB RAM"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return [
        f"- machine: {model}, {os.cpu_count()} cores{memory}; {platform.platform()}; "
        f"load average at the end {load} (the machine is shared: CPU times and ratios are "
        "the figures to trust, wall times are one run)",
        f"- Python {platform.python_version()} ({platform.python_implementation()}); "
        f"OpenSSL: {openssl_backend.openssl_version_text()} in cryptography "
        f"{cryptography.__version__}, {ssl.OPENSSL_VERSION} in Python's ssl (TLS); "
        f"srp {anchors.SRP_BACKEND} (the system's libssl through ctypes when it loads); "
        f"bumble {getattr(bumble, '__version__', '?')}",
    ]


def summary(r: Results) -> str:
    """The main table: one row per mode and trust step (zone, peer)."""
    traced = {(c.mode, c.variant, c.mtu): c for c in r.wire.costs}
    runs = {
        (c.mode.label, c.variant, c.mtu, c.interval_ms): e
        for c, e in r.protocol
        if not c.join_delay
    }
    interval = 7.5 if r.quick else 30.0
    full = {row.what: row for row in r.enrolments}
    srp_row = r.anchors[0]
    lines = [
        "| mode | trust step | set-up ATT round trips | protocol flights "
        "| bytes on air (MTU 247 / 23) "
        "| connected -> committed, 30 ms, link model (MTU 247 / 23) "
        f"| measured on the virtual link, {interval:g} ms (MTU 247 / 23) "
        "| host CPU | device CPU | device CPU / SRP-6a 3072 device |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = [m.label for m in TRACE_MODES]
    keys = {(c.mode.label, c.variant) for c, _ in r.protocol if not c.join_delay}
    keys |= {(c.mode, c.variant) for c in r.wire.costs if c.variant in (ZONE, "peer")}
    for mode, variant in sorted(
        keys, key=lambda k: (k[1] != ZONE, order.index(k[0]) if k[0] in order else 99)
    ):
        step = "zone enrolment" if variant == ZONE else "peer binding"
        big, small = traced.get((mode, variant, 247)), traced.get((mode, variant, 23))
        real = [runs.get((mode, variant, mtu, interval)) for mtu in (247, 23)]
        any_trace = big or small
        c = full.get(f"bleprov {mode}, {step}")
        cpu_cells = (
            f"{c.host_ms:.1f} ms | {c.device_ms:.1f} ms | {c.device_ms / srp_row.device_ms:.1f}x"
            if c
            else "| |"
        )
        air = " / ".join(f"{x.air_bytes:,}" if x else "-" for x in (big, small))
        model = " / ".join(f"{x.seconds:.2f} s" if x else "-" for x in (big, small))
        measured = " / ".join(f"{x.seconds:.2f} s" if x else "-" for x in real)
        counts = f"{any_trace.setup_round_trips} | {any_trace.flights}" if any_trace else "- | -"
        lines.append(f"| {mode} | {step} | {counts} | {air} | {model} | {measured} | {cpu_cells} |")
    return "\n".join(lines)


def target_verdicts(r: Results) -> list[targets.Verdict]:
    """The v2 targets against this run (CPU: the handshakes of section 3)."""
    device_ms = {h.what.removeprefix("bleprov "): h.device_ms for h in r.handshakes}
    srp = r.anchors[0].device_ms if r.anchors else None
    sansio = statistics.median(x.device_ms for x in r.sessions) if r.sessions else None
    return wire.verdicts(r.wire, device_ms, srp, sansio_device_ms=sansio)


def render(r: Results) -> str:
    trips = {s.mode: s.round_trips for s in r.sessions}
    issue = next((x for x in r.rates if x.key == "issue"), None)
    srp_row, sec1 = r.anchors
    interval = 7.5 if r.quick else 30.0
    cpu_runs = r.enrolments[0].runs if r.enrolments else 0
    anchors_runs = cpu.anchor_runs(cpu_runs)
    sansio_device = statistics.median(x.device_ms for x in r.sessions) if r.sessions else 0
    median_device = statistics.median(h.device_ms for h in r.handshakes) if r.handshakes else 0
    parts = [
        "# Performance",
        "",
        "Generated by `python -m benchmarks` (do not edit by hand; rerun it)."
        + (" **Quick run: tiny counts, figures meaningless.**" if r.quick else ""),
        "",
        f"- date: {r.started:%Y-%m-%d %H:%M} UTC; the whole run took {r.seconds:.0f} s",
        *machine(),
        "",
        "What is measured: a full enrolment is connect, secure session and attestation "
        "(the device pushes its zone key and proof of possession behind it), Wi-Fi set "
        "(status pushed by the device), then the trust step (zone: certificate from the "
        "hub's CA on that key, install; peer: both keys pinned), then commit; the traced "
        "runs go through provision() as the CLI does, with the network named (no scan; one "
        "row picks it from a scan) and the requests pipelined as protocol v2 allows, the CPU "
        "runs (section 3) step by step, scan included. The simulated Wi-Fi answers at once "
        "(its modelled join is "
        "reported on its own below). KDF costs are cheap throughout (the code mode's scrypt "
        "at the default cost is reported on its own).",
        "",
        "## Summary",
        "",
        summary(r),
        "",
        "Set-up ATT round trips, protocol flights, bytes and the link-model time come from "
        'every PDU of one enrolment, traced from connection-complete (section "On the '
        "air\"); the measured time is section 2's run on the latency-modelling link (its "
        "host and device really compute). The Wi-Fi status is pushed, not polled. CPU: "
        "median of the full enrolment with the device on its own thread (section 3). "
        f"SRP-6a 3072/SHA-512 alone costs the device {srp_row.device_ms:.2f} ms and the host "
        f"{srp_row.host_ms:.2f} ms here; ESP-IDF security 1 "
        f"{sec1.device_ms:.2f} / {sec1.host_ms:.2f} ms (device / host). A bleprov "
        f"handshake with attestation costs the device {median_device:.2f} ms as the daemon "
        f"runs it (median over modes), {sansio_device:.2f} ms in the session machines alone.",
        "",
        "## Targets (protocol v2, issue 17)",
        "",
        targets.render(target_verdicts(r)),
        "",
        "Limits from issue 17; every measured figure comes from this run (benchmarks/"
        "targets.py holds the limits and v1's registry baseline only). Known device: the "
        "same host connected to it once before.",
        "",
        "## On the air: round trips, flights and bytes, PDU by PDU",
        "",
        wire.render(r.wire),
        "",
        "`python -m benchmarks.trace` writes every PDU of one qr + zone enrolment to "
        "docs/trace.md.",
        "",
        "## 1. Protocol cost per mode",
        "",
        f"Counted on the virtual radio, the {interval:g} ms runs of section 2 (counts do not "
        "depend on the interval; bytes on air vary by a few bytes between runs with the "
        "length of DER signatures). GATT round trips here are what bleprov's host link "
        "counts itself: the info read and the CCCD write only (every message goes as Write "
        "Without Response or notification under credits); the MTU exchange and the "
        'discovery are not in it: section "On the air" counts every ATT round trip from '
        "the PDUs. Messages are session messages "
        "(handshake and enrolment records); frames are link frames (credits included).",
        "",
        protocol.render_cost(r.protocol, trips, interval),
        "",
        "Handshakes alone (sans-IO machines, no radio; session-layer bytes; CPU median of "
        "the runs, attestation signing and verification included):",
        "",
        session.render(r.sessions, r.scrypt_ms),
        "",
        "## 2. Time under a real link: connected -> committed",
        "",
        "One run per cell on the latency-modelling link (6 LL packets per connection event "
        "each way, LL payload 251), from connection-complete (the CONNECT_IND on the link; "
        "finding the device by scanning is not counted) to the commit confirmed; host and "
        'device compute for real here (the link model of section "On the air" counts '
        "them as 0).",
        "",
        protocol.render_time(r.protocol),
        "",
        "## 3. CPU, side by side with the anchors (same run, same machine)",
        "",
        cpu.render(r.handshakes, r.enrolments, r.anchors),
        "",
        f"Host and device CPU are medians of {cpu_runs} runs (anchors: "
        f"{anchors_runs} runs); ratios are bleprov / anchor, host / device. "
        "The anchors are the key "
        "exchanges only: no attestation, no certificate, no Wi-Fi. bleprov's handshake "
        "includes the device's attestation (ECDSA P-256 signature and the host's chain "
        "check); the full enrolment adds the zone key and its proof (device key "
        "generation), the hub's certificate and registry write (host), and the device's "
        "encrypted store commit. Unlike the sans-IO handshake table in section 1, the "
        "device here also reads its encrypted store (its state, owner and receipts; a read "
        "decrypts only if the file changed since its last read or write) and reserves its "
        "attempt when the session opens (an encrypted, fsync'd store write, about 0.4 ms "
        "of CPU, once per session; the counter's reset joins the commit's write), as the "
        "daemon does (python -m benchmarks.device_cpu: the device's CPU piece by piece); "
        "and the in-memory transport's thread "
        "wake-ups (a socket write per message) are counted on both sides. The sans-IO "
        "table is the protocol alone.",
        "",
        "## 4. Scale",
        "",
        scale.render(r.scale, r.memory),
        "",
        (
            f"Zone CA: {issue.cpu_rate:,.0f} certificates per CPU second "
            f"({issue.wall_rate:,.0f} per wall second) on this machine; section 6 has the "
            "rest of the CA's operations."
            if issue
            else ""
        ),
        "",
        "## 5. Growth",
        "",
        "Wi-Fi scan list of 5 vs 100 access points (QR session open; scan + set + commit; "
        "the device's cache warmed by a first scan):",
        "",
        enrolment.render(r.scan),
        "",
        "Certificate chain of 1 vs 2 intermediates: **not supported today, so computed, not "
        "measured.** The manufacturer CA issues one attestation intermediate (root pathLen "
        "1) and zone chains hold the issuing CA and optionally the root (`verify_member` "
        "accepts 1 or 2 certificates), so a second intermediate would not verify. What it "
        "would add, taking the size of the intermediate each chain already carries "
        "(connection events at most, if none of the frames fit in events already used):",
        "",
        growth.render(r.chains),
        "",
        "## 6. The certificate step and the zone CA",
        "",
        zone.render(r.steps, r.rates),
        "",
        "## 7. Link: framing and flow control",
        "",
        link.render(r.link),
        "",
        "## 8. Start-up: a command before it does anything",
        "",
        "How long `bleprov` takes to answer `--help`, and to show the first line of a "
        "`scan` (on a terminal, a virtual radio), beside what any typer + rich command "
        'pays (`python -c "import typer, rich"`, the floor) in the same run '
        "(benchmarks/startup.py). The ratio is the figure to compare across machines. "
        "Beyond the floor, `--help` pays rich's console, typer's help renderer (it imports "
        "a Markdown parser and pygments), typer building every command from its signature, "
        "and bleprov's own modules (about 10 ms: the commands import the protocol, radios "
        "and stores when they run). A command that runs also pays pydantic, through which "
        "typer coerces every option, before its first line; `scan` shows that line before "
        "it imports and opens the radio stack (bleak, and bumble for a bumble radio).",
        "",
        startup.render(r.startup),
        "",
    ]
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny counts (smoke run)")
    parser.add_argument("--out", type=Path, help=f"where to write (default {REPORT})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("bumble").setLevel(logging.CRITICAL)
    results = asyncio.run(collect(args.quick))
    text = render(results)
    out = args.out or (None if args.quick else REPORT)
    if out is None:
        print(text)
    else:
        out.write_text(text)
        print(f"wrote {out}")
    if out == REPORT:
        # make bench: the PDU-by-PDU trace beside the report (python -m benchmarks.trace).
        trace.DEFAULT_OUT.write_text(asyncio.run(trace.run(247, 30.0)))
        print(f"wrote {trace.DEFAULT_OUT}")


if __name__ == "__main__":
    main()
