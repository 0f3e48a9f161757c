"""BlueZ over D-Bus (dbus-fast): the pieces bless does not carry, usable without bless.

bless's BlueZ backend advertises only the first service UUID and the name, and reports no
connections. The device needs its service data on air and to know when a central comes and
goes, so this module talks to bluetoothd directly: an ``org.bluez.LEAdvertisement1`` object
of our own (:class:`BluezAdvertisement`) registered with ``LEAdvertisingManager1``, and a
watcher of ``org.bluez.Device1.Connected`` (:class:`BluezConnectionMonitor`). Every failure to
reach the bus or BlueZ raises :class:`BluezUnavailable` saying what is missing.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Final

from dbus_fast import BusType, DBusError, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusBool, DBusDict, DBusSignature, DBusStr
from dbus_fast.constants import PropertyAccess
from dbus_fast.errors import DBusFastError
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from bleprov.core.errors import BleprovError
from bleprov.radio.errors import RadioUnavailable, reason

logger = logging.getLogger(__name__)

BLUEZ_SERVICE: Final = "org.bluez"
ADAPTER_IFACE: Final = "org.bluez.Adapter1"
DEVICE_IFACE: Final = "org.bluez.Device1"
LE_ADVERTISING_MANAGER_IFACE: Final = "org.bluez.LEAdvertisingManager1"
LE_ADVERTISEMENT_IFACE: Final = "org.bluez.LEAdvertisement1"
OBJECT_MANAGER_IFACE: Final = "org.freedesktop.DBus.ObjectManager"
PROPERTIES_IFACE: Final = "org.freedesktop.DBus.Properties"
DEFAULT_SYSTEM_BUS: Final = "unix:path=/var/run/dbus/system_bus_socket"
#: D-Bus errors meaning "nobody owns org.bluez": bluetoothd is not running.
NO_SERVICE_ERRORS: Final = frozenset(
    {"org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner"}
)

DBusStrList = Annotated[list[str], DBusSignature("as")]
#: A method returning nothing (a bare ``-> None`` confuses dbus-fast under PEP 563).
DBusNoReply = Annotated[None, DBusSignature("")]


class BluezError(BleprovError):
    """BlueZ refused a request; ``name`` is the D-Bus error name (``org.bluez.Error.*``)."""

    def __init__(self, message: str, name: str = "") -> None:
        super().__init__(message)
        self.name = name


class BluezUnavailable(BluezError, RadioUnavailable):
    """No system D-Bus, no bluetoothd on it, or no (suitable) adapter."""


def system_bus_address() -> str:
    """Where dbus-fast (and dbus-next) look for the system bus."""
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or DEFAULT_SYSTEM_BUS


async def connect_system_bus() -> MessageBus:
    """Connect to the system bus; a missing or refusing bus raises :class:`BluezUnavailable`."""
    address = system_bus_address()
    try:
        return await MessageBus(bus_type=BusType.SYSTEM).connect()
    except (OSError, DBusFastError) as exc:
        raise BluezUnavailable(
            f"cannot connect to the D-Bus system bus at {address} ({reason(exc)}); "
            "BlueZ is reached over the system bus: install and start dbus and bluez "
            "(systemctl status dbus bluetooth), or set DBUS_SYSTEM_BUS_ADDRESS"
        ) from exc


async def close_bus(bus: MessageBus) -> None:
    """Disconnect and wait until the socket is closed (no ResourceWarning later)."""
    bus.disconnect()
    with contextlib.suppress(Exception):
        await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]


async def call(
    bus: MessageBus,
    path: str,
    interface: str,
    member: str,
    signature: str = "",
    body: Sequence[Any] = (),
) -> list[Any]:
    """Call a bluetoothd method; a D-Bus error reply raises :class:`BluezError`."""
    reply = await bus.call(
        Message(
            destination=BLUEZ_SERVICE,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=list(body),
        )
    )
    if reply.message_type == MessageType.ERROR:
        name = reply.error_name or "unknown"
        text = reply.body[0] if reply.body else ""
        error = BluezUnavailable if name in NO_SERVICE_ERRORS else BluezError
        hint = " (is bluetoothd running?)" if name in NO_SERVICE_ERRORS else ""
        raise error(f"BlueZ {interface}.{member} on {path} failed: {name}: {text}{hint}", name)
    body_out: list[Any] = reply.body
    return body_out


async def managed_objects(bus: MessageBus) -> dict[str, dict[str, dict[str, Variant]]]:
    """Everything bluetoothd exports (adapters, devices) with their properties."""
    (objects,) = await call(bus, "/", OBJECT_MANAGER_IFACE, "GetManagedObjects")
    result: dict[str, dict[str, dict[str, Variant]]] = objects
    return result


async def find_adapter(bus: MessageBus, name: str | None = None) -> str:
    """The object path of adapter ``name`` (``hci0``), or of the first one that can advertise."""
    objects = await managed_objects(bus)
    adapters = sorted(
        path
        for path, interfaces in objects.items()
        if ADAPTER_IFACE in interfaces and LE_ADVERTISING_MANAGER_IFACE in interfaces
    )
    if name is not None:
        adapters = [p for p in adapters if p.rsplit("/", 1)[-1] == name or p == name]
    if not adapters:
        which = f"named {name!r} " if name else ""
        raise BluezUnavailable(
            f"BlueZ has no Bluetooth LE adapter {which}that can advertise "
            "(check `bluetoothctl list` and that the adapter is not blocked by rfkill)"
        )
    return adapters[0]


class BluezAdvertisement(ServiceInterface):
    """Our ``org.bluez.LEAdvertisement1``: the service data bless cannot put on air.

    BlueZ reads these properties once, when the advertisement is registered; to change
    them, unregister and register a new one. Legacy advertising carries 31 bytes, so the
    service data goes in the advertising data and the UUID list in the scan response
    (``ScanResponseServiceUUIDs``, BlueZ 5.66+; older versions ignore it) next to the name.
    """

    def __init__(
        self,
        path: str,
        *,
        service_data: Mapping[str, bytes],
        local_name: str,
        service_uuids: Sequence[str] = (),
        scan_response_service_uuids: Sequence[str] = (),
        discoverable: bool = True,
        on_release: Callable[[], None] | None = None,
    ) -> None:
        if not local_name:
            raise ValueError(
                "BlueZ needs a non-empty LocalName (an empty one breaks the scan response)"
            )
        super().__init__(LE_ADVERTISEMENT_IFACE)
        self.path = path
        self._service_data = {uuid: bytes(data) for uuid, data in service_data.items()}
        self._local_name = local_name
        self._service_uuids = list(service_uuids)
        self._scan_response_service_uuids = list(scan_response_service_uuids)
        self._discoverable = discoverable
        self._on_release = on_release

    @dbus_method(name="Release")
    def release(self) -> DBusNoReply:
        """BlueZ dropped the advertisement (adapter reset, bluetoothd restart)."""
        logger.info("BlueZ released advertisement %s", self.path)
        if self._on_release is not None:
            self._on_release()

    @dbus_property(access=PropertyAccess.READ, name="Type")
    def type_(self) -> DBusStr:
        return "peripheral"

    @dbus_property(access=PropertyAccess.READ, name="ServiceUUIDs")
    def service_uuids(self) -> DBusStrList:
        return list(self._service_uuids)

    @dbus_property(access=PropertyAccess.READ, name="ScanResponseServiceUUIDs")
    def scan_response_service_uuids(self) -> DBusStrList:
        return list(self._scan_response_service_uuids)

    @dbus_property(access=PropertyAccess.READ, name="ServiceData")
    def service_data(self) -> DBusDict:
        return {uuid: Variant("ay", data) for uuid, data in self._service_data.items()}

    @dbus_property(access=PropertyAccess.READ, name="LocalName")
    def local_name(self) -> DBusStr:
        return self._local_name

    @dbus_property(access=PropertyAccess.READ, name="Discoverable")
    def discoverable(self) -> DBusBool:
        return self._discoverable


async def register_advertisement(
    bus: MessageBus, adapter_path: str, adv: BluezAdvertisement
) -> None:
    """Export ``adv`` on ``bus`` and ask BlueZ to advertise it.

    BlueZ answers after it has read the properties back and programmed the controller,
    so a too-long advertisement fails here (``org.bluez.Error.InvalidLength``/``Failed``).
    """
    bus.export(adv.path, adv)
    try:
        await call(
            bus,
            adapter_path,
            LE_ADVERTISING_MANAGER_IFACE,
            "RegisterAdvertisement",
            "oa{sv}",
            [adv.path, {}],
        )
    except BaseException:
        bus.unexport(adv.path, adv)
        raise


async def unregister_advertisement(
    bus: MessageBus, adapter_path: str, adv: BluezAdvertisement
) -> None:
    """Stop advertising ``adv``; must come from the connection that registered it."""
    try:
        await call(
            bus,
            adapter_path,
            LE_ADVERTISING_MANAGER_IFACE,
            "UnregisterAdvertisement",
            "o",
            [adv.path],
        )
    finally:
        bus.unexport(adv.path, adv)


#: Disconnect errors meaning the central is already gone.
_ALREADY_GONE: Final = frozenset(
    {"org.bluez.Error.NotConnected", "org.freedesktop.DBus.Error.UnknownObject"}
)
#: Where a peripheral adapter exports its LEAdvertisement1 (a serial number follows).
ADVERTISEMENT_PATH: Final = "/org/bleprov/advertisement"


async def disconnect_device(bus: MessageBus, device_path: str) -> bool:
    """Drop the link to a connected central (``org.bluez.Device1.Disconnect``). False
    when it was already gone (BlueZ then sends no Connected change to report it)."""
    try:
        await call(bus, device_path, DEVICE_IFACE, "Disconnect")
    except BluezError as exc:
        if exc.name not in _ALREADY_GONE:
            raise
        return False
    return True


ConnectionCallback = Callable[[str, bool], None]


class BluezConnectionMonitor:
    """Reports ``(device_path, connected)`` when a ``Device1.Connected`` property changes.

    Listens to ``PropertiesChanged`` on ``org.bluez.Device1`` and to the ObjectManager's
    ``InterfacesAdded``/``InterfacesRemoved`` (a new central's device object may appear
    already connected; a removed one is gone). Only transitions are reported: devices
    connected before :meth:`start` are listed in :attr:`connected` without a callback.
    """

    _RULES: Final = (
        f"type='signal',sender='{BLUEZ_SERVICE}',interface='{PROPERTIES_IFACE}',"
        f"member='PropertiesChanged',arg0='{DEVICE_IFACE}'",
        f"type='signal',sender='{BLUEZ_SERVICE}',interface='{OBJECT_MANAGER_IFACE}',"
        "member='InterfacesAdded'",
        f"type='signal',sender='{BLUEZ_SERVICE}',interface='{OBJECT_MANAGER_IFACE}',"
        "member='InterfacesRemoved'",
    )

    def __init__(
        self, bus: MessageBus, callback: ConnectionCallback, adapter_path: str | None = None
    ) -> None:
        self._bus = bus
        self._callback = callback
        self._prefix = (adapter_path.rstrip("/") + "/") if adapter_path else "/org/bluez/"
        self._connected: set[str] = set()
        self._started = False

    @property
    def connected(self) -> frozenset[str]:
        """Device paths currently connected (as far as the signals told)."""
        return frozenset(self._connected)

    async def start(self) -> None:
        """Subscribe to the signals, then take a snapshot of current connections."""
        if self._started:
            return
        self._bus.add_message_handler(self._on_message)
        self._started = True
        try:
            for rule in self._RULES:
                await self._bus_call("AddMatch", rule)
            objects = await managed_objects(self._bus)
        except BaseException:
            await self.stop()
            raise
        for path, interfaces in objects.items():
            props = interfaces.get(DEVICE_IFACE)
            if props and path.startswith(self._prefix) and _is_true(props.get("Connected")):
                self._connected.add(path)

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self._bus.remove_message_handler(self._on_message)
        if self._bus.connected:
            for rule in self._RULES:
                try:
                    await self._bus_call("RemoveMatch", rule)
                except (BluezError, DBusError, OSError, EOFError) as exc:
                    logger.debug("RemoveMatch failed: %s", exc)

    async def _bus_call(self, member: str, rule: str) -> None:
        reply = await self._bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member=member,
                signature="s",
                body=[rule],
            )
        )
        if reply.message_type == MessageType.ERROR:
            raise BluezError(f"D-Bus {member} failed: {reply.error_name}", reply.error_name or "")

    def _on_message(self, msg: Message) -> None:
        if msg.message_type != MessageType.SIGNAL:
            return
        if msg.interface == PROPERTIES_IFACE and msg.member == "PropertiesChanged":
            iface, changed = msg.body[0], msg.body[1]
            if iface == DEVICE_IFACE and msg.path and "Connected" in changed:
                self._update(msg.path, _is_true(changed["Connected"]))
        elif msg.interface == OBJECT_MANAGER_IFACE and msg.member == "InterfacesAdded":
            path, interfaces = msg.body[0], msg.body[1]
            props = interfaces.get(DEVICE_IFACE)
            if props is not None and "Connected" in props:
                self._update(path, _is_true(props["Connected"]))
        elif msg.interface == OBJECT_MANAGER_IFACE and msg.member == "InterfacesRemoved":
            path, interfaces = msg.body[0], msg.body[1]
            if DEVICE_IFACE in interfaces:
                self._update(path, False)

    def _update(self, path: str, connected: bool) -> None:
        if not path.startswith(self._prefix) or connected == (path in self._connected):
            return
        if connected:
            self._connected.add(path)
        else:
            self._connected.discard(path)
        try:
            self._callback(path, connected)
        except Exception:
            logger.exception("connection callback failed for %s", path)


def _is_true(value: object) -> bool:
    if isinstance(value, Variant):
        value = value.value
    return value is True


#: bluetoothd's configuration, where its [GATT] Channels setting lives.
MAIN_CONF: Final = "/etc/bluetooth/main.conf"
#: BlueZ's default number of ATT bearers per connection (5.66: 3, i.e. EATT on).
DEFAULT_GATT_CHANNELS: Final = 3


def gatt_channels(path: str = MAIN_CONF) -> int:
    """The ATT bearers bluetoothd opens per connection, from its main.conf (``[GATT]
    Channels``; absent or unreadable: BlueZ's default, 3).

    Above 1, Enhanced ATT (EATT) is on and a central running BlueZ too opens several
    bearers; bluetoothd then sends our notifications over whichever bearer is free, so
    they can arrive out of order (seen in the lab: "DATA frame 4 arrived, expected 3"),
    and bleprov's frames must arrive in order."""
    import configparser

    parser = configparser.ConfigParser(
        comment_prefixes=("#",), inline_comment_prefixes=None, strict=False
    )
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
        return int(parser.get("GATT", "Channels", fallback=str(DEFAULT_GATT_CHANNELS)))
    except (OSError, ValueError, configparser.Error):
        return DEFAULT_GATT_CHANNELS


def eatt_warning(path: str = MAIN_CONF) -> str | None:
    """What to tell the person running the device when EATT is on, else None."""
    channels = gatt_channels(path)
    if channels <= 1:
        return None
    return (
        f"BlueZ opens {channels} ATT bearers per connection (Enhanced ATT; {path} [GATT] "
        "Channels): a central running BlueZ may then receive the device's frames out of "
        "order and fail the session. Set 'Channels = 1' under [GATT] in "
        f"{path} and restart bluetooth (docs/raspberry-pi.md)"
    )
