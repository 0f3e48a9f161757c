"""Cloud binding benchmark: one full enrolment through a local Mosquitto vs the virtual radio.

The same device stack (session server, enrolment service, zone hub) and the same host
steps, from "the label in hand" to "committed": find the device (scan / announcement),
open the QR session (handshake + attestation), set Wi-Fi (status pushed), ``zone/csr`` and
``zone/install`` through :class:`ZoneEnroller`, commit, close. The radio runs with no
latency model (PDUs delivered at once, MTU 247); the broker is Mosquitto on loopback
(``mosquitto`` must be installed). Counts are exact; the time is the median of ``runs``.

    python -m benchmarks.broker [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from benchmarks.enrolment import PASSPHRASE, environment
from bleprov.broker.client import BrokerConfig
from bleprov.broker.device import BrokerDeviceTransport
from bleprov.core.advertising import OobMode
from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.enrolment.device import DeviceEnrolmentConfig
from bleprov.core.factory import provision_device
from bleprov.core.identity import IntermediateCache, Manufacturer, TrustPolicy
from bleprov.core.onboarding import parse_qr
from bleprov.core.session import host as hst
from bleprov.core.session.messages import Mode
from bleprov.core.wifi import WifiCredentials, WifiSecurity
from bleprov.network.simulated import SimulatedWifi
from bleprov.radio.bumble_peripheral import BumblePeripheral
from bleprov.radio.device_link import DeviceLink
from bleprov.radio.host_link import CentralRadio, HostLink, find_device
from bleprov.radio.virtual import VirtualLink, make_virtual_device
from bleprov.service.enrolment import EnrolmentClient, EnrolmentService
from bleprov.service.host_session import DeviceAuthentication, open_broker_session
from bleprov.service.zone_hub import ZoneEnroller
from bleprov.session import SecureDeviceServer, SecureHostLink
from bleprov.store.device_store import DeviceStore
from bleprov.store.hub_files import Hub
from bleprov.store.keys import KeyFileProvider

CHEAP = ScryptCost(n=16, r=1, p=1)
HOME = WifiCredentials(b"home", WifiSecurity.WPA2_PERSONAL, passphrase=PASSPHRASE)


@dataclass(frozen=True)
class Row:
    via: str
    seconds: float
    round_trips: int  # host messages the host waited on: handshake + enrolment requests
    messages_up: int
    messages_down: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _wait_listening(port: int) -> None:
    async with asyncio.timeout(10):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            return


async def enrol_once(via: str, work: Path, broker_url: str | None) -> Row:
    now = datetime.now(UTC)
    manufacturer = Manufacturer.create("Bench", now=now)
    trust = hst.Trust(
        (manufacturer.root_certificate.public_bytes(Encoding.DER),),
        TrustPolicy.REFUSE,
        # the steady state: a host that validated this manufacturer's intermediate before
        IntermediateCache([manufacturer.intermediate_certificate.public_bytes(Encoding.DER)]),
    )
    device, label = provision_device(
        manufacturer.issue_device(now=now), modes=OobMode.QR, cost=CHEAP
    )
    network = SimulatedWifi.from_config(environment(5))
    await network.start()
    store = DeviceStore(work / "s", KeyFileProvider(work / "k"))
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
    admin_passphrase = secrets.token_urlsafe(16)
    hub = Hub.init(
        work / "hub",
        name="Bench",
        zone_passphrase=secrets.token_bytes(16),
        admin="admin",
        admin_passphrase=admin_passphrase,
        now=now,
        passphrase_cost=CHEAP,
    )
    enroller = ZoneEnroller(hub, hub.authenticate("admin", admin_passphrase))
    payload = parse_qr(label.qr_text)
    closers = []
    if via == "broker":
        assert broker_url is not None
        transport = BrokerDeviceTransport(
            BrokerConfig.from_url(broker_url), server, device.info, device.identity.device_id
        )
        await transport.start()
        await asyncio.wait_for(transport.connected.wait(), 10)
        closers.append(transport.close)
        start = time.perf_counter()
        session = await open_broker_session(
            broker_url, DeviceAuthentication.from_payload(payload), trust
        )
    else:
        link = VirtualLink()
        dlink = DeviceLink(
            BumblePeripheral(make_virtual_device(link, name="d", address="F0:B1:00:00:00:09")),
            server,
            device.info,
        )
        await dlink.start()
        closers.append(dlink.close)
        host = make_virtual_device(link, name="h", address="C0:B1:00:00:00:09")
        await host.power_on()
        radio = CentralRadio.bumble(host, mtu=247)
        start = time.perf_counter()
        found = await find_device(radio, discriminator=payload.discriminator, timeout=5)
        session = SecureHostLink(
            HostLink(found.device, radio),
            mode=Mode.QR,
            secret=hst.QrSecret(payload.device_public_key, payload.label_secret),
            trust=trust,
            advertised=found.service_data,
        )
        await session.open()
    assert session.info is not None
    client = EnrolmentClient(session, timeout=10)
    await client.set_wifi(HOME)
    pending = await enroller.stage(
        client, session, device_id=session.info.attestation.device_id, owner="admin"
    )
    await client.commit()
    await session.close()
    await service.drain()
    seconds = time.perf_counter() - start
    row = Row(
        via,
        seconds,
        round_trips=session.handshake_sent + client.requests,
        messages_up=session.handshake_sent + client.requests,
        messages_down=session.handshake_received + client.messages_received,
    )
    del pending
    for close in reversed(closers):
        await close()
    await network.close()
    hub.close()
    return row


async def run_all(runs: int) -> list[Row]:
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bleprov-bench-") as tmp:
        config = Path(tmp) / "mosquitto.conf"
        config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
        broker = subprocess.Popen(  # noqa: ASYNC220 (once, before any timing)
            [mosquitto, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            await _wait_listening(port)
            rows = []
            for i in range(runs):
                for via in ("radio", "broker"):
                    work = Path(tmp) / f"{via}-{i}"
                    work.mkdir()
                    rows.append(await enrol_once(via, work, f"mqtt://127.0.0.1:{port}"))
        finally:
            broker.terminate()
            broker.wait(5)
    return rows


def render(rows: list[Row]) -> str:
    lines = [
        "| via | median time | round trips | session messages up/down |",
        "|---|---|---|---|",
    ]
    for via in ("radio", "broker"):
        mine = [r for r in rows if r.via == via]
        median = statistics.median(r.seconds for r in mine)
        last = mine[-1]
        lines.append(
            f"| {via} | {median * 1000:.0f} ms | {last.round_trips} | "
            f"{last.messages_up}/{last.messages_down} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(render(asyncio.run(run_all(args.runs))))


if __name__ == "__main__":
    main()
