"""M4: the Wi-Fi passphrase must rest nowhere but the device's encrypted store.

An attacker who reads the device's flash (or its backups) must not find the passphrase in
the OS's network configuration: NetworkManager's keyfiles (``/etc`` or ``/run``) or
``wpa_supplicant.conf``. Both backends are driven as enrolment and the start-up restore
drive them, against the doubles of tests/network (NetworkManager's, tests/dbus_doubles, with
agent-owned secrets, and the fake wpa_supplicant control socket); a reboot is modelled as the
OS keeping only what it was asked to write.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

if sys.platform != "linux":
    pytest.skip("NetworkManager, wpa_supplicant and D-Bus are Linux-only", allow_module_level=True)

from dbus_fast.aio import MessageBus

from bleprov.core.advertising import OobMode
from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.enrolment.device import encode_credentials
from bleprov.core.factory import provision_device
from bleprov.core.identity import Manufacturer
from bleprov.core.wifi import Connected, WifiCredentials, WifiSecurity
from bleprov.network.base import NetworkBackend
from bleprov.network.networkmanager import NetworkManagerWifi
from bleprov.network.wpa_supplicant import WpaSupplicantWifi
from bleprov.radio.bumble_peripheral import BumblePeripheral
from bleprov.radio.virtual import VirtualLink, make_virtual_device
from bleprov.service.device_runtime import DeviceRuntime
from bleprov.store.device_store import WIFI, DeviceStore
from bleprov.store.keys import KeyFileProvider
from tests.network.test_networkmanager import (  # noqa: F401 (fixtures)
    TIMEOUT,
    World,
    bus,
    mock_test_api,
    nm_double,
    world,
)
from tests.network.test_wpa_supplicant import (  # noqa: F401 (fixtures)
    FakeWpaSupplicant,
    air,
    fake,
    socket_dir,
)

PASSPHRASE = "correct horse battery staple"
HOME = WifiCredentials(b"Home", WifiSecurity.WPA2_WPA3_PERSONAL, passphrase=PASSPHRASE)
HOME_WPA2 = WifiCredentials(b"Home", WifiSecurity.WPA2_PERSONAL, passphrase=PASSPHRASE)


@pytest.fixture
async def link() -> AsyncIterator[VirtualLink]:
    virtual = VirtualLink()
    yield virtual
    virtual.close()


def enrolled_store(directory: Path, credentials: WifiCredentials) -> DeviceStore:
    """A device store as enrolment leaves it: the factory identity and the Wi-Fi."""
    manufacturer = Manufacturer.create("Acme", now=datetime.now(UTC))
    device, _ = provision_device(
        manufacturer.issue_device(now=datetime.now(UTC)),
        modes=OobMode.QR,
        cost=ScryptCost(n=16, r=1, p=1),
    )
    store = DeviceStore(directory / "store", KeyFileProvider(directory / "store.key"))
    store.put_provisioning(device)
    store.update({WIFI: encode_credentials(credentials)})
    return store


def runtime(store: DeviceStore, link: VirtualLink, network: NetworkBackend) -> DeviceRuntime:
    device = make_virtual_device(link, name="d", address="F0:B1:E9:00:04:01")
    return DeviceRuntime(store, BumblePeripheral(device), network, join_timeout=TIMEOUT)


async def test_networkmanager_is_never_asked_to_keep_the_passphrase(
    bus: MessageBus,  # noqa: F811
    world: tuple[World, str | None],  # noqa: F811
) -> None:
    w, _old = world
    backend = NetworkManagerWifi(scan_interval=60.0)
    await backend.start()
    try:
        assert isinstance(await backend.try_join(HOME, timeout=TIMEOUT), Connected)
        await backend.commit()
        profile = await w.active_profile()
        assert profile is not None
        info = await w.info(profile)
        assert await mock_test_api(bus, "SaveCalls") == []  # nothing made durable by NM
        assert (info["persist"], info["unsaved"]) == ("memory", True)
        assert profile not in await w.disk()
        # Agent-owned: NetworkManager writes the key to no keyfile, not even /run's.
        assert info["psk-flags"] & 1
        assert PASSPHRASE not in await mock_test_api(bus, "GivenSecrets")
    finally:
        await backend.close()


async def test_networkmanager_reboot_reapplies_the_store(
    bus: MessageBus,  # noqa: F811
    world: tuple[World, str | None],  # noqa: F811
    link: VirtualLink,
    tmp_path: Path,
) -> None:
    w, _old = world
    store = enrolled_store(tmp_path, HOME)
    first = runtime(store, link, NetworkManagerWifi(scan_interval=60.0))
    await first.network.start()
    assert isinstance(await first.restore_wifi(), Connected)
    await first.network.close()

    await mock_test_api(bus, "Reboot")
    ours = [p for p in await w.profiles() if (await w.info(p))["ssid"] == b"Home"]
    assert ours == []  # nothing of the enrolled network survived the power cycle

    second = runtime(store, link, NetworkManagerWifi(scan_interval=60.0))
    await second.network.start()
    try:
        assert await second.restore_wifi() == Connected("192.168.5.20")  # from the store
        assert await mock_test_api(bus, "SaveCalls") == []
        assert PASSPHRASE not in await mock_test_api(bus, "GivenSecrets")
    finally:
        await second.network.close()


def wpa_backend(fake: FakeWpaSupplicant, socket_dir: Path) -> WpaSupplicantWifi:  # noqa: F811
    return WpaSupplicantWifi(
        fake.path,
        client_dir=socket_dir,
        scan_interval=60.0,
        command_timeout=1.0,
        address_poll_interval=0.02,
    )


def written_secrets(config: dict[int, tuple[dict[str, str], bool]]) -> list[str]:
    return [variables.get("psk", "") for variables, _disabled in config.values()]


async def test_wpa_supplicant_is_never_asked_to_save_the_passphrase(
    fake: FakeWpaSupplicant,  # noqa: F811
    socket_dir: Path,  # noqa: F811
) -> None:
    backend = wpa_backend(fake, socket_dir)
    await backend.start()
    try:
        assert isinstance(await backend.try_join(HOME_WPA2, timeout=2.0), Connected)
        await backend.commit()
    finally:
        await backend.close()
    assert [c for c in fake.commands if c.startswith("SAVE_CONFIG")] == []
    # Someone else saving wpa_supplicant's configuration (wpa_cli save_config, a GUI)
    # must not write it either: the network is marked mem_only_psk.
    assert fake.handle("SAVE_CONFIG", [], "SAVE_CONFIG", "") == "OK\n"
    assert fake.saved is not None
    assert not any(PASSPHRASE in psk for psk in written_secrets(fake.saved))


async def test_wpa_supplicant_reboot_reapplies_the_store(
    fake: FakeWpaSupplicant,  # noqa: F811
    socket_dir: Path,  # noqa: F811
    link: VirtualLink,
    tmp_path: Path,
) -> None:
    store = enrolled_store(tmp_path, HOME_WPA2)
    first = runtime(store, link, wpa_backend(fake, socket_dir))
    await first.network.start()
    assert isinstance(await first.restore_wifi(), Connected)
    await first.network.close()
    config = fake.reboot()
    assert not any(PASSPHRASE in psk for psk in written_secrets(config))
    await fake.stop()
    fake.path.unlink()

    rebooted = FakeWpaSupplicant(fake.path, air())
    rebooted.load(config)
    await rebooted.start()
    try:
        second = runtime(store, link, wpa_backend(rebooted, socket_dir))
        await second.network.start()
        try:
            assert await second.restore_wifi() == Connected("192.168.3.7")  # from the store
        finally:
            await second.network.close()
        assert not any(c.startswith("SAVE_CONFIG") for c in fake.commands + rebooted.commands)
    finally:
        await rebooted.stop()
