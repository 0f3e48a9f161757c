"""``bleprov zone serve`` and ``bleprov device serve --hub`` as processes: the hub as a service.

A radio hub process serves virtual controllers; two device daemons run in their own
processes, enrolled over the air from this process (a short-lived certificate, so they
renew at once); ``bleprov zone serve`` runs the hub in a third kind of process, over the
same hub directory. The members renew through it; ``bleprov zone revoke`` (a fourth)
revokes one, and once the CRL reached the other member that member refuses the revoked
one. Readiness goes to a NOTIFY_SOCKET as systemd's would; SIGTERM stops the hub cleanly.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from bleprov.core import membership as mb
from bleprov.core.advertising import OobMode
from bleprov.core.factory import provision_device
from bleprov.core.zone import Revoked
from bleprov.radio.spec import RadioSpec, open_central
from bleprov.service.enrolment import EnrolmentClient
from bleprov.service.host_session import DeviceAuthentication, open_session
from bleprov.service.trust import member_credentials, member_hello
from bleprov.service.zone_hub import ZoneEnroller
from bleprov.store.device_store import DeviceStore
from bleprov.store.hub_files import Hub
from bleprov.store.keys import make_key_provider
from bleprov.tls.connection import MemberCredentials, PeerRefused
from bleprov.tls.hub import fetch_crl

from .daemon_process import Process, daemon_env
from .rig import CHEAP, MANUFACTURER, NOW, TRUST

pytestmark = pytest.mark.multiprocess

LOOPBACK = "127.0.0.1"
ZONE_PASSPHRASE = "zone passphrase 7f3a"
ADMIN_PASSPHRASE = "admin passphrase 19c0"
NETWORK = """
[scan]
duration = 0.05
[[access_points]]
ssid = "Home"
bssid = "02:00:00:00:01:01"
channel = 6
rssi = -48
security = "wpa2-personal"
passphrase = "correct horse battery staple"
join_delay = 0.05
"""
PORTS = 4  # two device daemons, two host sessions


@pytest.fixture(scope="module")
def controllers() -> Iterator[Iterator[str]]:
    """Virtual controllers' transports, one per process (or session) that needs a radio."""
    radio = Process(
        [sys.executable, "-m", "bleprov.radio.virtual", "hub", "--ports", ",".join(["0"] * PORTS)],
        daemon_env(),
    )
    try:
        radio.wait_for("ready")
        specs = [line.split()[2] for line in radio.lines if line.startswith("controller ")]
        assert len(specs) == PORTS, radio.lines
        yield iter(specs)
    finally:
        assert radio.stop() == 0


@dataclass
class Member:
    """A device daemon in its own process, and what it takes to enrol and impersonate it."""

    device_id: str
    qr_text: str
    store: Path
    process: Process

    def credentials(self) -> MemberCredentials:
        """What the member holds now (read from its store, as a second process may)."""
        return member_credentials(DeviceStore.open(self.store).load())

    async def serving_port(self) -> int:
        line = await self.process.expect("tls: serving zone members on ")
        return int(line.rsplit(":", 1)[1])


@dataclass
class Rig:
    tmp: Path
    controllers: Iterator[str]
    hub: Hub
    processes: list[Process] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        return daemon_env(BLEPROV_ZONE_PASSPHRASE=ZONE_PASSPHRASE, **extra)

    def bleprov(self, *args: str, **extra: str) -> Process:
        process = Process([sys.executable, "-m", "bleprov", *args], self.env(**extra))
        self.processes.append(process)
        return process

    def member(self, index: int, hub_port: int) -> Member:
        """A virgin device (factory record in its store) served by `bleprov device serve`."""
        record, label = provision_device(
            MANUFACTURER.issue_device(now=NOW), modes=OobMode.QR, cost=CHEAP
        )
        store = self.tmp / f"store-{index}"
        DeviceStore(store, make_key_provider("file", directory=store)).put_provisioning(record)
        network = self.tmp / "network.toml"
        network.write_text(NETWORK)
        port = next(self.controllers).rsplit(":", 1)[1]
        process = self.bleprov(
            *("device", "serve", "--store", str(store), "--radio", f"virtual:{port}"),
            *("--network", f"simulated:{network}", "--tls", f"{LOOPBACK}:0"),
            *("--hub", f"{LOOPBACK}:{hub_port}", "--crl-refresh", "1"),
            BLEPROV_BUMBLE_ADDRESS=f"F0:B3:E9:00:01:{index:02X}",
        )
        return Member(record.identity.device_id, label.qr_text, store, process)

    async def enrol(self, member: Member) -> int:
        """Enrol over the air with a one-minute certificate; its serial."""
        admin = self.hub.authenticate("admin", ADMIN_PASSPHRASE)
        spec = RadioSpec.parse(f"bumble:{next(self.controllers)}")
        async with open_central(spec, mtu=247) as radio:
            auth = DeviceAuthentication.from_qr_text(member.qr_text)
            session = await open_session(radio, auth, TRUST, timeout=10)
            client = EnrolmentClient(session, timeout=20)
            assert session.info is not None
            enroller = ZoneEnroller(self.hub, admin, validity=timedelta(minutes=1))
            pending = await enroller.stage(
                client, session, device_id=session.info.attestation.device_id, owner="admin"
            )
            await client.commit()
            await enroller.confirm(pending)
            await session.close()
        return pending.serial


@pytest_asyncio.fixture
async def rig(tmp_path: Path, controllers: Iterator[str]) -> AsyncIterator[Rig]:
    hub = Hub.init(
        tmp_path / "hub",
        name="Home",
        zone_passphrase=ZONE_PASSPHRASE.encode(),
        admin="admin",
        admin_passphrase=ADMIN_PASSPHRASE,
        now=NOW,
        passphrase_cost=CHEAP,
    )
    rig = Rig(tmp_path, controllers, hub)
    try:
        yield rig
    finally:
        for process in rig.processes:
            process.kill()
        hub.close()


def _notify_socket(path: Path) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(20)
    return listener


async def test_members_renew_and_learn_revocations_through_zone_serve(rig: Rig) -> None:
    started = time.monotonic()
    notifications = _notify_socket(rig.tmp / "notify")
    hub = rig.bleprov(
        *("zone", "serve", "--dir", str(rig.hub.directory), "--listen", f"{LOOPBACK}:0"),
        NOTIFY_SOCKET=str(rig.tmp / "notify"),
    )
    ready = await hub.expect("ready:", 30)
    assert ready.startswith(f"ready: hub of zone {rig.hub.zone.zone_id} serving CRLs")
    hub_port = int(ready.rsplit(":", 1)[1])
    assert any("role urn:bleprov:hub:" in line for line in hub.lines)
    ready_message = await asyncio.to_thread(notifications.recv, 1024)
    assert ready_message.startswith(b"READY=1\n")

    lamp, fan = rig.member(1, hub_port), rig.member(2, hub_port)
    for member in (lamp, fan):
        await member.process.expect("ready:", 30)
    enrolled = {member.device_id: await rig.enrol(member) for member in (lamp, fan)}

    # Both renew through the hub at once (two thirds of one minute are past), then serve
    # with the renewed certificate; the hub recorded the renewal.
    numbers = {}
    for member in (lamp, fan):
        assert await member.process.expect("state:") == "state: virgin -> enrolled"
        numbers[member.device_id] = _crl_number(
            await member.process.expect("tls: CRL fetched from the hub, number ")
        )
        await member.process.expect("tls: certificate renewed, serial ", 30)
    fan_port = await fan.serving_port()  # the server started with the renewed certificate
    for member in (lamp, fan):
        record = rig.hub.registry.device(member.device_id)
        membership = mb.membership_of(DeviceStore.open(member.store).load())
        assert membership is not None and record.certificate_serial == membership.serial
        assert record.certificate_serial != enrolled[member.device_id]
        assert record.manufacturer_root == MANUFACTURER.root_fingerprint.hex()
    renewed = time.monotonic() - started

    lamp_creds = lamp.credentials()
    crl = await fetch_crl(LOOPBACK, hub_port, lamp_creds)  # the hub, known by its role
    hello = await member_hello(LOOPBACK, fan_port, lamp_creds, crl_der=crl, device=fan.device_id)
    assert hello["name"] == fan.device_id

    revoked_at = time.monotonic()
    revoke = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bleprov", "zone", "revoke", lamp.device_id, "--user", "admin"],
        env=rig.env(
            BLEPROV_HUB_DIR=str(rig.hub.directory), BLEPROV_USER_PASSPHRASE=ADMIN_PASSPHRASE
        ),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert revoke.returncode == 0, revoke.stdout + revoke.stderr
    # The fan fetches every second: the next CRL it takes is newer and lists the lamp.
    line = await fan.process.expect("tls: CRL fetched from the hub, number ", 20)
    assert _crl_number(line) > numbers[fan.device_id]
    propagated = time.monotonic() - revoked_at
    with pytest.raises(PeerRefused) as refused:
        await member_hello(LOOPBACK, fan_port, lamp_creds, crl_der=crl, device=fan.device_id)
    assert refused.value.code == Revoked.code
    with pytest.raises(PeerRefused) as refused:  # nor does the hub serve it any more
        await fetch_crl(LOOPBACK, hub_port, lamp_creds)
    assert refused.value.code == Revoked.code

    # SIGTERM: the hub says STOPPING=1, stops, exits 0.
    assert await asyncio.to_thread(hub.stop, signal.SIGTERM) == 0
    lines = hub.rest()
    assert lines[-1] == "stopped" and "stopping" in lines
    assert (await asyncio.to_thread(notifications.recv, 1024)) == b"STOPPING=1"
    notifications.close()
    for member in (lamp, fan):
        assert await asyncio.to_thread(member.process.stop) == 0
    for process in rig.processes:
        assert ZONE_PASSPHRASE not in "\n".join(process.lines)
    print(
        f"zone serve: members renewed {renewed:.1f} s after the start, revocation reached "
        f"the other member in {propagated:.1f} s, {time.monotonic() - started:.1f} s in all"
    )


def _crl_number(line: str) -> int:
    """N from ``tls: CRL fetched from the hub, number N, next update ...``."""
    match = re.search(r"number (\d+),", line)
    assert match is not None, line
    return int(match.group(1))
