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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from bleprov.core.advertising import OobMode
from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.enrolment.device import DeviceEnrolmentConfig
from bleprov.core.factory import provision_device
from bleprov.core.identity import Manufacturer, TrustPolicy
from bleprov.core.onboarding import parse_qr
from bleprov.core.session import host as hst
from bleprov.core.session.messages import Mode
from bleprov.core.wifi import WifiCredentials, WifiSecurity
from bleprov.network.simulated import SimulatedWifi
from bleprov.radio.bumble_peripheral import BumblePeripheral
from bleprov.radio.device_link import DeviceLink
from bleprov.radio.host_link import CentralRadio, find_device
from bleprov.radio.secure_link import SecureDeviceServer, SecureHostLink
from bleprov.radio.virtual import VirtualLink, make_virtual_device
from bleprov.service.enrolment import EnrolmentClient, EnrolmentService
from bleprov.store.device_store import DeviceStore
from bleprov.store.keys import KeyFileProvider

PASSPHRASE = "correct horse battery"


def environment(access_points: int) -> dict[str, Any]:
    aps = [
        {
            "ssid": "home",
            "bssid": "02:00:00:00:00:01",
            "channel": 6,
            "rssi": -40,
            "security": "wpa2-personal",
            "passphrase": PASSPHRASE,
        },
    ]
    aps += [
        {
            "ssid": f"neighbour-{i:03d}",
            "bssid": f"02:00:00:00:{i >> 8:02x}:{i & 0xFF:02x}",
            "channel": 1 + i % 11,
            "rssi": -60 - i % 30,
            "security": "wpa3-personal",
            "passphrase": "not ours 123",
        }
        for i in range(2, access_points + 1)
    ]
    return {"access_points": aps, "scan": {"duration": 0.0}}


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
    now = datetime.now(UTC)
    manufacturer = Manufacturer.create("Bench", now=now)
    device, label = provision_device(
        manufacturer.issue_device(now=now), modes=OobMode.QR, cost=ScryptCost(1 << 10, 8, 1)
    )
    link = VirtualLink(connection_interval=interval_ms / 1000 if interval_ms else None)
    network = SimulatedWifi.from_config(environment(access_points))
    await network.start()
    workdir = tempfile.TemporaryDirectory()
    store = DeviceStore(Path(workdir.name) / "s", KeyFileProvider(Path(workdir.name) / "k"))
    service = EnrolmentService(
        network=network,
        store=store,
        config=lambda: DeviceEnrolmentConfig(device.identity.device_id),
    )
    server = SecureDeviceServer(
        secrets=device.secrets(),
        policy=int(device.modes),
        application=service,
        attempts=store.attempt_store(),
    )
    dlink = DeviceLink(
        BumblePeripheral(make_virtual_device(link, name="d", address="F0:B1:00:00:00:01")),
        server,
        device.info,
    )
    await dlink.start()
    host = make_virtual_device(link, name="h", address="C0:B1:00:00:00:01")
    await host.power_on()
    radio = CentralRadio.bumble(host, mtu=mtu)
    payload = parse_qr(label.qr_text)
    trust = hst.Trust(
        (manufacturer.root_certificate.public_bytes(Encoding.DER),), TrustPolicy.REFUSE
    )
    try:
        found = await find_device(radio, discriminator=payload.discriminator, timeout=10)
        session = SecureHostLink(
            found.device,
            radio,
            mode=Mode.QR,
            secret=hst.QrSecret(payload.device_public_key, payload.label_secret),
            trust=trust,
        )
        await session.open()
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
        await dlink.close()
        await network.close()
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
