"""Zone benchmark: what the certificate step costs on the radio, and the zone CA's speed.

Part 1, the enrolment step on the virtual radio (connection-interval model), the QR
session already open and the Wi-Fi simulated (join delay 0), one fresh device per row:

- ``wifi``: set (status pushed) + commit;
- ``wifi+zone``: set + ``zone/csr`` + ``zone/install`` (:class:`ZoneEnroller`, with the
  hub's CA signing and registry write) + commit;
- ``wifi+peer``: set + ``peer/bind`` + commit.

What the certificate step (or peer binding) adds is the difference with the ``wifi`` row at
the same MTU and interval: round trips and bytes are exact counts, the time is one run.

Part 2, the zone CA on this machine, median of 5 batches: certificates issued, CSRs made,
CRLs signed, members verified, validated connections (mutual TLS 1.3 + one ``hello`` over
loopback, both ends in this process). Rates are per CPU second of this process
(``time.process_time``: fair on a shared machine) and per wall-clock second.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from benchmarks.common import (
    OWNER,
    BenchHub,
    Factory,
    host_identity_store,
    start_device,
    start_host,
)
from benchmarks.wifi import PASSPHRASE
from bleprov.core import membership as mb
from bleprov.core.advertising import OobMode
from bleprov.core.session.messages import Mode
from bleprov.core.wifi import WifiCredentials, WifiSecurity
from bleprov.core.zone import (
    SESSION_BINDING_SIZE,
    MemberCertificate,
    Zone,
    make_csr,
    make_member_key,
    verify_member,
)
from bleprov.radio.virtual import VirtualLink
from bleprov.service.enrolment import EnrolmentClient
from bleprov.service.host_session import open_session
from bleprov.service.trust import DeviceTrust, member_hello
from bleprov.store.device_store import DeviceStore
from bleprov.store.keys import KeyFileProvider
from bleprov.tls.connection import MemberCredentials

LOOPBACK: Final = "127.0.0.1"

WIFI: Final = "wifi"
ZONE: Final = "wifi+zone"
PEER: Final = "wifi+peer"
VARIANTS: Final = (WIFI, ZONE, PEER)


# ------------------------------------------------------------------ part 1: the radio


@dataclass
class StepRow:
    variant: str
    mtu: int
    interval_ms: float
    requests: int
    device_messages: int
    bytes_up: int
    bytes_down: int
    pdus: int
    air_bytes: int
    seconds: float


async def measure_step(*, variant: str, mtu: int, interval_ms: float) -> StepRow:
    """One fresh device, a QR session opened, then the step timed and counted."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}")
    factory = Factory.create()
    link = VirtualLink(connection_interval=interval_ms / 1000 if interval_ms else None)
    workdir = tempfile.TemporaryDirectory(prefix="bleprov-bench-")
    work = Path(workdir.name)
    device = await start_device(link, factory, work, index=2, modes=OobMode.QR)
    store = device.runtime.store
    bench_hub = BenchHub.create(work / "hub") if variant == ZONE else None
    host_identity = host_identity_store(work).identity() if variant == PEER else None
    try:
        radio = await start_host(link, index=2, mtu=mtu)
        session = await open_session(radio, device.authentication(Mode.QR), factory.trust)
        info = session.info
        assert info is not None
        client = EnrolmentClient(session, timeout=120)
        link.stats.reset()
        loop = asyncio.get_running_loop()
        start = loop.time()
        status = await client.set_wifi(
            WifiCredentials(b"home", WifiSecurity.WPA2_PERSONAL, passphrase=PASSPHRASE)
        )
        if status.ip is None:
            raise RuntimeError(f"the simulated Wi-Fi did not connect: {status}")
        if bench_hub is not None:
            await bench_hub.enroller.stage(
                client, session, device_id=info.attestation.device_id, owner=OWNER
            )
        pin = await client.peer_bind(host_identity) if host_identity is not None else None
        await client.commit()
        elapsed = loop.time() - start
        row = StepRow(
            variant,
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
        await device.runtime.service.drain()
        # The step really happened: what the device committed matches the variant.
        records = store.load()
        if (mb.membership_of(records) is not None) != (variant == ZONE):
            raise RuntimeError(f"{variant}: zone membership committed or missing unexpectedly")
        if (len(mb.pins_of(records)) > 0) != (variant == PEER) or (
            pin is not None and pin.name != device.runtime.device_id
        ):
            raise RuntimeError(f"{variant}: peer pin committed or missing unexpectedly")
        return row
    finally:
        await device.close()
        if bench_hub is not None:
            bench_hub.close()
        link.close()
        workdir.cleanup()


def added_lines(rows: Sequence[StepRow]) -> list[str]:
    """``(b) - (a)`` and ``(c) - (a)`` at each MTU and interval."""
    base = {(r.mtu, r.interval_ms): r for r in rows if r.variant == WIFI}
    lines = []
    for r in rows:
        a = base.get((r.mtu, r.interval_ms))
        if r.variant == WIFI or a is None:
            continue
        what = "the certificate step" if r.variant == ZONE else "peer binding"
        trips = r.requests - a.requests
        lines.append(
            f"- {what} adds {trips} round trip{'s' if trips != 1 else ''}, "
            f"{r.air_bytes - a.air_bytes} bytes on air, "
            f"{(r.seconds - a.seconds) * 1000:.0f} ms at MTU {r.mtu} "
            f"({r.interval_ms:g} ms interval; {r.pdus - a.pdus} L2CAP PDUs, enrolment bytes "
            f"{r.bytes_up - a.bytes_up} up / {r.bytes_down - a.bytes_down} down)"
        )
    return lines


def render_steps(rows: Sequence[StepRow]) -> str:
    lines = [
        "| step | MTU | interval | round trips (requests) | device messages | enrolment bytes "
        "up/down | L2CAP PDUs | bytes on air | time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.variant} | {r.mtu} | {r.interval_ms:g} ms | {r.requests} "
            f"| {r.device_messages} | {r.bytes_up}/{r.bytes_down} | {r.pdus} | {r.air_bytes} "
            f"| {r.seconds * 1000:.0f} ms |"
        )
    notes = [
        "Round trips are host requests; the Wi-Fi status is pushed by the device (device "
        "messages). Added cost = row minus the wifi row at the same MTU; times are one run.",
    ]
    return "\n".join([*lines, "", *notes, "", *added_lines(rows)])


async def run_steps(quick: bool) -> list[StepRow]:
    intervals = (7.5,) if quick else (30.0,)
    rows = []
    for interval in intervals:
        for mtu in (23, 247):
            for variant in VARIANTS:
                t = time.perf_counter()
                rows.append(await measure_step(variant=variant, mtu=mtu, interval_ms=interval))
                print(
                    f"  {variant}, MTU {mtu}, {interval:g} ms: "
                    f"{time.perf_counter() - t:.1f} s wall",
                    flush=True,
                )
    return rows


# ------------------------------------------------------------- part 2: the zone CA


@dataclass
class RateRow:
    key: str
    what: str
    per_batch: int
    cpu_rate: float
    wall_rate: float


def _rate(key: str, what: str, samples: Sequence[tuple[int, float, float]]) -> RateRow:
    """Median over batches of (operations, CPU seconds, wall seconds)."""
    cpu = statistics.median(n / max(c, 1e-9) for n, c, _ in samples)
    wall = statistics.median(n / max(w, 1e-9) for n, _, w in samples)
    return RateRow(key, what, samples[0][0], cpu, wall)


def _time_sync(key: str, what: str, batches: Sequence[Sequence[Callable[[], object]]]) -> RateRow:
    samples = []
    for batch in batches:
        c, w = time.process_time(), time.perf_counter()
        for op in batch:
            op()
        samples.append((len(batch), time.process_time() - c, time.perf_counter() - w))
    return _rate(key, what, samples)


async def _time_async(
    key: str, what: str, batches: Sequence[Sequence[Callable[[], Awaitable[object]]]]
) -> RateRow:
    samples = []
    for batch in batches:
        c, w = time.process_time(), time.perf_counter()
        for op in batch:
            await op()
        samples.append((len(batch), time.process_time() - c, time.perf_counter() - w))
    return _rate(key, what, samples)


def _member(zone: Zone, device_id: str, now: datetime) -> MemberCredentials:
    key = make_member_key()
    binding = secrets.token_bytes(SESSION_BINDING_SIZE)
    issued = zone.issue_member(
        make_csr(key, device_id=device_id, session_binding=binding),
        device_id=device_id,
        owner=OWNER,
        expected_binding=binding,
        now=now,
    )
    return MemberCredentials.from_certificate(key, issued)


async def run_throughput(*, n: int, connections: int, batches: int = 5) -> list[RateRow]:
    """The zone CA's operations, ``n`` per batch (``connections`` for TLS)."""
    now = datetime.now(UTC)
    zone = Zone.create("Bench", now=now)
    rows = []

    def make_one() -> bytes:
        return make_csr(
            make_member_key(),
            device_id="BENCH-CSR",
            session_binding=secrets.token_bytes(SESSION_BINDING_SIZE),
        )

    rows.append(
        _time_sync(
            "csr",
            "CSRs made (device: make_member_key + make_csr)",
            [[make_one] * n for _ in range(batches)],
        )
    )

    # Distinct CSRs, each bound to its own session, made before the clock starts.
    issued: list[MemberCertificate] = []

    def issue(csr: bytes, device_id: str, binding: bytes) -> Callable[[], object]:
        def op() -> None:
            issued.append(
                zone.issue_member(
                    csr, device_id=device_id, owner=OWNER, expected_binding=binding, now=now
                )
            )

        return op

    issue_batches = []
    for b in range(batches):
        batch = []
        for i in range(n):
            device_id = f"BENCH-{b:02d}-{i:05d}"
            binding = secrets.token_bytes(SESSION_BINDING_SIZE)
            csr = make_csr(make_member_key(), device_id=device_id, session_binding=binding)
            batch.append(issue(csr, device_id, binding))
        issue_batches.append(batch)
    rows.append(_time_sync("issue", "certificates issued (hub: Zone.issue_member)", issue_batches))
    if len(issued) != n * batches:
        raise RuntimeError("not every certificate was issued")

    crls: dict[int, bytes] = {}

    def sign_crl(revoked: int) -> Callable[[], object]:
        def op() -> None:
            crls[revoked] = zone.crl(now=now)

        return op

    rows.append(
        _time_sync("crl0", "CRLs signed, 0 revoked", [[sign_crl(0)] * n for _ in range(batches)])
    )
    for _ in range(1000):
        zone.revoke(secrets.randbits(159) | 1 << 158, now=now)
    rows.append(
        _time_sync(
            "crl1000", "CRLs signed, 1000 revoked", [[sign_crl(1000)] * n for _ in range(batches)]
        )
    )

    leaf = issued[0]

    def verify(crl: bytes) -> Callable[[], object]:
        def op() -> None:
            verify_member(
                leaf.cert_der, leaf.chain_der, zone_root_der=leaf.root_der, crl_der=crl, now=now
            )

        return op

    for revoked in (0, 1000):
        rows.append(
            _time_sync(
                f"verify{revoked}",
                f"verify_member, CRL of {revoked} revoked ({len(crls[revoked])} bytes)",
                [[verify(crls[revoked])] * n for _ in range(batches)],
            )
        )

    # A member device serving validated connections from its encrypted store, as it runs.
    work = tempfile.TemporaryDirectory(prefix="bleprov-bench-")
    try:
        device_id = "BENCH-DEVICE"
        device = _member(zone, device_id, now)
        store = DeviceStore(Path(work.name) / "s", KeyFileProvider(Path(work.name) / "k"))
        store.update(
            {
                mb.RECORD_ZONE: mb.ZoneMembership(
                    device.key,
                    device.cert_der,
                    device.chain_der,
                    device.root_der,
                    zone.zone_id,
                    OWNER,
                ).encode(),
                mb.RECORD_OWNER: mb.Owner(
                    "zone", mb.spki_fingerprint(device.root_der), OWNER, zone.zone_id
                ).encode(),
            }
        )
        client = _member(zone, "BENCH-CLIENT", now)
        crl = crls[0]
        device_trust = DeviceTrust(store, device_id=device_id)
        server = await device_trust.serve_members(LOOPBACK, 0, crl_provider=lambda: crl)
        port = server.sockets[0].getsockname()[1]

        async def connect() -> None:
            hello = await member_hello(LOOPBACK, port, client, crl_der=crl, device=device_id)
            if hello.get("name") != device_id or hello.get("role") != "member":
                raise RuntimeError(f"unexpected hello: {hello}")

        try:
            rows.append(
                await _time_async(
                    "connection",
                    "validated connections (mutual TLS 1.3 + hello, both ends)",
                    [[connect] * connections for _ in range(batches)],
                )
            )
        finally:
            await device_trust.close()
    finally:
        work.cleanup()
    return rows


def ratio_lines(rows: Sequence[RateRow]) -> list[str]:
    """Ratios of CPU rates that answer the questions a deployment asks."""
    by = {r.key: r.cpu_rate for r in rows}
    return [
        f"- verifying a member (verify_member, empty CRL: what every TLS peer does per "
        f"connection) costs {by['issue'] / by['verify0']:.1f}x the CPU of issuing its "
        "certificate (Zone.issue_member)",
        f"- making its key and CSR costs a device {by['issue'] / by['csr']:.2f}x the hub's "
        "CPU for issuing the certificate",
        f"- a CRL of 1000 revoked serials signs {by['crl0'] / by['crl1000']:.0f}x slower than "
        f"an empty one; verify_member with it is {by['verify0'] / by['verify1000']:.1f}x slower",
        f"- a validated connection (both ends) costs as much CPU as "
        f"{by['verify0'] / by['connection']:.0f} verify_member calls",
    ]


def render_rates(rows: Sequence[RateRow]) -> str:
    lines = [
        "| operation | per batch | per CPU second | per wall second | CPU per operation |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.what} | {r.per_batch} | {r.cpu_rate:,.0f} | {r.wall_rate:,.0f} "
            f"| {1000 / r.cpu_rate:.3f} ms |"
        )
    notes = [
        "Validated connections: both ends in this process, so the CPU is client plus server; "
        "each connection builds the client's TLS context anew (open_member_connection).",
    ]
    return "\n".join([*lines, "", *notes, "", *ratio_lines(rows)])


async def run_all(quick: bool) -> tuple[list[StepRow], list[RateRow]]:
    steps = await run_steps(quick)
    rates = await run_throughput(n=20 if quick else 200, connections=10 if quick else 100)
    return steps, rates


def render(steps: Sequence[StepRow], rates: Sequence[RateRow]) -> str:
    return "\n".join(
        [
            "### The certificate step on the virtual radio (QR session open, simulated Wi-Fi)",
            "",
            render_steps(steps),
            "",
            "### Zone CA on this machine (median of 5 batches)",
            "",
            render_rates(rates),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(render(*asyncio.run(run_all(args.quick))))


if __name__ == "__main__":
    main()
