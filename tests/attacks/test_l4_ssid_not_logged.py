"""L4: the enrolled network's name never reaches the journal.

Whoever reads the device's logs (a support bundle, a shared journal, a log shipper) must
not learn which network it joined. The device runs as ``bleprov device serve`` runs it
(``DeviceRuntime`` with ``LoggedNetwork``, whose lines go to the journal, over the
wpa_supplicant backend, whose debug log carries the control-socket traffic): a real
enrolment over the virtual radio, one wrong password first, then a restart that
re-applies the stored Wi-Fi. Every log record at DEBUG and every emitted line is
searched for the SSID, as text and as the hex wpa_supplicant is given.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

if sys.platform != "linux":
    pytest.skip("the fake wpa_supplicant needs UNIX datagram sockets", allow_module_level=True)

from bleprov.core.advertising import OobMode
from bleprov.core.factory import provision_device
from bleprov.core.wifi import Connected, WifiCredentials, WifiSecurity, network_tag
from bleprov.network.wpa_supplicant import WpaSupplicantWifi
from bleprov.radio.bumble_peripheral import BumblePeripheral
from bleprov.radio.host_link import CentralRadio
from bleprov.radio.virtual import VirtualLink, make_virtual_device
from bleprov.service.device_daemon import LoggedNetwork
from bleprov.service.device_runtime import DeviceRuntime
from bleprov.service.enrolment import EnrolmentClient
from bleprov.service.host_session import DeviceAuthentication, open_session
from bleprov.store.device_store import DeviceStore
from bleprov.store.keys import KeyFileProvider
from tests.network.test_wpa_supplicant import FakeWpaSupplicant, socket_dir, wpa2  # noqa: F401
from tests.rig import CHEAP, MANUFACTURER, NOW, TRUST

SSID = b"Zebra-Castle-77"
PASSPHRASE = "a passphrase for the zebras"
ENROLLED = WifiCredentials(SSID, WifiSecurity.WPA2_PERSONAL, passphrase=PASSPHRASE)
WRONG = WifiCredentials(SSID, WifiSecurity.WPA2_PERSONAL, passphrase="not the zebras' one")


@pytest.fixture
async def fake(socket_dir: Path) -> AsyncIterator[FakeWpaSupplicant]:  # noqa: F811
    server = FakeWpaSupplicant(
        socket_dir / "wlan0",
        [wpa2(SSID, "02:00:00:00:07:01", PASSPHRASE), wpa2(b"Old", "02:00:00:00:02:01", "old")],
    )
    await server.start()
    server.connect_now(server.add_saved_network(b"Old", "old"))
    yield server
    await server.stop()


def leaks(text: str) -> list[str]:
    """Every form of the SSID found in ``text``."""
    forms = [SSID.decode(), SSID.hex(), repr(SSID), SSID.hex().upper()]
    return [form for form in forms if form in text]


async def test_enrolment_and_restore_never_log_the_ssid(
    fake: FakeWpaSupplicant,
    socket_dir: Path,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    lines: list[str] = []
    device, label = provision_device(
        MANUFACTURER.issue_device(now=NOW), modes=OobMode.QR, cost=CHEAP
    )
    store = DeviceStore(tmp_path / "store", KeyFileProvider(tmp_path / "store.key"))
    store.put_provisioning(device)
    radio = VirtualLink()

    def build(address: str) -> DeviceRuntime:
        backend = WpaSupplicantWifi(
            fake.path, client_dir=socket_dir, command_timeout=1.0, address_poll_interval=0.02
        )
        # As the CLI builds it: emitted lines go to stdout, i.e. the journal.
        network = LoggedNetwork(backend, lines.append)
        peripheral = BumblePeripheral(make_virtual_device(radio, name="dev", address=address))
        return DeviceRuntime(store, peripheral, network, join_timeout=2.0)

    try:
        runtime = build("F0:B1:00:00:04:01")
        await runtime.start()
        try:
            host = make_virtual_device(radio, name="host", address="C0:B1:00:00:04:01")
            await host.power_on()
            auth = DeviceAuthentication.from_qr_text(label.qr_text)
            session = await open_session(CentralRadio.bumble(host, mtu=247), auth, TRUST, timeout=5)
            client = EnrolmentClient(session, timeout=10)
            assert (await client.set_wifi(WRONG)).ip is None  # the wrong key first
            assert (await client.set_wifi(ENROLLED)).ip is not None
            await client.commit()
            await session.close()
            await runtime.service.drain()
        finally:
            await runtime.close()

        again = build("F0:B1:00:00:04:02")  # the daemon restarted
        await again.network.start()
        try:
            assert await again.restore_wifi() == Connected("192.168.3.7")
        finally:
            await again.network.close()
    finally:
        radio.close()

    assert lines, "the network lines were emitted"
    assert any(line.startswith("network: ") for line in lines)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert leaks(logged) == []
    assert leaks("\n".join(lines)) == []


def test_the_tag_is_stable_per_device_and_keyed(tmp_path: Path) -> None:
    one = DeviceStore(tmp_path / "one", KeyFileProvider(tmp_path / "one.key"))
    other = DeviceStore(tmp_path / "two", KeyFileProvider(tmp_path / "two.key"))
    tag = network_tag(one.log_tag_key(), SSID)
    assert tag == network_tag(one.log_tag_key(), SSID)  # the same from start to start
    assert tag.startswith("net-") and leaks(tag) == []
    assert tag != network_tag(other.log_tag_key(), SSID)  # not a dictionary-checkable hash
    assert tag != network_tag(one.log_tag_key(), b"Zebra-Castle-78")
