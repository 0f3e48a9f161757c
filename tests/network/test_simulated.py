"""The simulated Wi-Fi backend: its environment file, staged joins, rollback, background scans."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bleprov.core.errors import BleprovError
from bleprov.core.wifi import Connected, Failed, JoinFailure, ScanResult, WifiCredentials
from bleprov.core.wifi import WifiSecurity as Sec
from bleprov.network.base import NetworkError
from bleprov.network.simulated import (
    SimulatedConfigError,
    SimulatedWifi,
    parse_environment,
    wpa_psk,
)
from bleprov.store.files import FileAttemptStore

EXAMPLE = Path(__file__).parents[2] / "bleprov" / "network" / "simulated_example.toml"
HOME_PASS = "correct horse battery staple"
OLD_PASS = "previous owner"


def home(passphrase: str = HOME_PASS, security: Sec = Sec.WPA2_PERSONAL) -> WifiCredentials:
    return WifiCredentials(b"Home", security, passphrase=passphrase)


def config(**overrides: Any) -> dict[str, Any]:
    """A small environment; ``overrides`` replace top-level sections."""
    base: dict[str, Any] = {
        "scan": {"interval": 60.0, "duration": 0.0},
        "dhcp": {"ip_address": "192.168.7.20"},
        "device": {
            "connected": "Old",
            "saved": {"ssid": "Old", "security": "wpa2-personal", "passphrase": OLD_PASS},
        },
        "access_points": [
            {
                "ssid": "Home",
                "bssid": "02:00:00:00:01:01",
                "channel": 6,
                "rssi": -50,
                "security": "wpa2-wpa3-personal",
                "passphrase": HOME_PASS,
            },
            {
                "ssid": "Old",
                "bssid": "02:00:00:00:02:01",
                "channel": 11,
                "rssi": -60,
                "security": "wpa2-personal",
                "passphrase": OLD_PASS,
                "ip_address": "10.0.0.23",
            },
        ],
    }
    base.update(overrides)
    return base


def with_ap(**ap: Any) -> dict[str, Any]:
    """The small environment plus one access point (defaults filled in)."""
    entry = {"bssid": "02:00:00:00:09:01", "channel": 1, "rssi": -70, **ap}
    if entry.get("security", "wpa2-personal") != "open":
        entry.setdefault("security", "wpa2-personal")
        entry.setdefault("passphrase", "some passphrase")
    cfg = config()
    cfg["access_points"].append(entry)
    return cfg


@pytest.fixture
async def wifi() -> AsyncIterator[SimulatedWifi]:
    backend = SimulatedWifi.from_config(config())
    await backend.start()
    yield backend
    await backend.close()


async def started(cfg: dict[str, Any], **kwargs: Any) -> SimulatedWifi:
    backend = SimulatedWifi.from_config(cfg, **kwargs)
    await backend.start()
    return backend


# -- the environment file -----------------------------------------------------------------


async def test_the_example_file_loads_and_scans() -> None:
    backend = SimulatedWifi.from_file(EXAMPLE)
    assert backend.current_ssid == b"Old Router"
    assert backend.ip_address == "10.0.0.23"
    saved = backend.saved_credentials
    assert saved is not None and saved.ssid == b"Old Router"
    assert backend.environment.scan_duration == 1.5
    assert backend.cached_scan() == []  # nothing scanned yet, and asking does not block
    results = backend.environment.access_points
    assert [ap.ssid for ap in results if ap.hidden] == [b"Cellar"]


async def test_a_scan_shows_visible_access_points_strongest_first(wifi: SimulatedWifi) -> None:
    cfg = with_ap(ssid="Hidden", hidden=True, rssi=-20)
    backend = await started(cfg)
    try:
        results = await backend.rescan()
    finally:
        await backend.close()
    assert results == [
        ScanResult(b"Home", "02:00:00:00:01:01", -50, 6, Sec.WPA2_WPA3_PERSONAL),
        ScanResult(b"Old", "02:00:00:00:02:01", -60, 11, Sec.WPA2_PERSONAL),
    ]
    assert backend.cached_scan() == results


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.update(extra=1), "extra: is not a known key"),
        (lambda c: c["scan"].update(intervall=3), "scan.intervall: is not a known key"),
        (lambda c: c.update(access_points=[]), "access_points: must be a non-empty array"),
        (lambda c: c.pop("access_points"), "access_points: is required"),
        (lambda c: c["access_points"][0].pop("passphrase"), "passphrase: a wpa2-wpa3-personal"),
        (lambda c: c["access_points"][0].update(bssid="02:00:00:00:01"), "bssid: must look like"),
        (lambda c: c["access_points"][1].update(bssid="02:00:00:00:01:01"), "appears twice"),
        (lambda c: c["access_points"][0].update(channel=300), "channel: must be an integer"),
        (lambda c: c["access_points"][0].update(channel=True), "channel: must be an integer"),
        (lambda c: c["access_points"][0].update(rssi=-50.5), "rssi: must be an integer"),
        (lambda c: c["access_points"][0].update(security="wep"), "security: must be one of"),
        (lambda c: c["access_points"][0].update(ssid="x" * 33), "ssid: an SSID is 1..32"),
        (lambda c: c["access_points"][0].update(ssid_hex="00"), "give ssid or ssid_hex"),
        (lambda c: c["access_points"][0].update(hidden="yes"), "hidden: must be true or false"),
        (lambda c: c["access_points"][0].update(join_delay=-1), "must not be negative"),
        (lambda c: c["access_points"][0].update(behaviour="sulk"), "behaviour: must be one of"),
        (lambda c: c["access_points"][0].update(fail_first_with="connect"), "must be a failure"),
        (lambda c: c["access_points"][0].update(ip_address="10.0.0"), "must be an IP address"),
        (lambda c: c["scan"].update(interval=0), "scan.interval: must be positive"),
        (lambda c: c["scan"].update(duration=float("nan")), "must be a number of seconds"),
        (lambda c: c["dhcp"].update(ip_address=7), "dhcp.ip_address: must be an IP address"),
        (lambda c: c["device"].update(connected="Nowhere"), "device.connected: names no"),
        (lambda c: c["device"]["saved"].update(psk_hex="zz"), "psk_hex: must be hexadecimal"),
        (lambda c: c["device"]["saved"].update(security="open"), "an open network takes no"),
        (lambda c: c.update(device=[]), "device: must be a table"),
    ],
)
def test_a_malformed_environment_names_the_key(mutate: Any, message: str) -> None:
    cfg = config()
    mutate(cfg)
    with pytest.raises(SimulatedConfigError, match=r"^env\.toml: ") as caught:
        parse_environment(cfg, source="env.toml")
    assert message in str(caught.value)
    assert isinstance(caught.value, NetworkError)


def test_an_invalid_passphrase_is_rejected_without_echoing_it() -> None:
    secret = "short\u00e9"
    cfg = config()
    cfg["access_points"][0]["passphrase"] = secret
    with pytest.raises(SimulatedConfigError, match=r"access_points\[0\]\.passphrase") as caught:
        parse_environment(cfg)
    assert secret not in str(caught.value)


def test_file_errors_are_typed(tmp_path: Path) -> None:
    with pytest.raises(SimulatedConfigError, match="cannot read"):
        SimulatedWifi.from_file(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[scan\n")
    with pytest.raises(SimulatedConfigError, match="not valid TOML"):
        SimulatedWifi.from_file(broken)


def test_raw_ssids_and_a_saved_psk() -> None:
    psk = wpa_psk(OLD_PASS, b"Old")
    cfg = config(
        device={"saved": {"ssid_hex": "4f6c64", "security": "wpa2-personal", "psk_hex": psk.hex()}}
    )
    cfg["access_points"][0]["ssid_hex"] = cfg["access_points"][0].pop("ssid").encode().hex()
    environment = parse_environment(cfg)
    assert environment.access_points[0].ssid == b"Home"
    assert environment.saved == WifiCredentials(b"Old", Sec.WPA2_PERSONAL, psk=psk)
    assert environment.connected is None


def test_an_access_points_repr_hides_its_passphrase() -> None:
    ap = parse_environment(config()).access_points[0]
    assert HOME_PASS not in repr(ap)
    assert HOME_PASS not in repr(parse_environment(config()))


# IEEE Std 802.11-2016, Annex J.4.2 (passphrase-to-PSK mapping), test cases 1-3.
@pytest.mark.parametrize(
    ("passphrase", "ssid", "psk"),
    [
        ("password", b"IEEE", "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"),
        (
            "ThisIsAPassword",
            b"ThisIsASSID",
            "0dc0d6eb90555ed6419756b9a15ec3e3209b63df707dd508d14581f8982721af",
        ),
        ("a" * 32, b"Z" * 32, "becb93866bb8c3832cb777c2f559807c8c59afcb6eae734885001300a981cc62"),
    ],
)
def test_wpa_psk_matches_the_ieee_vectors(passphrase: str, ssid: bytes, psk: str) -> None:
    assert wpa_psk(passphrase, ssid).hex() == psk


# -- joining --------------------------------------------------------------------------------


async def test_a_join_is_staged_until_commit(wifi: SimulatedWifi) -> None:
    old_saved = wifi.saved_credentials
    outcome = await wifi.try_join(home(), timeout=1.0)
    assert outcome == Connected("192.168.7.20")
    assert wifi.current_ssid == b"Home"
    assert wifi.current_bssid == "02:00:00:00:01:01"
    assert wifi.ip_address == "192.168.7.20"
    assert wifi.saved_credentials == old_saved  # nothing durable yet
    await wifi.commit()
    assert wifi.saved_credentials == home()
    await wifi.rollback()  # the session ended with the commit: nothing to undo
    assert wifi.current_ssid == b"Home"
    assert wifi.saved_credentials == home()


async def test_a_wrong_passphrase_fails_and_rollback_restores_the_old_network(
    wifi: SimulatedWifi,
) -> None:
    outcome = await wifi.try_join(home("not the passphrase"), timeout=1.0)
    assert outcome == Failed(JoinFailure.WRONG_PASSWORD, "authentication failed")
    assert wifi.current_ssid is None  # one radio: it left the old network to try
    with pytest.raises(NetworkError, match="nothing to commit"):
        await wifi.commit()
    await wifi.rollback()
    assert wifi.current_ssid == b"Old"
    assert wifi.ip_address == "10.0.0.23"
    assert wifi.saved_credentials == WifiCredentials(b"Old", Sec.WPA2_PERSONAL, passphrase=OLD_PASS)


async def test_rollback_undoes_every_join_since_the_last_commit(wifi: SimulatedWifi) -> None:
    assert isinstance(await wifi.try_join(home(), timeout=1.0), Connected)
    assert isinstance(await wifi.try_join(home("wrong passphrase"), timeout=1.0), Failed)
    assert isinstance(await wifi.try_join(home(), timeout=1.0), Connected)
    await wifi.rollback()
    assert wifi.current_ssid == b"Old"
    assert wifi.saved_credentials is not None
    assert wifi.saved_credentials.ssid == b"Old"


async def test_commit_needs_the_last_join_to_have_connected(wifi: SimulatedWifi) -> None:
    with pytest.raises(NetworkError, match="nothing to commit"):
        await wifi.commit()
    assert isinstance(await wifi.try_join(home(), timeout=1.0), Connected)
    assert isinstance(await wifi.try_join(home("wrong passphrase"), timeout=1.0), Failed)
    with pytest.raises(NetworkError, match="nothing to commit"):
        await wifi.commit()


async def test_security_is_checked_like_an_access_point_would() -> None:
    psk = wpa_psk(HOME_PASS, b"Home")
    backend = await started(with_ap(ssid="Cafe", security="open"))
    try:
        cases = [
            (home(security=Sec.WPA3_PERSONAL), Connected("192.168.7.20")),  # SAE side
            (home(security=Sec.WPA2_WPA3_PERSONAL), Connected("192.168.7.20")),
            (WifiCredentials(b"Home", Sec.WPA2_PERSONAL, psk=psk), Connected("192.168.7.20")),
            (
                WifiCredentials(b"Home", Sec.WPA2_PERSONAL, psk=bytes(32)),
                Failed(JoinFailure.WRONG_PASSWORD, "authentication failed"),
            ),
            (
                WifiCredentials(b"Home", Sec.OPEN),
                Failed(JoinFailure.WRONG_PASSWORD, "the network needs a passphrase"),
            ),
            (
                WifiCredentials(b"Old", Sec.WPA3_PERSONAL, passphrase=OLD_PASS),
                Failed(JoinFailure.OTHER, "security mismatch: the network uses wpa2-personal"),
            ),
            (
                WifiCredentials(b"Cafe", Sec.WPA2_PERSONAL, passphrase="whatever1"),
                Failed(JoinFailure.OTHER, "the network is open; it takes no passphrase"),
            ),
            (WifiCredentials(b"Cafe", Sec.OPEN), Connected("192.168.7.20")),
        ]
        for credentials, expected in cases:
            assert await backend.try_join(credentials, timeout=1.0) == expected, credentials
    finally:
        await backend.close()


async def test_unknown_and_hidden_networks() -> None:
    backend = await started(with_ap(ssid="Cellar", hidden=True, passphrase="down the stairs"))
    try:
        unknown = await backend.try_join(
            WifiCredentials(b"Nowhere", Sec.WPA2_PERSONAL, passphrase="whatever1"), timeout=1.0
        )
        assert unknown == Failed(
            JoinFailure.NETWORK_NOT_FOUND, "no access point of that name in range"
        )
        cellar = WifiCredentials(b"Cellar", Sec.WPA2_PERSONAL, passphrase="down the stairs")
        not_probed = await backend.try_join(cellar, timeout=1.0)
        assert isinstance(not_probed, Failed)
        assert not_probed.reason is JoinFailure.NETWORK_NOT_FOUND
        probed = WifiCredentials(
            b"Cellar", Sec.WPA2_PERSONAL, passphrase="down the stairs", hidden=True
        )
        assert await backend.try_join(probed, timeout=1.0) == Connected("192.168.7.20")
        assert all(result.ssid != b"Cellar" for result in await backend.rescan())
    finally:
        await backend.close()


async def test_a_join_slower_than_the_timeout_times_out() -> None:
    backend = await started(with_ap(ssid="Slow", join_delay=5.0))
    try:
        loop = asyncio.get_running_loop()
        began = loop.time()
        outcome = await backend.try_join(
            WifiCredentials(b"Slow", Sec.WPA2_PERSONAL, passphrase="some passphrase"),
            timeout=0.05,
        )
        elapsed = loop.time() - began
    finally:
        await backend.close()
    assert outcome == Failed(JoinFailure.TIMEOUT, "not connected within 0.05 s")
    assert 0.04 <= elapsed < 1.0
    assert backend.current_ssid is None


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("dhcp-failed", Failed(JoinFailure.DHCP_FAILED, "associated, but DHCP did not answer")),
        ("reject", Failed(JoinFailure.OTHER, "the access point refused the association")),
        ("timeout", Failed(JoinFailure.TIMEOUT, "not connected within 0.05 s")),
    ],
)
async def test_access_point_behaviours(behaviour: str, expected: Failed) -> None:
    backend = await started(with_ap(ssid="Odd", behaviour=behaviour))
    try:
        credentials = WifiCredentials(b"Odd", Sec.WPA2_PERSONAL, passphrase="some passphrase")
        assert await backend.try_join(credentials, timeout=0.05) == expected
    finally:
        await backend.close()


async def test_a_flaky_access_point_fails_n_times_then_works() -> None:
    backend = await started(
        with_ap(ssid="Flaky", fail_first=2, fail_first_with="dhcp-failed", ip_address="10.9.9.9")
    )
    try:
        credentials = WifiCredentials(b"Flaky", Sec.WPA2_PERSONAL, passphrase="some passphrase")
        wrong = WifiCredentials(b"Flaky", Sec.WPA2_PERSONAL, passphrase="wrong passphrase")
        assert (await backend.try_join(wrong, timeout=1.0)) == Failed(
            JoinFailure.WRONG_PASSWORD, "authentication failed"
        )  # a wrong passphrase is not an attempt that counts
        outcomes = [await backend.try_join(credentials, timeout=1.0) for _ in range(3)]
    finally:
        await backend.close()
    assert [type(o) for o in outcomes] == [Failed, Failed, Connected]
    assert outcomes[2] == Connected("10.9.9.9")


async def test_the_join_delay_is_spent_before_the_outcome() -> None:
    backend = await started(with_ap(ssid="Far", join_delay=0.05))
    try:
        loop = asyncio.get_running_loop()
        began = loop.time()
        credentials = WifiCredentials(b"Far", Sec.WPA2_PERSONAL, passphrase="some passphrase")
        assert isinstance(await backend.try_join(credentials, timeout=1.0), Connected)
        assert loop.time() - began >= 0.045
    finally:
        await backend.close()


async def test_nothing_is_joined_before_start() -> None:
    backend = SimulatedWifi.from_config(config())
    with pytest.raises(NetworkError, match="start"):
        await backend.try_join(home(), timeout=1.0)
    with pytest.raises(NetworkError, match="start"):
        await backend.rescan()
    await backend.start()
    with pytest.raises(ValueError, match="positive"):
        await backend.try_join(home(), timeout=0)
    await backend.close()


async def test_passphrases_stay_out_of_the_log(
    wifi: SimulatedWifi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await wifi.try_join(home(), timeout=1.0)
    await wifi.try_join(home("wrong passphrase"), timeout=1.0)
    assert "simulated join" in caplog.text
    assert HOME_PASS not in caplog.text
    assert "wrong passphrase" not in caplog.text


# -- the state file ---------------------------------------------------------------------------


async def test_a_committed_profile_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "device" / "wifi.json"
    first = await started(config(), state=FileAttemptStore(state))
    assert first.current_ssid == b"Old"  # no state file yet: the environment decides
    assert isinstance(await first.try_join(home(), timeout=1.0), Connected)
    assert not state.exists()  # staged, not durable
    await first.commit()
    await first.close()
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    document = json.loads(state.read_text())
    assert document["format"] == "bleprov-simulated-wifi-state"
    assert document["saved"]["ssid_hex"] == b"Home".hex()

    restarted = SimulatedWifi.from_config(config(), state=FileAttemptStore(state))
    assert restarted.saved_credentials == home()
    assert restarted.current_ssid == b"Home"  # it auto-joined the committed network
    assert restarted.ip_address == "192.168.7.20"


async def test_a_rolled_back_session_leaves_the_state_file_alone(tmp_path: Path) -> None:
    state = tmp_path / "wifi.json"
    backend = await started(config(), state=FileAttemptStore(state))
    await backend.try_join(home(), timeout=1.0)
    await backend.rollback()
    await backend.close()
    assert not state.exists()


async def test_a_restarted_device_stays_off_a_network_that_is_gone(tmp_path: Path) -> None:
    state = tmp_path / "wifi.json"
    backend = await started(config(), state=FileAttemptStore(state))
    await backend.try_join(home(), timeout=1.0)
    await backend.commit()
    await backend.close()
    cfg = config()
    del cfg["access_points"][0]
    restarted = SimulatedWifi.from_config(cfg, state=FileAttemptStore(state))
    assert restarted.saved_credentials == home()
    assert restarted.current_ssid is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff", "not a JSON state file"),
        (b"[]", "not a JSON state file"),
        (b'{"format": "other", "version": 1, "saved": null}', "format: must be"),
        (b'{"format": "bleprov-simulated-wifi-state", "version": 2, "saved": null}', "version"),
        (b'{"format": "bleprov-simulated-wifi-state", "version": 1}', "saved: is required"),
        (
            b'{"format": "bleprov-simulated-wifi-state", "version": 1, "saved": {"ssid_hex": "41",'
            b' "security": "wpa2-personal", "passphrase": "12345678", "colour": "red"}}',
            "saved.colour: is not a known key",
        ),
    ],
)
def test_a_corrupt_state_file_is_a_typed_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    state = tmp_path / "wifi.json"
    state.write_bytes(content)
    with pytest.raises(SimulatedConfigError, match=str(state)) as caught:
        SimulatedWifi.from_config(config(), state=FileAttemptStore(state))
    assert message in str(caught.value)


def test_an_unreadable_state_file_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(SimulatedConfigError, match="cannot read"):
        SimulatedWifi.from_config(config(), state=FileAttemptStore(tmp_path))  # a directory


def test_a_state_file_with_no_saved_profile_means_none(tmp_path: Path) -> None:
    state = tmp_path / "wifi.json"
    state.write_bytes(b'{"format": "bleprov-simulated-wifi-state", "version": 1, "saved": null}')
    backend = SimulatedWifi.from_config(config(), state=FileAttemptStore(state))
    assert backend.saved_credentials is None
    assert backend.current_ssid is None


async def test_a_failed_state_write_keeps_the_session(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    backend = await started(config(), state=FileAttemptStore(blocker / "wifi.json"))
    blocker.write_text("")  # its directory is now a file: the write fails
    try:
        await backend.try_join(home(), timeout=1.0)
        with pytest.raises(NetworkError, match="cannot save the simulated device state"):
            await backend.commit()
        assert backend.saved_credentials is not None
        assert backend.saved_credentials.ssid == b"Old"
        await backend.rollback()  # still possible: the session was not ended
        assert backend.current_ssid == b"Old"
    finally:
        await backend.close()


# -- background scanning ------------------------------------------------------------------


async def test_cached_scan_never_waits_for_a_scan_in_flight() -> None:
    backend = await started(config(scan={"interval": 60.0, "duration": 0.2, "timeout": 5.0}))
    try:
        first = await backend.rescan()
        assert [r.ssid for r in first] == [b"Home", b"Old"]
        backend.set_access_point_present("02:00:00:00:01:01", False)
        loop = asyncio.get_running_loop()
        pending = asyncio.create_task(backend.rescan())
        await asyncio.sleep(0.01)
        began = loop.time()
        assert backend.cached_scan() == first  # the old results, at once
        assert loop.time() - began < 0.01
        fresh = await pending
        assert [r.ssid for r in fresh] == [b"Old"]
        assert backend.cached_scan() == fresh
    finally:
        await backend.close()


async def test_concurrent_rescans_share_one_scan() -> None:
    backend = await started(config(scan={"interval": 60.0, "duration": 0.1}))
    try:
        loop = asyncio.get_running_loop()
        await backend.rescan()
        began = loop.time()
        results = await asyncio.gather(*(backend.rescan() for _ in range(5)))
        elapsed = loop.time() - began
    finally:
        await backend.close()
    assert all(r == results[0] for r in results)
    assert elapsed < 0.3  # five scans back to back would take 0.5 s


async def test_background_scans_refresh_the_cache() -> None:
    backend = await started(config(scan={"interval": 0.02, "duration": 0.0}))
    try:
        await backend.rescan()
        backend.set_access_point_present("02:00:00:00:02:01", False)
        assert backend.current_ssid is None  # its network went away
        for _ in range(100):
            if [r.ssid for r in backend.cached_scan()] == [b"Home"]:
                break
            await asyncio.sleep(0.01)
        assert [r.ssid for r in backend.cached_scan()] == [b"Home"]
        with pytest.raises(ValueError, match="no access point"):
            backend.set_access_point_present("02:00:00:00:99:99", True)
    finally:
        await backend.close()


async def test_a_rescan_slower_than_its_timeout_is_a_network_error() -> None:
    backend = await started(config(scan={"interval": 60.0, "duration": 5.0, "timeout": 0.05}))
    try:
        with pytest.raises(NetworkError, match=r"no scan results within 0\.05 s"):
            await backend.rescan()
    finally:
        await backend.close()


async def test_rollback_to_a_network_that_went_away_leaves_the_device_off(
    wifi: SimulatedWifi,
) -> None:
    await wifi.try_join(home(), timeout=1.0)
    wifi.set_access_point_present("02:00:00:00:02:01", False)
    await wifi.rollback()
    assert wifi.current_ssid is None
    assert wifi.ip_address is None


class MemoryStore:
    """A ProfileStore that is not a file (the encrypted device store is another)."""

    def __init__(self) -> None:
        self.data: bytes | None = None
        self.refuse = False

    def load(self) -> bytes | None:
        return self.data

    def save(self, state: bytes) -> None:
        if self.refuse:
            raise BleprovError("the store is locked")
        self.data = state


async def test_any_profile_store_will_do() -> None:
    store = MemoryStore()
    backend = await started(config(), state=store)
    try:
        await backend.try_join(home(), timeout=1.0)
        store.refuse = True
        with pytest.raises(NetworkError, match="to MemoryStore: BleprovError"):
            await backend.commit()
        assert store.data is None
        store.refuse = False
        await backend.commit()
    finally:
        await backend.close()
    assert SimulatedWifi.from_config(config(), state=store).current_ssid == b"Home"
