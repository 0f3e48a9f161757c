"""``bleprov device init`` and ``bleprov device serve`` as real processes, as on a Pi.

A ``bleprov radio hub`` process serves virtual controllers on loopback; the daemon runs in
its own process on one of them (``--radio virtual:PORT``); this test process is the host
(bleak on bumble, ``open_session`` + ``EnrolmentClient``) and the zone hub (``serve_hub``).
The daemon's stdout is read line by line: ``ready: ...``, ``state: ...``, ``tls: ...``.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.serialization import Encoding

from bleprov.core import membership as mb
from bleprov.core.advertising import OobMode
from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.errors import BleprovError
from bleprov.core.identity import Manufacturer, TrustPolicy
from bleprov.core.session import host as hst
from bleprov.core.wifi import WifiCredentials, WifiSecurity
from bleprov.radio.spec import RadioSpec, open_central
from bleprov.service.enrolment import EnrolmentClient
from bleprov.service.host_session import DeviceAuthentication, open_session
from bleprov.service.trust import member_hello
from bleprov.service.zone_hub import ZoneEnroller, hub_server_credentials, serve_hub
from bleprov.store.device_store import DeviceStore
from bleprov.store.factory_files import IssuedDevice, issue_device
from bleprov.store.hub_files import Hub
from bleprov.tls.connection import ValidatedConnectionError

from .daemon_process import Process, daemon_env

pytestmark = pytest.mark.multiprocess

NOW = datetime.now(UTC)
MANUFACTURER = Manufacturer.create("Acme", now=NOW)
TRUST = hst.Trust((MANUFACTURER.root_certificate.public_bytes(Encoding.DER),), TrustPolicy.REFUSE)
CHEAP = ScryptCost(n=16, r=1, p=1)
DEVICE_PASSPHRASE = "sealed at the factory"
PASSWORD = "correct horse battery staple"
HOME = WifiCredentials(b"Home", WifiSecurity.WPA2_PERSONAL, passphrase=PASSWORD)
NETWORK = f"""
[scan]
duration = 0.05
[[access_points]]
ssid = "Home"
bssid = "02:00:00:00:01:01"
channel = 6
rssi = -48
security = "wpa2-personal"
passphrase = "{PASSWORD}"
join_delay = 0.05
"""
LOOPBACK = "127.0.0.1"
PORTS = 8
_addresses = itertools.count(1)


@pytest.fixture(scope="module")
def controllers() -> Iterator[Iterator[str]]:
    """Transports of fresh virtual controllers, one per process that needs a radio."""
    hub = Process(
        [
            sys.executable,
            "-m",
            "bleprov.radio.virtual",
            "hub",
            "--ports",
            ",".join(["0"] * PORTS),
        ],
        daemon_env(),
    )
    try:
        hub.wait_for("ready")
        specs = [line.split()[2] for line in hub.lines if line.startswith("controller ")]
        assert len(specs) == PORTS, hub.lines
        yield iter(specs)
    finally:
        assert hub.stop() == 0


@dataclass
class Rig:
    tmp: Path
    controllers: Iterator[str]
    issued: IssuedDevice
    store: Path
    network: Path
    hub: Hub
    hub_port: int
    processes: list[Process] = field(default_factory=list)

    def serve(self, *extra: str, stdin: bool = False) -> Process:
        port = next(self.controllers).rsplit(":", 1)[1]
        index = next(_addresses)
        process = Process(
            [
                sys.executable,
                "-m",
                "bleprov",
                "device",
                "serve",
                "--store",
                str(self.store),
                "--radio",
                f"virtual:{port}",
                "--network",
                f"simulated:{self.network}",
                *extra,
            ],
            daemon_env(BLEPROV_BUMBLE_ADDRESS=f"F0:B1:E9:00:01:{index:02X}"),
            stdin=stdin,
        )
        self.processes.append(process)
        return process

    def host_spec(self) -> RadioSpec:
        return RadioSpec.parse(f"bumble:{next(self.controllers)}")

    def crl(self) -> bytes:
        return self.hub.crl(now=datetime.now(UTC))


def _init(
    store: Path, source: Path, *, passphrase: str = DEVICE_PASSPHRASE
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "bleprov",
            "device",
            "init",
            "--store",
            str(store),
            "--from",
            str(source),
        ],
        env=daemon_env(BLEPROV_DEVICE_PASSPHRASE=passphrase),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest_asyncio.fixture
async def rig(tmp_path: Path, controllers: Iterator[str]) -> AsyncIterator[Rig]:
    issued = issue_device(
        MANUFACTURER,
        tmp_path / "devices",
        DEVICE_PASSPHRASE.encode(),
        modes=OobMode.QR | OobMode.BUTTON,
        cost=CHEAP,
    )
    store = tmp_path / "store"
    done = _init(store, issued.directory)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"device {issued.device_id} imported into {store}")
    network = tmp_path / "network.toml"
    network.write_text(NETWORK)
    hub = Hub.init(
        tmp_path / "hub",
        name="Home",
        zone_passphrase=b"zone passphrase",
        admin="alice",
        admin_passphrase="alice passphrase",
        now=NOW,
        passphrase_cost=CHEAP,
    )
    server = await serve_hub(hub, LOOPBACK, 0)
    rig = Rig(
        tmp_path, controllers, issued, store, network, hub, server.sockets[0].getsockname()[1]
    )
    try:
        yield rig
    finally:
        for process in rig.processes:
            process.kill()
        server.close()
        await server.wait_closed()
        hub.close()


def _records(rig: Rig) -> dict[str, bytes]:
    return DeviceStore.open(rig.store).load()


async def test_init_refuses_an_existing_store_and_a_wrong_passphrase(rig: Rig) -> None:
    again = _init(rig.store, rig.issued.directory)
    assert again.returncode == 1
    assert "already holds a device store" in again.stderr
    wrong = _init(rig.tmp / "other", rig.issued.directory, passphrase="not it")
    assert wrong.returncode == 1
    assert "wrong passphrase" in wrong.stderr
    assert not (rig.tmp / "other" / "device.store").exists()
    assert DEVICE_PASSPHRASE not in again.stderr + again.stdout


async def test_enrol_over_the_air_then_serve_a_validated_connection(rig: Rig) -> None:
    daemon = rig.serve(
        "--tls", f"{LOOPBACK}:0", "--hub", f"{LOOPBACK}:{rig.hub_port}", "--name", "pi"
    )
    ready = await daemon.expect("ready:")
    assert ready == (
        f"ready: device {rig.issued.device_id} advertising on virtual:"
        f"{ready.split('virtual:')[1].split(',')[0]}, discriminator "
        f"0x{rig.issued.label.payload.discriminator:03X}, state virgin"
    )
    admin = rig.hub.authenticate("alice", "alice passphrase")
    async with open_central(rig.host_spec(), mtu=247) as radio:
        auth = DeviceAuthentication.from_qr_text(rig.issued.label.qr_text)
        session = await open_session(radio, auth, TRUST, timeout=10)
        client = EnrolmentClient(session, timeout=20)
        status = await client.set_wifi(HOME)
        assert status.ip is not None
        assert session.info is not None
        enroller = ZoneEnroller(rig.hub, admin)
        pending = await enroller.stage(
            client, session, device_id=session.info.attestation.device_id, owner="alice"
        )
        try:
            await client.commit()
        except BaseException:
            await enroller.abandon(pending)
            raise
        await enroller.confirm(pending)
        await session.close()

    assert await daemon.expect("state:") == "state: virgin -> enrolled"
    assert await daemon.expect("tls: CRL fetched from the hub")
    serving = await daemon.expect("tls: serving zone members on ")
    port = int(serving.rsplit(":", 1)[1])
    hello = await member_hello(
        LOOPBACK,
        port,
        hub_server_credentials(rig.hub, now=datetime.now(UTC)),
        crl_der=rig.crl(),
        device=rig.issued.device_id,
    )
    # The zone's hub is the device's owner, and the only one told who owns it.
    assert hello == {
        "name": rig.issued.device_id,
        "role": "owner",
        "owner": {"kind": "zone", "name": "alice", "admins": 0},
    }
    assert daemon.stop() == 0
    lines = daemon.rest()
    assert "network: committed" in lines and lines[-1] == "stopped"
    assert sum(line.startswith("ready:") for line in lines) == 1
    assert PASSWORD not in "\n".join(lines)

    # Restarted, it comes back enrolled and re-applies the stored Wi-Fi first. Without a
    # hub it knows no CRL, so it serves but refuses members.
    again = rig.serve("--tls", f"{LOOPBACK}:0")
    ready = await again.expect("ready:")
    assert ready.endswith("state enrolled")
    before = again.lines[:-1]
    # The journal names the network by its keyed tag, the same as at enrolment (L4).
    (joined,) = [line for line in lines if line.startswith("network: joined net-")]
    tag = joined.split()[2].rstrip(",")
    assert f"network: re-applied {tag}, address 192.168.1.50" in before, before
    assert "Home" not in "\n".join(lines + before)
    assert "tls: no --hub given: members are refused until a CRL is known" in before
    serving = next(line for line in before if line.startswith("tls: serving zone members"))
    with pytest.raises(ValidatedConnectionError):
        await member_hello(
            LOOPBACK,
            int(serving.rsplit(":", 1)[1]),
            hub_server_credentials(rig.hub, now=datetime.now(UTC)),
            crl_der=rig.crl(),
            device=rig.issued.device_id,
        )
    await again.expect("no CRL from the hub yet", anywhere=True)
    assert again.stop() == 0


async def test_sigterm_mid_enrolment_rolls_back(rig: Rig) -> None:
    daemon = rig.serve()
    await daemon.expect("ready:")
    async with open_central(rig.host_spec(), mtu=247) as radio:
        auth = DeviceAuthentication.from_qr_text(rig.issued.label.qr_text)
        session = await open_session(radio, auth, TRUST, timeout=10)
        client = EnrolmentClient(session, timeout=20)
        status = await client.set_wifi(HOME)
        assert status.ip is not None
        await daemon.expect("network: joined net-")
        assert await asyncio.to_thread(daemon.stop, signal.SIGTERM) == 0
        await session.close()
    lines = daemon.rest()
    stopping = lines.index("stopping")
    assert "network: rolled back to the previous network" in lines[stopping:]
    assert "network: committed" not in lines
    assert lines[-1] == "stopped"
    records = _records(rig)
    assert "wifi" not in records and mb.RECORD_ZONE not in records


async def test_console_button_on_stdin_opens_button_mode(rig: Rig) -> None:
    daemon = rig.serve(stdin=True)
    await daemon.expect("ready:")
    discriminator = rig.issued.label.payload.discriminator
    async with open_central(rig.host_spec(), mtu=247) as radio:
        # No press yet: button mode is refused.
        with pytest.raises(BleprovError):
            await open_session(
                radio, DeviceAuthentication.button(discriminator=discriminator), TRUST, timeout=10
            )
        daemon.send("b\n")
        pressed = await daemon.expect("button:")
        assert pressed.startswith("button: pressed, button-mode window open")
        session = await open_session(
            radio, DeviceAuthentication.button(discriminator=discriminator), TRUST, timeout=10
        )
        assert session.info is not None
        assert session.info.attestation.device_id == rig.issued.device_id
        await session.close()
    daemon.send("r\n")
    await daemon.expect("reset: attempt lockout lifted")
    assert daemon.stop(signal.SIGINT) == 0
