"""NetworkManager over D-Bus (dbus-fast): the Wi-Fi backend of a device that runs NM.

The Wi-Fi key never rests in NetworkManager's configuration. Profiles are created in memory
only (``AddAndActivateConnection2`` with ``{"persist": "memory"}``; before NetworkManager
1.16, ``Settings.AddConnectionUnsaved`` + ``ActivateConnection``) and never ``Save()``-d, so
nothing reaches ``/etc/NetworkManager/system-connections``. Their key is *agent-owned*
(``psk-flags`` 1) and absent from the profile: this backend registers as NetworkManager's
secret agent and hands the key over only when NetworkManager itself asks (``GetSecrets``,
checked to come from NetworkManager's bus name), so NetworkManager writes it to no keyfile,
not even the in-memory profiles' under ``/run``. The device's encrypted store is the one
place it rests; :meth:`NetworkManagerWifi.restore` re-applies it at every start. Agent-owned
rather than NetworkManager-owned (``psk-flags`` 0) because an in-memory profile still lands
in ``/run/NetworkManager/system-connections`` with its key; the cost is that NetworkManager
can re-authenticate only while the daemon runs, which is when the device is in service.

:meth:`NetworkManagerWifi.commit` keeps the staged profile and deletes the one an earlier
enrolment kept; rollback deletes the staged profile and re-activates the connection that
was active before the first join of the session. Profiles carry no SSID in their name
(NetworkManager logs profile names).

Scans are requested in the background (``Device.Wireless.RequestScan``, completion seen as
a change of ``LastScan``) and served from a cache, so a slow scan (13 s on a Raspberry Pi)
never holds up the BLE link. Join outcomes come from the active connection's ``State`` and
the device's ``StateChanged`` reason (see :data:`FAILURE_FOR_REASON`).

Passphrases travel only in answers to NetworkManager's ``GetSecrets``; they are never logged
and never part of an error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import logging
import os
import socket
import struct
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusFastError
from dbus_fast.validators import is_object_path_valid

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

# The one channel table, kept in the backend without third-party imports.
from bleprov.network.wpa_supplicant import channel_of_frequency

logger = logging.getLogger(__name__)

NM_SERVICE: Final = "org.freedesktop.NetworkManager"
NM_PATH: Final = "/org/freedesktop/NetworkManager"
NM_IFACE: Final = NM_SERVICE
SETTINGS_PATH: Final = NM_PATH + "/Settings"
SETTINGS_IFACE: Final = NM_IFACE + ".Settings"
CONNECTION_IFACE: Final = SETTINGS_IFACE + ".Connection"
DEVICE_IFACE: Final = NM_IFACE + ".Device"
WIRELESS_IFACE: Final = DEVICE_IFACE + ".Wireless"
ACCESS_POINT_IFACE: Final = NM_IFACE + ".AccessPoint"
ACTIVE_IFACE: Final = NM_IFACE + ".Connection.Active"
IP4_IFACE: Final = NM_IFACE + ".IP4Config"
IP6_IFACE: Final = NM_IFACE + ".IP6Config"
PROPERTIES_IFACE: Final = "org.freedesktop.DBus.Properties"
AGENT_MANAGER_PATH: Final = NM_PATH + "/AgentManager"
AGENT_MANAGER_IFACE: Final = NM_IFACE + ".AgentManager"
#: Where NetworkManager calls a secret agent (on the bus name that registered it).
SECRET_AGENT_PATH: Final = NM_PATH + "/SecretAgent"
SECRET_AGENT_IFACE: Final = NM_IFACE + ".SecretAgent"
AGENT_IDENTIFIER: Final = "org.bleprov.device"
WIFI_SECURITY: Final = "802-11-wireless-security"
#: NMSettingSecretFlags: the secret belongs to an agent; NetworkManager stores it nowhere.
SECRET_FLAG_AGENT_OWNED: Final = 0x1
#: NMSecretAgentGetSecretsFlags: the key given before was refused.
GET_SECRETS_REQUEST_NEW: Final = 0x2
_AGENT_NO_SECRETS: Final = SECRET_AGENT_IFACE + ".NoSecrets"
_AGENT_PERMISSION_DENIED: Final = SECRET_AGENT_IFACE + ".PermissionDenied"
_AGENT_INVALID_CONNECTION: Final = SECRET_AGENT_IFACE + ".InvalidConnection"
DBUS_DEFAULT_SYSTEM_BUS: Final = "unix:path=/var/run/dbus/system_bus_socket"

DEVICE_TYPE_WIFI: Final = 2
DEVICE_STATE_NEED_AUTH: Final = 60
DEVICE_STATE_FAILED: Final = 120
#: How often a wait re-reads state in case a signal was missed.
POLL_INTERVAL: Final = 0.25

_NO_SERVICE_ERRORS: Final = frozenset(
    {"org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner"}
)
_UNKNOWN_METHOD: Final = "org.freedesktop.DBus.Error.UnknownMethod"
#: NetworkManager turned the profile itself down (a bad setting), not the network.
_PROFILE_REJECTED: Final = frozenset(
    {
        "org.freedesktop.NetworkManager.Settings.Connection.InvalidProperty",
        "org.freedesktop.NetworkManager.Settings.Connection.InvalidSetting",
        "org.freedesktop.NetworkManager.Settings.Connection.MissingProperty",
        "org.freedesktop.NetworkManager.Settings.Connection.MissingSetting",
        "org.freedesktop.NetworkManager.Device.IncompatibleConnection",
    }
)


class ActiveState(enum.IntEnum):
    """NMActiveConnectionState."""

    UNKNOWN = 0
    ACTIVATING = 1
    ACTIVATED = 2
    DEACTIVATING = 3
    DEACTIVATED = 4


class DeviceStateReason(enum.IntEnum):
    """The NMDeviceStateReason values a Wi-Fi join can end with (nm-dbus-interface.h)."""

    NONE = 0
    UNKNOWN = 1
    CONFIG_FAILED = 4
    IP_CONFIG_UNAVAILABLE = 5
    IP_CONFIG_EXPIRED = 6
    NO_SECRETS = 7
    SUPPLICANT_DISCONNECT = 8
    SUPPLICANT_CONFIG_FAILED = 9
    SUPPLICANT_FAILED = 10
    SUPPLICANT_TIMEOUT = 11
    DHCP_START_FAILED = 15
    DHCP_ERROR = 16
    DHCP_FAILED = 17
    REMOVED = 36
    CONNECTION_REMOVED = 38
    USER_REQUESTED = 39
    SSID_NOT_FOUND = 53


#: Device failure reasons as join outcomes; any other reason is JoinFailure.OTHER.
FAILURE_FOR_REASON: Final[Mapping[int, JoinFailure]] = {
    # The supplicant gave up on the key: NM then asks for new secrets, and without a secret
    # agent (a headless device) fails with NO_SECRETS.
    DeviceStateReason.NO_SECRETS: JoinFailure.WRONG_PASSWORD,
    DeviceStateReason.SUPPLICANT_DISCONNECT: JoinFailure.WRONG_PASSWORD,
    DeviceStateReason.SUPPLICANT_CONFIG_FAILED: JoinFailure.WRONG_PASSWORD,
    DeviceStateReason.SUPPLICANT_FAILED: JoinFailure.WRONG_PASSWORD,
    DeviceStateReason.SUPPLICANT_TIMEOUT: JoinFailure.TIMEOUT,
    DeviceStateReason.SSID_NOT_FOUND: JoinFailure.NETWORK_NOT_FOUND,
    # DHCP that never answers ends in IP_CONFIG_UNAVAILABLE on current NetworkManager.
    DeviceStateReason.IP_CONFIG_UNAVAILABLE: JoinFailure.DHCP_FAILED,
    DeviceStateReason.IP_CONFIG_EXPIRED: JoinFailure.DHCP_FAILED,
    DeviceStateReason.DHCP_START_FAILED: JoinFailure.DHCP_FAILED,
    DeviceStateReason.DHCP_ERROR: JoinFailure.DHCP_FAILED,
    DeviceStateReason.DHCP_FAILED: JoinFailure.DHCP_FAILED,
}

# NM80211ApFlags / NM80211ApSecurityFlags
_AP_FLAG_PRIVACY: Final = 0x1
_KEY_MGMT_PSK: Final = 0x100
_KEY_MGMT_SAE: Final = 0x400


class NetworkManagerError(NetworkError):
    """NetworkManager refused a request; ``name`` is the D-Bus error name."""

    def __init__(self, message: str, name: str = "") -> None:
        super().__init__(message)
        self.name = name


class NetworkManagerUnavailable(NetworkManagerError):
    """No system bus, no NetworkManager on it, or no Wi-Fi device it manages."""


def _uint32(value: object) -> int | None:
    """A D-Bus ``u`` as NetworkManager sends it, or None for anything else (a variant of
    another type, a float, a bool): its replies are checked, not trusted (issue 15)."""
    if type(value) is int and 0 <= value <= 0xFFFFFFFF:
        return value
    return None


#: The most object paths a list in a reply may hold (devices, access points, profiles):
#: far above what a device sees, low enough that a confused reply cannot make us walk
#: millions (each costs a round trip).
MAX_OBJECTS: Final = 1024


def _path(value: object, what: str) -> str:
    """An object path from a reply, checked before it names the next call's object."""
    if not isinstance(value, str) or not is_object_path_valid(value):
        raise NetworkManagerError(f"NetworkManager's {what} is not an object path")
    return value


def _paths(value: object, what: str) -> list[str]:
    """A list of object paths from a reply (at most :data:`MAX_OBJECTS`)."""
    if not isinstance(value, list) or len(value) > MAX_OBJECTS:
        raise NetworkManagerError(f"NetworkManager's {what} are not a list of object paths")
    return [_path(item, what) for item in value]


def failure_for_reason(reason: object) -> Failed:
    """The join outcome of a device that failed with NMDeviceStateReason ``reason``."""
    code = _uint32(reason)
    if code is None:
        return Failed(JoinFailure.OTHER, "NetworkManager gave no device state reason")
    try:
        name = DeviceStateReason(code).name.lower().replace("_", "-")
    except ValueError:
        name = "unlisted"
    failure = FAILURE_FOR_REASON.get(code, JoinFailure.OTHER)
    return Failed(failure, f"NetworkManager device state reason {code} ({name})")


def security_of_access_point(flags: int, wpa_flags: int, rsn_flags: int) -> WifiSecurity | None:
    """What an access point offers, from its ``Flags``/``WpaFlags``/``RsnFlags``.

    None for networks enrolment cannot join: WEP, enterprise (802.1X) and OWE-only.
    """
    psk = bool((wpa_flags | rsn_flags) & _KEY_MGMT_PSK)
    sae = bool(rsn_flags & _KEY_MGMT_SAE)
    if psk and sae:
        return WifiSecurity.WPA2_WPA3_PERSONAL
    if sae:
        return WifiSecurity.WPA3_PERSONAL
    if psk:
        return WifiSecurity.WPA2_PERSONAL
    if wpa_flags == 0 and rsn_flags == 0 and not flags & _AP_FLAG_PRIVACY:
        return WifiSecurity.OPEN
    return None


def dbm_of_strength(percent: int) -> int:
    """Approximate dBm of NM's ``Strength``, inverting its -100..-40 dBm to 0..100 % scale."""
    return round(-100 + 0.6 * max(0, min(100, percent)))


def access_point_scan_result(props: Mapping[str, Any]) -> ScanResult | None:
    """An AccessPoint object's properties (unwrapped) as a scan result, or None."""
    raw_ssid, bssid = props.get("Ssid"), props.get("HwAddress")
    numbers = [
        _uint32(props.get(name, 0 if name == "Flags" else None))
        for name in ("Frequency", "Flags", "WpaFlags", "RsnFlags", "Strength")
    ]
    if not isinstance(raw_ssid, bytes | bytearray | list) or not isinstance(bssid, str):
        return None  # bytes(an int) would allocate that many bytes
    frequency, flags, wpa_flags, rsn_flags, strength = numbers
    if frequency is None or flags is None or wpa_flags is None or rsn_flags is None:
        return None
    if strength is None or not 0 < len(raw_ssid) <= SSID_MAX:
        return None
    try:
        ssid = bytes(raw_ssid)
    except (TypeError, ValueError):
        return None  # a list of other than bytes
    if ssid == bytes(len(ssid)):
        return None  # hidden: no name to show
    bssid = bssid.upper()
    channel = channel_of_frequency(frequency)
    security = security_of_access_point(flags, wpa_flags, rsn_flags)
    rssi = dbm_of_strength(strength)
    if channel is None or security is None:
        return None
    return ScanResult(ssid, bssid, rssi, channel, security)


def connection_settings(
    credentials: WifiCredentials, *, connection_id: str, connection_uuid: str
) -> dict[str, dict[str, Variant]]:
    """The NetworkManager profile for ``credentials``, without the key: it is agent-owned,
    given only in answer to ``GetSecrets`` (see :func:`secret_of`)."""
    wireless = {"ssid": Variant("ay", credentials.ssid), "mode": Variant("s", "infrastructure")}
    if credentials.hidden:
        wireless["hidden"] = Variant("b", True)
    settings = {
        "connection": {
            "id": Variant("s", connection_id),
            "uuid": Variant("s", connection_uuid),
            "type": Variant("s", "802-11-wireless"),
        },
        "802-11-wireless": wireless,
        "ipv4": {"method": Variant("s", "auto")},
        "ipv6": {"method": Variant("s", "auto")},
    }
    if credentials.security is WifiSecurity.OPEN:
        return settings
    # Transition mode joins through WPA2-PSK, which every WPA2/WPA3 access point offers.
    key_mgmt = "sae" if credentials.security is WifiSecurity.WPA3_PERSONAL else "wpa-psk"
    settings[WIFI_SECURITY] = {
        "key-mgmt": Variant("s", key_mgmt),
        "psk-flags": Variant("u", SECRET_FLAG_AGENT_OWNED),
    }
    return settings


def secret_of(credentials: WifiCredentials) -> str | None:
    """The ``psk`` NetworkManager is given for ``credentials`` (None for an open network)."""
    if credentials.security is WifiSecurity.OPEN:
        return None
    if credentials.passphrase is not None:
        return credentials.passphrase
    assert credentials.psk is not None
    return credentials.psk.hex()  # NM takes 64 hex digits as the raw PSK


def address_of_ip_config(props: Mapping[str, Any]) -> str | None:
    """The first address of an IP4Config/IP6Config object's properties (unwrapped)."""
    data = props.get("AddressData")
    for entry in data if isinstance(data, list) else []:
        value = entry.get("address") if isinstance(entry, dict) else None
        address = value.value if isinstance(value, Variant) else value
        if isinstance(address, str):
            with contextlib.suppress(ValueError):
                return str(ipaddress.ip_address(address))
    legacy = props.get("Addresses")
    for entry in legacy if isinstance(legacy, list) else []:
        # The deprecated IPv4 form, [addr, prefix, gw]: a u32 holding the address in
        # network byte order, read in host order.
        packed = _uint32(entry[0]) if isinstance(entry, list) and entry else None
        if packed is not None:
            return socket.inet_ntoa(struct.pack("=I", packed))
    return None


@dataclass(frozen=True)
class _Staged:
    connection: str  # the Settings.Connection path
    active: str  # the Connection.Active path
    uuid: str  # the profile's, which the secret agent answers for


@dataclass(frozen=True)
class _Kept:
    """The profile of the committed (or restored) network."""

    connection: str
    uuid: str


@dataclass(frozen=True)
class _Prior:
    connection: str | None  # the profile that was active before the session, if any


class NetworkManagerWifi(StagingBackend[_Prior, _Staged]):
    """The device's Wi-Fi through NetworkManager (see module doc)."""

    join_log = "joining the network through NetworkManager: %s"
    restore_log = "re-applied the stored network through NetworkManager: %s"
    #: NetworkManager joins a kept profile when its network comes into range.
    keeps_unjoined_restore = True

    def __init__(
        self,
        *,
        interface: str | None = None,
        bus_address: str | None = None,
        scan_interval: float = 30.0,
        rescan_timeout: float = 15.0,
        connection_id_prefix: str = "bleprov",
    ) -> None:
        super().__init__()
        self.interface = interface
        self.bus_address = bus_address
        self.scan_interval = scan_interval
        self.rescan_timeout = rescan_timeout
        self.connection_id_prefix = connection_id_prefix
        self._bus: MessageBus | None = None
        self._device = ""
        self._wakers: set[asyncio.Event] = set()
        self._failure_reason: int | None = None
        self._secrets_refused = False
        self._has_add_and_activate2: bool | None = None
        self._kept: _Kept | None = None
        #: Profile UUID -> its key: what the secret agent gives NetworkManager.
        self._secrets: dict[str, str] = {}
        #: NetworkManager's unique bus name: the only caller the agent answers.
        self._nm_owner: str | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._access_points: dict[bytes, str] = {}  # SSID -> path of its strongest AP
        self._scan_loop: asyncio.Task[None] | None = None
        self._scans = ScanCache(
            self._scan_once,
            timeout=self.rescan_timeout,
            timeout_error=lambda t: NetworkManagerError(
                f"NetworkManager's scan gave no results within {t:g} s"
            ),
            name="nm-wifi",
        )

    @property
    def device_path(self) -> str:
        return self._device

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._bus is not None:
            return
        self._bus = await self._connect()
        try:
            self._device = await self._find_wifi_device()
            self._bus.add_message_handler(self._on_message)
            for rule in self._match_rules():
                await self._call(
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus",
                    "AddMatch",
                    "s",
                    [rule],
                    destination="org.freedesktop.DBus",
                )
            self._nm_owner = await self._name_owner()
            await self._register_agent()
            self._scans.results = await self._read_access_points()  # NM's current list, at once
        except BaseException:
            await self.close()
            raise
        self._scan_loop = asyncio.create_task(self._scan_forever(), name="nm-wifi-scan")

    async def close(self) -> None:
        scan_loop, self._scan_loop = self._scan_loop, None
        await self._stop_scanning(scan_loop)
        for task in list(self._background):
            task.cancel()
        if self._bus is not None and self._nm_owner is not None:
            with contextlib.suppress(NetworkManagerError):
                await self._call(AGENT_MANAGER_PATH, AGENT_MANAGER_IFACE, "Unregister")
        self._secrets.clear()  # the daemon's copy of the key goes with it
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.remove_message_handler(self._on_message)
            bus.disconnect()
            with contextlib.suppress(Exception):
                await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]

    async def _connect(self) -> MessageBus:
        try:
            if self.bus_address is not None:
                return await MessageBus(bus_address=self.bus_address).connect()
            return await MessageBus(bus_type=BusType.SYSTEM).connect()
        except (OSError, DBusFastError) as exc:
            address = self.bus_address or (
                os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or DBUS_DEFAULT_SYSTEM_BUS
            )
            raise NetworkManagerUnavailable(
                f"cannot connect to the D-Bus system bus at {address} "
                f"({type(exc).__name__}: {exc}); NetworkManager is reached over the system bus"
            ) from exc

    async def _find_wifi_device(self) -> str:
        (devices,) = await self._call(NM_PATH, NM_IFACE, "GetDevices", returns=1)
        seen = []
        for path in _paths(devices, "devices"):
            if await self._get(path, DEVICE_IFACE, "DeviceType") != DEVICE_TYPE_WIFI:
                continue
            name = await self._get(path, DEVICE_IFACE, "Interface")
            if self.interface is None or name == self.interface:
                logger.info("NetworkManager Wi-Fi device %s (%s)", name, path)
                return str(path)
            seen.append(str(name))
        wanted = f" named {self.interface!r}" if self.interface else ""
        others = f" (it has {', '.join(seen)})" if seen else ""
        raise NetworkManagerUnavailable(f"NetworkManager manages no Wi-Fi device{wanted}{others}")

    async def _name_owner(self) -> str:
        (owner,) = await self._call(
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "GetNameOwner",
            "s",
            [NM_SERVICE],
            destination="org.freedesktop.DBus",
            returns=1,
        )
        return str(owner)

    async def _register_agent(self) -> None:
        """Register as NetworkManager's secret agent: it asks us for the agent-owned key."""
        try:
            await self._call(
                AGENT_MANAGER_PATH, AGENT_MANAGER_IFACE, "Register", "s", [AGENT_IDENTIFIER]
            )
        except NetworkManagerUnavailable:
            raise
        except NetworkManagerError as exc:
            raise NetworkManagerError(
                f"NetworkManager refused our secret agent ({exc.name}): without it "
                "NetworkManager cannot get the Wi-Fi key (see the polkit rule in "
                "docs/raspberry-pi.md)",
                exc.name,
            ) from exc

    def _network_manager_restarted(self, owner: str) -> None:
        """A new NetworkManager knows no agents: register again (it asks for keys when it
        re-activates the kept profile, which it keeps across its restart)."""
        self._nm_owner = owner or None
        if not owner:
            return

        async def register() -> None:
            try:
                await self._register_agent()
            except NetworkManagerError as exc:
                logger.error("could not register with the restarted NetworkManager: %s", exc)

        task = asyncio.get_running_loop().create_task(register(), name="nm-agent-register")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _match_rules(self) -> list[str]:
        sender = f"type='signal',sender='{NM_SERVICE}'"
        owner_changed = (
            "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
            f"member='NameOwnerChanged',arg0='{NM_SERVICE}'"
        )
        return [
            owner_changed,
            f"{sender},path='{self._device}',interface='{DEVICE_IFACE}',member='StateChanged'",
            f"{sender},path='{self._device}',interface='{PROPERTIES_IFACE}'",
            f"{sender},interface='{ACTIVE_IFACE}',member='StateChanged'",
            f"{sender},interface='{PROPERTIES_IFACE}',member='PropertiesChanged',"
            f"path_namespace='{NM_PATH}/ActiveConnection'",
        ]

    def _on_message(self, message: Message) -> Message | None:
        if message.message_type is MessageType.METHOD_CALL:
            if message.path == SECRET_AGENT_PATH:
                return self._agent_call(message)
            return None
        if message.message_type is not MessageType.SIGNAL:
            return None
        if (
            message.member == "NameOwnerChanged"
            and message.interface == "org.freedesktop.DBus"
            and len(message.body) == 3
            and message.body[0] == NM_SERVICE
        ):
            self._network_manager_restarted(str(message.body[2]))
            return None
        if (
            message.path == self._device
            and message.interface == DEVICE_IFACE
            and message.member == "StateChanged"
            and len(message.body) == 3
        ):
            new_state, _old_state, reason = message.body
            if new_state == DEVICE_STATE_FAILED:
                self._failure_reason = _uint32(reason)
            elif (
                new_state == DEVICE_STATE_NEED_AUTH
                and reason == DeviceStateReason.SUPPLICANT_DISCONNECT
            ):
                # NM asks a secret agent for a new key because this one failed.
                self._secrets_refused = True
        for event in self._wakers:
            event.set()
        return None

    # -- the secret agent --------------------------------------------------------------

    def _agent_call(self, message: Message) -> Message:
        """Answer NetworkManager's SecretAgent calls; anyone else is refused (any root
        process may call an agent, and the key is worth asking for)."""
        if self._nm_owner is None or message.sender != self._nm_owner:
            logger.warning(
                "refused a secret-agent call from %s: not NetworkManager", message.sender
            )
            return Message.new_error(
                message, _AGENT_PERMISSION_DENIED, "only NetworkManager may ask this agent"
            )
        if message.interface not in (SECRET_AGENT_IFACE, None):
            return Message.new_error(message, _UNKNOWN_METHOD, "not a SecretAgent method")
        if message.member == "GetSecrets":
            return self._get_secrets(message)
        if message.member in ("CancelGetSecrets", "SaveSecrets", "DeleteSecrets"):
            # Nothing to cancel (answers are immediate), and nothing is saved here: the
            # device's encrypted store holds the key, and only enrolment changes it.
            return Message.new_method_return(message)
        return Message.new_error(message, _UNKNOWN_METHOD, "not a SecretAgent method")

    def _get_secrets(self, message: Message) -> Message:
        try:
            connection, _path, setting_name, _hints, flags = message.body
            uuid_value = connection["connection"]["uuid"]
            profile_uuid = str(getattr(uuid_value, "value", uuid_value))
            flags = int(flags)
        except (ValueError, TypeError, KeyError):
            return Message.new_error(message, _AGENT_INVALID_CONNECTION, "not a profile")
        secret = self._secrets.get(profile_uuid) if setting_name == WIFI_SECURITY else None
        if secret is None:
            return Message.new_error(message, _AGENT_NO_SECRETS, "no key for this profile")
        if flags & GET_SECRETS_REQUEST_NEW:
            # The supplicant refused the key: there is no other to offer, and refusing
            # makes NetworkManager fail the join at once (NO_SECRETS: a wrong password).
            return Message.new_error(message, _AGENT_NO_SECRETS, "the key was refused")
        return Message.new_method_return(
            message, "a{sa{sv}}", [{WIFI_SECURITY: {"psk": Variant("s", secret)}}]
        )

    @contextlib.contextmanager
    def _waker(self) -> Iterator[asyncio.Event]:
        """An event set whenever a NetworkManager signal we listen to arrives."""
        event = asyncio.Event()
        self._wakers.add(event)
        try:
            yield event
        finally:
            self._wakers.discard(event)

    # -- scanning ----------------------------------------------------------------------

    async def _scan_once(self) -> list[ScanResult]:
        try:
            before = await self._get(self._device, WIRELESS_IFACE, "LastScan")
        except NetworkManagerError:
            before = None  # NetworkManager before 1.12: take the list as it is
        with self._waker() as woken:
            try:
                await self._call(self._device, WIRELESS_IFACE, "RequestScan", "a{sv}", [{}])
            except NetworkManagerError as exc:
                # Refused while activating or scanning already; its list still serves.
                logger.info("NetworkManager did not start a scan (%s)", exc.name)
                before = None
            while before is not None:
                woken.clear()
                if await self._get(self._device, WIRELESS_IFACE, "LastScan") != before:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), POLL_INTERVAL)
        return await self._read_access_points()

    async def _read_access_points(self) -> list[ScanResult]:
        paths = _paths(
            await self._get(self._device, WIRELESS_IFACE, "AccessPoints"), "access points"
        )
        found: list[tuple[ScanResult, str]] = []
        for path in paths:
            try:
                props = await self._get_all(path, ACCESS_POINT_IFACE)
            except NetworkManagerError:
                continue  # it went away while we read the list
            result = access_point_scan_result(props)
            if result is not None:
                found.append((result, str(path)))
        found.sort(key=lambda pair: pair[0].rssi, reverse=True)
        self._access_points = {}
        for result, path in found:
            self._access_points.setdefault(result.ssid, path)
        return [result for result, _ in found]

    async def _scan_forever(self) -> None:
        while True:
            await asyncio.sleep(self.scan_interval)  # start() has just read the list
            if not self._joining:  # NM refuses scans while activating anyway
                try:
                    await self._scans.current()
                except NetworkError as exc:
                    logger.warning("background Wi-Fi scan failed: %s", exc)

    # -- joining -----------------------------------------------------------------------

    async def _snapshot(self) -> _Prior:
        return _Prior(await self._active_profile())

    async def _join(
        self, credentials: WifiCredentials, timeout: float, *, keep_failed: bool = False
    ) -> JoinOutcome:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        profile_uuid = str(uuid.uuid4())
        settings = connection_settings(
            credentials, connection_id=self.connection_id_prefix, connection_uuid=profile_uuid
        )
        secret = secret_of(credentials)
        if secret is not None:
            self._secrets[profile_uuid] = secret  # before NetworkManager can ask for it
        specific = self._access_points.get(credentials.ssid, "/")
        self._failure_reason = None
        self._secrets_refused = False
        with self._waker() as woken:
            try:
                connection, active = await self._add_and_activate(settings, specific)
            except NetworkManagerError as exc:
                self._secrets.pop(profile_uuid, None)
                if exc.name in _PROFILE_REJECTED:
                    return Failed(
                        JoinFailure.OTHER, f"NetworkManager rejected the profile ({exc.name})"
                    )
                raise
            self._staged = _Staged(connection, active, profile_uuid)
            outcome = await self._await_activation(active, woken, deadline, timeout)
        return outcome

    async def _add_and_activate(
        self, settings: dict[str, dict[str, Variant]], specific: str
    ) -> tuple[str, str]:
        if self._has_add_and_activate2 is not False:
            options = {"persist": Variant("s", "memory")}
            try:
                connection, active, _result = await self._call(
                    NM_PATH,
                    NM_IFACE,
                    "AddAndActivateConnection2",
                    "a{sa{sv}}ooa{sv}",
                    [settings, self._device, specific, options],
                    returns=3,
                )
                self._has_add_and_activate2 = True
                return _path(connection, "new profile"), _path(active, "activation")
            except NetworkManagerError as exc:
                if exc.name != _UNKNOWN_METHOD:
                    raise
                logger.info("NetworkManager before 1.16: staging with AddConnectionUnsaved")
                self._has_add_and_activate2 = False
        (added,) = await self._call(
            SETTINGS_PATH,
            SETTINGS_IFACE,
            "AddConnectionUnsaved",
            "a{sa{sv}}",
            [settings],
            returns=1,
        )
        connection = _path(added, "new profile")
        try:
            (active,) = await self._call(
                NM_PATH,
                NM_IFACE,
                "ActivateConnection",
                "ooo",
                [connection, self._device, specific],
                returns=1,
            )
            return connection, _path(active, "activation")
        except NetworkManagerError:
            with contextlib.suppress(NetworkManagerError):
                await self._call(connection, CONNECTION_IFACE, "Delete")
            raise

    async def _await_activation(
        self, active: str, woken: asyncio.Event, deadline: float, timeout: float
    ) -> JoinOutcome:
        loop = asyncio.get_running_loop()
        while True:
            woken.clear()
            state = await self._active_state(active)
            if state is ActiveState.ACTIVATED:
                address = await self._address_of(active)
                if address is None:
                    return Failed(JoinFailure.DHCP_FAILED, "activated without an IP address")
                return Connected(address)
            if state is None or state >= ActiveState.DEACTIVATING:
                return failure_for_reason(await self._failure())
            if self._secrets_refused:
                return Failed(
                    JoinFailure.WRONG_PASSWORD,
                    "NetworkManager asked for new secrets after the supplicant disconnected",
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                return Failed(JoinFailure.TIMEOUT, f"not connected within {timeout:g} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), min(remaining, POLL_INTERVAL))

    async def _active_state(self, active: str) -> ActiveState | None:
        """The active connection's state; None once NetworkManager has removed it."""
        try:
            return ActiveState(await self._get(active, ACTIVE_IFACE, "State"))
        except NetworkManagerError:
            return None
        except ValueError:
            return ActiveState.UNKNOWN

    async def _failure(self) -> int:
        """Why the device failed: the FAILED signal's reason, else its StateReason now."""
        if self._failure_reason is not None:
            return self._failure_reason
        try:
            _state, reason = await self._get(self._device, DEVICE_IFACE, "StateReason")
        except (NetworkManagerError, ValueError, TypeError):
            return DeviceStateReason.UNKNOWN
        code = _uint32(reason)
        return DeviceStateReason.UNKNOWN if code is None else code

    async def _address_of(self, active: str) -> str | None:
        for prop, interface in (("Ip4Config", IP4_IFACE), ("Ip6Config", IP6_IFACE)):
            try:
                path = await self._get(active, ACTIVE_IFACE, prop)
                if path in ("", "/"):
                    continue
                config = await self._get_all(_path(path, prop), interface)
                address = address_of_ip_config(config)
            except NetworkManagerError:
                continue
            if address is not None:
                return address
        return None

    async def _active_profile(self) -> str | None:
        """The Settings.Connection path active on the device, if any."""
        active = await self._get(self._device, DEVICE_IFACE, "ActiveConnection")
        if active in ("", "/"):
            return None
        active = _path(active, "active connection")
        try:
            return _path(await self._get(active, ACTIVE_IFACE, "Connection"), "connection")
        except NetworkManagerError:
            return None  # it went away meanwhile

    async def _keep(self, staged: _Staged, prior: _Prior | None, *, joined: bool) -> None:
        """Keep ``staged``, and forget the network kept before (the store now holds only
        this one). Never Save(): the profile stays in memory, its key with the agent."""
        previous, self._kept = self._kept, _Kept(staged.connection, staged.uuid)
        if previous is not None and previous.connection != staged.connection:
            await self._delete_profile(previous.connection, previous.uuid)

    async def _forget_earlier_runs(self) -> None:
        """Profiles of an earlier run go before a restore: their keys died with that run's
        agent (and versions before this one saved theirs, key included, under ``/etc``)."""
        await self._remove_earlier_profiles()

    def _is_ours(self, settings: object) -> bool:
        connection = settings.get("connection") if isinstance(settings, dict) else None
        if not isinstance(connection, dict):
            return False
        values = {k: getattr(v, "value", v) for k, v in connection.items()}
        name = str(values.get("id", ""))
        return values.get("type") == "802-11-wireless" and (
            name == self.connection_id_prefix or name.startswith(self.connection_id_prefix + " ")
        )

    async def _remove_earlier_profiles(self) -> None:
        profiles = await self._get(SETTINGS_PATH, SETTINGS_IFACE, "Connections")
        for path in _paths(profiles, "profiles"):
            if path == (self._kept.connection if self._kept else None):
                continue
            try:
                (settings,) = await self._call(path, CONNECTION_IFACE, "GetSettings", returns=1)
            except NetworkManagerError:
                continue  # it went away meanwhile
            if self._is_ours(settings):
                await self._delete_profile(str(path), None)

    async def _return_to(self, prior: _Prior) -> None:
        if prior.connection is None:
            return
        if await self._active_profile() == prior.connection:
            return  # NetworkManager went back to it on its own
        await self._call(
            NM_PATH, NM_IFACE, "ActivateConnection", "ooo", [prior.connection, self._device, "/"]
        )

    async def _undo_join(self, staged: _Staged) -> None:
        """Delete the in-memory profile of the last join (which also deactivates it)."""
        await self._delete_profile(staged.connection, staged.uuid)

    async def _delete_profile(self, connection: str, profile_uuid: str | None) -> None:
        if profile_uuid is not None:
            self._secrets.pop(profile_uuid, None)
        try:
            await self._call(connection, CONNECTION_IFACE, "Delete")
        except NetworkManagerError as exc:
            logger.info("profile %s was already gone (%s)", connection, exc.name)

    # -- D-Bus -------------------------------------------------------------------------

    def _require_started(self) -> None:
        if self._bus is None:
            raise NetworkManagerError("the NetworkManager backend is not started (call start())")

    async def _call(
        self,
        path: str,
        interface: str,
        member: str,
        signature: str = "",
        body: Sequence[Any] = (),
        *,
        destination: str = NM_SERVICE,
        returns: int | None = None,
    ) -> list[Any]:
        """Call a method; an error reply raises :class:`NetworkManagerError` (no arguments
        in the message: they may hold a passphrase), and so does a reply of other than
        ``returns`` values when the caller unpacks it."""
        if self._bus is None:
            raise NetworkManagerUnavailable("not connected to the system bus")
        reply = await self._bus.call(
            Message(
                destination=destination,
                path=path,
                interface=interface,
                member=member,
                signature=signature,
                body=list(body),
            )
        )
        if reply.message_type is MessageType.ERROR:
            name = reply.error_name or "unknown"
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            if name in _NO_SERVICE_ERRORS:
                raise NetworkManagerUnavailable(
                    f"NetworkManager is not on the system bus ({name}); is it running?", name
                )
            raise NetworkManagerError(
                f"{interface}.{member} on {path} failed: {name}: {text}", name
            )
        result: list[Any] = reply.body
        if returns is not None and (not isinstance(result, list) or len(result) != returns):
            raise NetworkManagerError(f"{interface}.{member} on {path}: an unexpected reply")
        return result

    async def _get(self, path: str, interface: str, name: str) -> Any:
        (value,) = await self._call(
            path, PROPERTIES_IFACE, "Get", "ss", [interface, name], returns=1
        )
        return value.value if isinstance(value, Variant) else value

    async def _get_all(self, path: str, interface: str) -> dict[str, Any]:
        (values,) = await self._call(path, PROPERTIES_IFACE, "GetAll", "s", [interface], returns=1)
        if not isinstance(values, dict):
            raise NetworkManagerError(f"GetAll {interface} on {path}: not a property map")
        return {k: v.value if isinstance(v, Variant) else v for k, v in values.items()}
