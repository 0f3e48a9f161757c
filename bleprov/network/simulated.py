"""A simulated Wi-Fi environment: access points, their behaviour, and the device's network.

Tests and demos run enrolment end to end without a radio. The environment comes from a TOML
file (``simulated_example.toml`` next to this module documents every key) or a dict: access
points with their passphrases and behaviour (join delay, DHCP failure, an access point that
never answers, one that fails N times and then works), scan timing, the address DHCP hands
out, and where the device stands at power-on (the network it is on, its saved profile).

Every delay is an asyncio sleep and nothing reads the wall clock, so a run is deterministic
for a given event loop. With a ``state`` store the committed profile is kept as a small JSON
document, so a restarted simulated device comes back on the network it committed, as a real
one would. The store is injected (anything with ``load()``/``save()``, see
:class:`ProfileStore`): ``bleprov.store.files.FileAttemptStore(path)`` writes the file
atomically, the encrypted device store keeps the passphrase sealed, and this module stays
independent of :mod:`bleprov.store`.
"""

from __future__ import annotations

import asyncio
import enum
import hmac
import ipaddress
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from bleprov.core.crypto.primitives import pbkdf2_hmac
from bleprov.core.errors import BleprovError, MalformedData
from bleprov.core.toml_text import MAX_TOML_BYTES, TomlUnreadable, parse_toml
from bleprov.core.wifi import (
    PSK_BYTES,
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

#: How the environment file names each security mode.
SECURITY_BY_NAME: Final[Mapping[str, WifiSecurity]] = {
    "open": WifiSecurity.OPEN,
    "wpa2-personal": WifiSecurity.WPA2_PERSONAL,
    "wpa3-personal": WifiSecurity.WPA3_PERSONAL,
    "wpa2-wpa3-personal": WifiSecurity.WPA2_WPA3_PERSONAL,
}
NAME_BY_SECURITY: Final[Mapping[WifiSecurity, str]] = {v: k for k, v in SECURITY_BY_NAME.items()}

STATE_FORMAT: Final = "bleprov-simulated-wifi-state"
STATE_VERSION: Final = 1
#: WPA's passphrase-to-PSK derivation (IEEE 802.11-2016 J.4): PBKDF2-HMAC-SHA1, 4096 rounds.
WPA_PSK_ITERATIONS: Final = 4096

_BSSID = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")
_USES_PSK: Final = frozenset({WifiSecurity.WPA2_PERSONAL, WifiSecurity.WPA2_WPA3_PERSONAL})
_USES_SAE: Final = frozenset({WifiSecurity.WPA3_PERSONAL, WifiSecurity.WPA2_WPA3_PERSONAL})


class ProfileStore(Protocol):
    """Where the simulated device keeps its committed profile: all or nothing per save."""

    def load(self) -> bytes | None: ...

    def save(self, state: bytes) -> None: ...


class SimulatedConfigError(NetworkError):
    """The simulated environment or its state file is malformed; the message names the key."""


class AccessPointBehaviour(enum.Enum):
    """What an access point does once the credentials check out."""

    CONNECT = "connect"
    DHCP_FAILED = "dhcp-failed"  # associates, but DHCP never answers
    TIMEOUT = "timeout"  # never finishes: the join runs into its timeout
    REJECT = "reject"  # refuses the association (JoinFailure.OTHER)


def wpa_psk(passphrase: str, ssid: bytes) -> bytes:
    """The 32-byte WPA PSK a passphrase stands for on ``ssid``."""
    # WPA's PSK is defined over HMAC-SHA1.
    return pbkdf2_hmac(
        passphrase.encode("ascii"),
        salt=ssid,
        iterations=WPA_PSK_ITERATIONS,
        length=PSK_BYTES,
        hash_name="sha1",
    )


@dataclass(frozen=True, repr=False)
class SimulatedAccessPoint:
    ssid: bytes
    bssid: str
    channel: int
    rssi: int
    security: WifiSecurity
    passphrase: str | None = None  # None exactly when the network is open
    hidden: bool = False
    join_delay: float = 0.0  # seconds from the join request to the outcome
    behaviour: AccessPointBehaviour = AccessPointBehaviour.CONNECT
    fail_first: int = 0  # the first N joins with the right credentials fail ...
    fail_first_with: AccessPointBehaviour = AccessPointBehaviour.REJECT  # ... like this
    ip_address: str | None = None  # overrides the environment's DHCP address

    def __repr__(self) -> str:
        return (
            f"SimulatedAccessPoint(ssid={self.ssid!r}, bssid={self.bssid}, "
            f"security={self.security.name}, hidden={self.hidden}, "
            f"behaviour={self.behaviour.value}, passphrase=<redacted>)"
        )

    def scan_result(self) -> ScanResult:
        return ScanResult(self.ssid, self.bssid, self.rssi, self.channel, self.security)


@dataclass(frozen=True)
class SimulatedEnvironment:
    access_points: tuple[SimulatedAccessPoint, ...]
    ip_address: str = "192.168.1.50"
    scan_interval: float = 30.0
    scan_duration: float = 0.0
    rescan_timeout: float = 15.0
    #: The SSID the device is on at power-on (the strongest access point of that name).
    connected: bytes | None = None
    #: The durable profile at power-on.
    saved: WifiCredentials | None = field(default=None, repr=False)


def parse_environment(config: Mapping[str, Any], *, source: str = "config") -> SimulatedEnvironment:
    """Validate a decoded environment (TOML tables as dicts); errors name ``source`` and key."""
    root = _Table(config, "", source)
    access_points = tuple(_access_point(t) for t in root.tables("access_points"))
    bssids = [ap.bssid for ap in access_points]
    for index, bssid in enumerate(bssids):
        if bssid in bssids[:index]:
            raise root.error(f"access_points[{index}].bssid", f"{bssid} appears twice")
    scan = root.table("scan")
    dhcp = root.table("dhcp")
    device = root.table("device")
    root.finish()
    connected = device.ssid("connected", required=False)
    if connected is not None and not any(ap.ssid == connected for ap in access_points):
        raise device.error("connected", "names no access point of the environment")
    saved = device.table("saved")
    environment = SimulatedEnvironment(
        access_points=access_points,
        ip_address=dhcp.ip_address("ip_address") or "192.168.1.50",
        scan_interval=scan.number("interval", 30.0, positive=True),
        scan_duration=scan.number("duration", 0.0),
        rescan_timeout=scan.number("timeout", 15.0, positive=True),
        connected=connected,
        saved=_credentials(saved) if saved.present else None,
    )
    for table in (scan, dhcp, device):
        table.finish()
    return environment


def _access_point(table: _Table) -> SimulatedAccessPoint:
    ssid = table.ssid("ssid", required=True)
    assert ssid is not None
    bssid = table.string("bssid")
    if not _BSSID.fullmatch(bssid):
        raise table.error("bssid", "must look like 02:00:00:00:00:01")
    security = table.security("security")
    passphrase = table.optional_string("passphrase")
    if security is WifiSecurity.OPEN and passphrase is not None:
        raise table.error("passphrase", "an open network takes no passphrase")
    if security is not WifiSecurity.OPEN:
        if passphrase is None:
            raise table.error("passphrase", f"a {NAME_BY_SECURITY[security]} network needs one")
        table.credentials(ssid, security, passphrase=passphrase)  # the same rules as a host's
    fail_first_with = table.behaviour("fail_first_with", AccessPointBehaviour.REJECT)
    if fail_first_with is AccessPointBehaviour.CONNECT:
        raise table.error("fail_first_with", "must be a failure, not 'connect'")
    ap = SimulatedAccessPoint(
        ssid=ssid,
        bssid=bssid.upper(),
        channel=table.integer("channel", 1, 233),
        rssi=table.integer("rssi", -127, 20),
        security=security,
        passphrase=passphrase,
        hidden=table.boolean("hidden", False),
        join_delay=table.number("join_delay", 0.0),
        behaviour=table.behaviour("behaviour", AccessPointBehaviour.CONNECT),
        fail_first=table.integer("fail_first", 0, 1_000_000, default=0),
        fail_first_with=fail_first_with,
        ip_address=table.ip_address("ip_address"),
    )
    table.finish()
    return ap


def _credentials(table: _Table) -> WifiCredentials:
    """A saved profile: ``ssid``/``ssid_hex``, ``security``, ``passphrase`` or ``psk_hex``."""
    ssid = table.ssid("ssid", required=True)
    assert ssid is not None
    security = table.security("security")
    passphrase = table.optional_string("passphrase")
    psk_hex = table.optional_string("psk_hex")
    psk = None
    if psk_hex is not None:
        try:
            psk = bytes.fromhex(psk_hex)
        except ValueError:
            raise table.error("psk_hex", "must be hexadecimal") from None
    hidden = table.boolean("hidden", False)
    table.finish()
    return table.credentials(ssid, security, passphrase=passphrase, psk=psk, hidden=hidden)


_REQUIRED: Final[Any] = object()


class _Table:
    """One table of the environment: typed reads; a key nobody reads is an error.

    An absent table reads as an empty one (``present`` is False), so optional sections
    need no special case and their defaults apply.
    """

    def __init__(self, data: object, where: str, source: str, *, present: bool = True) -> None:
        self.where = where
        self.source = source
        self.present = present
        if not isinstance(data, Mapping):
            raise self.error("", "must be a table")
        self._data: Mapping[str, Any] = data
        self._read: set[str] = set()

    def error(self, key: str, problem: str) -> SimulatedConfigError:
        path = ".".join(part for part in (self.where, key) if part) or "top level"
        return SimulatedConfigError(f"{self.source}: {path}: {problem}")

    def value(self, key: str, default: Any = _REQUIRED) -> Any:
        self._read.add(key)
        if key in self._data:
            return self._data[key]
        if default is _REQUIRED:
            raise self.error(key, "is required")
        return default

    def finish(self) -> None:
        unknown = sorted(set(self._data) - self._read)
        if unknown:
            raise self.error(unknown[0], "is not a known key")

    def table(self, key: str) -> _Table:
        value = self.value(key, None)
        return _Table(
            {} if value is None else value, self._child(key), self.source, present=value is not None
        )

    def tables(self, key: str) -> list[_Table]:
        value = self.value(key)
        if not isinstance(value, list) or not value:
            raise self.error(key, "must be a non-empty array of tables")
        return [
            _Table(item, f"{self._child(key)}[{i}]", self.source) for i, item in enumerate(value)
        ]

    def _child(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def string(self, key: str) -> str:
        value = self.value(key)
        if not isinstance(value, str):
            raise self.error(key, "must be a string")
        return value

    def optional_string(self, key: str) -> str | None:
        value = self.value(key, None)
        if value is not None and not isinstance(value, str):
            raise self.error(key, "must be a string")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.value(key, default)
        if not isinstance(value, bool):
            raise self.error(key, "must be true or false")
        return value

    def integer(self, key: str, low: int, high: int, *, default: int | None = None) -> int:
        value = self.value(key) if default is None else self.value(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(key, f"must be an integer in {low}..{high}")
        return value

    def number(self, key: str, default: float, *, positive: bool = False) -> float:
        value = self.value(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.error(key, "must be a number of seconds")
        if value < 0 or (positive and value == 0):
            raise self.error(key, "must be positive" if positive else "must not be negative")
        return float(value)

    def ssid(self, key: str, *, required: bool) -> bytes | None:
        """``key`` as UTF-8 text, or ``key_hex`` as raw bytes (exactly one of them)."""
        text = self.optional_string(key)
        hex_text = self.optional_string(f"{key}_hex")
        if text is not None and hex_text is not None:
            raise self.error(key, f"give {key} or {key}_hex, not both")
        if hex_text is not None:
            try:
                raw = bytes.fromhex(hex_text)
            except ValueError:
                raise self.error(f"{key}_hex", "must be hexadecimal") from None
        elif text is not None:
            try:
                raw = text.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate, which JSON can spell
                raise self.error(key, "must be Unicode text") from None
        elif required:
            raise self.error(key, "is required")
        else:
            return None
        if not 0 < len(raw) <= SSID_MAX:
            raise self.error(key, f"an SSID is 1..{SSID_MAX} bytes")
        return raw

    def security(self, key: str) -> WifiSecurity:
        name = self.string(key)
        if name not in SECURITY_BY_NAME:
            raise self.error(key, "must be one of " + ", ".join(SECURITY_BY_NAME))
        return SECURITY_BY_NAME[name]

    def behaviour(self, key: str, default: AccessPointBehaviour) -> AccessPointBehaviour:
        name = self.value(key, default.value)
        try:
            return AccessPointBehaviour(name)
        except ValueError:
            choices = ", ".join(b.value for b in AccessPointBehaviour)
            raise self.error(key, f"must be one of {choices}") from None

    def ip_address(self, key: str) -> str | None:
        value = self.value(key, None)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(key, "must be an IP address")
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise self.error(key, "must be an IP address") from None

    def credentials(
        self,
        ssid: bytes,
        security: WifiSecurity,
        *,
        passphrase: str | None = None,
        psk: bytes | None = None,
        hidden: bool = False,
    ) -> WifiCredentials:
        try:
            return WifiCredentials(ssid, security, passphrase=passphrase, psk=psk, hidden=hidden)
        except MalformedData as exc:  # its message never carries the secret
            raise self.error("passphrase" if psk is None else "psk_hex", str(exc)) from None


#: Where the simulated device was before a session: its access point and saved network.
_Prior = tuple[SimulatedAccessPoint | None, WifiCredentials | None]


class SimulatedWifi(StagingBackend[_Prior, WifiCredentials]):
    """A device's Wi-Fi in a :class:`SimulatedEnvironment`; staged joins, atomic commits."""

    join_log = "simulated join: %s"

    def __init__(
        self, environment: SimulatedEnvironment, *, state: ProfileStore | None = None
    ) -> None:
        super().__init__()
        self.environment = environment
        self.state = state
        self._present = {ap.bssid: True for ap in environment.access_points}
        self._attempts = dict.fromkeys(self._present, 0)
        self._saved = environment.saved
        self._connected = self._strongest(environment.connected, hidden_ok=True)
        persisted = self._read_state()
        if persisted is not None:
            # A restarted device: its durable profile decides where it comes up.
            self._saved = _decode_state(persisted, self._state_name())
            self._connected = self._auto_join(self._saved)
        self._ip = self._address_of(self._connected)
        self._scan_loop: asyncio.Task[None] | None = None
        self._scans = ScanCache(
            self._scan_once,
            timeout=self.environment.rescan_timeout,
            timeout_error=lambda t: NetworkError(f"no scan results within {t:g} s"),
            name="simulated-wifi",
        )

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        *,
        state: ProfileStore | None = None,
        source: str = "config",
    ) -> SimulatedWifi:
        return cls(parse_environment(config, source=source), state=state)

    @classmethod
    def from_file(cls, path: Path | str, *, state: ProfileStore | None = None) -> SimulatedWifi:
        path = Path(path)
        try:
            with path.open("rb") as file:
                raw = file.read(MAX_TOML_BYTES + 1)
        except OSError as exc:
            raise SimulatedConfigError(f"{path}: cannot read ({exc.strerror})") from exc
        try:
            config = parse_toml(raw)
        except TomlUnreadable as exc:
            raise SimulatedConfigError(f"{path}: {exc}") from None
        return cls.from_config(config, state=state, source=str(path))

    # -- what tests and demos look at --------------------------------------------------

    @property
    def current_ssid(self) -> bytes | None:
        return self._connected.ssid if self._connected else None

    @property
    def current_bssid(self) -> str | None:
        return self._connected.bssid if self._connected else None

    @property
    def ip_address(self) -> str | None:
        return self._ip

    @property
    def saved_credentials(self) -> WifiCredentials | None:
        return self._saved

    def set_access_point_present(self, bssid: str, present: bool) -> None:
        """Switch an access point on or off; the device drops off one that goes away."""
        bssid = bssid.upper()
        if bssid not in self._present:
            raise ValueError(f"no access point {bssid} in the environment")
        self._present[bssid] = present
        if not present and self._connected is not None and self._connected.bssid == bssid:
            self._connected = None
            self._ip = None

    # -- NetworkBackend ----------------------------------------------------------------

    async def start(self) -> None:
        if self._scan_loop is None:
            self._scan_loop = asyncio.create_task(self._scan_forever(), name="simulated-wifi-scan")

    async def close(self) -> None:
        scan_loop, self._scan_loop = self._scan_loop, None
        await self._stop_scanning(scan_loop)

    async def _snapshot(self) -> _Prior:
        return (self._connected, self._saved)

    async def _join(
        self, credentials: WifiCredentials, timeout: float, *, keep_failed: bool = False
    ) -> JoinOutcome:
        # One radio: joining leaves the current network.
        self._connected = None
        self._ip = None
        self._staged = credentials
        try:
            async with asyncio.timeout(timeout):
                return await self._associate(credentials)
        except TimeoutError:
            return Failed(JoinFailure.TIMEOUT, f"not connected within {timeout:g} s")

    async def _undo_join(self, staged: WifiCredentials) -> None:
        """Nothing to undo in the access points: :meth:`_return_to` moves the device back."""

    async def _keep(self, staged: WifiCredentials, prior: _Prior | None, *, joined: bool) -> None:
        if self.state is not None:
            try:
                self.state.save(_encode_state(staged))
            except (OSError, BleprovError) as exc:
                raise NetworkError(
                    f"cannot save the simulated device state to {self._state_name()}: "
                    f"{type(exc).__name__}"
                ) from exc
        self._saved = staged

    async def _return_to(self, prior: _Prior) -> None:
        connected, self._saved = prior
        if connected is not None and not self._present[connected.bssid]:
            connected = None  # it went away meanwhile: nothing to come back to
        self._connected = connected
        self._ip = self._address_of(connected)

    # -- joining -----------------------------------------------------------------------

    async def _associate(self, credentials: WifiCredentials) -> JoinOutcome:
        ap = self._strongest(credentials.ssid, hidden_ok=credentials.hidden)
        if ap is None:
            return Failed(JoinFailure.NETWORK_NOT_FOUND, "no access point of that name in range")
        await asyncio.sleep(ap.join_delay)
        refused = _check_security(ap, credentials)
        if refused is not None:
            return refused
        self._attempts[ap.bssid] += 1
        behaviour = (
            ap.fail_first_with if self._attempts[ap.bssid] <= ap.fail_first else ap.behaviour
        )
        if behaviour is AccessPointBehaviour.TIMEOUT:
            await asyncio.Event().wait()  # never set: the caller's timeout ends this
        if behaviour is AccessPointBehaviour.REJECT:
            return Failed(JoinFailure.OTHER, "the access point refused the association")
        if behaviour is AccessPointBehaviour.DHCP_FAILED:
            return Failed(JoinFailure.DHCP_FAILED, "associated, but DHCP did not answer")
        self._connected = ap
        self._ip = self._address_of(ap)
        assert self._ip is not None
        return Connected(self._ip)

    def _strongest(self, ssid: bytes | None, *, hidden_ok: bool) -> SimulatedAccessPoint | None:
        candidates = [
            ap
            for ap in self.environment.access_points
            if ap.ssid == ssid and self._present[ap.bssid] and (hidden_ok or not ap.hidden)
        ]
        return max(candidates, key=lambda ap: ap.rssi, default=None)

    def _auto_join(self, saved: WifiCredentials | None) -> SimulatedAccessPoint | None:
        if saved is None:
            return None
        ap = self._strongest(saved.ssid, hidden_ok=saved.hidden)
        if ap is None or _check_security(ap, saved) is not None:
            return None
        return ap

    def _address_of(self, ap: SimulatedAccessPoint | None) -> str | None:
        if ap is None:
            return None
        return ap.ip_address or self.environment.ip_address

    def _read_state(self) -> bytes | None:
        if self.state is None:
            return None
        try:
            return self.state.load()
        except (OSError, BleprovError) as exc:
            raise SimulatedConfigError(
                f"{self._state_name()}: cannot read ({type(exc).__name__})"
            ) from exc

    def _state_name(self) -> str:
        """The state store as error messages name it: its file, if it has one."""
        return str(getattr(self.state, "path", None) or type(self.state).__name__)

    def _require_started(self) -> None:
        if self._scan_loop is None:
            raise NetworkError("the simulated Wi-Fi is not started (call start() first)")

    # -- scanning ----------------------------------------------------------------------

    async def _scan_once(self) -> list[ScanResult]:
        await asyncio.sleep(self.environment.scan_duration)
        results = scan_results_of(
            ap for ap in self.environment.access_points if self._present[ap.bssid]
        )
        return results

    async def _scan_forever(self) -> None:
        while True:
            if not self._joining:  # a scan would stall an association on a real radio
                await self._scans.current()
            await asyncio.sleep(self.environment.scan_interval)


def _check_security(ap: SimulatedAccessPoint, credentials: WifiCredentials) -> Failed | None:
    """Why the access point turns these credentials away, or None if it takes them."""
    if ap.security is WifiSecurity.OPEN:
        if credentials.security is WifiSecurity.OPEN:
            return None
        return Failed(JoinFailure.OTHER, "the network is open; it takes no passphrase")
    if credentials.security is WifiSecurity.OPEN:
        return Failed(JoinFailure.WRONG_PASSWORD, "the network needs a passphrase")
    assert ap.passphrase is not None
    via_psk = credentials.security in _USES_PSK and ap.security in _USES_PSK
    via_sae = (
        credentials.security in _USES_SAE
        and ap.security in _USES_SAE
        and credentials.passphrase is not None
    )
    if not (via_psk or via_sae):
        return Failed(
            JoinFailure.OTHER,
            f"security mismatch: the network uses {NAME_BY_SECURITY[ap.security]}",
        )
    if credentials.passphrase is not None:
        accepted = hmac.compare_digest(credentials.passphrase.encode(), ap.passphrase.encode())
    else:
        assert credentials.psk is not None
        accepted = hmac.compare_digest(credentials.psk, wpa_psk(ap.passphrase, ap.ssid))
    return None if accepted else Failed(JoinFailure.WRONG_PASSWORD, "authentication failed")


def _encode_state(saved: WifiCredentials) -> bytes:
    profile = {
        "ssid_hex": saved.ssid.hex(),
        "security": NAME_BY_SECURITY[saved.security],
        "passphrase": saved.passphrase,
        "psk_hex": saved.psk.hex() if saved.psk is not None else None,
        "hidden": saved.hidden,
    }
    document = {"format": STATE_FORMAT, "version": STATE_VERSION, "saved": profile}
    return json.dumps(document, indent=2, sort_keys=True).encode("utf-8") + b"\n"


def _decode_state(data: bytes, source: str) -> WifiCredentials | None:
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        # JSONDecodeError and UnicodeDecodeError are ValueErrors, and so is an integer
        # longer than Python converts; nesting a few thousand deep recurses too far.
        raise SimulatedConfigError(f"{source}: not a JSON state file") from None
    if not isinstance(document, dict):
        raise SimulatedConfigError(f"{source}: not a JSON state file")
    top = _Table(document, "", source)
    if top.string("format") != STATE_FORMAT:
        raise top.error("format", f"must be {STATE_FORMAT!r}")
    top.integer("version", STATE_VERSION, STATE_VERSION)
    saved = top.value("saved")
    top.finish()
    if saved is None:
        return None
    if not isinstance(saved, dict):
        raise top.error("saved", "must be an object or null")
    # A JSON null is an absent key to the TOML-shaped reader.
    return _credentials(_Table({k: v for k, v in saved.items() if v is not None}, "saved", source))


def scan_results_of(access_points: Iterable[SimulatedAccessPoint]) -> list[ScanResult]:
    """What a scan of these access points shows: the visible ones, strongest first."""
    visible = (ap.scan_result() for ap in access_points if not ap.hidden)
    return sorted(visible, key=lambda result: result.rssi, reverse=True)
