"""A NetworkManager double: Wi-Fi devices, profiles, activations and secret agents.

Modelled on NetworkManager's D-Bus API (the ``org.freedesktop.NetworkManager*.xml``
introspection files, https://networkmanager.dev/docs/api/latest/spec.html, and the
``nm-dbus-interface.h`` enums) as far as bleprov.network.networkmanager uses it:

* ``AddAndActivateConnection2`` with its ``persist`` option (``disk``, the default,
  ``memory`` or ``volatile``), or, before NetworkManager 1.16, ``Settings.AddConnectionUnsaved``
  and ``ActivateConnection``; also ``AddConnection``/``AddConnection2`` (``TO_DISK`` or
  ``IN_MEMORY``) and a profile's ``Update``/``UpdateUnsaved``/``Update2``, ``Save`` and
  ``Delete``. ``GetSettings`` answers without secrets, as NetworkManager does.
* Activations take time and end as NetworkManager's do: the active connection
  ``ACTIVATED`` with an ``IP4Config``, or the device ``FAILED`` with a state reason (wrong
  key, SSID not found, DHCP) and the active connection removed. What happens is decided
  by the air the test sets up (``SetNetwork``).
* Agent-owned secrets (``psk-flags`` 1) are asked of the secret agents registered with the
  ``AgentManager``, over the bus: ``GetSecrets`` when the activation needs the key, again
  with ``REQUEST_NEW`` when the key was refused.
* ``Device.Wireless.RequestScan`` takes time (``SetScanDelay``) and moves ``LastScan``.

Test-only controls (the air, access points, a reboot, and what NetworkManager was asked to
keep: ``SaveCalls``, ``GivenSecrets``, ``DiskConnections``) are on
:data:`~tests.dbus_doubles.common.TEST_IFACE` at ``/org/freedesktop``. Not modelled: agents
dropped when their owner leaves the bus (a test sees whether bleprov unregisters), and
auto-activation after a reboot.
"""

import itertools
import socket
import struct
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Final

from dbus_fast import DBusError, Variant
from dbus_fast.annotations import (
    DBusBool,
    DBusByte,
    DBusDict,
    DBusInt64,
    DBusObjectPath,
    DBusSignature,
    DBusStr,
    DBusUInt32,
)
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property, dbus_signal

from bleprov.network.simulated import wpa_psk
from tests.dbus_doubles.common import (
    TEST_IFACE,
    Daemon,
    NoReply,
    Paths,
    Profile,
    Strings,
    caller,
)

NM_SERVICE: Final = "org.freedesktop.NetworkManager"
NM_PATH: Final = "/org/freedesktop/NetworkManager"
NM_IFACE: Final = NM_SERVICE
CONTROLS_PATH: Final = "/org/freedesktop"
SETTINGS_PATH: Final = NM_PATH + "/Settings"
SETTINGS_IFACE: Final = NM_IFACE + ".Settings"
CONNECTION_IFACE: Final = SETTINGS_IFACE + ".Connection"
DEVICE_IFACE: Final = NM_IFACE + ".Device"
WIRELESS_IFACE: Final = DEVICE_IFACE + ".Wireless"
WIRED_IFACE: Final = DEVICE_IFACE + ".Wired"
ACCESS_POINT_IFACE: Final = NM_IFACE + ".AccessPoint"
ACTIVE_IFACE: Final = NM_IFACE + ".Connection.Active"
IP4_IFACE: Final = NM_IFACE + ".IP4Config"
AGENT_MANAGER_PATH: Final = NM_PATH + "/AgentManager"
AGENT_MANAGER_IFACE: Final = NM_IFACE + ".AgentManager"
SECRET_AGENT_PATH: Final = NM_PATH + "/SecretAgent"
SECRET_AGENT_IFACE: Final = NM_IFACE + ".SecretAgent"
SECURITY: Final = "802-11-wireless-security"

#: SetNetwork outcomes beyond a device state reason: the activation never finishes, or
#: the supplicant disconnects and NetworkManager wants new secrets (NEED_AUTH).
NEVER: Final = 0xFFFFFFFF
NEED_AUTH: Final = 0xFFFFFFFE

# NMDeviceType, NMDeviceState, NMDeviceStateReason, NMActiveConnectionState
DEVICE_TYPE_ETHERNET: Final = 1
DEVICE_TYPE_WIFI: Final = 2
STATE_DISCONNECTED: Final = 30
STATE_CONFIG: Final = 50
STATE_NEED_AUTH: Final = 60
STATE_ACTIVATED: Final = 100
STATE_FAILED: Final = 120
REASON_NONE: Final = 0
REASON_NO_SECRETS: Final = 7
REASON_SUPPLICANT_DISCONNECT: Final = 8
REASON_CONNECTION_REMOVED: Final = 38
REASON_SSID_NOT_FOUND: Final = 53
ACTIVE_ACTIVATING: Final = 1
ACTIVE_ACTIVATED: Final = 2
ACTIVE_DEACTIVATED: Final = 4
# NMSettingSecretFlags, NMSecretAgentGetSecretsFlags, NMSettingsConnectionFlags
SECRET_AGENT_OWNED: Final = 0x1
ALLOW_INTERACTION: Final = 0x1
REQUEST_NEW: Final = 0x2
CONNECTION_FLAG_UNSAVED: Final = 0x1
CONNECTION_FLAG_VOLATILE: Final = 0x4
# NMSettingsAddConnection2Flags, NMSettingsUpdate2Flags
ADD_TO_DISK: Final = 0x1
ADD_IN_MEMORY: Final = 0x2
UPDATE_TO_DISK: Final = 0x1
UPDATE_IN_MEMORY_ANY: Final = 0x2 | 0x4 | 0x8
UPDATE_VOLATILE: Final = 0x10
# NM80211ApFlags
AP_PRIVACY: Final = 0x1

AddressData = Annotated[list[dict[str, Variant]], DBusSignature("aa{sv}")]
Addresses = Annotated[list[list[int]], DBusSignature("aau")]
StateReason = Annotated[tuple[int, int], DBusSignature("(uu)")]
Requests = Annotated[list[tuple[str, int]], DBusSignature("a(su)")]
AddActivateResult = Annotated[tuple[str, str, dict[str, Variant]], DBusSignature("ooa{sv}")]
AddResult = Annotated[tuple[str, dict[str, Variant]], DBusSignature("oa{sv}")]
Ssid = Annotated[bytes, DBusSignature("ay")]


def _error(interface: str, name: str, text: str) -> DBusError:
    return DBusError(f"{interface}.{name}", text)


def _value(settings: dict[str, dict[str, Variant]], section: str, key: str) -> Any:
    entry = settings.get(section, {}).get(key)
    return None if entry is None else entry.value


def without_secrets(settings: dict[str, dict[str, Variant]]) -> dict[str, dict[str, Variant]]:
    """A profile as ``GetSettings`` answers (and ``GetSecrets`` is sent): no ``psk``."""
    return {
        name: {k: v for k, v in section.items() if k != "psk"} for name, section in settings.items()
    }


def key_matches(secret: str, passphrase: str, ssid: bytes) -> bool:
    """Whether the supplicant would accept ``secret`` (a passphrase or 64 hex digits)."""
    if secret == passphrase:
        return True
    try:
        return len(secret) == 64 and bytes.fromhex(secret) == wpa_psk(passphrase, ssid)
    except ValueError:
        return False


@dataclass
class Network:
    """A network in the air: its passphrase ("" for open), how joining it ends (0: an
    address; else a device state reason, :data:`NEVER` or :data:`NEED_AUTH`), when."""

    passphrase: str
    outcome: int
    delay: float
    address: str


class AccessPoint(ServiceInterface):
    """``org.freedesktop.NetworkManager.AccessPoint``."""

    def __init__(self, ssid: bytes, bssid: str, mhz: int, strength: int, security: int) -> None:
        super().__init__(ACCESS_POINT_IFACE)
        self.ssid, self.bssid, self.mhz = ssid, bssid, mhz
        self.strength, self.security = strength, security

    @dbus_property(access=PropertyAccess.READ)
    def Ssid(self) -> Ssid:
        return self.ssid

    @dbus_property(access=PropertyAccess.READ)
    def HwAddress(self) -> DBusStr:
        return self.bssid

    @dbus_property(access=PropertyAccess.READ)
    def Frequency(self) -> DBusUInt32:
        return self.mhz

    @dbus_property(access=PropertyAccess.READ)
    def Strength(self) -> DBusByte:
        return self.strength

    @dbus_property(access=PropertyAccess.READ)
    def Flags(self) -> DBusUInt32:
        return AP_PRIVACY if self.security else 0

    @dbus_property(access=PropertyAccess.READ)
    def WpaFlags(self) -> DBusUInt32:
        return 0

    @dbus_property(access=PropertyAccess.READ)
    def RsnFlags(self) -> DBusUInt32:
        return self.security

    @dbus_property(access=PropertyAccess.READ)
    def Mode(self) -> DBusUInt32:
        return 2  # NM_802_11_MODE_INFRA

    @dbus_property(access=PropertyAccess.READ)
    def MaxBitrate(self) -> DBusUInt32:
        return 54000


class Device(ServiceInterface):
    """``org.freedesktop.NetworkManager.Device``: state, its reason, the active connection."""

    def __init__(self, interface: str, device_type: int) -> None:
        super().__init__(DEVICE_IFACE)
        self.interface = interface
        self.device_type = device_type
        self.state = STATE_DISCONNECTED
        self.reason = REASON_NONE
        self.active = "/"

    def set_state(self, state: int, reason: int) -> None:
        old, self.state, self.reason = self.state, state, reason
        self.emit_properties_changed({"State": state, "StateReason": (state, reason)})
        self.StateChanged(state, old, reason)

    def set_active(self, active: str) -> None:
        self.active = active
        self.emit_properties_changed({"ActiveConnection": active})

    @dbus_signal()
    def StateChanged(
        self, new: int, old: int, reason: int
    ) -> Annotated[tuple[int, int, int], DBusSignature("uuu")]:
        return (new, old, reason)

    @dbus_property(access=PropertyAccess.READ)
    def Interface(self) -> DBusStr:
        return self.interface

    @dbus_property(access=PropertyAccess.READ)
    def DeviceType(self) -> DBusUInt32:
        return self.device_type

    @dbus_property(access=PropertyAccess.READ)
    def State(self) -> DBusUInt32:
        return self.state

    @dbus_property(access=PropertyAccess.READ)
    def StateReason(self) -> StateReason:
        return (self.state, self.reason)

    @dbus_property(access=PropertyAccess.READ)
    def ActiveConnection(self) -> DBusObjectPath:
        return self.active

    @dbus_property(access=PropertyAccess.READ)
    def Managed(self) -> DBusBool:
        return True


class Wireless(ServiceInterface):
    """``org.freedesktop.NetworkManager.Device.Wireless``: access points and scans."""

    def __init__(self, nm: "FakeNetworkManager") -> None:
        super().__init__(WIRELESS_IFACE)
        self.nm = nm
        self.access_points: list[str] = []
        self.last_scan = -1  # never scanned

    def add_access_point(self, path: str) -> None:
        self.access_points.append(path)
        self.emit_properties_changed({"AccessPoints": self.access_points})
        self.AccessPointAdded(path)

    @dbus_signal()
    def AccessPointAdded(self, path: str) -> DBusObjectPath:
        return path

    @dbus_method()
    def RequestScan(self, options: DBusDict) -> NoReply:
        self.nm.scans += 1

        async def done() -> None:
            # CLOCK_BOOTTIME milliseconds in NetworkManager; anything that moves will do.
            self.last_scan = max(self.last_scan + 1, int(time.monotonic() * 1000))
            self.emit_properties_changed({"LastScan": self.last_scan})

        self.nm.later(self.nm.scan_delay, done)

    @dbus_method()
    def GetAllAccessPoints(self) -> Paths:
        return list(self.access_points)

    @dbus_property(access=PropertyAccess.READ)
    def AccessPoints(self) -> Paths:
        return list(self.access_points)

    @dbus_property(access=PropertyAccess.READ)
    def LastScan(self) -> DBusInt64:
        return self.last_scan


class Wired(ServiceInterface):
    """``org.freedesktop.NetworkManager.Device.Wired`` (present so a device has a type)."""

    def __init__(self) -> None:
        super().__init__(WIRED_IFACE)

    @dbus_property(access=PropertyAccess.READ)
    def Carrier(self) -> DBusBool:
        return True


class IP4Config(ServiceInterface):
    """``org.freedesktop.NetworkManager.IP4Config`` with one /24 address."""

    def __init__(self, address: str) -> None:
        super().__init__(IP4_IFACE)
        self.address = address

    @dbus_property(access=PropertyAccess.READ)
    def AddressData(self) -> AddressData:
        return [{"address": Variant("s", self.address), "prefix": Variant("u", 24)}]

    @dbus_property(access=PropertyAccess.READ)
    def Addresses(self) -> Addresses:
        packed: int = struct.unpack("=I", socket.inet_aton(self.address))[0]
        return [[packed, 24, 0]]


class ActiveConnection(ServiceInterface):
    """``org.freedesktop.NetworkManager.Connection.Active``."""

    def __init__(self, connection: str, device: str, specific: str, settings: Profile) -> None:
        super().__init__(ACTIVE_IFACE)
        self.connection, self.device, self.specific = connection, device, specific
        self.id = str(_value(settings, "connection", "id"))
        self.uuid = str(_value(settings, "connection", "uuid"))
        self.state = ACTIVE_ACTIVATING
        self.ip4 = "/"

    def set_state(self, state: int, reason: int = 0) -> None:
        self.state = state
        self.emit_properties_changed({"State": state})
        self.StateChanged(state, reason)

    def set_ip4(self, path: str) -> None:
        self.ip4 = path
        self.emit_properties_changed({"Ip4Config": path})

    @dbus_signal()
    def StateChanged(
        self, state: int, reason: int
    ) -> Annotated[tuple[int, int], DBusSignature("uu")]:
        return (state, reason)

    @dbus_property(access=PropertyAccess.READ)
    def Connection(self) -> DBusObjectPath:
        return self.connection

    @dbus_property(access=PropertyAccess.READ)
    def Devices(self) -> Paths:
        return [self.device]

    @dbus_property(access=PropertyAccess.READ)
    def SpecificObject(self) -> DBusObjectPath:
        return self.specific

    @dbus_property(access=PropertyAccess.READ)
    def Id(self) -> DBusStr:
        return self.id

    @dbus_property(access=PropertyAccess.READ)
    def Uuid(self) -> DBusStr:
        return self.uuid

    @dbus_property(access=PropertyAccess.READ)
    def Type(self) -> DBusStr:
        return "802-11-wireless"

    @dbus_property(access=PropertyAccess.READ)
    def State(self) -> DBusUInt32:
        return self.state

    @dbus_property(access=PropertyAccess.READ)
    def Ip4Config(self) -> DBusObjectPath:
        return self.ip4

    @dbus_property(access=PropertyAccess.READ)
    def Ip6Config(self) -> DBusObjectPath:
        return "/"


class Connection(ServiceInterface):
    """``org.freedesktop.NetworkManager.Settings.Connection``: a profile, in memory or on
    disk (``persist`` is ``disk``, ``memory`` or ``volatile``)."""

    def __init__(self, nm: "FakeNetworkManager", path: str, settings: Profile, persist: str):
        super().__init__(CONNECTION_IFACE)
        self.nm = nm
        self.path = path
        self.settings = settings
        self.persist = persist
        #: Length of the key the supplicant was last given (64: a raw PSK in hex).
        self.key_length = 0

    def set_persist(self, persist: str) -> None:
        self.persist = persist
        if persist == "disk":
            self.nm.disk.add(self.path)
        else:
            self.nm.disk.discard(self.path)
        self.emit_properties_changed({"Unsaved": self.unsaved, "Flags": self.flags})

    @property
    def unsaved(self) -> bool:
        return self.persist != "disk"

    @property
    def flags(self) -> int:
        if self.persist == "volatile":
            return CONNECTION_FLAG_UNSAVED | CONNECTION_FLAG_VOLATILE
        return CONNECTION_FLAG_UNSAVED if self.unsaved else 0

    def _update(self, settings: Profile) -> None:
        if settings:
            self.nm.given.append(settings)
            self.settings = settings
            self.Updated()

    @dbus_method()
    def GetSettings(self) -> Profile:
        return without_secrets(self.settings)

    @dbus_method()
    def Update(self, settings: Profile) -> NoReply:
        """Replace the profile and write it to disk."""
        self._update(settings)
        self.nm.saves.append(f"Update {self.path}")
        self.set_persist("disk")

    @dbus_method()
    def UpdateUnsaved(self, settings: Profile) -> NoReply:
        self._update(settings)
        self.set_persist("memory")

    @dbus_method()
    def Update2(self, settings: Profile, flags: DBusUInt32, args: DBusDict) -> DBusDict:
        """Replace the profile (if given); ``TO_DISK`` writes it, the ``IN_MEMORY`` flags
        keep it in memory, neither leaves it where it is."""
        if flags & UPDATE_TO_DISK and flags & (UPDATE_IN_MEMORY_ANY | UPDATE_VOLATILE):
            raise _error(SETTINGS_IFACE, "InvalidArguments", "conflicting flags")
        self._update(settings)
        if flags & UPDATE_TO_DISK:
            self.nm.saves.append(f"Update2 {self.path}")
            self.set_persist("disk")
        elif flags & UPDATE_VOLATILE:
            self.set_persist("volatile")
        elif flags & UPDATE_IN_MEMORY_ANY:
            self.set_persist("memory")
        return {}

    @dbus_method()
    def Save(self) -> NoReply:
        """Write the profile (and a key NetworkManager owns) to disk."""
        self.nm.saves.append(f"Save {self.path}")
        self.set_persist("disk")

    @dbus_method()
    def Delete(self) -> NoReply:
        self.nm.delete_connection(self.path)

    @dbus_signal()
    def Updated(self) -> NoReply:
        return None

    @dbus_signal()
    def Removed(self) -> NoReply:
        return None

    @dbus_property(access=PropertyAccess.READ)
    def Unsaved(self) -> DBusBool:
        return self.unsaved

    @dbus_property(access=PropertyAccess.READ)
    def Flags(self) -> DBusUInt32:
        return self.flags

    @dbus_property(access=PropertyAccess.READ)
    def Filename(self) -> DBusStr:
        return ""


class Settings(ServiceInterface):
    """``org.freedesktop.NetworkManager.Settings``: adds profiles, lists them."""

    def __init__(self, nm: "FakeNetworkManager") -> None:
        super().__init__(SETTINGS_IFACE)
        self.nm = nm

    @dbus_method()
    def ListConnections(self) -> Paths:
        return list(self.nm.connections)

    @dbus_method()
    def AddConnection(self, settings: Profile) -> DBusObjectPath:
        path = self.nm.add_connection(settings, "disk")
        self.nm.saves.append(f"AddConnection {path}")
        return path

    @dbus_method()
    def AddConnectionUnsaved(self, settings: Profile) -> DBusObjectPath:
        return self.nm.add_connection(settings, "memory")

    @dbus_method()
    def AddConnection2(self, settings: Profile, flags: DBusUInt32, args: DBusDict) -> AddResult:
        """Exactly one of ``TO_DISK`` and ``IN_MEMORY``, as NetworkManager requires."""
        if bool(flags & ADD_TO_DISK) == bool(flags & ADD_IN_MEMORY):
            raise _error(SETTINGS_IFACE, "InvalidArguments", "need TO_DISK or IN_MEMORY")
        path = self.nm.add_connection(settings, "disk" if flags & ADD_TO_DISK else "memory")
        if flags & ADD_TO_DISK:
            self.nm.saves.append(f"AddConnection2 {path}")
        return (path, {})

    @dbus_signal()
    def NewConnection(self, path: str) -> DBusObjectPath:
        return path

    @dbus_signal()
    def ConnectionRemoved(self, path: str) -> DBusObjectPath:
        return path

    @dbus_property(access=PropertyAccess.READ)
    def Connections(self) -> Paths:
        return list(self.nm.connections)


class AgentManager(ServiceInterface):
    """``org.freedesktop.NetworkManager.AgentManager``: who is asked for agent-owned
    secrets (keyed by the caller's unique bus name, as NetworkManager does)."""

    def __init__(self, nm: "FakeNetworkManager") -> None:
        super().__init__(AGENT_MANAGER_IFACE)
        self.nm = nm

    @dbus_method()
    def Register(self, identifier: DBusStr) -> NoReply:
        self.nm.agents[caller()] = identifier

    @dbus_method()
    def RegisterWithCapabilities(self, identifier: DBusStr, capabilities: DBusUInt32) -> NoReply:
        self.nm.agents[caller()] = identifier

    @dbus_method()
    def Unregister(self) -> NoReply:
        if self.nm.agents.pop(caller(), None) is None:
            raise _error(AGENT_MANAGER_IFACE, "NotRegistered", "not registered")


class Manager(ServiceInterface):
    """``org.freedesktop.NetworkManager`` as before 1.16 (no ``AddAndActivateConnection2``)."""

    def __init__(self, nm: "FakeNetworkManager") -> None:
        super().__init__(NM_IFACE)
        self.nm = nm

    @dbus_method()
    def GetDevices(self) -> Paths:
        return list(self.nm.devices)

    @dbus_method()
    def GetAllDevices(self) -> Paths:
        return list(self.nm.devices)

    @dbus_method()
    def ActivateConnection(
        self, connection: DBusObjectPath, device: DBusObjectPath, specific: DBusObjectPath
    ) -> DBusObjectPath:
        if connection not in self.nm.connections:
            raise _error(NM_IFACE, "UnknownConnection", "no such connection")
        if device not in self.nm.devices:
            raise _error(NM_IFACE, "UnknownDevice", "no such device")
        return self.nm.activate(connection, device, specific)

    @dbus_method()
    def DeactivateConnection(self, active: DBusObjectPath) -> NoReply:
        if active not in self.nm.actives:
            raise _error(NM_IFACE, "ConnectionNotActive", "not active")
        self.nm.deactivate(active, REASON_NONE)

    @dbus_property(access=PropertyAccess.READ)
    def ActiveConnections(self) -> Paths:
        return list(self.nm.actives)

    @dbus_property(access=PropertyAccess.READ)
    def Devices(self) -> Paths:
        return list(self.nm.devices)

    @dbus_property(access=PropertyAccess.READ)
    def Version(self) -> DBusStr:
        return self.nm.version


class Manager116(Manager):
    """``org.freedesktop.NetworkManager`` from 1.16 on."""

    @dbus_method()
    def AddAndActivateConnection2(
        self,
        settings: Profile,
        device: DBusObjectPath,
        specific: DBusObjectPath,
        options: DBusDict,
    ) -> AddActivateResult:
        ssid = _value(settings, "802-11-wireless", "ssid")
        if ssid is not None and bytes(ssid) == b"Refused":  # as NM's verify() would
            raise _error(
                CONNECTION_IFACE,
                "InvalidProperty",
                "802-11-wireless.ssid: connection does not match access point",
            )
        if device not in self.nm.devices:
            raise _error(NM_IFACE, "UnknownDevice", "no such device")
        persist = options["persist"].value if "persist" in options else "disk"
        if persist not in ("disk", "memory", "volatile"):
            raise _error(NM_IFACE, "InvalidArguments", f"bad persist {persist!r}")
        path = self.nm.add_connection(settings, persist)
        if persist == "disk":
            self.nm.saves.append(f"AddAndActivateConnection2 {path}")
        return (path, self.nm.activate(path, device, specific), {})


class Controls(ServiceInterface):
    """Test-only controls of :class:`FakeNetworkManager` (not NetworkManager's API)."""

    def __init__(self, nm: "FakeNetworkManager") -> None:
        super().__init__(TEST_IFACE)
        self.nm = nm

    @dbus_method()
    def AddEthernetDevice(self, interface: DBusStr) -> DBusObjectPath:
        return self.nm.add_device(interface, DEVICE_TYPE_ETHERNET)

    @dbus_method()
    def AddWiFiDevice(self, interface: DBusStr) -> DBusObjectPath:
        return self.nm.add_device(interface, DEVICE_TYPE_WIFI)

    @dbus_method()
    def AddAccessPoint(
        self,
        device: DBusObjectPath,
        ssid: DBusStr,
        bssid: DBusStr,
        mhz: DBusUInt32,
        strength: DBusByte,
        security: DBusUInt32,
    ) -> DBusObjectPath:
        """An access point the device sees; ``security`` is its ``RsnFlags`` (0: open)."""
        return self.nm.add_access_point(device, ssid.encode(), bssid, mhz, strength, security)

    @dbus_method()
    def SetNetwork(
        self,
        ssid: DBusStr,
        passphrase: DBusStr,
        outcome: DBusUInt32,
        delay_ms: DBusUInt32,
        address: DBusStr,
    ) -> NoReply:
        """How joining ``ssid`` goes (see :class:`Network`)."""
        self.nm.air[ssid.encode()] = Network(passphrase, outcome, delay_ms / 1000, address)

    @dbus_method()
    def SetScanDelay(self, ms: DBusUInt32) -> NoReply:
        self.nm.scan_delay = ms / 1000

    @dbus_method()
    def ScanCount(self) -> DBusUInt32:
        return self.nm.scans

    @dbus_method()
    def DiskConnections(self) -> Strings:
        """Profiles NetworkManager keeps on disk (``/etc/NetworkManager``)."""
        return sorted(self.nm.disk)

    @dbus_method()
    def SaveCalls(self) -> Strings:
        """Every request that made a profile durable ("<member> <path>"): ``Save``,
        ``Update``, ``Update2`` with ``TO_DISK``, ``AddConnection``, ``AddConnection2`` with
        ``TO_DISK``, ``AddAndActivateConnection2`` with ``persist`` ``disk``."""
        return list(self.nm.saves)

    @dbus_method()
    def GivenSecrets(self) -> Strings:
        """Every ``psk`` NetworkManager was handed in a profile (Add*, Update*)."""
        return [
            str(s[SECURITY]["psk"].value) for s in self.nm.given if "psk" in s.get(SECURITY, {})
        ]

    @dbus_method()
    def SecretRequests(self) -> Requests:
        """(profile UUID, flags) of each ``GetSecrets`` sent to an agent."""
        return list(self.nm.secret_requests)

    @dbus_method()
    def Agents(self) -> Strings:
        return sorted(self.nm.agents)

    @dbus_method()
    def Reboot(self) -> NoReply:
        """Power off and on: profiles only in memory are gone, saved ones stay, no agent is
        registered and nothing is active."""
        self.nm.reboot()

    @dbus_method()
    def AddSavedConnection(self, ssid: DBusStr, passphrase: DBusStr) -> DBusObjectPath:
        """A profile saved on disk with its key, as another tool (or an old bleprov) left
        it; not counted in ``SaveCalls`` or ``GivenSecrets``."""
        settings = {
            "connection": {
                "id": Variant("s", ssid),
                "uuid": Variant("s", str(uuid.uuid4())),
                "type": Variant("s", "802-11-wireless"),
            },
            "802-11-wireless": {"ssid": Variant("ay", ssid.encode())},
            SECURITY: {"key-mgmt": Variant("s", "wpa-psk"), "psk": Variant("s", passphrase)},
        }
        return self.nm.add_connection(settings, "disk", given=False)

    @dbus_method()
    def ConnectionInfo(self, path: DBusStr) -> DBusDict:
        """A profile as a test needs to see it (never its secret)."""
        conn = self.nm.connections[path]
        wireless = conn.settings["802-11-wireless"]
        security = conn.settings.get(SECURITY, {})
        flags = security.get("psk-flags")
        return {
            "id": Variant("s", str(_value(conn.settings, "connection", "id"))),
            "ssid": Variant("ay", bytes(wireless["ssid"].value)),
            "hidden": Variant(
                "b", bool(wireless["hidden"].value) if "hidden" in wireless else False
            ),
            "key-mgmt": Variant(
                "s", str(security["key-mgmt"].value) if "key-mgmt" in security else ""
            ),
            "psk-flags": Variant("u", int(flags.value) if flags is not None else 0),
            "psk-given": Variant("b", "psk" in security),
            # The key the supplicant was given (NetworkManager's own, or an agent's).
            "psk-is-hex": Variant("b", conn.key_length == 64),
            "persist": Variant("s", conn.persist),
            "unsaved": Variant("b", conn.unsaved),
        }


class FakeNetworkManager(Daemon):
    """NetworkManager on the test bus (see module doc); no device until a test adds one.

    ``add_and_activate2=False`` is NetworkManager before 1.16."""

    def __init__(self, *, add_and_activate2: bool = True) -> None:
        super().__init__(NM_SERVICE)
        self.version = "1.42.0" if add_and_activate2 else "1.14.0"
        self.manager: Manager = Manager116(self) if add_and_activate2 else Manager(self)
        self.settings = Settings(self)
        self.devices: dict[str, Device] = {}
        self.wireless: dict[str, Wireless] = {}
        self.connections: dict[str, Connection] = {}
        self.actives: dict[str, ActiveConnection] = {}
        self.air: dict[bytes, Network] = {}
        self.disk: set[str] = set()
        self.saves: list[str] = []
        #: Every profile NetworkManager was handed (Add*, Update*), as given.
        self.given: list[Profile] = []
        self.secret_requests: list[tuple[str, int]] = []
        self.agents: dict[str, str] = {}  # unique bus name -> identifier
        self.scans = 0
        self.scan_delay = 0.0
        self._numbers = itertools.count(1)

    def export(self) -> None:
        self.bus.export(NM_PATH, self.manager)
        self.bus.export(SETTINGS_PATH, self.settings)
        self.bus.export(AGENT_MANAGER_PATH, AgentManager(self))
        self.bus.export(CONTROLS_PATH, Controls(self))

    def _path(self, kind: str) -> str:
        return f"{NM_PATH}/{kind}/{next(self._numbers)}"

    # -- devices and the air ----------------------------------------------------------

    def add_device(self, interface: str, device_type: int) -> str:
        path = self._path("Devices")
        self.devices[path] = Device(interface, device_type)
        self.bus.export(path, self.devices[path])
        if device_type == DEVICE_TYPE_WIFI:
            self.wireless[path] = Wireless(self)
            self.bus.export(path, self.wireless[path])
        else:
            self.bus.export(path, Wired())
        self.manager.emit_properties_changed({"Devices": list(self.devices)})
        return path

    def add_access_point(
        self, device: str, ssid: bytes, bssid: str, mhz: int, strength: int, security: int
    ) -> str:
        if device not in self.wireless:
            raise _error(NM_IFACE, "UnknownDevice", "not a Wi-Fi device")
        path = self._path("AccessPoint")
        self.bus.export(path, AccessPoint(ssid, bssid, mhz, strength, security))
        self.wireless[device].add_access_point(path)
        return path

    # -- profiles ---------------------------------------------------------------------

    def add_connection(self, settings: Profile, persist: str, *, given: bool = True) -> str:
        path = self._path("Settings")
        self.connections[path] = Connection(self, path, settings, persist)
        if persist == "disk":
            self.disk.add(path)
        if given:
            self.given.append(settings)
        self.bus.export(path, self.connections[path])
        self.settings.emit_properties_changed({"Connections": list(self.connections)})
        self.settings.NewConnection(path)
        return path

    def delete_connection(self, path: str) -> None:
        """Forget a profile (from disk too); an activation of it ends."""
        for active_path, active in list(self.actives.items()):
            if active.connection == path:
                self.deactivate(active_path, REASON_CONNECTION_REMOVED)
        conn = self.connections.pop(path)
        self.disk.discard(path)
        conn.Removed()
        self.bus.unexport(path)
        self.settings.emit_properties_changed({"Connections": list(self.connections)})
        self.settings.ConnectionRemoved(path)

    def reboot(self) -> None:
        for active in list(self.actives):
            self.deactivate(active, REASON_NONE)
        for path in [p for p in self.connections if p not in self.disk]:
            self.delete_connection(path)
        self.agents.clear()

    # -- activation -------------------------------------------------------------------

    def activate(self, connection: str, device_path: str, specific: str) -> str:
        """Replace the device's active connection and activate over time, as NM does."""
        device = self.devices[device_path]
        if device.active in self.actives:
            self.deactivate(device.active, REASON_NONE)
        path = self._path("ActiveConnection")
        settings = self.connections[connection].settings
        self.actives[path] = ActiveConnection(connection, device_path, specific, settings)
        self.bus.export(path, self.actives[path])
        self.manager.emit_properties_changed({"ActiveConnections": list(self.actives)})
        device.set_active(path)
        device.set_state(STATE_CONFIG, REASON_NONE)
        ssid = bytes(_value(settings, "802-11-wireless", "ssid") or b"")
        network = self.air.get(ssid)
        delay = network.delay if network is not None else 0.02

        async def finish() -> None:
            await self._finish(path)

        self.later(delay, finish)
        return path

    def deactivate(self, active_path: str, reason: int) -> None:
        """End an activation: the active connection goes, the device disconnects."""
        active = self.actives.pop(active_path)
        active.set_state(ACTIVE_DEACTIVATED, reason)
        device = self.devices[active.device]
        if device.active == active_path:
            device.set_active("/")
            device.set_state(STATE_DISCONNECTED, reason)
        self.bus.unexport(active_path)
        self.manager.emit_properties_changed({"ActiveConnections": list(self.actives)})

    def fail(self, active_path: str, reason: int) -> None:
        active = self.actives[active_path]
        self.devices[active.device].set_state(STATE_FAILED, reason)
        self.deactivate(active_path, reason)

    async def _finish(self, active_path: str) -> None:
        active = self.actives.get(active_path)
        if active is None or active.connection not in self.connections:
            return  # deactivated meanwhile
        conn = self.connections[active.connection]
        ssid = bytes(_value(conn.settings, "802-11-wireless", "ssid") or b"")
        network = self.air.get(ssid)
        if network is None:
            return self.fail(active_path, REASON_SSID_NOT_FOUND)
        if network.passphrase:
            secret = await self.secret_of(conn, ALLOW_INTERACTION)
            if secret is None or not key_matches(secret, network.passphrase, ssid):
                # The supplicant refused the key: NetworkManager asks for a new one.
                secret = await self.secret_of(conn, ALLOW_INTERACTION | REQUEST_NEW)
                if secret is None or not key_matches(secret, network.passphrase, ssid):
                    if active_path in self.actives:
                        self.fail(active_path, REASON_NO_SECRETS)
                    return None
            conn.key_length = len(secret)
        if active_path not in self.actives:
            return None  # deactivated while the agent answered
        if network.outcome == NEVER:
            return None
        device = self.devices[active.device]
        if network.outcome == NEED_AUTH:
            return device.set_state(STATE_NEED_AUTH, REASON_SUPPLICANT_DISCONNECT)
        if network.outcome:
            return self.fail(active_path, network.outcome)
        ip4 = self._path("IP4Config")
        self.bus.export(ip4, IP4Config(network.address))
        active.set_ip4(ip4)
        device.set_state(STATE_ACTIVATED, REASON_NONE)
        active.set_state(ACTIVE_ACTIVATED)
        return None

    async def secret_of(self, conn: Connection, flags: int) -> str | None:
        """The key NetworkManager has for a profile: its own, or an agent's."""
        security = conn.settings.get(SECURITY, {})
        owner_flags = security["psk-flags"].value if "psk-flags" in security else 0
        if owner_flags & SECRET_AGENT_OWNED:
            return await self._agent_secret(conn, flags)
        if flags & REQUEST_NEW:
            return None  # nobody to ask for a better key
        return str(security["psk"].value) if "psk" in security else ""

    async def _agent_secret(self, conn: Connection, flags: int) -> str | None:
        """Ask each registered agent in turn, as NetworkManager does; None if none gives
        the key."""
        profile_uuid = str(_value(conn.settings, "connection", "uuid"))
        for agent in list(self.agents):
            self.secret_requests.append((profile_uuid, flags))
            try:
                (reply,) = await self.call_client(
                    agent,
                    SECRET_AGENT_PATH,
                    SECRET_AGENT_IFACE,
                    "GetSecrets",
                    "a{sa{sv}}osasu",
                    [without_secrets(conn.settings), conn.path, SECURITY, [], flags],
                )
            except (DBusError, TimeoutError):
                continue
            psk = reply.get(SECURITY, {}).get("psk")
            if psk is not None:
                return str(psk.value)
        return None
