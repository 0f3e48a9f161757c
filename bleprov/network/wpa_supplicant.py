"""wpa_supplicant over its control socket: the Wi-Fi backend of a device without NetworkManager.

This talks the protocol of ``wpa_cli``: text commands in UNIX datagrams to
``/var/run/wpa_supplicant/<interface>``, one socket for requests and one ``ATTACH``-ed
socket for events. It was chosen over wpa_supplicant's D-Bus API for three reasons:

* the devices that need this backend are the ones without NetworkManager, and those
  (Raspberry Pi OS before Bookworm, Buildroot, Yocto, OpenWrt images) run wpa_supplicant
  with ``ctrl_interface=`` but often without ``-u`` or without D-Bus at all;
* a wrong passphrase has its own event there, ``CTRL-EVENT-SSID-TEMP-DISABLED ...
  reason=WRONG_KEY``, where the D-Bus API leaves us to infer it from ``DisconnectReason``
  during the 4-way handshake;
* ``STATUS`` reports the interface's IP address (``ip_address=``), so we know when the
  system's DHCP client (dhcpcd, udhcpc, systemd-networkd) got a lease without reading
  netlink ourselves.

The Wi-Fi key never rests in ``wpa_supplicant.conf``: networks live in wpa_supplicant's
running configuration only. ``try_join`` adds one (``ADD_NETWORK``) and selects it;
:meth:`WpaSupplicantWifi.commit` keeps it (and removes the one an earlier enrolment kept)
but never runs ``SAVE_CONFIG``; the device's encrypted store holds the key, and
:meth:`WpaSupplicantWifi.restore` re-applies it at every start. Each network is marked
``mem_only_psk=1``, so a ``SAVE_CONFIG`` from anyone else (``wpa_cli save_config``) writes
it without its key, and ``id_str="bleprov"``, so a restart finds the networks of an earlier
run. ``SELECT_NETWORK`` disables every other network, so the backend remembers their flags
at the first join and puts them back on commit and on rollback.

Passphrases cross only the local control socket; they are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bleprov.core.errors import MalformedData
from bleprov.core.wifi import (
    SSID_MAX,
    Connected,
    Failed,
    JoinFailure,
    JoinOutcome,
    ScanResult,
    WifiCredentials,
    WifiSecurity,
)
from bleprov.network.base import NetworkError, ScanCache, StagingBackend

logger = logging.getLogger(__name__)

DEFAULT_CTRL_PATH: Final = "/var/run/wpa_supplicant/wlan0"
#: Bounds the walk over wpa_supplicant's BSS table (one request per entry).
MAX_BSS_ENTRIES: Final = 512
#: Network variables whose value is a secret, or names the network (the SSID is not
#: logged either): their commands are logged without the value.
_SECRET_VARIABLES: Final = frozenset({"psk", "sae_password", "password", "wep_key0", "ssid"})
#: Where wpa_supplicant's events quote an SSID (``ssid="..."``, ``SSID='...'``).
_EVENT_SSID = re.compile(r"""(ssid=)"(?:[^"\\]|\\.)*"|(SSID=)'(?:[^'\\]|\\.)*'""")
#: Marks the networks this backend adds (``id_str``, quoted as wpa_supplicant wants it).
ID_STR: Final = '"bleprov"'
#: wpa_supplicant before 2.6 lacks it: the join goes on (we never save; others might).
_OPTIONAL_VARIABLES: Final = frozenset({"mem_only_psk"})

#: A network or BSS ID as wpa_supplicant prints it: ASCII digits, at most nine (its IDs are
#: C ints). ``str.isdigit`` takes "²", which int() refuses, and ``\d+`` any length, and
#: int() refuses 5000 digits: a reply is checked against this instead (issue 15).
_ID: Final = "[0-9]{1,9}"
_ID_PATTERN: Final = re.compile(_ID)
_CONNECTED = re.compile(
    rf"CTRL-EVENT-CONNECTED - Connection to [0-9a-fA-F:]{{17}} completed \[id=(-?{_ID}) "
)
_TEMP_DISABLED = re.compile(
    rf'CTRL-EVENT-SSID-TEMP-DISABLED id=({_ID}) ssid="(?:[^"\\]|\\.)*" '
    r"auth_failures=[0-9]+ duration=[0-9]+ reason=(\S+)"
)


class WpaSupplicantError(NetworkError):
    """wpa_supplicant refused a request or broke the protocol."""


class WpaSupplicantUnavailable(WpaSupplicantError):
    """No control socket, no permission to use it, or wpa_supplicant stopped answering."""


class WpaCommandFailed(WpaSupplicantError):
    """A command was answered ``FAIL``; ``command`` is its verb (never its arguments)."""

    def __init__(self, command: str, reply: str) -> None:
        super().__init__(f"wpa_supplicant answered {reply!r} to {command}")
        self.command = command
        self.reply = reply


# -- what wpa_supplicant prints ---------------------------------------------------------------


def channel_of_frequency(mhz: int) -> int | None:
    """The 802.11 channel number of a centre frequency (2.4, 4.9/5 and 6 GHz bands)."""
    if mhz == 2484:
        return 14
    if 2412 <= mhz <= 2472 and (mhz - 2407) % 5 == 0:
        return (mhz - 2407) // 5
    if 4910 <= mhz <= 4980 and mhz % 5 == 0:
        return (mhz - 4000) // 5
    if 5160 <= mhz <= 5885 and mhz % 5 == 0:
        return (mhz - 5000) // 5
    if mhz == 5935:
        return 2
    if 5955 <= mhz <= 7115 and (mhz - 5950) % 5 == 0:
        return (mhz - 5950) // 5
    return None


def decode_escaped_ssid(text: str) -> bytes:
    """Undo wpa_supplicant's ``printf_encode``: ``\\\\ \\" \\e \\n \\r \\t \\xHH`` escapes."""
    simple = {"\\": 0x5C, '"': 0x22, "e": 0x1B, "n": 0x0A, "r": 0x0D, "t": 0x09}
    out = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\":
            if not 32 <= ord(char) <= 126:
                raise MalformedData("an escaped SSID holds only printable ASCII")
            out.append(ord(char))
            i += 1
            continue
        code = text[i + 1 : i + 2]
        if code in simple:
            out.append(simple[code])
            i += 2
        elif code == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", text[i + 2 : i + 4]):
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        else:
            raise MalformedData("a bad escape in an SSID")
        if len(out) > SSID_MAX:
            raise MalformedData(f"an SSID is at most {SSID_MAX} bytes")
    return bytes(out)


def security_of_flags(flags: str) -> WifiSecurity | None:
    """What a BSS's ``flags=`` (``[WPA2-PSK+SAE-CCMP][ESS]``) offers; None if we cannot join it.

    Only the key management matters: PSK means WPA2-Personal, SAE WPA3-Personal, both the
    transition mode. WEP, enterprise (EAP) and OWE-only networks are not provisionable here.
    """
    tokens = re.findall(r"\[([^\]]*)\]", flags)
    wpa = [t for t in tokens if t.split("-", 1)[0] in ("WPA", "WPA2", "RSN")]
    if not wpa:
        return None if "WEP" in tokens else WifiSecurity.OPEN
    psk = any("PSK" in t for t in wpa)
    sae = any("SAE" in t for t in wpa)
    if psk and sae:
        return WifiSecurity.WPA2_WPA3_PERSONAL
    if sae:
        return WifiSecurity.WPA3_PERSONAL
    if psk:
        return WifiSecurity.WPA2_PERSONAL
    return None


def parse_key_values(reply: str) -> dict[str, str]:
    """``key=value`` lines (``STATUS``, ``BSS``) as a dict; other lines are ignored."""
    fields: dict[str, str] = {}
    for line in reply.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = value
    return fields


def bss_scan_result(fields: Mapping[str, str]) -> ScanResult | None:
    """One ``BSS`` entry as a scan result; None for hidden, unjoinable or garbled entries."""
    try:
        ssid = decode_escaped_ssid(fields.get("ssid", ""))
        mhz = int(fields["freq"])
        level = int(fields["level"])
        bssid = fields["bssid"].upper()
    except (KeyError, ValueError, MalformedData):
        return None
    channel = channel_of_frequency(mhz)
    security = security_of_flags(fields.get("flags", ""))
    if not ssid or channel is None or security is None or ssid == bytes(len(ssid)):
        return None
    if not re.fullmatch(r"[0-9A-F]{2}(?::[0-9A-F]{2}){5}", bssid):
        return None
    return ScanResult(ssid, bssid, max(-127, min(20, level)), channel, security)


def network_variables(credentials: WifiCredentials) -> list[tuple[str, str]]:
    """The ``SET_NETWORK`` variables for ``credentials``; the ``psk`` value is secret."""
    variables = [("ssid", credentials.ssid.hex())]  # unquoted: hex, so any byte is safe
    if credentials.hidden:
        variables.append(("scan_ssid", "1"))
    security = credentials.security
    if security is WifiSecurity.OPEN:
        variables.append(("key_mgmt", "NONE"))
        return variables
    # The key stays in memory even if someone else saves the configuration.
    keep_out = ("mem_only_psk", "1")
    if credentials.psk is not None:  # a raw PSK works for WPA2 only, whatever else is offered
        variables += [("key_mgmt", "WPA-PSK"), keep_out, ("psk", credentials.psk.hex())]
        return variables
    if security is WifiSecurity.WPA2_PERSONAL:
        variables.append(("key_mgmt", "WPA-PSK"))
    elif security is WifiSecurity.WPA3_PERSONAL:
        variables += [("key_mgmt", "SAE"), ("ieee80211w", "2")]  # SAE requires PMF
    else:
        variables += [("key_mgmt", "WPA-PSK SAE"), ("ieee80211w", "1")]
    assert credentials.passphrase is not None
    # wpa_supplicant takes what lies between the first and the last quote, so a quote inside
    # the passphrase needs no escaping; the passphrase is printable ASCII (no newline).
    variables += [keep_out, ("psk", f'"{credentials.passphrase}"')]
    return variables


def join_failure_for_temp_disabled(reason: str, security: WifiSecurity) -> Failed:
    """What a ``CTRL-EVENT-SSID-TEMP-DISABLED ... reason=...`` for our network means."""
    if reason == "WRONG_KEY":
        return Failed(JoinFailure.WRONG_PASSWORD, "the 4-way handshake failed (WRONG_KEY)")
    if reason in ("AUTH_FAILED", "NO_PSK_AVAILABLE"):
        return Failed(JoinFailure.WRONG_PASSWORD, f"authentication failed ({reason})")
    if reason == "CONN_FAILED" and security is WifiSecurity.WPA3_PERSONAL:
        # SAE has no handshake that names a wrong password: the access point drops the
        # commit, and wpa_supplicant gives up after repeated failures with CONN_FAILED.
        return Failed(JoinFailure.WRONG_PASSWORD, "SAE authentication kept failing (CONN_FAILED)")
    return Failed(JoinFailure.OTHER, f"wpa_supplicant gave up on the network ({reason})")


@dataclass(frozen=True)
class KnownNetwork:
    """One row of ``LIST_NETWORKS``: what rollback and commit put back."""

    id: int
    disabled: bool
    current: bool


def parse_network_list(reply: str) -> list[KnownNetwork]:
    networks = []
    for line in reply.splitlines()[1:]:  # the first line is the header
        parts = line.split("\t")
        if not _ID_PATTERN.fullmatch(parts[0]):
            continue
        flags = parts[3] if len(parts) > 3 else ""
        networks.append(KnownNetwork(int(parts[0]), "[DISABLED]" in flags, "[CURRENT]" in flags))
    return networks


def network_id_of(reply: str, command: str) -> int:
    """The network ID a command (``ADD_NETWORK``) answered; WpaSupplicantError if the
    reply is no ID."""
    text = reply.strip()
    if not _ID_PATTERN.fullmatch(text):
        raise WpaSupplicantError(f"wpa_supplicant answered {text[:20]!r} to {command}")
    return int(text)


def bss_id(fields: Mapping[str, str]) -> int | None:
    """A ``BSS`` entry's ``id`` (which names the next entry to ask for), if it is one."""
    value = fields.get("id", "")
    return int(value) if _ID_PATTERN.fullmatch(value) else None


def connected_network(event: str) -> int | None:
    """The network a ``CTRL-EVENT-CONNECTED`` event names, or None for any other event."""
    match = _CONNECTED.match(event)
    return int(match[1]) if match else None


def temp_disabled_network(event: str) -> tuple[int, str] | None:
    """The network and reason of a ``CTRL-EVENT-SSID-TEMP-DISABLED`` event, else None."""
    match = _TEMP_DISABLED.match(event)
    return (int(match[1]), match[2]) if match else None


# -- the control socket ---------------------------------------------------------------------


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.error: Exception | None = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        self.error = exc
        self.queue.put_nowait(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.queue.put_nowait(None)


class ControlSocket:
    """One client socket: bound to a path of ours, connected to wpa_supplicant's."""

    def __init__(
        self, transport: asyncio.DatagramTransport, protocol: _Datagrams, client_path: Path
    ) -> None:
        self._transport = transport
        self._protocol = protocol
        self._client_path = client_path
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, server_path: Path, client_path: Path) -> ControlSocket:
        sock = _connected_socket(server_path, client_path)
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(_Datagrams, sock=sock)
        return cls(transport, protocol, client_path)

    async def request(self, command: str, *, timeout: float) -> str:
        """Send ``command`` and return wpa_supplicant's reply (events are skipped)."""
        verb = _loggable(command)
        async with self._lock:
            while not self._protocol.queue.empty():  # a late reply to a request that timed out
                self._protocol.queue.get_nowait()
            logger.debug("wpa_supplicant <- %s", verb)
            self._transport.sendto(command.encode("utf-8"))
            try:
                async with asyncio.timeout(timeout):
                    while True:
                        text = await self.receive()
                        if not text.startswith("<"):
                            return text
            except TimeoutError:
                raise WpaSupplicantUnavailable(
                    f"wpa_supplicant did not answer {verb} within {timeout:g} s"
                ) from None

    async def receive(self) -> str:
        data = await self._protocol.queue.get()
        if data is None:
            error = self._protocol.error
            detail = f" ({type(error).__name__}: {error})" if error else ""
            raise WpaSupplicantUnavailable(f"the wpa_supplicant control socket failed{detail}")
        return data.decode("utf-8", "replace")

    def close(self) -> None:
        self._transport.close()
        with contextlib.suppress(OSError):
            self._client_path.unlink()


def _connected_socket(server_path: Path, client_path: Path) -> socket.socket:
    """A datagram socket bound to ``client_path`` (where replies come) and connected."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        with contextlib.suppress(FileNotFoundError):
            client_path.unlink()  # left by a process that died
        sock.bind(str(client_path))
        sock.connect(str(server_path))
    except OSError as exc:
        sock.close()
        with contextlib.suppress(OSError):
            client_path.unlink()
        hint = (
            "run as root or in wpa_supplicant's ctrl_interface_group"
            if isinstance(exc, PermissionError)
            else "is wpa_supplicant running with ctrl_interface=DIR for this interface?"
        )
        raise WpaSupplicantUnavailable(
            f"cannot reach wpa_supplicant's control socket {server_path} "
            f"({type(exc).__name__}: {exc.strerror}); {hint}"
        ) from exc
    return sock


def _loggable(command: str) -> str:
    """``command`` as it may be logged: never a secret network variable's value."""
    parts = command.split(" ", 3)
    if parts[0] == "SET_NETWORK" and len(parts) == 4 and parts[2] in _SECRET_VARIABLES:
        return " ".join(parts[:3]) + " <redacted>"
    return command


def _loggable_event(event: str) -> str:
    """An event as it may be logged: the SSIDs it quotes replaced."""
    return _EVENT_SSID.sub(lambda m: f"{m[1] or m[2]}<redacted>", event)


# -- the backend ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Staged:
    network_id: int


class _Terminated:
    """Put in event queues when wpa_supplicant stops or the monitor socket fails."""


class WpaSupplicantWifi(StagingBackend[list[KnownNetwork], _Staged]):
    """The device's Wi-Fi through wpa_supplicant's control interface (see module doc)."""

    join_log = "joining the network through wpa_supplicant: %s"
    restore_log = "re-applied the stored network through wpa_supplicant: %s"
    #: wpa_supplicant joins a kept network when it comes into range.
    keeps_unjoined_restore = True

    def __init__(
        self,
        ctrl_path: Path | str = DEFAULT_CTRL_PATH,
        *,
        client_dir: Path | str | None = None,
        scan_interval: float = 30.0,
        rescan_timeout: float = 15.0,
        command_timeout: float = 5.0,
        not_found_after: int = 2,
        address_poll_interval: float = 0.25,
    ) -> None:
        super().__init__()
        self.ctrl_path = Path(ctrl_path)
        self._client_dir = Path(client_dir) if client_dir is not None else None
        self._own_client_dir: Path | None = None
        self.scan_interval = scan_interval
        self.rescan_timeout = rescan_timeout
        self.command_timeout = command_timeout
        #: ``CTRL-EVENT-NETWORK-NOT-FOUND`` scans before a join reports the network missing
        #: (one scan can miss a beacon, on DFS channels especially).
        self.not_found_after = not_found_after
        self.address_poll_interval = address_poll_interval
        self._control: ControlSocket | None = None
        self._monitor: ControlSocket | None = None
        self._events_task: asyncio.Task[None] | None = None
        self._subscribers: set[asyncio.Queue[str | _Terminated]] = set()
        self._events_lost = False
        self._kept: int | None = None  # the committed (or restored) network's id
        self._scan_loop: asyncio.Task[None] | None = None
        self._scans = ScanCache(
            self._scan_once,
            timeout=self.rescan_timeout,
            timeout_error=lambda t: WpaSupplicantError(
                f"wpa_supplicant's scan gave no results within {t:g} s"
            ),
            name="wpa",
        )

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._control is not None:
            return
        directory = self._client_dir
        if directory is None:
            # Short (a socket path must fit in 108 bytes) and private to this process.
            directory = self._own_client_dir = Path(tempfile.mkdtemp(prefix="bleprov-wpa-"))
        try:
            self._control = await ControlSocket.open(self.ctrl_path, directory / "control")
            pong = await self._command("PING")
            if pong.strip() != "PONG":
                raise WpaSupplicantError(f"wpa_supplicant answered {pong.strip()!r} to PING")
            self._monitor = await ControlSocket.open(self.ctrl_path, directory / "monitor")
            attached = await self._monitor.request("ATTACH", timeout=self.command_timeout)
            if attached.strip() != "OK":
                raise WpaSupplicantError(f"wpa_supplicant answered {attached.strip()!r} to ATTACH")
            self._events_task = asyncio.create_task(self._read_events(), name="wpa-events")
            self._scans.results = await self._read_bss_table()  # what it knows, at once
        except BaseException:
            await self.close()
            raise
        self._scan_loop = asyncio.create_task(self._scan_forever(), name="wpa-scan")

    async def close(self) -> None:
        scan_loop, events_task = self._scan_loop, self._events_task
        self._scan_loop = self._events_task = None
        await self._stop_scanning(scan_loop, events_task)
        if self._monitor is not None:
            with contextlib.suppress(NetworkError):
                await self._monitor.request("DETACH", timeout=0.5)
            self._monitor.close()
            self._monitor = None
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._own_client_dir is not None:
            with contextlib.suppress(OSError):
                self._own_client_dir.rmdir()
            self._own_client_dir = None

    # -- scanning ----------------------------------------------------------------------

    async def _scan_once(self) -> list[ScanResult]:
        with self._events() as events:
            try:
                await self._command("SCAN")
            except WpaCommandFailed as exc:
                if exc.reply != "FAIL-BUSY":  # busy: a scan is running; its results will do
                    raise
            while True:
                event = await events.get()
                if isinstance(event, _Terminated):
                    raise WpaSupplicantUnavailable("wpa_supplicant stopped during a scan")
                if event.startswith("CTRL-EVENT-SCAN-RESULTS"):
                    break
                if event.startswith("CTRL-EVENT-SCAN-FAILED"):
                    raise WpaSupplicantError(f"wpa_supplicant's scan failed: {event}")
        return await self._read_bss_table()

    async def _read_bss_table(self) -> list[ScanResult]:
        results = []
        reply = await self._command("BSS FIRST")
        for _ in range(MAX_BSS_ENTRIES):
            fields = parse_key_values(reply)
            entry = bss_id(fields)
            if entry is None:
                break
            result = bss_scan_result(fields)
            if result is not None:
                results.append(result)
            reply = await self._command(f"BSS NEXT-{entry}")
        return sorted(results, key=lambda r: r.rssi, reverse=True)

    async def _scan_forever(self) -> None:
        while True:
            if not self._joining:  # a scan would stall the association
                try:
                    await self._scans.current()
                except NetworkError as exc:
                    logger.warning("background Wi-Fi scan failed: %s", exc)
            await asyncio.sleep(self.scan_interval)

    # -- joining -----------------------------------------------------------------------

    async def _snapshot(self) -> list[KnownNetwork]:
        return parse_network_list(await self._command("LIST_NETWORKS"))

    async def _join(
        self, credentials: WifiCredentials, timeout: float, *, keep_failed: bool = False
    ) -> JoinOutcome:
        deadline = asyncio.get_running_loop().time() + timeout
        with self._events() as events:
            network_id = network_id_of(await self._command("ADD_NETWORK"), "ADD_NETWORK")
            self._staged = _Staged(network_id)
            for name, value in [("id_str", ID_STR), *network_variables(credentials)]:
                try:
                    await self._command(f"SET_NETWORK {network_id} {name} {value}")
                except WpaCommandFailed:
                    if name in _OPTIONAL_VARIABLES:
                        logger.warning("wpa_supplicant does not know %s (before 2.6?)", name)
                        continue
                    await self._drop_staged()
                    return Failed(JoinFailure.OTHER, f"wpa_supplicant does not accept {name}")
            await self._command(f"SELECT_NETWORK {network_id}")
            outcome = await self._await_outcome(events, network_id, credentials, deadline, timeout)
        return outcome

    async def _await_outcome(
        self,
        events: asyncio.Queue[str | _Terminated],
        network_id: int,
        credentials: WifiCredentials,
        deadline: float,
        timeout: float,
    ) -> JoinOutcome:
        loop = asyncio.get_running_loop()
        associated = False
        not_found = 0
        while True:
            if associated:
                address = await self._address_on(network_id)
                if address is not None:
                    return Connected(address)
            remaining = deadline - loop.time()
            if remaining <= 0:
                if associated:
                    return Failed(
                        JoinFailure.DHCP_FAILED,
                        f"associated, but no IP address within {timeout:g} s",
                    )
                return Failed(JoinFailure.TIMEOUT, f"not connected within {timeout:g} s")
            wait = min(remaining, self.address_poll_interval) if associated else remaining
            try:
                event = await asyncio.wait_for(events.get(), wait)
            except TimeoutError:
                continue
            if isinstance(event, _Terminated):
                raise WpaSupplicantUnavailable("wpa_supplicant stopped during the join")
            if (connected := connected_network(event)) is not None:
                associated = associated or connected == network_id
            elif (disabled := temp_disabled_network(event)) is not None:
                if disabled[0] == network_id:
                    return join_failure_for_temp_disabled(disabled[1], credentials.security)
            elif event.startswith("CTRL-EVENT-NETWORK-NOT-FOUND"):
                not_found += 1
                if not_found >= self.not_found_after:
                    return Failed(JoinFailure.NETWORK_NOT_FOUND, "no network of that name in range")
            elif event.startswith("CTRL-EVENT-DISCONNECTED"):
                associated = False  # lost before DHCP finished; it will retry

    async def _address_on(self, network_id: int) -> str | None:
        """The interface's IP address once wpa_supplicant is COMPLETED on ``network_id``."""
        status = parse_key_values(await self._command("STATUS"))
        if status.get("wpa_state") != "COMPLETED" or status.get("id") != str(network_id):
            return None
        try:
            return str(ipaddress.ip_address(status.get("ip_address", "")))
        except ValueError:
            return None

    async def _keep(
        self, staged: _Staged, prior: list[KnownNetwork] | None, *, joined: bool
    ) -> None:
        """Keep ``staged`` enabled, above every other network, put the others' flags back,
        and remove the network kept before (the store now holds only this one). Never
        SAVE_CONFIG: the running configuration only (the store re-applies it)."""
        others = [n for n in prior or [] if n.id != self._kept]
        # The enrolled network wins wpa_supplicant's choice whenever it is in range.
        priorities = [await self._priority(n.id) for n in others]
        top = max(priorities, default=0)
        await self._command(f"SET_NETWORK {staged.network_id} priority {top + 1}")
        if not joined:  # not in range yet: wpa_supplicant joins it when it is
            await self._command(f"ENABLE_NETWORK {staged.network_id}")
        await self._restore_flags(others, skip=None, connect=not joined)
        previous, self._kept = self._kept, staged.network_id
        if previous is not None and previous != staged.network_id:
            try:
                await self._command(f"REMOVE_NETWORK {previous}")
            except WpaCommandFailed:
                logger.info("kept network %d was already gone", previous)

    async def _forget_earlier_runs(self) -> list[KnownNetwork]:
        """Networks of an earlier run (``id_str="bleprov"``) go before a restore: the
        store's is the one to keep."""
        for network in parse_network_list(await self._command("LIST_NETWORKS")):
            if await self._id_str(network.id) == ID_STR:
                await self._command(f"REMOVE_NETWORK {network.id}")
        self._kept = None
        return parse_network_list(await self._command("LIST_NETWORKS"))

    async def _unkept_restore(self, prior: list[KnownNetwork] | None) -> None:
        await self._restore_flags(prior or [], skip=None, connect=True)

    async def _id_str(self, network_id: int) -> str | None:
        try:
            return (await self._command(f"GET_NETWORK {network_id} id_str")).strip()
        except WpaCommandFailed:
            return None

    async def _return_to(self, prior: list[KnownNetwork]) -> None:
        current = next((n for n in prior if n.current), None)
        if current is not None:
            await self._command(f"SELECT_NETWORK {current.id}")
        await self._restore_flags(prior, skip=current, connect=current is None)

    async def _restore_flags(
        self, prior: list[KnownNetwork], *, skip: KnownNetwork | None, connect: bool
    ) -> None:
        """Put back each network's enabled flag, which ``SELECT_NETWORK`` cleared."""
        for network in prior:
            if network == skip:
                continue
            verb = "DISABLE_NETWORK" if network.disabled else "ENABLE_NETWORK"
            suffix = "" if network.disabled else " no-connect"
            try:
                await self._command(f"{verb} {network.id}{suffix}")
            except WpaCommandFailed:
                logger.warning("network %d vanished from wpa_supplicant meanwhile", network.id)
        if connect and any(not n.disabled for n in prior):
            await self._command("REASSOCIATE")

    async def _priority(self, network_id: int) -> int:
        try:
            return int((await self._command(f"GET_NETWORK {network_id} priority")).strip())
        except (WpaCommandFailed, ValueError):
            return 0

    async def _undo_join(self, staged: _Staged) -> None:
        try:
            await self._command(f"REMOVE_NETWORK {staged.network_id}")
        except WpaCommandFailed:
            logger.info("staged network %d was already gone", staged.network_id)

    # -- plumbing ----------------------------------------------------------------------

    def _require_started(self) -> None:
        if self._control is None:
            raise WpaSupplicantError("the wpa_supplicant backend is not started (call start())")

    async def _command(self, command: str) -> str:
        if self._control is None:
            raise WpaSupplicantUnavailable("not connected to wpa_supplicant")
        reply = await self._control.request(command, timeout=self.command_timeout)
        if reply.startswith("FAIL") or reply.startswith("UNKNOWN COMMAND"):
            raise WpaCommandFailed(_loggable(command).split(" ", 1)[0], reply.strip())
        return reply

    @contextlib.contextmanager
    def _events(self) -> Iterator[asyncio.Queue[str | _Terminated]]:
        """Events from now on, while the block runs."""
        queue: asyncio.Queue[str | _Terminated] = asyncio.Queue()
        if self._events_lost:
            queue.put_nowait(_Terminated())
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    async def _read_events(self) -> None:
        assert self._monitor is not None
        try:
            async for event in _events_of(self._monitor):
                logger.debug("wpa_supplicant event: %s", _loggable_event(event))
                for queue in self._subscribers:
                    queue.put_nowait(event)
                if event.startswith("CTRL-EVENT-TERMINATING"):
                    break
        except WpaSupplicantUnavailable as exc:
            logger.warning("lost wpa_supplicant's events: %s", exc)
        self._events_lost = True
        for queue in self._subscribers:
            queue.put_nowait(_Terminated())


async def _events_of(monitor: ControlSocket) -> AsyncIterator[str]:
    """Unsolicited messages (``<level>TEXT``) of an attached socket, without the level."""
    while True:
        text = await monitor.receive()
        if text.startswith("<") and ">" in text:
            yield text.split(">", 1)[1].rstrip("\n")
