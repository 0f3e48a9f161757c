"""The daemon's pieces in one process: option parsing, the CRL cache, state following,
and the runtime re-applying the stored Wi-Fi."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import cbor2
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from bleprov.core.advertising import DeviceState, OobMode
from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.enrolment.device import encode_credentials
from bleprov.core.errors import BleprovError
from bleprov.core.factory import provision_device
from bleprov.core.identity import Manufacturer
from bleprov.core.wifi import Failed, WifiCredentials, WifiSecurity
from bleprov.network.simulated import SimulatedWifi
from bleprov.network.wpa_supplicant import WpaSupplicantWifi
from bleprov.radio.bumble_peripheral import BumblePeripheral
from bleprov.radio.errors import RadioLost
from bleprov.radio.spec import RadioSpec
from bleprov.radio.virtual import VirtualLink, make_virtual_device
from bleprov.service.device_daemon import (
    CrlCache,
    DaemonConfigError,
    DeviceDaemon,
    LoggedNetwork,
    NoFreshCrl,
    open_network,
    parse_endpoint,
    parse_radio,
)
from bleprov.service.device_runtime import DeviceRuntime
from bleprov.service.device_ui import ConsoleUi
from bleprov.store.device_store import WIFI, DeviceStore
from bleprov.store.keys import KeyFileProvider

NOW = datetime.now(UTC)
PASSWORD = "correct horse battery staple"
ENVIRONMENT: dict[str, Any] = {
    "scan": {"duration": 0.01},
    "access_points": [
        {
            "ssid": "Home",
            "bssid": "02:00:00:00:01:01",
            "channel": 6,
            "rssi": -48,
            "security": "wpa2-personal",
            "passphrase": PASSWORD,
            "join_delay": 0.01,
        }
    ],
}
ONE_OPEN_NETWORK = """
[[access_points]]
ssid = "A"
bssid = "02:00:00:00:00:01"
channel = 1
rssi = -50
security = "open"
"""


# ------------------------------------------------------------------- options


def test_radio_names() -> None:
    assert parse_radio("virtual") == RadioSpec("bumble", "tcp-client:127.0.0.1:9100")
    assert parse_radio("virtual:9201") == RadioSpec("bumble", "tcp-client:127.0.0.1:9201")
    assert parse_radio("bluez") == RadioSpec("system")
    assert parse_radio("bumble:usb:0") == RadioSpec("bumble", "usb:0")
    for bad in ("virtual:x", "virtual:70000", "bluetooth"):
        with pytest.raises(BleprovError, match=r"port|unknown radio"):
            parse_radio(bad)


def test_endpoints() -> None:
    assert parse_endpoint("127.0.0.1:8443") == ("127.0.0.1", 8443)
    assert parse_endpoint("[::1]:0") == ("::1", 0)
    for bad in ("8443", ":8443", "host:", "host:port"):
        with pytest.raises(DaemonConfigError):
            parse_endpoint(bad)


def test_network_names(tmp_path: Path) -> None:
    wpa = open_network("wpa-supplicant:wlan1")
    assert isinstance(wpa, WpaSupplicantWifi)
    assert wpa.ctrl_path == Path("/var/run/wpa_supplicant/wlan1")
    config = tmp_path / "env.toml"
    config.write_text(ONE_OPEN_NETWORK)
    assert isinstance(open_network(f"simulated:{config}"), SimulatedWifi)
    with pytest.raises(DaemonConfigError, match="simulated:FILE"):
        open_network("simulated")
    with pytest.raises(DaemonConfigError, match="unknown network"):
        open_network("ethernet")


# ----------------------------------------------------------------- CRL cache


def _crl(next_update: datetime, number: int = 1) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "zone")]))
        .last_update(next_update - timedelta(days=2))
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


async def test_crl_cache_refuses_without_a_fresh_crl() -> None:
    now = [NOW]
    fetched: list[bytes] = []

    async def fetch() -> bytes:
        return fetched[-1]

    cache = CrlCache(fetch, clock=lambda: now[0])
    with pytest.raises(NoFreshCrl, match="no CRL"):
        cache.current()
    fetched.append(_crl(NOW + timedelta(hours=2)))
    await cache.refresh()
    assert cache.current() == fetched[-1]
    assert cache.next_refresh_in() == 300.0  # at most five minutes between fetches
    fetched.append(_crl(NOW + timedelta(minutes=8), number=2))
    await cache.refresh()
    assert cache.next_refresh_in() == pytest.approx(240, abs=5)  # half its remaining life
    now[0] = NOW + timedelta(hours=3)
    with pytest.raises(NoFreshCrl, match="out of date"):
        cache.current()
    assert CrlCache(None).next_refresh_in() == 30.0


# ---------------------------------------------------------- daemon, state


class FakeButton:
    length = 120.0


class FakeServer:
    button = FakeButton()


class FakeLink:
    def __init__(self) -> None:
        self.readvertised = 0

    async def readvertise(self) -> None:
        self.readvertised += 1


class FakeRuntime:
    device_id = "0123456789ABCDEF"
    discriminator = 0x123

    def __init__(self) -> None:
        self.current = DeviceState.VIRGIN
        self.link = FakeLink()
        self.server = FakeServer()
        self.pressed = self.resets = 0
        self.closed = False

    def state(self) -> DeviceState:
        return self.current

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self.closed = True

    async def republish(self) -> None:
        await self.link.readvertise()  # (no broker here)

    def press_button(self) -> None:
        self.pressed += 1

    def accept_number(self) -> bool:
        return False  # no compared number waits

    def physical_reset(self) -> None:
        self.resets += 1


class RecordingService:
    def __init__(self, fail: bool = False) -> None:
        self.states: list[DeviceState] = []
        self.fail = fail
        self.closed = False

    async def state_changed(self, state: DeviceState) -> None:
        self.states.append(state)
        if self.fail:
            raise OSError("address in use")

    async def close(self) -> None:
        self.closed = True


async def test_daemon_follows_the_state_and_tells_its_services() -> None:
    runtime = FakeRuntime()
    lines: list[str] = []
    good, bad = RecordingService(), RecordingService(fail=True)
    daemon = DeviceDaemon(
        cast(DeviceRuntime, runtime),
        ConsoleUi(io.StringIO(), None, signals=False),
        radio_name="virtual:9100",
        emit=lines.append,
        services=[bad, good],
        poll_interval=3600,
    )
    await daemon.start()
    assert lines[-1] == (
        "ready: device 0123456789ABCDEF advertising on virtual:9100, discriminator 0x123, "
        "state virgin"
    )
    runtime.current = DeviceState.ENROLLED
    await daemon.check_state()
    await daemon.check_state()  # no change, nothing told
    assert good.states == bad.states == [DeviceState.VIRGIN, DeviceState.ENROLLED]
    assert "state: virgin -> enrolled" in lines
    assert runtime.link.readvertised == 1
    assert any(line.startswith("error: RecordingService could not follow") for line in lines)
    daemon.press_button()
    assert (
        runtime.pressed == 1 and lines[-1] == "button: pressed, button-mode window open for 120 s"
    )
    await daemon.close()
    assert good.closed and bad.closed and runtime.closed


@pytest.mark.parametrize("lose_radio", [False, True], ids=["stopped", "radio lost"])
async def test_daemon_tells_systemd_ready_status_and_stopping(lose_radio: bool) -> None:
    """sd_notify's messages at the same moments as the event lines (tests/test_systemd.py
    runs the real socket); a lost radio says so on systemd's status line."""
    runtime, told, ready = FakeRuntime(), [], asyncio.Event()

    def notify(message: str) -> None:
        told.append(message)
        ready.set()

    daemon = DeviceDaemon(
        cast(DeviceRuntime, runtime),
        ConsoleUi(io.StringIO(), None, signals=False),
        radio_name="virtual:9100",
        emit=lambda _line: None,
        poll_interval=3600,
        notify=notify,
    )
    stop, lost = asyncio.Event(), asyncio.get_running_loop().create_future()
    running = asyncio.create_task(daemon.run(stop, lost))
    await asyncio.wait_for(ready.wait(), 5)
    status = "STATUS=device 0123456789ABCDEF advertising on virtual:9100, state"
    assert told == [f"READY=1\n{status} virgin"]
    runtime.current = DeviceState.ENROLLED
    await daemon.check_state()
    assert told[-1] == f"{status} enrolled"
    if lose_radio:
        lost.set_result(None)
        with pytest.raises(RadioLost):
            await running
        assert told[-2:] == ["STATUS=lost the radio virtual:9100", "STOPPING=1\nSTATUS=stopping"]
    else:
        stop.set()
        await running
        assert told[-1] == "STOPPING=1\nSTATUS=stopping"


# -------------------------------------------------------- stored Wi-Fi at start


@pytest_asyncio.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[tuple[DeviceRuntime, list[str]]]:
    manufacturer = Manufacturer.create("Acme", now=NOW)
    device, _ = provision_device(
        manufacturer.issue_device(now=NOW), modes=OobMode.QR, cost=ScryptCost(n=16, r=1, p=1)
    )
    store = DeviceStore(tmp_path / "store", KeyFileProvider(tmp_path / "store.key"))
    store.put_provisioning(device)
    link = VirtualLink()
    lines: list[str] = []
    network = LoggedNetwork(SimulatedWifi.from_config(ENVIRONMENT), lines.append)
    peripheral = BumblePeripheral(make_virtual_device(link, name="d", address="F0:B1:E9:00:09:01"))
    built = DeviceRuntime(store, peripheral, network, join_timeout=5)
    yield built, lines
    await built.close()
    link.close()


async def test_stored_wifi_is_joined_and_committed_at_start(
    runtime: tuple[DeviceRuntime, list[str]],
) -> None:
    built, lines = runtime
    assert await built.restore_wifi() is None  # nothing stored: nothing done
    home = WifiCredentials(b"Home", WifiSecurity.WPA2_PERSONAL, passphrase=PASSWORD)
    built.store.update({WIFI: encode_credentials(home)})
    await built.start()
    assert lines == ["network: re-applied the network, address 192.168.1.50"]
    inner = cast(SimulatedWifi, cast(LoggedNetwork, built.network).inner)
    assert inner.saved_credentials == home


async def test_stored_wifi_that_fails_is_rolled_back(
    runtime: tuple[DeviceRuntime, list[str]],
) -> None:
    built, lines = runtime
    wrong = WifiCredentials(b"Home", WifiSecurity.WPA2_PERSONAL, passphrase="not the password")
    built.store.update({WIFI: encode_credentials(wrong)})
    assert await built.restore_wifi() is None  # the network is not started: logged
    await built.network.start()
    outcome = await built.restore_wifi()
    assert isinstance(outcome, Failed)
    assert lines == [
        "network: re-applying the network failed: wrong password"
        " (kept, if the network service joins on its own)"
    ]
    inner = cast(SimulatedWifi, cast(LoggedNetwork, built.network).inner)
    assert inner.saved_credentials is None  # the simulated backend keeps only what joins


async def test_unreadable_stored_wifi_is_logged_not_fatal(
    runtime: tuple[DeviceRuntime, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    built, lines = runtime
    for junk in (b"\xff", cbor2.dumps([1, 2]), cbor2.dumps({"ssid": b"x"})):
        built.store.update({WIFI: junk})
        assert await built.restore_wifi() is None
    assert lines == []
    assert "stored Wi-Fi unreadable" in caplog.text


# ------------------------------------------------------------------ device init


def _flat(output: str) -> str:
    """The CLI's output with rich's line wrapping undone."""
    return " ".join(output.split())


def test_init_reads_the_systemd_credential_and_exist_ok_leaves_a_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from bleprov.cli import app
    from bleprov.store.factory_files import issue_device

    manufacturer = Manufacturer.create("Acme", now=NOW)
    issued = issue_device(
        manufacturer,
        tmp_path / "devices",
        b"from a credential",
        modes=OobMode.QR,
        cost=ScryptCost(n=16, r=1, p=1),
    )
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "device-passphrase").write_bytes(b"from a credential\n")
    monkeypatch.delenv("BLEPROV_DEVICE_PASSPHRASE", raising=False)
    runner = CliRunner()
    store = tmp_path / "store"
    argv = ["device", "init", "--store", str(store), "--from", str(issued.directory)]

    no_passphrase = runner.invoke(app, argv)
    assert no_passphrase.exit_code == 1
    assert not (store / "device.store").exists()

    env = {"CREDENTIALS_DIRECTORY": str(credentials)}
    done = runner.invoke(app, argv, env=env)
    assert done.exit_code == 0, done.output
    assert f"device {issued.device_id} imported" in done.output
    provisioning = DeviceStore.open(store).provisioning()
    assert provisioning is not None
    assert provisioning.identity.device_id == issued.device_id

    refused = runner.invoke(app, argv, env=env)
    assert refused.exit_code == 1
    assert "already holds a device store" in _flat(refused.output)
    kept = runner.invoke(app, [*argv, "--exist-ok"], env={})
    assert kept.exit_code == 0
    assert "left as it is" in kept.output

    (credentials / "device-passphrase").write_bytes(b"\n")
    empty = runner.invoke(app, [*argv[:3], str(tmp_path / "other"), *argv[4:]], env=env)
    assert empty.exit_code == 1
    assert "credential is empty" in _flat(empty.output)


def test_serve_says_what_to_do_without_a_store_or_a_radio(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from bleprov.cli import app

    runner = CliRunner()
    argv = ["device", "serve", "--store", str(tmp_path / "store"), "--network", "simulated:x"]
    missing = runner.invoke(app, [*argv, "--radio", "virtual:1"])
    assert missing.exit_code == 1
    assert "run `bleprov device init` first" in _flat(missing.output)
    bad_radio = runner.invoke(app, [*argv, "--radio", "virtual:port"])
    assert bad_radio.exit_code == 2

    manufacturer = Manufacturer.create("Acme", now=NOW)
    device, _ = provision_device(
        manufacturer.issue_device(now=NOW), modes=OobMode.QR, cost=ScryptCost(n=16, r=1, p=1)
    )
    DeviceStore.open(tmp_path / "store").put_provisioning(device)
    environment = tmp_path / "env.toml"
    environment.write_text(ONE_OPEN_NETWORK)
    argv[-1] = f"simulated:{environment}"
    # Port 1 on loopback: nothing listens, as when the radio hub is not running.
    no_radio = runner.invoke(app, [*argv, "--radio", "virtual:1"])
    assert no_radio.exit_code == 1
    assert "start `bleprov radio hub` first" in _flat(no_radio.output)


# ------------------------------------------- what the runtime keeps between sessions


async def test_the_info_follows_another_writer_of_the_store_at_once(
    runtime: tuple[DeviceRuntime, list[str]],
) -> None:
    """The runtime's store keeps what it decrypted and its info encoding is memoised
    (less CPU per session): a change written by another process (an enrolment's
    commit, `bleprov device reset`) must still show in the next session's info."""
    from bleprov.core import membership as mb

    built, _ = runtime
    virgin = built.current_info()
    assert virgin.state is DeviceState.VIRGIN
    assert built.owned() is False
    other = DeviceStore(
        built.store.directory, KeyFileProvider(built.store.directory.parent / "store.key")
    )
    other.update({mb.RECORD_ZONE: b"z", mb.RECORD_OWNER: b"o"})  # another process commits
    enrolled = built.current_info()
    assert enrolled.state is DeviceState.ENROLLED
    assert built.owned() is True
    assert enrolled.encode() != virgin.encode()
    other.factory_reset()
    again = built.current_info()
    assert again.state is DeviceState.VIRGIN
    assert built.owned() is False
    assert again.encode() == virgin.encode()
