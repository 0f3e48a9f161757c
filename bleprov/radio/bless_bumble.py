"""A bless server backend on bumble (peripheral role): bless's API on a virtual or HCI radio.

bless chooses its backend from ``sys.platform`` and has none for bumble, so tests and demos
build :class:`BlessServerBumble` explicitly and hand it to
:class:`~bleprov.radio.bless_peripheral.BlessPeripheral`. Reads, writes and notifications go
through bless's own routing (``read_request``/``write_request``/``update_value``) exactly as on
BlueZ, so the adapter's code path is the real one. What bless cannot express - connection,
MTU and subscription events, raw advertising data, disconnecting a central - is offered only
through the narrow :class:`~bleprov.radio.bless_peripheral.BlessLinkHooks` side channel.

    server = BlessServerBumble(name="bleprov", device=device)
    peripheral = BlessPeripheral(server)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid as uuid_module
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Final

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.descriptor import BleakGATTDescriptor
from bless.backends.attribute import GATTAttributePermissions
from bless.backends.characteristic import BlessGATTCharacteristic, GATTCharacteristicProperties
from bless.backends.descriptor import BlessGATTDescriptor, GATTDescriptorProperties
from bless.backends.server import BaseBlessServer
from bless.backends.service import BlessGATTService
from bumble import data_types, gatt, hci
from bumble.att import ATT_Error, Attribute, ErrorCode
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device

if TYPE_CHECKING:
    from bleprov.radio.bless_peripheral import LinkListener

logger = logging.getLogger(__name__)

_SIG_BASE_SUFFIX: Final = "-0000-1000-8000-00805f9b34fb"
_CCCD_NOTIFY: Final = 0x01
_CCCD_INDICATE: Final = 0x02
#: Legacy advertising data: flags (3) + 128-bit UUID list (18) leave 10 bytes for the name.
_DEFAULT_NAME_MAX: Final = 8


def _bumble_uuid(value: str) -> UUID:
    """Bluetooth SIG UUIDs (0x2901...) go on the air in their 16-bit form."""
    text = str(uuid_module.UUID(value))
    if text.startswith("0000") and text.endswith(_SIG_BASE_SUFFIX):
        return UUID.from_16_bits(int(text[4:8], 16))
    return UUID(text)


def _reason_name(reason: int) -> str:
    """HCI disconnection reason as bumble names it (``REMOTE_USER_TERMINATED_CONNECTION_ERROR``)."""
    try:
        return hci.HCI_ErrorCode(reason).name
    except ValueError:
        return f"0x{reason:02X}"


def _bumble_permissions(
    permissions: GATTAttributePermissions, *, readable: bool, writeable: bool
) -> Attribute.Permissions:
    out = Attribute.Permissions(0)
    if readable:
        out |= Attribute.Permissions.READABLE
    if writeable:
        out |= Attribute.Permissions.WRITEABLE
    if permissions & GATTAttributePermissions.read_encryption_required:
        out |= Attribute.Permissions.READ_REQUIRES_ENCRYPTION
    if permissions & GATTAttributePermissions.write_encryption_required:
        out |= Attribute.Permissions.WRITE_REQUIRES_ENCRYPTION
    return out


class BlessGATTServiceBumble(BlessGATTService):
    """A bless service; its bumble ``gatt.Service`` is built (and gets handles) in start()."""

    def __init__(self, uuid: str | uuid_module.UUID) -> None:
        super().__init__(uuid)
        self._characteristics: dict[int, BleakGATTCharacteristic] = {}
        self._bumble_characteristics: list[BlessGATTCharacteristicBumble] = []
        self._handle = 0
        self.obj: gatt.Service | None = None

    async def init(self, server: BaseBlessServer) -> None:
        """Nothing to allocate before start(): bumble assigns handles when it is added."""
        self.server = server

    @property
    def handle(self) -> int:
        return self.obj.handle if self.obj is not None else 0

    @property
    def uuid(self) -> str:
        uuid: str = self._uuid
        return uuid

    @property
    def bumble_characteristics(self) -> list[BlessGATTCharacteristicBumble]:
        return list(self._bumble_characteristics)

    def add_characteristic(self, characteristic: BleakGATTCharacteristic) -> None:
        """Keyed by position: handles exist only after start()."""
        if not isinstance(characteristic, BlessGATTCharacteristicBumble):
            raise TypeError("BlessGATTServiceBumble holds BlessGATTCharacteristicBumble only")
        self._characteristics[len(self._characteristics)] = characteristic
        self._bumble_characteristics.append(characteristic)

    def build(self, server: BaseBlessServer) -> gatt.Service:
        self.obj = gatt.Service(
            _bumble_uuid(self.uuid), [c.build(server) for c in self._bumble_characteristics]
        )
        return self.obj


class BlessGATTCharacteristicBumble(BlessGATTCharacteristic):
    """A bless characteristic whose bumble value routes through bless's read/write_request."""

    def __init__(
        self,
        uuid: str | uuid_module.UUID,
        properties: GATTCharacteristicProperties,
        permissions: GATTAttributePermissions,
        value: bytearray | None,
    ) -> None:
        super().__init__(uuid, properties, permissions, value)
        self._value = bytearray(value or b"")
        self._descriptors: dict[int, BleakGATTDescriptor] = {}
        self._bumble_descriptors: list[BlessGATTDescriptorBumble] = []
        self._bumble_service: BlessGATTServiceBumble | None = None
        self._max_write_without_response_size = lambda: 20
        self.obj: gatt.Characteristic[bytes] | None = None

    async def init(self, service: BlessGATTService) -> None:
        if not isinstance(service, BlessGATTServiceBumble):
            raise TypeError("a BlessGATTCharacteristicBumble belongs to a BlessGATTServiceBumble")
        self._bumble_service = service

    @property
    def handle(self) -> int:
        return self.obj.handle if self.obj is not None else 0

    @property
    def service_uuid(self) -> str:
        service = self._bumble_service
        return service.uuid if service is not None else ""

    @property
    def service_handle(self) -> int:
        service = self._bumble_service
        return service.handle if service is not None else 0

    @property
    def value(self) -> bytearray:
        return self._value

    @value.setter
    def value(self, val: bytearray) -> None:
        self._value = bytearray(val)

    @property
    def properties_flags(self) -> GATTCharacteristicProperties:
        flags: GATTCharacteristicProperties = self._properties_flags
        return flags

    def add_descriptor(self, descriptor: BleakGATTDescriptor) -> None:
        """Keyed by position: handles exist only after start()."""
        if not isinstance(descriptor, BlessGATTDescriptorBumble):
            raise TypeError("a BlessGATTCharacteristicBumble holds BlessGATTDescriptorBumble only")
        self._descriptors[len(self._descriptors)] = descriptor
        self._bumble_descriptors.append(descriptor)

    def build(self, server: BaseBlessServer) -> gatt.Characteristic[bytes]:
        uuid: str = self._uuid
        flags = self.properties_flags

        def read(_connection: Connection) -> bytes:
            try:
                return bytes(server.read_request(uuid))
            except Exception as exc:
                logger.exception("bless read callback failed for %s", uuid)
                raise ATT_Error(ErrorCode.UNLIKELY_ERROR, self.handle) from exc

        def write(_connection: Connection, value: bytes) -> None:
            try:
                server.write_request(uuid, bytearray(value))
            except Exception as exc:
                logger.exception("bless write callback failed for %s", uuid)
                raise ATT_Error(ErrorCode.UNLIKELY_ERROR, self.handle) from exc

        self.obj = gatt.Characteristic(
            _bumble_uuid(uuid),
            gatt.Characteristic.Properties(flags.value & 0xFF),
            _bumble_permissions(
                self._permissions,
                readable=bool(flags & GATTCharacteristicProperties.read),
                writeable=bool(
                    flags
                    & (
                        GATTCharacteristicProperties.write
                        | GATTCharacteristicProperties.write_without_response
                    )
                ),
            ),
            gatt.CharacteristicValue(read=read, write=write),
            descriptors=[d.build() for d in self._bumble_descriptors],
        )
        return self.obj


class BlessGATTDescriptorBumble(BlessGATTDescriptor):
    """A static descriptor (e.g. the 0x2901 user description)."""

    def __init__(
        self,
        uuid: str | uuid_module.UUID,
        properties: GATTDescriptorProperties,
        permissions: GATTAttributePermissions,
        value: bytearray | None,
    ) -> None:
        super().__init__(uuid, properties, permissions, value)
        self._value = bytearray(value or b"")
        self._bumble_characteristic: BlessGATTCharacteristicBumble | None = None
        self.obj: gatt.Descriptor | None = None

    async def init(self, characteristic: BlessGATTCharacteristic) -> None:
        if not isinstance(characteristic, BlessGATTCharacteristicBumble):
            raise TypeError(
                "a BlessGATTDescriptorBumble belongs to a BlessGATTCharacteristicBumble"
            )
        self._bumble_characteristic = characteristic
        characteristic.add_descriptor(self)

    @property
    def handle(self) -> int:
        return self.obj.handle if self.obj is not None else 0

    @property
    def characteristic_uuid(self) -> str:
        characteristic = self._bumble_characteristic
        return characteristic.uuid if characteristic is not None else ""

    @property
    def characteristic_handle(self) -> int:
        characteristic = self._bumble_characteristic
        return characteristic.handle if characteristic is not None else 0

    @property
    def value(self) -> bytearray:
        if self.obj is not None and isinstance(self.obj.value, bytes):
            return bytearray(self.obj.value)
        return self._value

    @value.setter
    def value(self, val: bytearray) -> None:
        self._value = bytearray(val)
        if self.obj is not None:
            self.obj.value = bytes(val)

    def build(self) -> gatt.Descriptor:
        properties: GATTDescriptorProperties = self._properties
        self.obj = gatt.Descriptor(
            _bumble_uuid(self._uuid),
            _bumble_permissions(
                self._permissions,
                readable=bool(properties & GATTDescriptorProperties.read),
                writeable=bool(properties & GATTDescriptorProperties.write),
            ),
            bytes(self._value),
        )
        return self.obj


class BlessServerBumble(BaseBlessServer):
    """bless's server API on a bumble :class:`~bumble.device.Device` (peripheral role).

    ``start(advertising_data=..., scan_response_data=...)`` advertises the caller's raw AD
    structures (default: flags, the first service's UUID and the name, as bless does);
    ``start(advertise=False)`` only registers the database and powers the device on. The
    caller owns the device: :meth:`stop` disconnects centrals but does not power it off.
    """

    def __init__(
        self,
        name: str,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        device: Device,
        **kwargs: Any,
    ) -> None:
        super().__init__(loop=loop or asyncio.get_running_loop(), **kwargs)
        self.name = name
        self.device = device
        self._registered = False
        self._advertising: tuple[bytes, bytes] | None = None
        self._centrals: dict[str, Connection] = {}
        self._listener: LinkListener | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        device.on(Device.EVENT_CONNECTION, self._on_connection)
        device.on("characteristic_subscription", self._on_subscription)

    # -- bless API ------------------------------------------------------------------------

    async def start(
        self,
        advertising_data: bytes | None = None,
        scan_response_data: bytes | None = None,
        advertise: bool = True,
        **kwargs: Any,
    ) -> bool:
        if not self._registered:
            self.device.add_services([s.build(self) for s in self._bumble_services()])
            self._registered = True
        if not self.device.powered_on:
            await self.device.power_on()
        if advertise:
            data = advertising_data if advertising_data is not None else self._default_ad()
            self._advertising = (data, scan_response_data or b"")
            await self._advertise()
        return True

    async def stop(self) -> bool:
        await self.stop_advertising()
        for connection in list(self._centrals.values()):
            with contextlib.suppress(Exception):
                await connection.disconnect()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return True

    async def is_connected(self) -> bool:
        return bool(self._centrals)

    async def is_advertising(self) -> bool:
        return self._advertising is not None and bool(self.device.is_advertising)

    async def add_new_service(self, uuid: str) -> None:
        service = BlessGATTServiceBumble(uuid)
        await service.init(self)
        self.services[service.uuid] = service

    async def add_new_characteristic(
        self,
        service_uuid: str,
        char_uuid: str,
        properties: GATTCharacteristicProperties,
        value: bytearray | None,
        permissions: GATTAttributePermissions,
    ) -> None:
        service = self._service(service_uuid)
        characteristic = BlessGATTCharacteristicBumble(char_uuid, properties, permissions, value)
        await characteristic.init(service)
        service.add_characteristic(characteristic)

    async def add_new_descriptor(
        self,
        service_uuid: str,
        char_uuid: str,
        desc_uuid: str,
        properties: GATTDescriptorProperties,
        value: bytearray | None,
        permissions: GATTAttributePermissions,
    ) -> None:
        if self._registered:
            raise RuntimeError("descriptors must be added before start()")
        characteristic = self._service(service_uuid).get_characteristic(char_uuid)
        if characteristic is None:
            raise KeyError(f"no characteristic {char_uuid} in service {service_uuid}")
        descriptor = BlessGATTDescriptorBumble(desc_uuid, properties, permissions, value)
        await descriptor.init(characteristic)

    def update_value(self, service_uuid: str, char_uuid: str) -> bool:
        """Notify or indicate the current value to each subscriber, as its CCCD asks.

        Like bless on BlueZ this returns at once; the PDUs go out from tasks started here,
        in call order (a notification with its value given never waits).
        """
        service = self.get_service(service_uuid)
        if service is None:
            return False
        characteristic = service.get_characteristic(char_uuid)
        if not isinstance(characteristic, BlessGATTCharacteristicBumble) or not characteristic.obj:
            return False
        attribute = characteristic.obj
        flags = characteristic.properties_flags
        value = bytes(characteristic.value)
        for bearer, cccds in list(self.device.gatt_server.subscribers.items()):
            cccd = cccds.get(attribute.handle, b"")
            if len(cccd) != 2:
                continue
            if cccd[0] & _CCCD_NOTIFY and flags & GATTCharacteristicProperties.notify:
                self._spawn(self.device.gatt_server.notify_subscriber(bearer, attribute, value))
            elif cccd[0] & _CCCD_INDICATE and flags & GATTCharacteristicProperties.indicate:
                self._spawn(self.device.gatt_server.indicate_subscriber(bearer, attribute, value))
        return True

    # -- link hooks (bleprov.radio.bless_peripheral.BlessLinkHooks) ------------------------

    def set_link_listener(self, listener: LinkListener | None) -> None:
        """Receive connection, MTU and subscription events, which bless does not carry."""
        self._listener = listener

    async def stop_advertising(self) -> None:
        self._advertising = None
        await self.device.stop_advertising()

    async def disconnect_central(self, connection: str) -> None:
        central = self._centrals.get(connection)
        if central is not None:
            await central.disconnect()

    # -- bumble side ----------------------------------------------------------------------

    def _service(self, uuid: str) -> BlessGATTServiceBumble:
        service = self.services[str(uuid_module.UUID(uuid))]
        if not isinstance(service, BlessGATTServiceBumble):
            raise TypeError(f"service {uuid} was not created by this server")
        return service

    def _bumble_services(self) -> Sequence[BlessGATTServiceBumble]:
        return [s for s in self.services.values() if isinstance(s, BlessGATTServiceBumble)]

    def _default_ad(self) -> bytes:
        """What bless advertises on BlueZ: the first service UUID and the name."""
        structures: list[Any] = [
            data_types.Flags(
                AdvertisingData.Flags.LE_GENERAL_DISCOVERABLE_MODE
                | AdvertisingData.Flags.BR_EDR_NOT_SUPPORTED
            )
        ]
        if self.services:
            first = next(iter(self.services.values()))
            structures.append(data_types.CompleteListOf128BitServiceUUIDs([UUID(first.uuid)]))
        structures.append(data_types.CompleteLocalName(self.name[:_DEFAULT_NAME_MAX]))
        return bytes(AdvertisingData(structures))

    async def _advertise(self) -> None:
        if self._advertising is None:
            return
        data, scan = self._advertising
        await self.device.start_advertising(advertising_data=data, scan_response_data=scan)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("bumble GATT task failed: %r", task.exception())

    def _on_connection(self, connection: Connection) -> None:
        if connection.role != hci.Role.PERIPHERAL:
            return
        key = str(connection.peer_address)
        self._centrals[key] = connection

        def on_mtu() -> None:
            if self._listener is not None:
                self._listener.link_mtu_changed(key, connection.att_mtu)

        def on_disconnection(reason: int) -> None:
            self._centrals.pop(key, None)
            connection.remove_listener(Connection.EVENT_CONNECTION_ATT_MTU_UPDATE, on_mtu)
            if self._listener is not None:
                self._listener.link_disconnected(key, _reason_name(reason))
            if self._advertising is not None:  # keep advertising, as BlueZ does
                self._spawn(self._advertise())

        connection.on(Connection.EVENT_CONNECTION_ATT_MTU_UPDATE, on_mtu)
        connection.once(Connection.EVENT_DISCONNECTION, on_disconnection)
        if self._listener is not None:
            self._listener.link_connected(key, connection.att_mtu)

    def _on_subscription(
        self, bearer: Any, characteristic: gatt.Characteristic[Any], notify: bool, indicate: bool
    ) -> None:
        connection = bearer if isinstance(bearer, Connection) else bearer.connection
        if self._listener is None or connection.role != hci.Role.PERIPHERAL:
            return
        for service in self._bumble_services():
            for bless_characteristic in service.bumble_characteristics:
                if bless_characteristic.obj is characteristic:
                    self._listener.link_subscription_changed(
                        str(connection.peer_address),
                        bless_characteristic.uuid,
                        notify or indicate,
                    )
