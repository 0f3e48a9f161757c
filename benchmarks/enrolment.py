"""Enrolment benchmark: scan + set + status + commit over the virtual radio.

One secure session (qr mode) on the connection-interval model, then the Wi-Fi
enrolment: a full scan, credentials staged and joined (status pushed), commit to the
encrypted store. The simulated Wi-Fi answers at once (join and scan delays 0), so the
figures are the protocol's: round trips, messages, bytes (enrolment layer and on air)
and time under the modelled interval.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import Factory, start_device, start_host
from benchmarks.wifi import PASSPHRASE, environment
from bleprov.core.session.messages import Mode
from bleprov.core.wifi import WifiCredentials, WifiSecurity
from bleprov.radio.virtual import VirtualLink
from bleprov.service.enrolment import EnrolmentClient
from bleprov.service.host_session import open_session

__all__ = ["PASSPHRASE", "Row", "environment", "measure", "render", "run_all"]


@dataclass
class Row:
    access_points: int
    mtu: int
    interval_ms: float
    requests: int
    device_messages: int
    bytes_up: int
    bytes_down: int
    pdus: int
    air_bytes: int
    seconds: float


async def measure(*, access_points: int, mtu: int, interval_ms: float) -> Row:
    factory = Factory.create()
    link = VirtualLink(connection_interval=interval_ms / 1000 if interval_ms else None)
    workdir = tempfile.TemporaryDirectory(prefix="bleprov-bench-")
    device = await start_device(
        link, factory, Path(workdir.name), access_points=access_points, index=1
    )
    try:
        radio = await start_host(link, index=1, mtu=mtu)
        session = await open_session(radio, device.authentication(Mode.QR), factory.trust)
        client = EnrolmentClient(session, timeout=120)
        await client.scan()  # warm the device's cache: a real device scans in background
        client.requests = client.messages_received = client.bytes_sent = 0
        client.bytes_received = 0
        link.stats.reset()
        start = asyncio.get_running_loop().time()
        results = await client.scan()
        assert len(results) == access_points
        status = await client.set_wifi(
            WifiCredentials(b"home", WifiSecurity.WPA2_PERSONAL, passphrase=PASSPHRASE)
        )
        assert status.ip is not None
        await client.commit()
        elapsed = asyncio.get_running_loop().time() - start
        row = Row(
            access_points,
            mtu,
            interval_ms,
            client.requests,
            client.messages_received,
            client.bytes_sent,
            client.bytes_received,
            link.stats.total.pdus,
            link.stats.total.air_bytes,
            elapsed,
        )
        await session.close()
        return row
    finally:
        await device.close()
        link.close()
        workdir.cleanup()


def render(rows: list[Row]) -> str:
    lines = [
        "| APs | MTU | interval | round trips (requests) | device messages | enrolment bytes "
        "up/down | L2CAP PDUs | bytes on air | time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.access_points} | {r.mtu} | {r.interval_ms:g} ms | {r.requests} "
            f"| {r.device_messages} | {r.bytes_up}/{r.bytes_down} | {r.pdus} | {r.air_bytes} "
            f"| {r.seconds:.2f} s |"
        )
    return "\n".join(lines)


async def run_all(quick: bool) -> list[Row]:
    cases = (
        [(5, 247, 7.5)]
        if quick
        else [
            (5, 247, 30.0),
            (100, 247, 30.0),
            (5, 23, 30.0),
            (100, 23, 30.0),
        ]
    )
    rows = []
    for aps, mtu, interval in cases:
        t = time.perf_counter()
        rows.append(await measure(access_points=aps, mtu=mtu, interval_ms=interval))
        print(f"  {aps} APs, MTU {mtu}: {time.perf_counter() - t:.1f} s wall", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(render(asyncio.run(run_all(args.quick))))


if __name__ == "__main__":
    main()
