"""Wi-Fi enrolment over the virtual radio, on a simulated Wi-Fi network and the real
encrypted device store: retries without a reset, fail-safe on disconnects, fuzzing."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cbor2
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.serialization import Encoding

from bleprov.core.advertising import OobMode
from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.enrolment import device as enr
from bleprov.core.enrolment.messages import Endpoint, EnrolmentError, Request, Status, encode
from bleprov.core.errors import BleprovError
from bleprov.core.factory import DeviceProvisioning, provision_device
from bleprov.core.identity import Manufacturer, TrustPolicy
from bleprov.core.onboarding import parse_qr
from bleprov.core.session import host as hst
from bleprov.core.session.messages import Mode
from bleprov.core.wifi import JoinFailure, WifiCredentials, WifiSecurity
from bleprov.network.simulated import SimulatedWifi
from bleprov.radio.bumble_peripheral import BumblePeripheral
from bleprov.radio.device_link import DeviceLink
from bleprov.radio.host_link import CentralRadio, HostLink, find_device
from bleprov.radio.virtual import VirtualLink, make_virtual_device
from bleprov.service.enrolment import EnrolmentClient, EnrolmentService
from bleprov.session import SecureDeviceChannel, SecureDeviceServer, SecureHostLink
from bleprov.store.device_store import DeviceStore
from bleprov.store.keys import KeyFileProvider

NOW = datetime.now(UTC)
MANUFACTURER = Manufacturer.create("Acme", now=NOW)
TRUST = hst.Trust((MANUFACTURER.root_certificate.public_bytes(Encoding.DER),), TrustPolicy.REFUSE)
PASSWORD = "correct horse battery"
HOME = WifiCredentials(b"home", WifiSecurity.WPA2_PERSONAL, passphrase=PASSWORD)
WRONG = WifiCredentials(b"home", WifiSecurity.WPA2_PERSONAL, passphrase="wrong horse battery")

ENVIRONMENT: dict[str, Any] = {
    "access_points": [
        {
            "ssid": "home",
            "bssid": "02:00:00:00:00:01",
            "channel": 6,
            "rssi": -40,
            "security": "wpa2-personal",
            "passphrase": PASSWORD,
        },
        {
            "ssid": "old",
            "bssid": "02:00:00:00:00:02",
            "channel": 11,
            "rssi": -60,
            "security": "wpa2-personal",
            "passphrase": "old network pass",
        },
        *[
            {
                "ssid": f"neighbour-{i}",
                "bssid": f"02:00:00:00:01:{i:02x}",
                "channel": 1 + i % 11,
                "rssi": -70 - i % 20,
                "security": "wpa3-personal",
                "passphrase": "not ours 123",
            }
            for i in range(40)
        ],
    ],
    "device": {
        "connected": "old",
        "saved": {"ssid": "old", "security": "wpa2-personal", "passphrase": "old network pass"},
    },
}


class Echo:
    def opened(self, channel: SecureDeviceChannel) -> None: ...
    def received(self, channel: SecureDeviceChannel, data: bytes) -> None: ...
    def closed(self, channel: SecureDeviceChannel, error: BleprovError | None) -> None: ...


@dataclass
class Rig:
    link: VirtualLink
    device: DeviceProvisioning
    label_qr: str
    network: SimulatedWifi
    store: DeviceStore
    service: EnrolmentService
    device_link: DeviceLink
    server: SecureDeviceServer
    hosts: int = 0

    async def session(self) -> tuple[SecureHostLink, EnrolmentClient]:
        self.hosts += 1
        host = make_virtual_device(
            self.link, name="host", address=f"C0:B1:00:00:00:{self.hosts:02X}"
        )
        await host.power_on()
        radio = CentralRadio.bumble(host, mtu=247)
        payload = parse_qr(self.label_qr)
        found = await find_device(radio, discriminator=payload.discriminator, timeout=5)
        session = SecureHostLink(
            HostLink(found.device, radio),
            mode=Mode.QR,
            secret=hst.QrSecret(payload.device_public_key, payload.label_secret),
            trust=TRUST,
            advertised=found.service_data,
        )
        await session.open()
        return session, EnrolmentClient(session, timeout=10)


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    link = VirtualLink()
    device, label = provision_device(
        MANUFACTURER.issue_device(now=NOW),
        modes=OobMode.QR,
        cost=ScryptCost(n=1 << 10, r=8, p=1),
    )
    network = SimulatedWifi.from_config(ENVIRONMENT)
    await network.start()
    store = DeviceStore(tmp_path / "store", KeyFileProvider(tmp_path / "keys" / "store.key"))
    store.put_provisioning(device)
    service = EnrolmentService(
        network=network,
        store=store,
        config=lambda: enr.DeviceEnrolmentConfig(device.identity.device_id, join_timeout=5),
    )
    server = SecureDeviceServer(
        secrets=device.secrets(),
        policy=int(device.modes),
        application=service,
        attempts=store.attempt_store(),
    )
    bumble = make_virtual_device(link, name="dev", address="F0:B1:00:00:00:01")
    device_link = DeviceLink(BumblePeripheral(bumble), server, device.info)
    await device_link.start()
    yield Rig(link, device, label.qr_text, network, store, service, device_link, server)
    await device_link.close()
    await network.close()
    link.close()
    await asyncio.sleep(0.02)


async def test_scan_wrong_password_then_right_then_commit_in_one_session(rig: Rig) -> None:
    session, client = await rig.session()
    info = await client.info()
    assert info["device_id"] == rig.device.identity.device_id
    results = await client.scan()
    assert len(results) == 42  # every access point, not a handful
    assert results[0].ssid == b"home"  # strongest first
    failed = await client.set_wifi(WRONG)
    assert failed.reason is JoinFailure.WRONG_PASSWORD
    assert failed.attempts_left == 4
    with pytest.raises(EnrolmentError) as refused:
        await client.commit()
    assert refused.value.status is Status.NOT_PROVEN
    ok = await client.set_wifi(HOME)
    assert ok.ip is not None
    await client.commit()
    await session.close()
    await rig.service.drain()
    stored = rig.store.get("wifi")
    assert stored is not None
    assert rig.network.saved_credentials is not None
    assert rig.network.saved_credentials.ssid == b"home"
    assert rig.network.current_ssid == b"home"
    raw = (rig.store.directory / "device.store").read_bytes()  # type: ignore[attr-defined]
    assert PASSWORD.encode() not in raw  # encrypted at rest


async def test_failsafe_rolls_back_when_the_host_goes_away(rig: Rig) -> None:
    session, client = await rig.session()
    assert (await client.set_wifi(HOME)).ip is not None
    assert rig.network.current_ssid == b"home"  # joined, staged
    await session.link.close()  # gone before commit
    await asyncio.wait_for(rig.device_link.advertising.wait(), 5)
    await rig.service.drain()
    assert rig.network.current_ssid == b"old"
    assert rig.network.saved_credentials is not None
    assert rig.network.saved_credentials.ssid == b"old"
    assert rig.store.get("wifi") is None


async def test_failsafe_timer_expiry(rig: Rig) -> None:
    session, client = await rig.session()
    await client.extend_failsafe(0.3)
    assert (await client.set_wifi(HOME)).ip is not None
    await asyncio.sleep(0.6)
    await rig.service.drain()
    assert rig.network.current_ssid == b"old"
    with pytest.raises(EnrolmentError) as refused:
        await client.commit()
    assert refused.value.status is Status.FAILSAFE_EXPIRED
    await session.close()


@pytest.mark.parametrize("cut_after", range(1, 7))
async def test_disconnect_at_every_message_boundary_leaves_the_prior_state(
    rig: Rig, cut_after: int
) -> None:
    """The host sends info, scan, set(wrong), set(right), failsafe, commit; the link drops
    after the N-th message the device handled. Afterwards the device is either fully
    enrolled (the commit got through) or exactly as before."""
    original = rig.service.received
    handled = 0

    def counting(channel: SecureDeviceChannel, data: bytes) -> None:
        nonlocal handled
        original(channel, data)
        handled += 1
        if handled == cut_after:
            asyncio.get_running_loop().create_task(channel.link.disconnect())

    rig.service.received = counting  # type: ignore[method-assign]
    session, client = await rig.session()
    try:
        await client.info()
        await client.scan()
        await client.set_wifi(WRONG)
        await client.set_wifi(HOME)
        await client.extend_failsafe(60)
        await client.commit()
    except BleprovError:
        pass
    await session.close()
    await asyncio.wait_for(rig.device_link.advertising.wait(), 5)
    await rig.service.drain()
    committed = rig.store.get("wifi") is not None
    if committed:
        assert rig.network.saved_credentials is not None
        assert rig.network.saved_credentials.ssid == b"home"
    else:
        assert rig.network.current_ssid == b"old"
        assert rig.network.saved_credentials is not None
        assert rig.network.saved_credentials.ssid == b"old"
    assert committed == (cut_after >= 6)


async def test_malformed_and_fuzzed_messages_get_typed_errors_and_the_device_keeps_serving(
    rig: Rig,
) -> None:
    session, client = await rig.session()
    rng = __import__("random").Random(7)
    garbage = [
        b"",
        b"\xff",
        os.urandom(50),
        cbor2.dumps([0, 1]),
        cbor2.dumps([0, 1, "wifi/set", 5]),
        encode(Request(9, "wifi/set", {"ssid": b"x" * 40, "security": 1, "passphrase": "x" * 9})),
        encode(Request(10, "nope", {})),
        encode(Request(11, Endpoint.WIFI_SET, {"ssid": b"a", "security": 9})),
        *[bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80))) for _ in range(30)],
    ]
    for raw in garbage:
        session.send(raw)
    await asyncio.sleep(0.3)
    # The same session still works, and the device said what was wrong with each.
    assert (await client.info())["device_id"] == rig.device.identity.device_id
    assert len(await client.scan()) == 42
    assert len(client.device_errors) >= 30
    assert {e["status"] for e in client.device_errors} == {Status.BAD_REQUEST}
    await session.close()
