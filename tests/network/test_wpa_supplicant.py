"""wpa_supplicant over its control socket, against a server in the test that speaks the protocol.

:class:`FakeWpaSupplicant` answers wpa_supplicant's control-interface commands on a real UNIX
datagram socket (requests and replies, ``ATTACH``-ed event sockets, ``<3>CTRL-EVENT-...``
messages) over a small model of the air: access points with passphrases, a BSS table filled
by ``SCAN``, networks added, selected, enabled and saved, association and DHCP that take
time, and the events wpa_supplicant sends for a wrong key, a missing network or a success.
The backend under test is unchanged; only the remote service is stood in for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bleprov.core.errors import MalformedData
from bleprov.core.wifi import Connected, Failed, JoinFailure, ScanResult, WifiCredentials
from bleprov.core.wifi import WifiSecurity as Sec
from bleprov.network.base import NetworkError
from bleprov.network.simulated import wpa_psk
from bleprov.network.wpa_supplicant import (
    KnownNetwork,
    WpaSupplicantError,
    WpaSupplicantUnavailable,
    WpaSupplicantWifi,
    bss_scan_result,
    channel_of_frequency,
    decode_escaped_ssid,
    join_failure_for_temp_disabled,
    network_variables,
    parse_network_list,
    security_of_flags,
)

HOME_PASS = "correct horse battery staple"
OLD_PASS = "previous owner"


@dataclass
class AccessPoint:
    ssid: bytes
    bssid: str
    freq: int
    level: int
    flags: str
    key_mgmt: frozenset[str]
    passphrase: str | None = None
    hidden: bool = False
    reject: bool = False
    dhcp_delay: float | None = 0.01  # None: DHCP never answers
    ip: str = "192.168.3.7"


def wpa2(ssid: bytes, bssid: str, passphrase: str, **kw: Any) -> AccessPoint:
    return AccessPoint(
        ssid, bssid, 2437, -50, "[WPA2-PSK-CCMP][ESS]", frozenset({"WPA-PSK"}), passphrase, **kw
    )


def wpa3(ssid: bytes, bssid: str, passphrase: str, **kw: Any) -> AccessPoint:
    return AccessPoint(
        ssid,
        bssid,
        5180,
        -60,
        "[WPA2-SAE-CCMP][SAE-H2E][ESS]",
        frozenset({"SAE"}),
        passphrase,
        **kw,
    )


@dataclass
class Network:
    id: int
    variables: dict[str, str] = field(default_factory=dict)
    disabled: bool = True  # wpa_supplicant adds networks disabled


def _escape(ssid: bytes) -> str:
    """wpa_supplicant's printf_encode."""
    special = {0x22: '\\"', 0x5C: "\\\\", 0x1B: "\\e", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}
    return "".join(special.get(b, chr(b) if 32 <= b <= 126 else f"\\x{b:02x}") for b in ssid)


class FakeWpaSupplicant(asyncio.DatagramProtocol):
    """wpa_supplicant's control interface over a model of the air (see module doc)."""

    def __init__(self, path: Path, access_points: list[AccessPoint]) -> None:
        self.path = path
        self.access_points = access_points
        self.networks: dict[int, Network] = {}
        self.next_id = 0
        self.current: int | None = None
        self.state = "DISCONNECTED"
        self.ip: str | None = None
        self.bss: list[tuple[int, AccessPoint]] = []
        self.next_bss = 0
        self.monitors: set[str] = set()
        self.scanning = False
        self.scan_delay = 0.0
        self.assoc_delay = 0.01
        self.update_config = True
        self.supported_key_mgmt = {"NONE", "WPA-PSK", "SAE"}
        self.saved: dict[int, tuple[dict[str, str], bool]] | None = None
        #: The configuration file it was started with (see :meth:`load`).
        self.initial: dict[int, tuple[dict[str, str], bool]] = {}
        self.commands: list[str] = []
        self.silent = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._transport: asyncio.DatagramTransport | None = None
        self._sock: socket.socket | None = None
        self.fill_bss()

    async def start(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.path))
        self._sock = sock
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)
        self._transport = transport

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._transport is not None:
            self._transport.close()

    # -- the model -----------------------------------------------------------------------

    def add_saved_network(self, ssid: bytes, passphrase: str, *, disabled: bool = False) -> int:
        network = self._add()
        network.variables.update(ssid=ssid.hex(), key_mgmt="WPA-PSK", psk=f'"{passphrase}"')
        network.disabled = disabled
        self.initial[network.id] = (dict(network.variables), disabled)
        return network.id

    def load(self, config: dict[int, tuple[dict[str, str], bool]]) -> None:
        """Start from a configuration file (``network`` blocks, in order)."""
        for variables, disabled in config.values():
            network = self._add()
            network.variables.update(variables)
            network.disabled = disabled
            self.initial[network.id] = (dict(variables), disabled)

    def connect_now(self, network_id: int) -> None:
        ap = self._find(self.networks[network_id])
        assert ap is not None
        self.current, self.state, self.ip = network_id, "COMPLETED", ap.ip

    def fill_bss(self) -> None:
        self.bss = []
        for ap in self.access_points:
            self.bss.append((self.next_bss, ap))
            self.next_bss += 1

    def send(self, data: bytes, addr: str) -> None:
        """Straight through the socket: asyncio would drop the empty replies (``BSS`` past
        the end) that wpa_supplicant sends as zero-length datagrams."""
        assert self._sock is not None
        with contextlib.suppress(OSError):  # a client that went away
            self._sock.sendto(data, addr)

    def emit(self, event: str) -> None:
        for monitor in list(self.monitors):
            self.send(f"<3>{event}".encode(), monitor)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _add(self) -> Network:
        network = Network(self.next_id)
        self.networks[network.id] = network
        self.next_id += 1
        return network

    def _find(self, network: Network) -> AccessPoint | None:
        ssid = bytes.fromhex(network.variables.get("ssid", ""))
        probe = network.variables.get("scan_ssid") == "1"
        offered = set(network.variables.get("key_mgmt", "WPA-PSK SAE").split())
        for ap in self.access_points:
            if ap.ssid == ssid and (probe or not ap.hidden) and offered & ap.key_mgmt:
                return ap
        return None

    def _disconnect(self) -> None:
        if self.current is not None:
            self.emit(
                "CTRL-EVENT-DISCONNECTED bssid=02:00:00:00:00:00 reason=3 locally_generated=1"
            )
        self.current, self.state, self.ip = None, "DISCONNECTED", None

    async def _connect(self, network_id: int) -> None:
        while True:
            await asyncio.sleep(self.assoc_delay)
            network = self.networks.get(network_id)
            if network is None or network.disabled:
                return
            ap = self._find(network)
            if ap is not None:
                break
            self.state = "SCANNING"
            self.emit("CTRL-EVENT-NETWORK-NOT-FOUND ")
        common = set(network.variables.get("key_mgmt", "").split()) & ap.key_mgmt
        if "NONE" not in common and not self._key_matches(network.variables.get("psk", ""), ap):
            self.state = "DISCONNECTED"
            reason = "CONN_FAILED" if common == {"SAE"} else "WRONG_KEY"
            if reason == "WRONG_KEY":
                self.emit(f"CTRL-EVENT-DISCONNECTED bssid={ap.bssid.lower()} reason=15")
            self.emit(
                f'CTRL-EVENT-SSID-TEMP-DISABLED id={network_id} ssid="{_escape(ap.ssid)}" '
                f"auth_failures=1 duration=10 reason={reason}"
            )
            return
        if ap.reject:
            self.emit(f"CTRL-EVENT-ASSOC-REJECT bssid={ap.bssid.lower()} status_code=17")
            self.emit(
                f'CTRL-EVENT-SSID-TEMP-DISABLED id={network_id} ssid="{_escape(ap.ssid)}" '
                "auth_failures=4 duration=10 reason=CONN_FAILED"
            )
            return
        self.current, self.state = network_id, "COMPLETED"
        self.emit(
            f"CTRL-EVENT-CONNECTED - Connection to {ap.bssid.lower()} completed "
            f"[id={network_id} id_str=]"
        )
        if ap.dhcp_delay is not None:
            await asyncio.sleep(ap.dhcp_delay)
            if self.current == network_id:
                self.ip = ap.ip

    @staticmethod
    def _key_matches(value: str, ap: AccessPoint) -> bool:
        assert ap.passphrase is not None
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            return value[1:-1] == ap.passphrase
        try:
            return bytes.fromhex(value) == wpa_psk(ap.passphrase, ap.ssid)
        except ValueError:
            return False

    async def _scan(self) -> None:
        self.scanning = True
        self.emit("CTRL-EVENT-SCAN-STARTED ")
        await asyncio.sleep(self.scan_delay)
        self.fill_bss()
        self.scanning = False
        self.emit("CTRL-EVENT-SCAN-RESULTS ")

    # -- the protocol --------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.silent:
            return
        command = data.decode()
        words = command.split(" ")
        verb = words[0]
        self.commands.append(command if verb != "SET_NETWORK" else " ".join(words[:3]))
        reply = self.handle(verb, words[1:], command, addr)
        self.send(reply.encode(), addr)

    def handle(self, verb: str, args: list[str], command: str, addr: str) -> str:
        networks = self.networks
        if verb == "PING":
            return "PONG\n"
        if verb == "ATTACH":
            self.monitors.add(addr)
            return "OK\n"
        if verb == "DETACH":
            self.monitors.discard(addr)
            return "OK\n"
        if verb == "SCAN":
            if self.scanning:
                return "FAIL-BUSY\n"
            self._spawn(self._scan())
            return "OK\n"
        if verb == "BSS":
            return self._bss(args[0])
        if verb == "LIST_NETWORKS":
            rows = ["network id / ssid / bssid / flags"]
            for n in networks.values():
                flags = "[CURRENT]" if n.id == self.current else "[DISABLED]" if n.disabled else ""
                rows.append(f"{n.id}\t{bytes.fromhex(n.variables['ssid']).decode()}\tany\t{flags}")
            return "\n".join(rows) + "\n"
        if verb == "ADD_NETWORK":
            return f"{self._add().id}\n"
        if verb == "STATUS":
            lines = [f"wpa_state={self.state}"]
            if self.current is not None:
                lines.append(f"id={self.current}")
            if self.ip is not None:
                lines.append(f"ip_address={self.ip}")
            return "\n".join(lines) + "\n"
        if verb == "SAVE_CONFIG":
            if not self.update_config:
                return "FAIL\n"
            self.saved = {i: (self._written(n), n.disabled) for i, n in networks.items()}
            return "OK\n"
        if verb == "REASSOCIATE":
            for n in networks.values():
                if not n.disabled:
                    self._spawn(self._connect(n.id))
                    break
            return "OK\n"
        if not args or not args[0].isdigit() or int(args[0]) not in networks:
            return "FAIL\n" if verb.endswith("_NETWORK") else "UNKNOWN COMMAND\n"
        network = networks[int(args[0])]
        if verb == "SET_NETWORK":
            name, value = args[1], command.split(" ", 3)[3]
            if name not in (
                "ssid",
                "scan_ssid",
                "key_mgmt",
                "psk",
                "ieee80211w",
                "priority",
                "mem_only_psk",
                "id_str",
            ):
                return "FAIL\n"
            if name == "key_mgmt" and not set(value.split()) <= self.supported_key_mgmt:
                return "FAIL\n"
            network.variables[name] = value
            return "OK\n"
        if verb == "GET_NETWORK":
            if args[1] == "psk":
                return "*"
            return network.variables.get(args[1], "0" if args[1] == "priority" else "FAIL\n")
        if verb == "SELECT_NETWORK":
            for n in networks.values():
                n.disabled = n.id != network.id
            if self.current != network.id:
                self._disconnect()
                self._spawn(self._connect(network.id))
            return "OK\n"
        if verb == "ENABLE_NETWORK":
            network.disabled = False
            return "OK\n"
        if verb == "DISABLE_NETWORK":
            network.disabled = True
            if self.current == network.id:
                self._disconnect()
            return "OK\n"
        if verb == "REMOVE_NETWORK":
            del networks[network.id]
            if self.current == network.id:
                self._disconnect()
            return "OK\n"
        return "UNKNOWN COMMAND\n"

    @staticmethod
    def _written(network: Network) -> dict[str, str]:
        """What ``SAVE_CONFIG`` writes of a network: ``mem_only_psk=1`` keeps the psk out."""
        if network.variables.get("mem_only_psk") == "1":
            return {k: v for k, v in network.variables.items() if k != "psk"}
        return dict(network.variables)

    def reboot(self) -> dict[int, tuple[dict[str, str], bool]]:
        """The configuration file a restarted wpa_supplicant reads: the last save, or what
        it started with."""
        return self.saved if self.saved is not None else self.initial

    def _bss(self, which: str) -> str:
        index = 0
        if which.startswith("NEXT-"):
            ids = [i for i, _ in self.bss]
            position = ids.index(int(which[5:])) if int(which[5:]) in ids else len(ids)
            index = position + 1
        if index >= len(self.bss):
            return ""
        bss_id, ap = self.bss[index]
        ssid = "" if ap.hidden else _escape(ap.ssid)
        return (
            f"id={bss_id}\nbssid={ap.bssid.lower()}\nfreq={ap.freq}\nbeacon_int=100\n"
            f"level={ap.level}\ntsf=0000000000000000\nage=1\nie=0000\n"
            f"flags={ap.flags}\nssid={ssid}\n"
        )


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short directory: a UNIX socket path must fit in 108 bytes."""
    with tempfile.TemporaryDirectory(prefix="bleprov-wpa-test-", dir="/tmp") as name:
        yield Path(name)


def air() -> list[AccessPoint]:
    return [
        wpa2(b"Home", "02:00:00:00:01:01", HOME_PASS),
        wpa2(b"Old", "02:00:00:00:02:01", OLD_PASS, ip="10.0.0.23"),
        wpa3(b"Attic", "02:00:00:00:03:01", "up the ladder"),
        wpa2(b"Cellar", "02:00:00:00:04:01", "down the stairs", hidden=True),
    ]


@pytest.fixture
async def fake(socket_dir: Path) -> AsyncIterator[FakeWpaSupplicant]:
    server = FakeWpaSupplicant(socket_dir / "wlan0", air())
    await server.start()
    old = server.add_saved_network(b"Old", OLD_PASS)
    server.add_saved_network(b"Spare", "spare passphrase", disabled=True)
    server.connect_now(old)
    yield server
    await server.stop()


@pytest.fixture
async def wifi(fake: FakeWpaSupplicant, socket_dir: Path) -> AsyncIterator[WpaSupplicantWifi]:
    backend = WpaSupplicantWifi(
        fake.path,
        client_dir=socket_dir,
        scan_interval=60.0,
        command_timeout=1.0,
        address_poll_interval=0.02,
    )
    await backend.start()
    yield backend
    await backend.close()


def home(passphrase: str = HOME_PASS, **kw: Any) -> WifiCredentials:
    return WifiCredentials(b"Home", Sec.WPA2_PERSONAL, passphrase=passphrase, **kw)


def flags_of(fake: FakeWpaSupplicant) -> dict[int, bool]:
    return {i: n.disabled for i, n in fake.networks.items()}


# -- what wpa_supplicant prints ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("mhz", "channel"),
    [
        (2412, 1),
        (2437, 6),
        (2472, 13),
        (2484, 14),
        (5180, 36),
        (5825, 165),
        (4920, 184),
        (5935, 2),
        (5955, 1),
        (7115, 233),
        (2400, None),
        (5181, None),
        (60480, None),
    ],
)
def test_channel_of_frequency(mhz: int, channel: int | None) -> None:
    assert channel_of_frequency(mhz) == channel


def test_escaped_ssids_are_decoded_strictly() -> None:
    assert decode_escaped_ssid('caf\\xc3\\xa9 \\"q\\" \\\\ \\t') == b'caf\xc3\xa9 "q" \\ \t'
    assert decode_escaped_ssid(_escape(bytes(range(256))[:32])) == bytes(range(32))
    for bad in ("\\q", "\\x4", "trailing\\", "tab\there", "\\x00" * 33):
        with pytest.raises(MalformedData):
            decode_escaped_ssid(bad)


@pytest.mark.parametrize(
    ("flags", "security"),
    [
        ("[WPA2-PSK-CCMP][ESS]", Sec.WPA2_PERSONAL),
        ("[WPA-PSK-TKIP][WPA2-PSK-CCMP+TKIP][WPS][ESS]", Sec.WPA2_PERSONAL),
        ("[WPA2-PSK+SAE-CCMP][ESS]", Sec.WPA2_WPA3_PERSONAL),
        ("[WPA2-SAE-CCMP][SAE-H2E][ESS]", Sec.WPA3_PERSONAL),
        ("[RSN-SAE-EXT-KEY-GCMP-256][ESS]", Sec.WPA3_PERSONAL),
        ("[WPA2-FT/PSK+PSK-SHA256-CCMP][ESS]", Sec.WPA2_PERSONAL),
        ("[ESS]", Sec.OPEN),
        ("[ESS][OWE-TRANS-OPEN]", Sec.OPEN),
        ("[SAE-H2E][ESS]", Sec.OPEN),  # not a key-management element
        ("[WEP][ESS]", None),
        ("[WPA2-EAP-CCMP][ESS]", None),
        ("[WPA2-OWE-CCMP][ESS]", None),
    ],
)
def test_security_of_flags(flags: str, security: Sec | None) -> None:
    assert security_of_flags(flags) is security


def test_bss_entries_become_scan_results() -> None:
    entry = {
        "id": "3",
        "bssid": "02:00:00:00:01:0a",
        "freq": "5180",
        "level": "-48",
        "flags": "[WPA2-PSK-CCMP][ESS]",
        "ssid": "caf\\xc3\\xa9",
    }
    assert bss_scan_result(entry) == ScanResult(
        "café".encode(), "02:00:00:00:01:0A", -48, 36, Sec.WPA2_PERSONAL
    )
    assert bss_scan_result({**entry, "level": "-200"}) == ScanResult(
        "café".encode(), "02:00:00:00:01:0A", -127, 36, Sec.WPA2_PERSONAL
    )
    for broken in (
        {"ssid": ""},
        {"ssid": "\\x00\\x00"},
        {"ssid": "\\z"},
        {"freq": "60480"},
        {"freq": "x"},
        {"flags": "[WEP]"},
        {"bssid": "nonsense"},
    ):
        assert bss_scan_result({**entry, **broken}) is None, broken
    assert bss_scan_result({"id": "1"}) is None


def test_network_variables_for_each_security() -> None:
    psk = bytes(range(32))
    assert network_variables(WifiCredentials(b"A", Sec.OPEN, hidden=True)) == [
        ("ssid", "41"),
        ("scan_ssid", "1"),
        ("key_mgmt", "NONE"),
    ]
    # Every key is mem_only_psk (M4): a SAVE_CONFIG by anyone writes the network without it.
    assert network_variables(WifiCredentials(b"A", Sec.WPA2_PERSONAL, passphrase='qu"ote me')) == [
        ("ssid", "41"),
        ("key_mgmt", "WPA-PSK"),
        ("mem_only_psk", "1"),
        ("psk", '"qu"ote me"'),
    ]
    assert network_variables(WifiCredentials(b"A", Sec.WPA3_PERSONAL, passphrase="12345678")) == [
        ("ssid", "41"),
        ("key_mgmt", "SAE"),
        ("ieee80211w", "2"),
        ("mem_only_psk", "1"),
        ("psk", '"12345678"'),
    ]
    transition = WifiCredentials(b"A", Sec.WPA2_WPA3_PERSONAL, passphrase="12345678")
    assert network_variables(transition) == [
        ("ssid", "41"),
        ("key_mgmt", "WPA-PSK SAE"),
        ("ieee80211w", "1"),
        ("mem_only_psk", "1"),
        ("psk", '"12345678"'),
    ]
    assert network_variables(WifiCredentials(b"A", Sec.WPA2_WPA3_PERSONAL, psk=psk)) == [
        ("ssid", "41"),
        ("key_mgmt", "WPA-PSK"),
        ("mem_only_psk", "1"),
        ("psk", psk.hex()),
    ]


@pytest.mark.parametrize(
    ("reason", "security", "failure"),
    [
        ("WRONG_KEY", Sec.WPA2_PERSONAL, JoinFailure.WRONG_PASSWORD),
        ("AUTH_FAILED", Sec.WPA2_WPA3_PERSONAL, JoinFailure.WRONG_PASSWORD),
        ("NO_PSK_AVAILABLE", Sec.WPA2_PERSONAL, JoinFailure.WRONG_PASSWORD),
        ("CONN_FAILED", Sec.WPA3_PERSONAL, JoinFailure.WRONG_PASSWORD),
        ("CONN_FAILED", Sec.WPA2_PERSONAL, JoinFailure.OTHER),
        ("SOMETHING_NEW", Sec.WPA2_PERSONAL, JoinFailure.OTHER),
    ],
)
def test_temp_disabled_reasons(reason: str, security: Sec, failure: JoinFailure) -> None:
    outcome = join_failure_for_temp_disabled(reason, security)
    assert outcome.reason is failure
    assert reason in outcome.detail


def test_the_network_list_is_parsed() -> None:
    reply = (
        "network id / ssid / bssid / flags\n0\tOld\tany\t[CURRENT]\n1\tSpare\tany\t[DISABLED]\n"
        "2\tTemp\tany\t[TEMP-DISABLED]\n3\tPlain\tany\n"
    )
    assert parse_network_list(reply) == [
        KnownNetwork(0, disabled=False, current=True),
        KnownNetwork(1, disabled=True, current=False),
        KnownNetwork(2, disabled=False, current=False),
        KnownNetwork(3, disabled=False, current=False),
    ]


# -- reaching wpa_supplicant ------------------------------------------------------------------


async def test_no_control_socket_is_a_typed_error_with_a_hint(socket_dir: Path) -> None:
    backend = WpaSupplicantWifi(socket_dir / "wlan0", client_dir=socket_dir)
    with pytest.raises(WpaSupplicantUnavailable, match="ctrl_interface") as caught:
        await backend.start()
    assert str(socket_dir / "wlan0") in str(caught.value)
    assert os.listdir(socket_dir) == []  # our client socket was cleaned up
    with pytest.raises(WpaSupplicantError, match="not started"):
        await backend.try_join(home(), timeout=1.0)


async def test_a_silent_wpa_supplicant_times_out(fake: FakeWpaSupplicant, socket_dir: Path) -> None:
    fake.silent = True
    backend = WpaSupplicantWifi(fake.path, client_dir=socket_dir, command_timeout=0.05)
    with pytest.raises(WpaSupplicantUnavailable, match=r"did not answer PING within 0\.05 s"):
        await backend.start()


async def test_a_private_client_directory_is_made_and_removed(fake: FakeWpaSupplicant) -> None:
    backend = WpaSupplicantWifi(fake.path, scan_interval=60.0)
    await backend.start()
    assert len(fake.monitors) == 1
    (monitor,) = fake.monitors
    directory = Path(monitor).parent
    assert directory.name.startswith("bleprov-wpa-")
    await backend.close()
    assert not directory.exists()
    assert fake.monitors == set()  # DETACH-ed


# -- scanning ---------------------------------------------------------------------------------


async def test_start_serves_the_known_bss_table_at_once(wifi: WpaSupplicantWifi) -> None:
    assert wifi.cached_scan() == [
        ScanResult(b"Home", "02:00:00:00:01:01", -50, 6, Sec.WPA2_PERSONAL),
        ScanResult(b"Old", "02:00:00:00:02:01", -50, 6, Sec.WPA2_PERSONAL),
        ScanResult(b"Attic", "02:00:00:00:03:01", -60, 36, Sec.WPA3_PERSONAL),
    ]  # the hidden one has no SSID to show


async def test_rescan_waits_for_the_scan_while_the_cache_answers_at_once(
    fake: FakeWpaSupplicant, wifi: WpaSupplicantWifi
) -> None:
    before = wifi.cached_scan()
    fake.scan_delay = 0.2
    fake.access_points.append(
        AccessPoint(b"New", "02:00:00:00:05:01", 2412, -30, "[ESS]", frozenset({"NONE"}))
    )
    pending = asyncio.create_task(wifi.rescan())
    await asyncio.sleep(0.05)
    assert fake.scanning
    assert wifi.cached_scan() == before
    fresh = await pending
    assert fresh[0] == ScanResult(b"New", "02:00:00:00:05:01", -30, 1, Sec.OPEN)
    assert wifi.cached_scan() == fresh


async def test_a_scan_already_running_is_joined(
    fake: FakeWpaSupplicant, wifi: WpaSupplicantWifi
) -> None:
    fake.scan_delay = 0.1
    fake.handle("SCAN", [], "SCAN", "")  # wpa_supplicant's own scan, already running
    results = await wifi.rescan()
    assert "SCAN" in fake.commands  # answered FAIL-BUSY, and the backend waited anyway
    assert len(results) == 3


async def test_a_rescan_slower_than_its_timeout_is_a_network_error(
    fake: FakeWpaSupplicant, socket_dir: Path
) -> None:
    fake.scan_delay = 5.0
    backend = WpaSupplicantWifi(fake.path, client_dir=socket_dir, rescan_timeout=0.05)
    await backend.start()
    try:
        with pytest.raises(NetworkError, match=r"no results within 0\.05 s"):
            await backend.rescan()
    finally:
        await backend.close()


# -- joining ----------------------------------------------------------------------------------


async def test_a_join_is_kept_in_the_running_configuration_only(
    fake: FakeWpaSupplicant, wifi: WpaSupplicantWifi, caplog: pytest.LogCaptureFixture
) -> None:
    # Before M4 the commit ran SAVE_CONFIG (the key went to wpa_supplicant.conf): no more.
    caplog.set_level(logging.DEBUG)
    outcome = await wifi.try_join(home(), timeout=2.0)
    assert outcome == Connected("192.168.3.7")
    (staged,) = [n for n in fake.networks.values() if n.variables["ssid"] == b"Home".hex()]
    assert fake.current == staged.id
    assert flags_of(fake)[0] is True  # SELECT_NETWORK disabled the old one
    assert staged.variables["id_str"] == '"bleprov"'
    assert staged.variables["mem_only_psk"] == "1"

    await wifi.commit()
    assert fake.saved is None  # nothing written
    assert "SAVE_CONFIG" not in fake.commands
    assert not staged.disabled
    assert int(staged.variables["priority"]) == 1  # above every other network's
    assert flags_of(fake)[0] is False  # the old network is enabled again, as before
    assert flags_of(fake)[1] is True  # the spare stays disabled, as before
    assert HOME_PASS not in caplog.text
    assert "SET_NETWORK 2 psk <redacted>" in caplog.text


async def test_a_wrong_passphrase_and_rollback(
    fake: FakeWpaSupplicant, wifi: WpaSupplicantWifi
) -> None:
    outcome = await wifi.try_join(home("not the passphrase"), timeout=2.0)
    assert outcome == Failed(JoinFailure.WRONG_PASSWORD, "the 4-way handshake failed (WRONG_KEY)")
    assert set(fake.networks) == {0, 1}  # the failed network is gone again
    with pytest.raises(NetworkError, match="nothing to commit"):
        await wifi.commit()
    await wifi.rollback()
    assert flags_of(fake) == {0: False, 1: True}
    for _ in range(100):
        if fake.current == 0 and fake.ip == "10.0.0.23":
            break
        await asyncio.sleep(0.01)
    assert (fake.current, fake.ip) == (0, "10.0.0.23")
    assert fake.saved is None


async def test_rollback_after_a_successful_join(
    fake: FakeWpaSupplicant, wifi: WpaSupplicantWifi
) -> None:
    assert isinstance(await wifi.try_join(home(), timeout=2.0), Connected)
    assert isinstance(await wifi.try_join(home(), timeout=2.0), Connected)  # replaces the first
    assert len(fake.networks) == 3
    await wifi.rollback()
    assert set(fake.networks) == {0, 1}
    assert flags_of(fake) == {0: False, 1: True}
    assert fake.commands[-3:] == ["REMOVE_NETWORK 3", "SELECT_NETWORK 0", "DISABLE_NETWORK 1"]
    await wifi.rollback()  # nothing left to undo


async def test_rollback_with_no_prior_network_reassociates(
    fake: FakeWpaSupplicant, wifi: WpaSupplicantWifi
) -> None:
    fake.current, fake.state, fake.ip = None, "SCANNING", None
    await wifi.try_join(home(), timeout=2.0)
    await wifi.rollback()
    assert flags_of(fake) == {0: False, 1: True}
    assert fake.commands[-1] == "REASSOCIATE"


async def test_a_wrong_sae_passphrase(wifi: WpaSupplicantWifi) -> None:
    attic = WifiCredentials(b"Attic", Sec.WPA3_PERSONAL, passphrase="down the ladder")
    outcome = await wifi.try_join(attic, timeout=2.0)
    assert isinstance(outcome, Failed)
    assert outcome.reason is JoinFailure.WRONG_PASSWORD
    right = WifiCredentials(b"Attic", Sec.WPA3_PERSONAL, passphrase="up the ladder")
    assert await wifi.try_join(right, timeout=2.0) == Connected("192.168.3.7")


async def test_a_raw_psk_joins(wifi: WpaSupplicantWifi) -> None:
    credentials = WifiCredentials(b"Home", Sec.WPA2_PERSONAL, psk=wpa_psk(HOME_PASS, b"Home"))
    assert await wifi.try_join(credentials, timeout=2.0) == Connected("192.168.3.7")


async def test_a_missing_network(fake: FakeWpaSupplicant, wifi: WpaSupplicantWifi) -> None:
    gone = WifiCredentials(b"Nowhere", Sec.WPA2_PERSONAL, passphrase="whatever1")
    outcome = await wifi.try_join(gone, timeout=2.0)
    assert outcome == Failed(JoinFailure.NETWORK_NOT_FOUND, "no network of that name in range")
    assert set(fake.networks) == {0, 1}


async def test_a_hidden_network_needs_active_probing(wifi: WpaSupplicantWifi) -> None:
    cellar = WifiCredentials(b"Cellar", Sec.WPA2_PERSONAL, passphrase="down the stairs")
    not_probed = await wifi.try_join(cellar, timeout=2.0)
    assert isinstance(not_probed, Failed)
    assert not_probed.reason is JoinFailure.NETWORK_NOT_FOUND
    probed = WifiCredentials(
        b"Cellar", Sec.WPA2_PERSONAL, passphrase="down the stairs", hidden=True
    )
    assert await wifi.try_join(probed, timeout=2.0) == Connected("192.168.3.7")


async def test_no_dhcp_lease_and_a_slow_association(
    fake: FakeWpaSupplicant, wifi: WpaSupplicantWifi
) -> None:
    fake.access_points[0].dhcp_delay = None
    outcome = await wifi.try_join(home(), timeout=0.2)
    assert outcome == Failed(JoinFailure.DHCP_FAILED, "associated, but no IP address within 0.2 s")
    fake.assoc_delay = 5.0
    loop = asyncio.get_running_loop()
    began = loop.time()
    outcome = await wifi.try_join(home(), timeout=0.1)
    assert outcome == Failed(JoinFailure.TIMEOUT, "not connected within 0.1 s")
    assert loop.time() - began < 1.0


async def test_an_access_point_that_refuses(
    fake: FakeWpaSupplicant, wifi: WpaSupplicantWifi
) -> None:
    fake.access_points[0].reject = True
    outcome = await wifi.try_join(home(), timeout=2.0)
    assert outcome == Failed(
        JoinFailure.OTHER, "wpa_supplicant gave up on the network (CONN_FAILED)"
    )


async def test_an_unsupported_setting_fails_the_join(
    fake: FakeWpaSupplicant, wifi: WpaSupplicantWifi
) -> None:
    fake.supported_key_mgmt = {"NONE", "WPA-PSK"}  # built without SAE
    attic = WifiCredentials(b"Attic", Sec.WPA3_PERSONAL, passphrase="up the ladder")
    outcome = await wifi.try_join(attic, timeout=2.0)
    assert outcome == Failed(JoinFailure.OTHER, "wpa_supplicant does not accept key_mgmt")
    assert set(fake.networks) == {0, 1}


async def test_commit_needs_no_writable_configuration(
    fake: FakeWpaSupplicant, wifi: WpaSupplicantWifi
) -> None:
    # It used to need update_config=1 for SAVE_CONFIG; a read-only wpa_supplicant.conf does.
    fake.update_config = False
    assert isinstance(await wifi.try_join(home(), timeout=2.0), Connected)
    await wifi.commit()
    assert fake.current == 2


async def test_commit_replaces_the_network_kept_before(
    fake: FakeWpaSupplicant, wifi: WpaSupplicantWifi
) -> None:
    assert isinstance(await wifi.try_join(home(), timeout=2.0), Connected)
    await wifi.commit()
    attic = WifiCredentials(b"Attic", Sec.WPA3_PERSONAL, passphrase="up the ladder")
    assert isinstance(await wifi.try_join(attic, timeout=2.0), Connected)
    await wifi.commit()
    assert set(fake.networks) == {0, 1, 3}  # the first kept network (2) is gone
    assert flags_of(fake) == {0: False, 1: True, 3: False}


async def test_restore_keeps_a_network_not_in_range_and_drops_earlier_runs(
    fake: FakeWpaSupplicant, wifi: WpaSupplicantWifi, socket_dir: Path
) -> None:
    assert isinstance(await wifi.try_join(home(), timeout=2.0), Connected)
    await wifi.commit()
    await wifi.close()  # the daemon stops; wpa_supplicant keeps network 2 running
    backend = WpaSupplicantWifi(
        fake.path, client_dir=socket_dir, command_timeout=1.0, address_poll_interval=0.02
    )
    await backend.start()
    try:
        away = WifiCredentials(b"Nowhere", Sec.WPA2_PERSONAL, passphrase="whatever1")
        outcome = await backend.restore(away, timeout=2.0)
        assert outcome == Failed(JoinFailure.NETWORK_NOT_FOUND, "no network of that name in range")
        assert set(fake.networks) == {0, 1, 3}  # the earlier run's network 2 is gone
        assert fake.networks[3].variables["ssid"] == b"Nowhere".hex()
        assert flags_of(fake) == {0: False, 1: True, 3: False}  # kept, enabled: joins later
        assert fake.commands[-1] == "REASSOCIATE"  # meanwhile, any other known network
    finally:
        await backend.close()


async def test_wpa_supplicant_stopping_mid_join(
    fake: FakeWpaSupplicant, wifi: WpaSupplicantWifi
) -> None:
    fake.assoc_delay = 5.0
    join = asyncio.create_task(wifi.try_join(home(), timeout=3.0))
    await asyncio.sleep(0.05)
    fake.emit("CTRL-EVENT-TERMINATING ")
    with pytest.raises(WpaSupplicantUnavailable, match="stopped during the join"):
        await join
    with pytest.raises(WpaSupplicantUnavailable, match="stopped during a scan"):
        await wifi.rescan()  # no events any more: fail at once rather than wait


async def test_a_bad_timeout_is_refused(wifi: WpaSupplicantWifi) -> None:
    with pytest.raises(ValueError, match="positive"):
        await wifi.try_join(home(), timeout=0)
