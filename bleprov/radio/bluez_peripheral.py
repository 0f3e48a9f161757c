"""The device's GATT server on Linux: our own BlueZ GATT application over dbus-fast.

bless's BlueZ backend drops the ``options`` BlueZ passes to ``ReadValue``/``WriteValue``: it
ignores ``offset``, so a long read (ATT Read Blob) of ``info`` returns the first chunk again
and again, and it never learns the MTU or which central wrote. :class:`BluezPeripheral`
serves the profile as a GATT application of its own (BlueZ's doc/gatt-api.txt):

- an ``org.freedesktop.DBus.ObjectManager`` at :data:`APP_ROOT` listing one
  ``GattService1``, a ``GattCharacteristic1`` per profile characteristic and a
  ``GattDescriptor1`` (0x2901, user description) under each, the same database the bless
  adapter builds; registered with ``GattManager1.RegisterApplication``;
- ``ReadValue`` honours ``offset``; ``ReadValue``/``WriteValue`` take the central from
  ``device`` (its D-Bus path is the :data:`~bleprov.radio.peripheral.ConnectionId`, as for
  :class:`~bleprov.radio.bluez.BluezConnectionMonitor`) and the ATT MTU from ``mtu``;
- frames on ``tx`` go out as ``PropertiesChanged`` of its ``Value``: bluetoothd notifies
  (or indicates, as the central's CCC asks) every subscribed central;
- our ``LEAdvertisement1`` with the service data (:mod:`bleprov.radio.bluez`) and
  ``Device1.Connected`` for connections;
- :attr:`lost` completes when bluetoothd leaves the bus, the adapter goes away or the bus
  connection drops: the application and the advertisement are gone with them.

Seen on bluetoothd 5.66 (two vhci controllers under qemu, a bleak central): ``ReadValue`` and
``WriteValue`` options are ``device``, ``link`` ("LE") and ``mtu``, plus ``offset`` on each
Read Blob (47, 94, ... at MTU 48) and never ``type``; the MTU (517, or the configured
ExchangeMTU) comes with the first read or write, after ``Device1.Connected``.

One dbus-fast connection to the system bus carries all of it; neither bless nor dbus-next
is used. ``AcquireWrite``/``AcquireNotify`` (file descriptors instead of a D-Bus message per
frame) are not offered: bluetoothd 5.66 does not wait for our ``WriteValue`` reply on a
characteristic with write-without-response (it answers the ATT write itself), notifications
are one-way signals, so there is no round trip to save; and a write on an acquired socket
carries neither the central nor the MTU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from dbus_fast import DBusError, Message, MessageType, Variant
from dbus_fast.annotations import DBusBool, DBusBytes, DBusDict, DBusObjectPath, DBusStr
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from bleprov.core.frames import ATT_MIN_MTU
from bleprov.core.profile import USER_DESCRIPTION_UUID, CharacteristicSpec, GattProfile
from bleprov.radio import bluez
from bleprov.radio.errors import SYSTEM_RADIO_HINT, reason
from bleprov.radio.peripheral import (
    MAX_PENDING_EVENTS,
    CentralConnected,
    CentralDisconnected,
    ConnectionId,
    EventHandler,
    FrameReceived,
    MtuChanged,
    Peripheral,
    PeripheralCapabilities,
    PeripheralEvent,
    SubscriptionChanged,
)

if TYPE_CHECKING:
    from dbus_fast.aio import MessageBus

logger = logging.getLogger(__name__)

#: Root of our GATT application (its ObjectManager); the objects live below it.
APP_ROOT: Final = "/org/bleprov/gatt"
SERVICE_PATH: Final = f"{APP_ROOT}/service0"
GATT_MANAGER_IFACE: Final = "org.bluez.GattManager1"
GATT_SERVICE_IFACE: Final = "org.bluez.GattService1"
GATT_CHARACTERISTIC_IFACE: Final = "org.bluez.GattCharacteristic1"
GATT_DESCRIPTOR_IFACE: Final = "org.bluez.GattDescriptor1"

_ERROR_PREFIX: Final = "org.bluez.Error."
#: Profile permissions that turn a BlueZ flag into its encrypted form (as bless does).
_ENCRYPTED: Final = {
    "read": ("read-encryption-required", "encrypt-read"),
    "write": ("write-encryption-required", "encrypt-write"),
}
_DBUS_DAEMON: Final = "org.freedesktop.DBus"


def characteristic_flags(spec: CharacteristicSpec) -> list[str]:
    """BlueZ ``Flags`` for a profile characteristic: its properties, with ``read``/``write``
    made ``encrypt-read``/``encrypt-write`` where the permissions require encryption."""
    flags = []
    for prop in spec.properties:
        permission, encrypted = _ENCRYPTED.get(prop, ("", ""))
        flags.append(encrypted if permission and permission in spec.permissions else prop)
    return flags


def _option(options: Mapping[str, Variant], key: str) -> object:
    value = options.get(key)
    return value.value if isinstance(value, Variant) else value


def _int_option(options: Mapping[str, Variant], key: str) -> int | None:
    value = _option(options, key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _bluez_error(name: str, text: str) -> DBusError:
    """An error reply bluetoothd turns into an ATT error (gatt-database.c)."""
    return DBusError(_ERROR_PREFIX + name, text)


class GattService(ServiceInterface):
    """``org.bluez.GattService1``: the profile's primary service."""

    def __init__(self, uuid: str) -> None:
        super().__init__(GATT_SERVICE_IFACE)
        self._uuid = uuid

    @dbus_property(access=PropertyAccess.READ, name="UUID")
    def uuid(self) -> DBusStr:
        return self._uuid

    @dbus_property(access=PropertyAccess.READ, name="Primary")
    def primary(self) -> DBusBool:
        return True


class GattCharacteristic(ServiceInterface):
    """``org.bluez.GattCharacteristic1`` of one profile characteristic; bluetoothd calls it
    for each ATT request of a central, the peripheral decides."""

    def __init__(self, owner: BluezPeripheral, spec: CharacteristicSpec, path: str) -> None:
        super().__init__(GATT_CHARACTERISTIC_IFACE)
        self._owner = owner
        self.spec = spec
        self.path = path
        self.value = b""
        self.notifying = False

    @dbus_property(access=PropertyAccess.READ, name="UUID")
    def uuid(self) -> DBusStr:
        return self.spec.uuid

    @dbus_property(access=PropertyAccess.READ, name="Service")
    def service(self) -> DBusObjectPath:
        return SERVICE_PATH

    @dbus_property(access=PropertyAccess.READ, name="Flags")
    def flags(self) -> bluez.DBusStrList:
        return characteristic_flags(self.spec)

    @dbus_property(access=PropertyAccess.READ, name="Value")
    def value_(self) -> DBusBytes:
        return self.value

    @dbus_property(access=PropertyAccess.READ, name="Notifying")
    def notifying_(self) -> DBusBool:
        return self.notifying

    @dbus_method(name="ReadValue")
    def read_value(self, options: DBusDict) -> DBusBytes:
        return self._owner._read(self.spec, options)

    @dbus_method(name="WriteValue")
    def write_value(self, value: DBusBytes, options: DBusDict) -> bluez.DBusNoReply:
        self._owner._write(self.spec, bytes(value), options)

    @dbus_method(name="StartNotify")
    def start_notify(self) -> bluez.DBusNoReply:
        self.notifying = True
        self._owner._subscription(self.spec, True)

    @dbus_method(name="StopNotify")
    def stop_notify(self) -> bluez.DBusNoReply:
        self.notifying = False
        self._owner._subscription(self.spec, False)

    @dbus_method(name="Confirm")
    def confirm(self) -> bluez.DBusNoReply:
        """A central confirmed an indication (bluetoothd tells; nothing waits for it)."""


class GattDescriptor(ServiceInterface):
    """``org.bluez.GattDescriptor1``: the read-only user description (0x2901)."""

    def __init__(self, characteristic_path: str, value: bytes) -> None:
        super().__init__(GATT_DESCRIPTOR_IFACE)
        self._characteristic = characteristic_path
        self._value = value

    @dbus_property(access=PropertyAccess.READ, name="UUID")
    def uuid(self) -> DBusStr:
        return USER_DESCRIPTION_UUID

    @dbus_property(access=PropertyAccess.READ, name="Characteristic")
    def characteristic(self) -> DBusObjectPath:
        return self._characteristic

    @dbus_property(access=PropertyAccess.READ, name="Flags")
    def flags(self) -> bluez.DBusStrList:
        return ["read"]

    @dbus_property(access=PropertyAccess.READ, name="Value")
    def value_(self) -> DBusBytes:
        return self._value

    @dbus_method(name="ReadValue")
    def read_value(self, options: DBusDict) -> DBusBytes:
        return read_at(self._value, options)

    @dbus_method(name="WriteValue")
    def write_value(self, value: DBusBytes, options: DBusDict) -> bluez.DBusNoReply:
        raise _bluez_error("NotPermitted", "the user description is read-only")


def read_at(value: bytes, options: Mapping[str, Variant]) -> bytes:
    """``value`` from the ``offset`` option on: bluetoothd sends each ATT Read Blob of a
    long read as ``ReadValue`` with the offset and cuts the answer to MTU - 1 bytes, so
    the rest from the offset is the right answer (and all of it at offset 0)."""
    offset = _int_option(options, "offset") or 0
    if offset > len(value):
        raise _bluez_error("InvalidOffset", f"offset {offset} is past the {len(value)}-byte value")
    return value[offset:]


class BluezPeripheral(Peripheral):
    """A :class:`Peripheral` serving our GATT application on BlueZ (see the module doc).

    ``adapter`` names the controller (``hci0``; ``None``: the first that can advertise);
    ``name`` is the advertised name when the caller gives none. Only one central at a time
    is served by the device link; bluetoothd notifies every subscribed central.
    """

    #: MtuChanged arrives with the first read or write of a central (bluetoothd passes the
    #: MTU only then); the host announces its MTU in OPEN, itself a write, anyway.
    #: bluetoothd sends notifications to a client that supports them (another BlueZ does)
    #: as Multiple Handle Value Notifications, a 2-byte length before each value, and cuts
    #: a value longer than MTU - 5 to fit, silently (src/shared/gatt-server.c; seen in the
    #: lab: a 514-byte frame arrived as 512, and the host lost frame 3 of a message).
    capabilities = PeripheralCapabilities(
        reports_mtu=True, advertises_service_data=True, notification_overhead=2
    )

    def __init__(self, *, adapter: str | None = None, name: str = "bleprov") -> None:
        self._adapter = adapter
        self._name = name
        self._bus: MessageBus | None = None
        self._adapter_path = ""
        self._profile: GattProfile | None = None
        self._on_event: EventHandler | None = None
        self._info = b""
        self._characteristics: dict[str, GattCharacteristic] = {}
        self._exported: list[tuple[str, ServiceInterface]] = []
        self._registered = False
        self._monitor: bluez.BluezConnectionMonitor | None = None
        self._advertisement: bluez.BluezAdvertisement | None = None
        self._adv_serial = 0
        #: Connected centrals (D-Bus device paths) and the ATT MTU each is known to have.
        self._links: dict[ConnectionId, int] = {}
        #: What a central's long read of a characteristic returns, fixed at offset 0.
        self._reads: dict[tuple[ConnectionId, str], bytes] = {}
        self._pending: list[Callable[[ConnectionId], PeripheralEvent]] = []
        self._lost: asyncio.Future[None] | None = None
        self._watch_rules: list[str] = []
        self._disconnect_watch: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False

    @property
    def lost(self) -> asyncio.Future[None]:
        """Completes when bluetoothd or the adapter goes away (or the bus connection):
        what we registered is gone, so the daemon exits for its service manager to
        restart it. Cancelled by :meth:`close`."""
        if self._lost is None:
            self._lost = asyncio.get_running_loop().create_future()
        return self._lost

    @property
    def adapter_path(self) -> str:
        """The adapter's object path (``/org/bluez/hci0``) once started."""
        return self._adapter_path

    # -- Peripheral API -------------------------------------------------------------------

    async def start(self, profile: GattProfile, on_event: EventHandler) -> None:
        if self._started:
            raise RuntimeError("BluezPeripheral.start() was already called")
        self._started = True
        self._profile, self._on_event = profile, on_event
        _ = self.lost  # made in this loop, before anything can complete it
        if (warning := bluez.eatt_warning()) is not None:
            logger.warning("%s", warning)
        try:
            self._bus = await bluez.connect_system_bus()
            self._adapter_path = await self._find_adapter(self._bus)
            await self._watch_bluez(self._bus)
            self._monitor = bluez.BluezConnectionMonitor(
                self._bus, self._on_connection, self._adapter_path
            )
            await self._monitor.start()
            self._export_application(self._bus, profile)
            await self._register_application(self._bus)
        except BaseException:
            await self._release()
            raise

    def set_info(self, value: bytes) -> None:
        self._info = bytes(value)
        info = self._characteristic("info")
        if info is not None:
            info.value = self._info

    async def start_advertising(self, service_data: bytes, local_name: str) -> None:
        bus, profile = self._require_started()
        adv = profile.advertisement
        if len(service_data) != adv.service_data_size:
            raise ValueError(
                f"service data is {len(service_data)} bytes, "
                f"the profile says {adv.service_data_size}"
            )
        scan_uuids = (
            [profile.service_uuid] if "complete-128-bit-service-uuids" in adv.scan_response else []
        )
        self._adv_serial += 1
        advertisement = bluez.BluezAdvertisement(
            f"{bluez.ADVERTISEMENT_PATH}{self._adv_serial}",
            service_data={adv.service_data_uuid: service_data},
            local_name=_short_name(profile, local_name) or self._name,
            scan_response_service_uuids=scan_uuids,
        )
        await self.stop_advertising()
        try:
            await bluez.register_advertisement(bus, self._adapter_path, advertisement)
        except bluez.BluezError as exc:
            raise type(exc)(f"BlueZ refused our advertisement: {exc}", exc.name) from exc
        self._advertisement = advertisement

    async def stop_advertising(self) -> None:
        advertisement, self._advertisement = self._advertisement, None
        if advertisement is None or self._bus is None:
            return
        try:
            await bluez.unregister_advertisement(self._bus, self._adapter_path, advertisement)
        except bluez.BluezError as exc:
            logger.warning("could not unregister the advertisement: %s", exc)

    async def send(self, connection: ConnectionId, frame: bytes) -> None:
        """Set ``tx``'s ``Value``: bluetoothd notifies each subscribed central. Returns when
        the signal is written to the bus (bluetoothd queues it for the air)."""
        bus, _ = self._require_started()
        tx = self._characteristic("tx")
        if connection not in self._links or tx is None:
            logger.debug("dropping a %d-byte frame for a connection that is gone", len(frame))
            return
        tx.value = bytes(frame)
        await bus.send(
            Message.new_signal(
                tx.path,
                bluez.PROPERTIES_IFACE,
                "PropertiesChanged",
                "sa{sv}as",
                [GATT_CHARACTERISTIC_IFACE, {"Value": Variant("ay", tx.value)}, []],
            )
        )

    async def disconnect(self, connection: ConnectionId) -> None:
        bus, _ = self._require_started()
        if connection not in self._links:
            return
        if not await bluez.disconnect_device(bus, connection):
            self._link_down(connection, "disconnected")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bus is not None and self._bus.connected:
            await self.stop_advertising()
        await self._release()
        for connection in list(self._links):
            self._link_down(connection, "closed")

    # -- requests from bluetoothd -----------------------------------------------------------

    def _read(self, spec: CharacteristicSpec, options: Mapping[str, Variant]) -> bytes:
        """``ReadValue``: the value from ``offset`` on. A long read sees one value: what a
        central got at offset 0 is what its following Read Blobs continue."""
        connection = self._access(options)
        offset = _int_option(options, "offset") or 0
        current = self._info if spec.key == "info" else b""
        if connection is None:
            return read_at(current, options)
        key = (connection, spec.key)
        if offset == 0:
            self._reads[key] = current
        return read_at(self._reads.get(key, current), options)

    def _write(
        self, spec: CharacteristicSpec, value: bytes, options: Mapping[str, Variant]
    ) -> None:
        """``WriteValue`` on ``rx``: one frame (Write Request or Write Command alike).

        Prepared (long or reliable) writes are refused: a frame fits in one ATT write by
        construction (the framing sizes frames to the MTU), so a nonzero ``offset`` or
        ``type`` "reliable" is not our protocol. bluetoothd 5.66 acknowledges writes to a
        characteristic with write-without-response before it asks us, so the refusal is
        logged rather than seen by the central; the frame is dropped either way.
        """
        if spec.key != "rx":
            raise _bluez_error("NotPermitted", f"{spec.key} is not writable")
        logger.debug("WriteValue on rx: %d bytes, options %s", len(value), sorted(options))
        offset = _int_option(options, "offset") or 0
        if offset:
            logger.warning("refusing a prepared write at offset %d to rx", offset)
            raise _bluez_error("InvalidOffset", "rx takes whole frames: no prepared writes")
        if _option(options, "type") == "reliable":
            logger.warning("refusing a reliable write to rx")
            raise _bluez_error("NotSupported", "rx takes whole frames: no reliable writes")
        connection = self._access(options)
        if connection is None:
            connection = self._current()
        if connection is None:
            logger.warning("dropping a %d-byte write with no central connected", len(value))
            return
        self._emit(FrameReceived(connection, value))

    def _subscription(self, spec: CharacteristicSpec, enabled: bool) -> None:
        """``StartNotify``/``StopNotify`` carry no central: they count for the current one
        (bluetoothd calls them for the first subscriber and after the last one)."""
        if spec.key != "tx":
            return
        connection = self._current()
        if connection is not None:
            self._emit(SubscriptionChanged(connection, enabled))
        elif len(self._pending) < MAX_PENDING_EVENTS:
            self._pending.append(lambda c: SubscriptionChanged(c, enabled))

    def _access(self, options: Mapping[str, Variant]) -> ConnectionId | None:
        """Note the ``device`` and ``mtu`` of a read or write. A central is connected once it
        reads or writes, even before its ``Device1.Connected`` signal: bluetoothd emits
        property changes when idle, so a busy daemon may send the request first."""
        device = _option(options, "device")
        if not isinstance(device, str) or not device:
            return None
        mtu = _int_option(options, "mtu")
        known = self._links.get(device)
        if known is None:
            self._link_up(device, mtu or ATT_MIN_MTU)
        elif mtu is not None and mtu != known:
            self._links[device] = mtu
            self._emit(MtuChanged(device, mtu))
        return device

    def _current(self) -> ConnectionId | None:
        """The most recently connected central."""
        return next(reversed(self._links), None)

    # -- connections ------------------------------------------------------------------------

    def _on_connection(self, device_path: str, connected: bool) -> None:
        if connected:
            self._link_up(device_path, ATT_MIN_MTU)
        else:
            self._link_down(device_path, "disconnected")

    def _link_up(self, connection: ConnectionId, mtu: int) -> None:
        if connection in self._links or self._closed:
            return
        self._links[connection] = mtu
        self._emit(CentralConnected(connection, mtu))
        pending, self._pending = self._pending, []
        for make in pending:
            self._emit(make(connection))

    def _link_down(self, connection: ConnectionId, reason: str) -> None:
        if self._links.pop(connection, None) is None:
            return
        for key in [k for k in self._reads if k[0] == connection]:
            del self._reads[key]
        self._emit(CentralDisconnected(connection, reason))

    def _emit(self, event: PeripheralEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:
            logger.exception("peripheral event handler failed on %s", type(event).__name__)

    # -- setting up and tearing down -----------------------------------------------------

    async def _find_adapter(self, bus: MessageBus) -> str:
        try:
            return await bluez.find_adapter(bus, self._adapter)
        except bluez.BluezUnavailable as exc:
            if exc.name in bluez.NO_SERVICE_ERRORS:
                raise bluez.BluezUnavailable(
                    "the system Bluetooth is unavailable (BlueZ is not on the system D-Bus): "
                    f"{SYSTEM_RADIO_HINT}",
                    exc.name,
                ) from exc
            raise

    def _export_application(self, bus: MessageBus, profile: GattProfile) -> None:
        """The service, its characteristics and their user descriptions, under APP_ROOT."""
        objects: list[tuple[str, ServiceInterface]] = [
            (SERVICE_PATH, GattService(profile.service_uuid))
        ]
        for index, spec in enumerate(profile.characteristics):
            path = f"{SERVICE_PATH}/char{index}"
            characteristic = GattCharacteristic(self, spec, path)
            if spec.key == "info":
                characteristic.value = self._info
            self._characteristics[spec.key] = characteristic
            objects.append((path, characteristic))
            objects.append((f"{path}/desc0", GattDescriptor(path, spec.description.encode())))
        for path, interface in objects:
            bus.export(path, interface)
            self._exported.append((path, interface))

    async def _register_application(self, bus: MessageBus) -> None:
        """bluetoothd reads the objects back (GetManagedObjects) before it answers."""
        try:
            await bluez.call(
                bus,
                self._adapter_path,
                GATT_MANAGER_IFACE,
                "RegisterApplication",
                "oa{sv}",
                [APP_ROOT, {}],
            )
        except bluez.BluezError as exc:
            raise type(exc)(f"BlueZ refused our GATT application: {exc}", exc.name) from exc
        self._registered = True

    async def _watch_bluez(self, bus: MessageBus) -> None:
        """Complete :attr:`lost` when org.bluez loses its owner, the adapter is removed,
        or the bus connection ends."""
        rules = [
            f"type='signal',sender='{_DBUS_DAEMON}',interface='{_DBUS_DAEMON}',"
            f"member='NameOwnerChanged',arg0='{bluez.BLUEZ_SERVICE}'",
            f"type='signal',sender='{bluez.BLUEZ_SERVICE}',"
            f"interface='{bluez.OBJECT_MANAGER_IFACE}',member='InterfacesRemoved'",
        ]
        bus.add_message_handler(self._on_bluez_signal)
        for rule in rules:
            await _bus_daemon_call(bus, "AddMatch", rule)
            self._watch_rules.append(rule)
        self._disconnect_watch = asyncio.get_running_loop().create_task(self._watch_disconnect(bus))

    def _on_bluez_signal(self, msg: Message) -> None:
        if msg.message_type != MessageType.SIGNAL:
            return
        if msg.member == "NameOwnerChanged" and msg.interface == _DBUS_DAEMON:
            name, _old, new = msg.body
            if name == bluez.BLUEZ_SERVICE and not new:
                self._radio_lost("bluetoothd left the system bus")
        elif msg.member == "InterfacesRemoved" and msg.interface == bluez.OBJECT_MANAGER_IFACE:
            path, interfaces = msg.body
            if path == self._adapter_path and bluez.ADAPTER_IFACE in interfaces:
                self._radio_lost(f"the adapter {path} went away")

    async def _watch_disconnect(self, bus: MessageBus) -> None:
        try:
            await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
        except Exception as exc:
            self._radio_lost(f"the system bus connection failed ({reason(exc)})")
        else:
            self._radio_lost("the system bus connection closed")

    def _radio_lost(self, why: str) -> None:
        if self._closed or self._lost is None or self._lost.done():
            return
        logger.info("BlueZ radio lost: %s", why)
        self._registered = False
        self._advertisement = None
        self._lost.set_result(None)

    async def _release(self) -> None:
        """Unregister and unexport what we registered, close the bus; never raises."""
        self._closed = True
        if self._lost is not None and not self._lost.done():
            self._lost.cancel()
        bus, self._bus = self._bus, None
        if bus is None:
            return
        connected = bus.connected
        if self._registered and connected:
            try:
                await bluez.call(
                    bus,
                    self._adapter_path,
                    GATT_MANAGER_IFACE,
                    "UnregisterApplication",
                    "o",
                    [APP_ROOT],
                )
            except bluez.BluezError as exc:
                logger.warning("could not unregister the GATT application: %s", exc)
        self._registered = False
        if self._monitor is not None:
            with contextlib.suppress(Exception):
                await self._monitor.stop()
        bus.remove_message_handler(self._on_bluez_signal)
        for rule in self._watch_rules if connected else []:
            with contextlib.suppress(Exception):
                await _bus_daemon_call(bus, "RemoveMatch", rule)
        for path, interface in self._exported:
            bus.unexport(path, interface)
        self._exported.clear()
        await bluez.close_bus(bus)
        if self._disconnect_watch is not None:
            # Not cancelled: that would cancel the bus's own disconnect future; it ends
            # with the bus, and _radio_lost ignores the close we asked for.
            with contextlib.suppress(Exception):
                await self._disconnect_watch

    def _characteristic(self, key: str) -> GattCharacteristic | None:
        return self._characteristics.get(key)

    def _require_started(self) -> tuple[MessageBus, GattProfile]:
        if self._bus is None or self._profile is None or self._closed:
            raise RuntimeError("BluezPeripheral is not started (or already closed)")
        return self._bus, self._profile


def _short_name(profile: GattProfile, local_name: str) -> str:
    """``local_name`` cut to the profile's limit in bytes, on a character boundary."""
    return local_name.encode()[: profile.advertisement.max_local_name].decode("utf-8", "ignore")


async def _bus_daemon_call(bus: MessageBus, member: str, rule: str) -> None:
    reply = await bus.call(
        Message(
            destination=_DBUS_DAEMON,
            path="/org/freedesktop/DBus",
            interface=_DBUS_DAEMON,
            member=member,
            signature="s",
            body=[rule],
        )
    )
    if reply is not None and reply.message_type == MessageType.ERROR:
        raise bluez.BluezUnavailable(
            f"D-Bus {member} failed: {reply.error_name}", reply.error_name or ""
        )
