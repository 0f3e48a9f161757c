"""NetworkManager over D-Bus against a real dbus-daemon serving NetworkManager's double.

Each test starts a private ``dbus-daemon`` and points ``DBUS_SYSTEM_BUS_ADDRESS`` at it, so
dbus-fast connects there as it would to the system bus. The double
(tests/dbus_doubles/networkmanager.py, on dbus-fast's service API) does what NetworkManager
does that matters here: ``AddAndActivateConnection2`` with its ``persist`` option, in-memory
profiles (``AddConnectionUnsaved``, ``Unsaved``) and ``Save()``, ``RequestScan`` that takes
time and moves ``LastScan``, and activations that take time and end like NetworkManager's:
``ACTIVATED`` with an ``IP4Config``, or the device ``FAILED`` with a state reason (wrong key,
SSID not found, DHCP) and the active connection removed. The outcome of an activation is
decided by a model of the air the test sets up (``SetNetwork``). Agent-owned secrets
(``psk-flags`` 1) are asked of the secret agents registered with the ``AgentManager``, over
the bus, as NetworkManager does: ``GetSecrets`` at activation, again with ``REQUEST_NEW``
when the key is refused. dbus-fast is not faked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

if sys.platform != "linux":
    pytest.skip("NetworkManager and dbus-fast are Linux-only", allow_module_level=True)

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from bleprov.core.wifi import Connected, Failed, JoinFailure, ScanResult, WifiCredentials
from bleprov.core.wifi import WifiSecurity as Sec
from bleprov.network import networkmanager as nm
from bleprov.network.base import NetworkError
from bleprov.network.networkmanager import (
    NetworkManagerError,
    NetworkManagerUnavailable,
    NetworkManagerWifi,
)
from bleprov.network.simulated import wpa_psk
from tests.dbus_doubles.common import TEST_IFACE
from tests.dbus_doubles.networkmanager import NEED_AUTH, NEVER, FakeNetworkManager

TIMEOUT = 5.0
MAIN_OBJ = "/org/freedesktop"
HOME_PASS = "correct horse battery staple"
OLD_PASS = "previous owner"
SEC_PSK = 0x188  # KEY_MGMT_PSK | PAIR_CCMP | GROUP_CCMP
SEC_SAE = 0x488
SEC_PSK_SAE = 0x588


@pytest.fixture
async def bus(system_bus: str) -> AsyncIterator[MessageBus]:
    connection = await MessageBus(bus_address=system_bus).connect()
    yield connection
    connection.disconnect()
    with contextlib.suppress(Exception):
        await connection.wait_for_disconnect()  # type: ignore[no-untyped-call]


async def start_double(system_bus: str, **options: bool) -> FakeNetworkManager:
    """NetworkManager's double serving org.freedesktop.NetworkManager on the test bus."""
    double = FakeNetworkManager(**options)
    await double.start(system_bus)
    return double


async def call(
    bus: MessageBus,
    path: str,
    interface: str,
    member: str,
    signature: str = "",
    body: list[Any] | None = None,
    *,
    destination: str = nm.NM_SERVICE,
) -> list[Any]:
    reply = await bus.call(
        Message(
            destination=destination,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=body or [],
        )
    )
    if reply.message_type == MessageType.ERROR:
        raise AssertionError(f"{member} failed: {reply.error_name} {reply.body}")
    result: list[Any] = reply.body
    return result


async def mock_test_api(bus: MessageBus, member: str, signature: str = "", *args: Any) -> Any:
    """Call the double's test controls (``org.bleprov.Test`` on ``/org/freedesktop``)."""
    body = await call(bus, MAIN_OBJ, TEST_IFACE, member, signature, list(args))
    return body[0] if body else None


async def prop(bus: MessageBus, path: str, interface: str, name: str) -> Any:
    (value,) = await call(bus, path, nm.PROPERTIES_IFACE, "Get", "ss", [interface, name])
    return value.value


async def eventually(condition: Callable[[], Awaitable[bool]]) -> None:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.01)


class World:
    """The NetworkManager double with an Ethernet and a Wi-Fi device, access points, air."""

    def __init__(self, bus: MessageBus, device: str) -> None:
        self.bus = bus
        self.device = device

    async def active_profile(self) -> str | None:
        active = await prop(self.bus, self.device, nm.DEVICE_IFACE, "ActiveConnection")
        if active == "/":
            return None
        return str(await prop(self.bus, active, nm.ACTIVE_IFACE, "Connection"))

    async def active_state(self) -> int | None:
        active = await prop(self.bus, self.device, nm.DEVICE_IFACE, "ActiveConnection")
        if active == "/":
            return None
        return int(await prop(self.bus, active, nm.ACTIVE_IFACE, "State"))

    async def profiles(self) -> list[str]:
        return list(await prop(self.bus, nm.SETTINGS_PATH, nm.SETTINGS_IFACE, "Connections"))

    async def info(self, path: str) -> dict[str, Any]:
        info = await mock_test_api(self.bus, "ConnectionInfo", "s", path)
        return {k: v.value for k, v in info.items()}

    async def settings(self, path: str) -> dict[str, dict[str, Any]]:
        """The profile as NetworkManager's GetSettings gives it (unwrapped, no secrets)."""
        (settings,) = await call(self.bus, path, nm.CONNECTION_IFACE, "GetSettings")
        return {n: {k: v.value for k, v in section.items()} for n, section in settings.items()}

    async def disk(self) -> list[str]:
        return list(await mock_test_api(self.bus, "DiskConnections"))

    async def add_access_point(
        self, ssid: str, bssid: str, mhz: int, strength: int, security: int
    ) -> str:
        return str(
            await mock_test_api(
                self.bus,
                "AddAccessPoint",
                "ossuyu",
                self.device,
                ssid,
                bssid,
                mhz,
                strength,
                security,
            )
        )

    async def set_network(
        self, ssid: str, passphrase: str, outcome: int = 0, delay_ms: int = 20, ip: str = ""
    ) -> None:
        await mock_test_api(
            self.bus, "SetNetwork", "ssuus", ssid, passphrase, outcome, delay_ms, ip
        )


async def make_world(bus: MessageBus, *, connected: bool = True) -> tuple[World, str | None]:
    await mock_test_api(bus, "AddEthernetDevice", "s", "eth0")
    device = await mock_test_api(bus, "AddWiFiDevice", "s", "wlan0")
    world = World(bus, device)
    await world.add_access_point("Home", "02:00:00:00:01:01", 2437, 83, SEC_PSK_SAE)
    await world.add_access_point("Home", "02:00:00:00:01:02", 5180, 40, SEC_PSK_SAE)
    await world.add_access_point("Old", "02:00:00:00:02:01", 2462, 60, SEC_PSK)
    await world.add_access_point("Attic", "02:00:00:00:03:01", 5955, 50, SEC_SAE)
    await world.add_access_point("Cafe", "02:00:00:00:04:01", 2412, 30, 0)
    await world.add_access_point("", "02:00:00:00:05:01", 2412, 90, SEC_PSK)  # hidden
    await world.set_network("Home", HOME_PASS, ip="192.168.5.20")
    await world.set_network("Old", OLD_PASS, ip="10.0.0.23")
    await world.set_network("Cellar", "down the stairs", ip="192.168.5.21")
    await world.set_network("Cafe", "", outcome=17)  # DHCP_FAILED
    await world.set_network("Wired", "wired together", outcome=5)  # IP_CONFIG_UNAVAILABLE
    await world.set_network("Slow", "slow and steady", outcome=NEVER)
    await world.set_network("Agent", "ask the agent", outcome=NEED_AUTH)
    old = None
    if connected:
        old = await mock_test_api(bus, "AddSavedConnection", "ss", "Old", OLD_PASS)
        await call(bus, nm.NM_PATH, nm.NM_IFACE, "ActivateConnection", "ooo", [old, device, "/"])

        async def activated() -> bool:
            return await world.active_state() == nm.ActiveState.ACTIVATED

        await eventually(activated)
    return world, old


@pytest.fixture
async def nm_double(bus: MessageBus, system_bus: str) -> AsyncIterator[FakeNetworkManager]:
    double = await start_double(system_bus)
    yield double
    await double.stop()


@pytest.fixture
async def world(bus: MessageBus, nm_double: FakeNetworkManager) -> tuple[World, str | None]:
    return await make_world(bus)


@pytest.fixture
async def wifi(world: tuple[World, str | None]) -> AsyncIterator[NetworkManagerWifi]:
    backend = NetworkManagerWifi(scan_interval=60.0, rescan_timeout=2.0)
    await backend.start()
    yield backend
    await backend.close()


def home(passphrase: str = HOME_PASS, **kw: Any) -> WifiCredentials:
    return WifiCredentials(b"Home", Sec.WPA2_WPA3_PERSONAL, passphrase=passphrase, **kw)


# -- translation, no bus ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "failure"),
    [
        (7, JoinFailure.WRONG_PASSWORD),
        (8, JoinFailure.WRONG_PASSWORD),
        (9, JoinFailure.WRONG_PASSWORD),
        (10, JoinFailure.WRONG_PASSWORD),
        (11, JoinFailure.TIMEOUT),
        (53, JoinFailure.NETWORK_NOT_FOUND),
        (5, JoinFailure.DHCP_FAILED),
        (6, JoinFailure.DHCP_FAILED),
        (15, JoinFailure.DHCP_FAILED),
        (16, JoinFailure.DHCP_FAILED),
        (17, JoinFailure.DHCP_FAILED),
        (4, JoinFailure.OTHER),
        (39, JoinFailure.OTHER),
        (999, JoinFailure.OTHER),
    ],
)
def test_device_state_reasons(reason: int, failure: JoinFailure) -> None:
    outcome = nm.failure_for_reason(reason)
    assert outcome.reason is failure
    assert f"reason {reason} (" in outcome.detail


def test_the_reason_names_are_spelled_out() -> None:
    assert nm.failure_for_reason(53).detail.endswith("(ssid-not-found)")
    assert nm.failure_for_reason(999).detail.endswith("(unlisted)")


@pytest.mark.parametrize(
    ("flags", "wpa", "rsn", "security"),
    [
        (0, 0, 0, Sec.OPEN),
        (1, 0, 0, None),  # WEP: privacy without WPA
        (1, 0, 0x188, Sec.WPA2_PERSONAL),
        (1, 0x144, 0, Sec.WPA2_PERSONAL),  # WPA1-only PSK
        (1, 0, 0x588, Sec.WPA2_WPA3_PERSONAL),
        (1, 0, 0x488, Sec.WPA3_PERSONAL),
        (1, 0, 0x288, None),  # 802.1X
        (0, 0, 0x808, None),  # OWE
    ],
)
def test_security_of_access_point(flags: int, wpa: int, rsn: int, security: Sec | None) -> None:
    assert nm.security_of_access_point(flags, wpa, rsn) is security


def test_strength_to_dbm_inverts_networkmanagers_scale() -> None:
    assert [nm.dbm_of_strength(p) for p in (0, 50, 83, 100, 150, -5)] == [
        -100,
        -70,
        -50,
        -40,
        -40,
        -100,
    ]


def test_profiles_for_each_security() -> None:
    def security(credentials: WifiCredentials) -> dict[str, Any] | None:
        settings = nm.connection_settings(credentials, connection_id="x", connection_uuid="u")
        section = settings.get("802-11-wireless-security")
        return None if section is None else {k: v.value for k, v in section.items()}

    # The key is agent-owned and never in the profile (M4): secret_of() is what the agent
    # gives NetworkManager when it asks.
    assert security(WifiCredentials(b"A", Sec.OPEN)) is None
    wpa3 = WifiCredentials(b"A", Sec.WPA3_PERSONAL, passphrase="12345678")
    assert security(wpa3) == {"key-mgmt": "sae", "psk-flags": 1}
    assert nm.secret_of(wpa3) == "12345678"
    transition = WifiCredentials(b"A", Sec.WPA2_WPA3_PERSONAL, passphrase="12345678")
    assert security(transition) == {"key-mgmt": "wpa-psk", "psk-flags": 1}
    psk = bytes(range(32))
    raw = WifiCredentials(b"A", Sec.WPA2_PERSONAL, psk=psk)
    assert security(raw) == {"key-mgmt": "wpa-psk", "psk-flags": 1}
    assert nm.secret_of(raw) == psk.hex()
    assert nm.secret_of(WifiCredentials(b"A", Sec.OPEN)) is None
    hidden = nm.connection_settings(
        WifiCredentials(b"\xff", Sec.OPEN, hidden=True), connection_id="x", connection_uuid="u"
    )
    assert hidden["802-11-wireless"]["ssid"] == Variant("ay", b"\xff")
    assert hidden["802-11-wireless"]["hidden"] == Variant("b", True)
    assert hidden["connection"]["type"] == Variant("s", "802-11-wireless")


def test_addresses_of_ip_configs() -> None:
    assert (
        nm.address_of_ip_config(
            {"AddressData": [{"address": Variant("s", "192.168.1.9"), "prefix": Variant("u", 24)}]}
        )
        == "192.168.1.9"
    )
    assert nm.address_of_ip_config({"AddressData": [{"address": "fd00::5"}]}) == "fd00::5"
    packed = int.from_bytes(bytes([10, 1, 2, 3]), sys.byteorder)
    assert nm.address_of_ip_config({"Addresses": [[packed, 8, 0]]}) == "10.1.2.3"
    assert nm.address_of_ip_config({"AddressData": [{"address": "nonsense"}]}) is None
    assert nm.address_of_ip_config({}) is None


def test_access_points_become_scan_results() -> None:
    props = {
        "Ssid": b"Home",
        "HwAddress": "02:00:00:00:01:0a",
        "Frequency": 5180,
        "Strength": 83,
        "Flags": 1,
        "WpaFlags": 0,
        "RsnFlags": 0x188,
    }
    assert nm.access_point_scan_result(props) == ScanResult(
        b"Home", "02:00:00:00:01:0A", -50, 36, Sec.WPA2_PERSONAL
    )
    for broken in (
        {"Ssid": b""},
        {"Ssid": b"\0\0"},
        {"Frequency": 60480},
        {"RsnFlags": 0x288},
        {"Strength": "x"},
    ):
        assert nm.access_point_scan_result({**props, **broken}) is None, broken
    assert nm.access_point_scan_result({"Ssid": b"x"}) is None


# -- reaching NetworkManager -------------------------------------------------------------------


async def test_a_missing_bus_is_a_typed_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    address = f"unix:path={tmp_path}/no_such_socket"
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
    with pytest.raises(NetworkManagerUnavailable, match="system bus") as caught:
        await NetworkManagerWifi().start()
    assert address in str(caught.value)


async def test_no_networkmanager_on_the_bus(bus: MessageBus) -> None:
    backend = NetworkManagerWifi()
    with pytest.raises(NetworkManagerUnavailable, match="is it running"):
        await backend.start()
    with pytest.raises(NetworkManagerError, match="not started"):
        await backend.try_join(home(), timeout=1.0)


async def test_no_wifi_device(bus: MessageBus, nm_double: FakeNetworkManager) -> None:
    await mock_test_api(bus, "AddEthernetDevice", "s", "eth0")
    with pytest.raises(NetworkManagerUnavailable, match=r"no Wi-Fi device$"):
        await NetworkManagerWifi().start()


async def test_the_wifi_device_is_found_by_type_and_name(
    world: tuple[World, str | None],
) -> None:
    backend = NetworkManagerWifi(interface="wlan0")
    await backend.start()
    assert backend.device_path == world[0].device
    await backend.close()
    with pytest.raises(NetworkManagerUnavailable, match="named 'wlan9' \\(it has wlan0\\)"):
        await NetworkManagerWifi(interface="wlan9").start()


# -- scanning ---------------------------------------------------------------------------------


async def test_start_serves_networkmanagers_list_at_once(wifi: NetworkManagerWifi) -> None:
    assert wifi.cached_scan() == [
        ScanResult(b"Home", "02:00:00:00:01:01", -50, 6, Sec.WPA2_WPA3_PERSONAL),
        ScanResult(b"Old", "02:00:00:00:02:01", -64, 11, Sec.WPA2_PERSONAL),
        ScanResult(b"Attic", "02:00:00:00:03:01", -70, 1, Sec.WPA3_PERSONAL),
        ScanResult(b"Home", "02:00:00:00:01:02", -76, 36, Sec.WPA2_WPA3_PERSONAL),
        ScanResult(b"Cafe", "02:00:00:00:04:01", -82, 1, Sec.OPEN),
    ]  # strongest first; the hidden one has no name to show


async def test_rescan_waits_for_last_scan_while_the_cache_answers_at_once(
    bus: MessageBus, world: tuple[World, str | None], wifi: NetworkManagerWifi
) -> None:
    before = wifi.cached_scan()
    await mock_test_api(bus, "SetScanDelay", "u", 300)
    pending = asyncio.create_task(wifi.rescan())
    await asyncio.sleep(0.05)
    assert await mock_test_api(bus, "ScanCount") == 1
    await world[0].add_access_point("New", "02:00:00:00:06:01", 2412, 100, 0)
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert wifi.cached_scan() == before  # the old list, at once
    assert loop.time() - began < 0.01
    assert not pending.done()  # LastScan has not moved yet
    fresh = await pending
    assert fresh[0] == ScanResult(b"New", "02:00:00:00:06:01", -40, 1, Sec.OPEN)
    assert wifi.cached_scan() == fresh
    shared = await asyncio.gather(wifi.rescan(), wifi.rescan(), wifi.rescan())
    assert all(r == shared[0] for r in shared)
    assert await mock_test_api(bus, "ScanCount") == 2  # the three shared one scan


async def test_a_scan_that_never_completes_is_a_network_error(
    bus: MessageBus, world: tuple[World, str | None]
) -> None:
    await mock_test_api(bus, "SetScanDelay", "u", 60_000)
    backend = NetworkManagerWifi(scan_interval=60.0, rescan_timeout=0.1)
    await backend.start()
    try:
        with pytest.raises(NetworkError, match=r"no results within 0\.1 s"):
            await backend.rescan()
        assert len(backend.cached_scan()) == 5  # the cache is untouched
    finally:
        await backend.close()


# -- joining ----------------------------------------------------------------------------------


async def test_a_join_stays_in_memory_even_after_commit(
    bus: MessageBus,
    world: tuple[World, str | None],
    wifi: NetworkManagerWifi,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Before M4 the commit Save()-d the profile, key and all; now nothing is ever saved.
    w, old = world
    caplog.set_level(logging.DEBUG)
    outcome = await wifi.try_join(home(), timeout=TIMEOUT)
    assert outcome == Connected("192.168.5.20")
    profile = await w.active_profile()
    assert profile is not None and profile != old
    info = await w.info(profile)
    assert info == {
        "id": "bleprov",  # no SSID: NetworkManager logs profile names
        "ssid": b"Home",
        "hidden": False,
        "key-mgmt": "wpa-psk",
        "psk-flags": 1,
        "psk-given": False,
        "psk-is-hex": False,
        "persist": "memory",
        "unsaved": True,
    }
    assert profile not in await w.disk()
    uuid_ = (await w.settings(profile))["connection"]["uuid"]
    assert await mock_test_api(bus, "SecretRequests") == [(uuid_, 1)]  # asked the agent

    await wifi.commit()
    assert await w.disk() == [old]  # nothing saved: the old profile alone is on disk
    assert (await w.info(profile))["unsaved"] is True
    assert await mock_test_api(bus, "SaveCalls") == []
    await wifi.rollback()  # the commit ended the session
    assert await w.active_profile() == profile
    assert HOME_PASS not in caplog.text


async def test_a_wrong_passphrase_deletes_the_profile_and_rollback_restores(
    world: tuple[World, str | None], wifi: NetworkManagerWifi
) -> None:
    w, old = world
    before = await w.profiles()
    outcome = await wifi.try_join(home("not the passphrase"), timeout=TIMEOUT)
    assert outcome == Failed(
        JoinFailure.WRONG_PASSWORD, "NetworkManager device state reason 7 (no-secrets)"
    )
    assert await w.profiles() == before  # the failed profile is gone
    with pytest.raises(NetworkError, match="nothing to commit"):
        await wifi.commit()
    await wifi.rollback()

    async def back_on_old() -> bool:
        return await w.active_profile() == old and await w.active_state() == 2

    await eventually(back_on_old)
    assert await w.disk() == [old]


async def test_rollback_after_successful_joins(
    world: tuple[World, str | None], wifi: NetworkManagerWifi
) -> None:
    w, old = world
    before = await w.profiles()
    assert isinstance(await wifi.try_join(home(), timeout=TIMEOUT), Connected)
    attic = WifiCredentials(b"Attic", Sec.WPA3_PERSONAL, passphrase="up the ladder")
    await w.set_network("Attic", "up the ladder", ip="192.168.5.30")
    assert await wifi.try_join(attic, timeout=TIMEOUT) == Connected("192.168.5.30")
    assert len(await w.profiles()) == len(before) + 1  # the first staged profile was replaced
    await wifi.rollback()
    assert await w.profiles() == before
    assert await w.active_profile() == old
    assert await w.disk() == [old]


async def test_rollback_with_no_prior_connection_leaves_the_device_off(
    bus: MessageBus, nm_double: FakeNetworkManager
) -> None:
    w, _ = await make_world(bus, connected=False)
    backend = NetworkManagerWifi(scan_interval=60.0)
    await backend.start()
    try:
        assert isinstance(await backend.try_join(home(), timeout=TIMEOUT), Connected)
        await backend.rollback()
        assert await w.active_profile() is None
        assert await w.profiles() == []
    finally:
        await backend.close()


@pytest.mark.parametrize(
    ("ssid", "passphrase", "expected"),
    [
        (
            "Nowhere",
            "whatever1",
            Failed(
                JoinFailure.NETWORK_NOT_FOUND,
                "NetworkManager device state reason 53 (ssid-not-found)",
            ),
        ),
        (
            "Wired",
            "wired together",
            Failed(
                JoinFailure.DHCP_FAILED,
                "NetworkManager device state reason 5 (ip-config-unavailable)",
            ),
        ),
        (
            "Agent",
            "ask the agent",
            Failed(
                JoinFailure.WRONG_PASSWORD,
                "NetworkManager asked for new secrets after the supplicant disconnected",
            ),
        ),
        ("Slow", "slow and steady", Failed(JoinFailure.TIMEOUT, "not connected within 0.3 s")),
    ],
)
async def test_failures_are_mapped_and_leave_nothing_behind(
    world: tuple[World, str | None],
    wifi: NetworkManagerWifi,
    ssid: str,
    passphrase: str,
    expected: Failed,
) -> None:
    w, _ = world
    before = await w.profiles()
    credentials = WifiCredentials(ssid.encode(), Sec.WPA2_PERSONAL, passphrase=passphrase)
    # Only the slow network waits out its timeout; the others fail on their own, and a
    # loaded machine (make test-lowest beside other work) may need more than 0.3 s for it.
    timeout = 0.3 if expected.reason is JoinFailure.TIMEOUT else 10.0
    assert await wifi.try_join(credentials, timeout=timeout) == expected
    assert await w.profiles() == before


async def test_an_open_network_whose_dhcp_fails(
    world: tuple[World, str | None], wifi: NetworkManagerWifi
) -> None:
    outcome = await wifi.try_join(WifiCredentials(b"Cafe", Sec.OPEN), timeout=TIMEOUT)
    assert outcome == Failed(
        JoinFailure.DHCP_FAILED, "NetworkManager device state reason 17 (dhcp-failed)"
    )


async def test_a_hidden_network_and_a_raw_psk(
    world: tuple[World, str | None], wifi: NetworkManagerWifi
) -> None:
    w, _ = world
    cellar = WifiCredentials(
        b"Cellar", Sec.WPA2_PERSONAL, psk=wpa_psk("down the stairs", b"Cellar"), hidden=True
    )
    assert await wifi.try_join(cellar, timeout=TIMEOUT) == Connected("192.168.5.21")
    profile = await w.active_profile()
    assert profile is not None
    info = await w.info(profile)
    assert (info["hidden"], info["psk-is-hex"]) == (True, True)


async def test_without_add_and_activate2_profiles_are_still_unsaved(
    bus: MessageBus, system_bus: str
) -> None:
    double = await start_double(system_bus, add_and_activate2=False)
    try:
        w, old = await make_world(bus)
        backend = NetworkManagerWifi(scan_interval=60.0)
        await backend.start()
        try:
            assert await backend.try_join(home(), timeout=TIMEOUT) == Connected("192.168.5.20")
            profile = await w.active_profile()
            assert profile is not None
            assert (await w.info(profile))["unsaved"] is True
            assert profile not in await w.disk()
            await backend.commit()
            assert await w.disk() == [old]  # never saved (M4)
            assert (await w.info(profile))["psk-given"] is False
        finally:
            await backend.close()
    finally:
        await double.stop()


async def test_a_bad_timeout_is_refused(wifi: NetworkManagerWifi) -> None:
    with pytest.raises(ValueError, match="positive"):
        await wifi.try_join(home(), timeout=-1)


async def test_a_profile_networkmanager_rejects(
    world: tuple[World, str | None], wifi: NetworkManagerWifi
) -> None:
    w, old = world
    refused = WifiCredentials(b"Refused", Sec.WPA2_PERSONAL, passphrase="whatever1")
    outcome = await wifi.try_join(refused, timeout=TIMEOUT)
    assert outcome == Failed(
        JoinFailure.OTHER,
        "NetworkManager rejected the profile "
        "(org.freedesktop.NetworkManager.Settings.Connection.InvalidProperty)",
    )
    await wifi.rollback()
    assert await w.active_profile() == old


# -- the secret agent and restore (M4) ---------------------------------------------------------


async def test_the_agent_answers_only_networkmanager(
    bus: MessageBus, world: tuple[World, str | None], wifi: NetworkManagerWifi
) -> None:
    assert isinstance(await wifi.try_join(home(), timeout=TIMEOUT), Connected)
    profile = await world[0].active_profile()
    assert profile is not None
    (settings,) = await call(bus, profile, nm.CONNECTION_IFACE, "GetSettings")
    assert wifi._bus is not None
    agent = wifi._bus.unique_name
    assert await mock_test_api(bus, "Agents") == [agent]
    reply = await bus.call(
        Message(
            destination=agent,
            path=nm.SECRET_AGENT_PATH,
            interface=nm.SECRET_AGENT_IFACE,
            member="GetSecrets",
            signature="a{sa{sv}}osasu",
            body=[settings, profile, nm.WIFI_SECURITY, [], 1],
        )
    )
    assert reply.message_type is MessageType.ERROR
    assert reply.error_name == nm.SECRET_AGENT_IFACE + ".PermissionDenied"
    assert HOME_PASS not in repr(reply.body)
    await wifi.close()
    assert await mock_test_api(bus, "Agents") == []  # unregistered, the key forgotten


async def test_commit_replaces_the_network_kept_before(
    world: tuple[World, str | None], wifi: NetworkManagerWifi
) -> None:
    w, old = world
    assert isinstance(await wifi.try_join(home(), timeout=TIMEOUT), Connected)
    await wifi.commit()
    first = await w.active_profile()
    attic = WifiCredentials(b"Attic", Sec.WPA3_PERSONAL, passphrase="up the ladder")
    await w.set_network("Attic", "up the ladder", ip="192.168.5.30")
    assert isinstance(await wifi.try_join(attic, timeout=TIMEOUT), Connected)
    await wifi.commit()
    second = await w.active_profile()
    assert old is not None and second is not None and second != first
    assert sorted(await w.profiles()) == sorted([old, second])  # the first one is gone


async def test_restore_keeps_a_network_not_in_range_and_drops_earlier_runs(
    bus: MessageBus, world: tuple[World, str | None]
) -> None:
    w, old = world
    earlier = NetworkManagerWifi(scan_interval=60.0)
    await earlier.start()
    assert isinstance(await earlier.try_join(home(), timeout=TIMEOUT), Connected)
    await earlier.commit()
    await earlier.close()  # the daemon stops; NetworkManager keeps the profile in memory
    # A profile an earlier version saved, key and all, named after the SSID.
    legacy = await mock_test_api(bus, "AddSavedConnection", "ss", "bleprov Legacy", "old key")

    backend = NetworkManagerWifi(scan_interval=60.0)
    await backend.start()
    try:
        away = WifiCredentials(b"Nowhere", Sec.WPA2_PERSONAL, passphrase="whatever1")
        outcome = await backend.restore(away, timeout=TIMEOUT)
        assert isinstance(outcome, Failed)
        assert outcome.reason is JoinFailure.NETWORK_NOT_FOUND
        profiles = await w.profiles()
        assert legacy not in profiles
        assert old in profiles  # not ours: left alone
        (kept,) = [p for p in profiles if p != old]
        info = await w.info(kept)
        assert (info["ssid"], info["persist"], info["psk-given"]) == (b"Nowhere", "memory", False)
        assert legacy not in await w.disk()  # the old plaintext key is off the disk
    finally:
        await backend.close()


async def test_the_agent_registers_again_when_networkmanager_restarts(
    bus: MessageBus, system_bus: str, nm_double: FakeNetworkManager
) -> None:
    await make_world(bus)
    backend = NetworkManagerWifi(scan_interval=60.0)
    await backend.start()
    try:
        await nm_double.stop()
        restarted = await start_double(system_bus)
        try:

            async def registered() -> bool:
                return bool(await mock_test_api(bus, "Agents"))

            await eventually(registered)
        finally:
            await restarted.stop()
    finally:
        await backend.close()


# -- the double's guard (M4 relies on it) ------------------------------------------------------


async def test_the_double_counts_every_way_of_writing_a_profile_to_disk(
    bus: MessageBus, world: tuple[World, str | None]
) -> None:
    """SaveCalls, DiskConnections and GivenSecrets must see a key written through any of
    NetworkManager's calls, not only Save(), or the M4 test could miss a regression."""
    w, _old = world
    profile = nm.connection_settings(home(), connection_id="bleprov", connection_uuid="u1")
    profile[nm.WIFI_SECURITY]["psk"] = Variant("s", "written down")
    in_memory, _ = await call(
        bus,
        nm.SETTINGS_PATH,
        nm.SETTINGS_IFACE,
        "AddConnection2",
        "a{sa{sv}}ua{sv}",
        [profile, 0x2, {}],
    )
    assert await mock_test_api(bus, "SaveCalls") == []
    assert in_memory not in await w.disk()
    await call(bus, in_memory, nm.CONNECTION_IFACE, "Update2", "a{sa{sv}}ua{sv}", [{}, 0x1, {}])
    assert await mock_test_api(bus, "SaveCalls") == [f"Update2 {in_memory}"]
    assert in_memory in await w.disk()
    on_disk, _ = await call(
        bus,
        nm.SETTINGS_PATH,
        nm.SETTINGS_IFACE,
        "AddConnection2",
        "a{sa{sv}}ua{sv}",
        [profile, 0x1, {}],
    )
    assert (await mock_test_api(bus, "SaveCalls"))[-1] == f"AddConnection2 {on_disk}"
    assert await mock_test_api(bus, "GivenSecrets") == ["written down", "written down"]
    with pytest.raises(AssertionError, match="InvalidArguments"):
        await call(
            bus,
            nm.SETTINGS_PATH,
            nm.SETTINGS_IFACE,
            "AddConnection2",
            "a{sa{sv}}ua{sv}",
            [profile, 0x3, {}],
        )
    (secretless,) = await call(bus, on_disk, nm.CONNECTION_IFACE, "GetSettings")
    assert "psk" not in secretless[nm.WIFI_SECURITY]  # as NetworkManager answers
