"""A bluetoothd double: adapters, LE advertising, GATT applications and device connections.

Modelled on BlueZ's D-Bus API (doc/org.bluez.Adapter.rst, org.bluez.Device.rst,
org.bluez.LEAdvertisingManager.rst, org.bluez.GattManager.rst in the BlueZ tree) as far as
bleprov.radio.bluez and bless's BlueZ backend use it:

* ``LEAdvertisingManager1.RegisterAdvertisement`` reads the advertisement back from its
  owner (``Properties.GetAll``) before it answers, refuses what bluetoothd's parser would,
  and keys registrations by (owner, path): only the owner may unregister.
* ``GattManager1.RegisterApplication`` reads the application's objects back
  (``ObjectManager.GetManagedObjects``) before it answers, then watches the application's
  ``PropertiesChanged`` signals: a ``Value`` change of a notifying characteristic that a
  central subscribed to is a notification (:attr:`FakeBluez.notifications`).
* A central's ATT requests become calls on the application as bluetoothd 5.66 makes them
  (src/gatt-database.c): :meth:`FakeBluez.gatt_read` is a read, continued with Read Blob
  requests while a response fills MTU - 1 bytes (src/shared/gatt-client.c, read_long_cb);
  ``ReadValue``/``WriteValue`` options carry ``device``, ``link``, ``mtu`` and a nonzero
  ``offset`` only (5.66 sends no ``type``); each answer is cut to MTU - 1 bytes as
  src/shared/gatt-server.c does, the application must apply the offset itself.
* ``Device1.Connected`` changes are announced with ``PropertiesChanged``; devices come and go
  with the ObjectManager's ``InterfacesAdded``/``InterfacesRemoved`` (dbus-fast emits these
  on export, from the object's own path where bluetoothd emits them from ``/``).

What no client can do over BlueZ's API (add an adapter, have a central connect over the
air, read what was registered) is on :data:`~tests.dbus_doubles.common.TEST_IFACE` at ``/``.
bluetoothd's clean-up when a client leaves the bus is not modelled, so a test sees whether
bleprov unregistered what it registered.
"""

import asyncio
from typing import Annotated, Final

from dbus_fast import DBusError, Message, MessageType, Variant
from dbus_fast.annotations import (
    DBusBool,
    DBusByte,
    DBusDict,
    DBusObjectPath,
    DBusSignature,
    DBusStr,
)
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from tests.dbus_doubles.common import TEST_IFACE, Daemon, NoReply, caller

BLUEZ_SERVICE: Final = "org.bluez"
ADAPTER_IFACE: Final = "org.bluez.Adapter1"
DEVICE_IFACE: Final = "org.bluez.Device1"
LE_ADVERTISING_MANAGER_IFACE: Final = "org.bluez.LEAdvertisingManager1"
LE_ADVERTISEMENT_IFACE: Final = "org.bluez.LEAdvertisement1"
GATT_MANAGER_IFACE: Final = "org.bluez.GattManager1"
GATT_CHARACTERISTIC_IFACE: Final = "org.bluez.GattCharacteristic1"
GATT_DESCRIPTOR_IFACE: Final = "org.bluez.GattDescriptor1"
#: BT_ATT_MAX_VALUE_LEN: a long read stops there.
ATT_MAX_VALUE_LEN: Final = 512
OBJECT_MANAGER_IFACE: Final = "org.freedesktop.DBus.ObjectManager"
PROPERTIES_IFACE: Final = "org.freedesktop.DBus.Properties"
#: How many advertisements a controller takes at once (a common BlueZ default).
SUPPORTED_INSTANCES: Final = 5

ManagedObjects = dict[str, dict[str, dict[str, Variant]]]
Registrations = Annotated[list[tuple[str, str, dict[str, Variant]]], DBusSignature("a(ssa{sv})")]
HistoryList = Annotated[list[tuple[str, str, str]], DBusSignature("a(sss)")]
ApplicationList = Annotated[
    list[tuple[str, str, ManagedObjects]], DBusSignature("a(ssa{oa{sa{sv}}})")
]


def _error(name: str, text: str) -> DBusError:
    return DBusError("org.bluez.Error." + name, text)


def advertisement_problem(props: dict[str, Variant]) -> str:
    """What bluetoothd's advertisement parser would reject ("" if nothing)."""
    kind = props.get("Type")
    if kind is None or kind.signature != "s" or kind.value not in ("peripheral", "broadcast"):
        return "Type"
    for key in ("ServiceUUIDs", "ScanResponseServiceUUIDs"):
        if key in props and props[key].signature != "as":
            return key
    if "ServiceData" in props:
        data = props["ServiceData"]
        if data.signature != "a{sv}":
            return "ServiceData"
        for uuid, value in data.value.items():
            if value.signature != "ay":
                return f"ServiceData {uuid}"
    if "LocalName" in props and props["LocalName"].signature != "s":
        return "LocalName"
    return ""


class Device(ServiceInterface):
    """``org.bluez.Device1``: a remote device (here, a phone acting as central)."""

    def __init__(self, adapter: str, address: str, alias: str) -> None:
        super().__init__(DEVICE_IFACE)
        self.adapter = adapter
        self.address = address
        self.alias = alias
        self.connected = False

    def set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            self.emit_properties_changed({"Connected": connected})

    @dbus_method()
    def Connect(self) -> NoReply:
        self.set_connected(True)

    @dbus_method()
    def Disconnect(self) -> NoReply:
        if not self.connected:
            raise _error("NotConnected", "Not Connected")
        self.set_connected(False)

    @dbus_property(access=PropertyAccess.READ)
    def Address(self) -> DBusStr:
        return self.address

    @dbus_property(access=PropertyAccess.READ)
    def Alias(self) -> DBusStr:
        return self.alias

    @dbus_property(access=PropertyAccess.READ)
    def Adapter(self) -> DBusObjectPath:
        return self.adapter

    @dbus_property(access=PropertyAccess.READ)
    def Connected(self) -> DBusBool:
        return self.connected

    @dbus_property(access=PropertyAccess.READ)
    def Paired(self) -> DBusBool:
        return False


class Adapter(ServiceInterface):
    """``org.bluez.Adapter1``: a powered controller."""

    def __init__(self, bluez: "FakeBluez", path: str, name: str, system_name: str) -> None:
        super().__init__(ADAPTER_IFACE)
        self.bluez = bluez
        self.path = path
        self.name_ = name
        self.system_name = system_name
        self.alias = system_name
        self.address = f"00:11:22:33:44:{len(bluez.adapters):02X}"

    @dbus_method()
    def RemoveDevice(self, device: DBusObjectPath) -> NoReply:
        if not device.startswith(self.path + "/") or device not in self.bluez.devices:
            raise _error("DoesNotExist", "Does Not Exist")
        self.bluez.remove_device(device)

    @dbus_property(access=PropertyAccess.READ)
    def Address(self) -> DBusStr:
        return self.address

    @dbus_property(access=PropertyAccess.READ)
    def Name(self) -> DBusStr:
        return self.system_name

    @dbus_property()
    def Alias(self) -> DBusStr:
        return self.alias

    @Alias.setter  # type: ignore[no-redef]
    def Alias(self, value: DBusStr) -> None:
        # An empty alias resets it to the system name, as in bluetoothd.
        self.alias = value or self.system_name

    @dbus_property(access=PropertyAccess.READ)
    def Powered(self) -> DBusBool:
        return True


class AdvertisingManager(ServiceInterface):
    """``org.bluez.LEAdvertisingManager1`` of one adapter."""

    def __init__(self, bluez: "FakeBluez", path: str) -> None:
        super().__init__(LE_ADVERTISING_MANAGER_IFACE)
        self.bluez = bluez
        self.path = path

    @dbus_method()
    async def RegisterAdvertisement(
        self, advertisement: DBusObjectPath, options: DBusDict
    ) -> NoReply:
        key = (caller(), advertisement)
        registrations = self.bluez.registrations
        if key in registrations:
            raise _error("AlreadyExists", "Already Exists")
        if self._count() >= SUPPORTED_INSTANCES:
            raise _error("NotPermitted", "Maximum advertisements reached")
        try:
            (props,) = await self.bluez.call_client(
                key[0], advertisement, PROPERTIES_IFACE, "GetAll", "s", [LE_ADVERTISEMENT_IFACE]
            )
        except (DBusError, TimeoutError) as exc:
            raise _error("Failed", f"Failed to parse advertisement: {exc}") from exc
        problem = advertisement_problem(props)
        if problem:
            raise _error("Failed", "Failed to parse advertisement: " + problem)
        if key in registrations:  # registered twice at once
            raise _error("AlreadyExists", "Already Exists")
        registrations[key] = (self.path, props)
        self.bluez.history.append(("register", key[0], key[1]))
        self.emit_properties_changed({"ActiveInstances": self._count()})

    @dbus_method()
    def UnregisterAdvertisement(self, advertisement: DBusObjectPath) -> NoReply:
        key = (caller(), advertisement)
        entry = self.bluez.registrations.get(key)
        if entry is None or entry[0] != self.path:
            raise _error("DoesNotExist", "Does Not Exist")
        del self.bluez.registrations[key]
        self.bluez.history.append(("unregister", key[0], key[1]))
        self.emit_properties_changed({"ActiveInstances": self._count()})

    def _count(self) -> int:
        return sum(1 for adapter, _ in self.bluez.registrations.values() if adapter == self.path)

    @dbus_property(access=PropertyAccess.READ)
    def ActiveInstances(self) -> DBusByte:
        return self._count()

    @dbus_property(access=PropertyAccess.READ)
    def SupportedInstances(self) -> DBusByte:
        return SUPPORTED_INSTANCES - self._count()


class GattManager(ServiceInterface):
    """``org.bluez.GattManager1`` of one adapter."""

    def __init__(self, bluez: "FakeBluez", path: str) -> None:
        super().__init__(GATT_MANAGER_IFACE)
        self.bluez = bluez
        self.path = path

    @dbus_method()
    async def RegisterApplication(self, application: DBusObjectPath, options: DBusDict) -> NoReply:
        key = (caller(), application)
        if key in self.bluez.applications:
            raise _error("AlreadyExists", "Already Exists")
        if self.bluez.refuse_applications:
            raise _error(*self.bluez.refuse_applications)
        try:
            (objects,) = await self.bluez.call_client(
                key[0], application, OBJECT_MANAGER_IFACE, "GetManagedObjects"
            )
        except (DBusError, TimeoutError) as exc:
            raise _error("Failed", f"Failed to read the application: {exc}") from exc
        # gdbus's client watches the application's signals (bluetoothd's property watch)
        await self.bluez.call_client(
            "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
            "AddMatch", "s",
            [f"type='signal',sender='{key[0]}',interface='{PROPERTIES_IFACE}',"
             f"member='PropertiesChanged',path_namespace='{application}'"],
        )  # fmt: skip
        self.bluez.applications[key] = objects

    @dbus_method()
    def UnregisterApplication(self, application: DBusObjectPath) -> NoReply:
        if self.bluez.applications.pop((caller(), application), None) is None:
            raise _error("DoesNotExist", "Does Not Exist")


class Controls(ServiceInterface):
    """Test-only controls of :class:`FakeBluez` (not BlueZ's API)."""

    def __init__(self, bluez: "FakeBluez") -> None:
        super().__init__(TEST_IFACE)
        self.bluez = bluez

    @dbus_method()
    def AddAdapter(self, name: DBusStr, system_name: DBusStr) -> DBusObjectPath:
        """A powered LE adapter ``/org/bluez/<name>`` that can advertise and serve GATT."""
        return self.bluez.add_adapter(name, system_name)

    @dbus_method()
    def AddDevice(self, adapter: DBusStr, address: DBusStr, alias: DBusStr) -> DBusObjectPath:
        """A remote device the adapter has seen (not connected)."""
        return self.bluez.add_device(adapter, address, alias)

    @dbus_method()
    def ConnectDevice(self, adapter: DBusStr, address: DBusStr) -> NoReply:
        """The remote device connects to us over the air."""
        self.bluez.device(adapter, address).set_connected(True)

    @dbus_method()
    def DisconnectDevice(self, adapter: DBusStr, address: DBusStr) -> NoReply:
        """The remote device drops the link."""
        self.bluez.device(adapter, address).set_connected(False)

    @dbus_method()
    def Advertisements(self) -> Registrations:
        """Registered advertisements: (owner, path, properties as BlueZ read them)."""
        return [(o, p, props) for (o, p), (_a, props) in self.bluez.registrations.items()]

    @dbus_method()
    def History(self) -> HistoryList:
        """("register" | "unregister", owner, path) of each advertisement, in order."""
        return list(self.bluez.history)

    @dbus_method()
    def Applications(self) -> ApplicationList:
        """Registered GATT applications: (owner, path, objects as BlueZ read them)."""
        return [(o, p, objects) for (o, p), objects in self.bluez.applications.items()]


class FakeBluez(Daemon):
    """bluetoothd on the test bus (see module doc); no adapter until a test adds one."""

    def __init__(self) -> None:
        super().__init__(BLUEZ_SERVICE)
        self.adapters: dict[str, Adapter] = {}
        self.devices: dict[str, Device] = {}
        #: (owner, advertisement path) -> (adapter path, properties read back)
        self.registrations: dict[tuple[str, str], tuple[str, dict[str, Variant]]] = {}
        self.history: list[tuple[str, str, str]] = []
        #: (owner, application path) -> its objects as read back
        self.applications: dict[tuple[str, str], ManagedObjects] = {}
        #: (error name after org.bluez.Error., text) the next RegisterApplication fails with
        self.refuse_applications: tuple[str, str] | None = None
        #: (owner, characteristic path) a central enabled notifications on (its CCC)
        self.subscribed: set[tuple[str, str]] = set()
        #: (characteristic path, value) of each notification sent to a central
        self.notifications: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        #: (method, object path, options) of each call made on an application
        self.gatt_calls: list[tuple[str, str, dict[str, object]]] = []

    def export(self) -> None:
        self.bus.export("/", Controls(self))
        self.bus.add_message_handler(self._on_application_signal)

    def _on_application_signal(self, msg: Message) -> None:
        """bluetoothd's property watch: a Value change of a subscribed characteristic
        goes out as a notification."""
        if msg.message_type is not MessageType.SIGNAL or msg.member != "PropertiesChanged":
            return
        interface, changed = msg.body[0], msg.body[1]
        key = (msg.sender or "", msg.path or "")
        if interface == GATT_CHARACTERISTIC_IFACE and "Value" in changed and key in self.subscribed:
            self.notifications.put_nowait((key[1], bytes(changed["Value"].value)))

    @staticmethod
    def att_options(device: str, mtu: int, offset: int = 0) -> dict[str, Variant]:
        """The options bluetoothd 5.66 passes (append_options in src/gatt-database.c)."""
        options = {"device": Variant("o", device), "link": Variant("s", "LE")}
        if offset:
            options["offset"] = Variant("q", offset)
        options["mtu"] = Variant("q", mtu)
        return options

    async def gatt_read(
        self,
        owner: str,
        path: str,
        *,
        device: str,
        mtu: int = 23,
        interface: str = GATT_CHARACTERISTIC_IFACE,
    ) -> bytes:
        """A central reads a characteristic or descriptor: a Read Request, then Read Blob
        requests while each response fills MTU - 1 bytes, as BlueZ's client does."""
        value = b""
        while True:
            options = self.att_options(device, mtu, len(value))
            self.gatt_calls.append(("ReadValue", path, {k: v.value for k, v in options.items()}))
            (answer,) = await self.call_client(
                owner, path, interface, "ReadValue", "a{sv}", [options]
            )
            chunk = bytes(answer)[:ATT_MAX_VALUE_LEN][: mtu - 1]
            value += chunk
            if not chunk or len(value) >= ATT_MAX_VALUE_LEN or len(chunk) < mtu - 1:
                return value

    async def gatt_write(
        self, owner: str, path: str, value: bytes, *, device: str, mtu: int = 23, offset: int = 0
    ) -> None:
        """A central writes (request or command: 5.66 passes no ``type``)."""
        options = self.att_options(device, mtu, offset)
        self.gatt_calls.append(("WriteValue", path, {k: v.value for k, v in options.items()}))
        await self.call_client(
            owner, path, GATT_CHARACTERISTIC_IFACE, "WriteValue", "aya{sv}", [value, options]
        )

    async def gatt_subscribe(self, owner: str, path: str, enabled: bool = True) -> None:
        """A central writes the CCC: bluetoothd calls StartNotify (first subscriber) or
        StopNotify (last one)."""
        if enabled:
            self.subscribed.add((owner, path))
        else:
            self.subscribed.discard((owner, path))
        member = "StartNotify" if enabled else "StopNotify"
        await self.call_client(owner, path, GATT_CHARACTERISTIC_IFACE, member)

    def remove_adapter(self, path: str) -> None:
        """The controller went away (a dongle unplugged): its objects are removed."""
        del self.adapters[path]
        for device in [d for d in self.devices if d.startswith(path + "/")]:
            self.remove_device(device)
        self.bus.unexport(path)

    def add_adapter(self, name: str, system_name: str) -> str:
        path = f"/org/bluez/{name}"
        if path in self.adapters:
            raise _error("AlreadyExists", f"adapter {name} exists")
        self.adapters[path] = Adapter(self, path, name, system_name)
        self.bus.export(path, self.adapters[path])
        self.bus.export(path, AdvertisingManager(self, path))
        self.bus.export(path, GattManager(self, path))
        return path

    def add_device(self, adapter: str, address: str, alias: str) -> str:
        adapter_path = f"/org/bluez/{adapter}"
        if adapter_path not in self.adapters:
            raise _error("DoesNotExist", f"no adapter {adapter}")
        path = f"{adapter_path}/dev_{address.replace(':', '_')}"
        if path not in self.devices:
            self.devices[path] = Device(adapter_path, address, alias)
            self.bus.export(path, self.devices[path])
        return path

    def device(self, adapter: str, address: str) -> Device:
        path = f"/org/bluez/{adapter}/dev_{address.replace(':', '_')}"
        if path not in self.devices:
            raise _error("DoesNotExist", f"no device {address} on {adapter}")
        return self.devices[path]

    def remove_device(self, path: str) -> None:
        del self.devices[path]
        self.bus.unexport(path)
