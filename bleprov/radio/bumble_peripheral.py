"""Peripheral adapter on bumble: the virtual radio, or an HCI dongle driven directly.

bumble reports everything the device link needs (connections, MTU, subscriptions), so this
adapter is thin: it turns the profile into bumble GATT attributes and bumble's callbacks
into :class:`~bleprov.radio.peripheral.PeripheralEvent` objects.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bumble.device import Connection, Device
from bumble.gatt import (
    GATT_CHARACTERISTIC_USER_DESCRIPTION_DESCRIPTOR,
    Characteristic,
    CharacteristicValue,
    Descriptor,
    Service,
)

from bleprov.core.advertising import advertising_data, scan_response_data
from bleprov.core.errors import BleprovError
from bleprov.core.profile import CharacteristicSpec, GattProfile
from bleprov.radio.peripheral import (
    CentralConnected,
    CentralDisconnected,
    ConnectionId,
    EventHandler,
    FrameReceived,
    MtuChanged,
    Peripheral,
    PeripheralCapabilities,
    SubscriptionChanged,
)

logger = logging.getLogger(__name__)

_PROPERTIES = {
    "read": Characteristic.Properties.READ,
    "write": Characteristic.Properties.WRITE,
    "write-without-response": Characteristic.Properties.WRITE_WITHOUT_RESPONSE,
    "notify": Characteristic.Properties.NOTIFY,
    "indicate": Characteristic.Properties.INDICATE,
}
_PERMISSIONS = {
    "readable": Characteristic.Permissions.READABLE,
    "writeable": Characteristic.Permissions.WRITEABLE,
    "read-encryption-required": Characteristic.Permissions.READ_REQUIRES_ENCRYPTION,
    "write-encryption-required": Characteristic.Permissions.WRITE_REQUIRES_ENCRYPTION,
}


class PeripheralError(BleprovError):
    """The radio refused an operation (not connected, not subscribed, stack error)."""


def build_gatt_service(
    profile: GattProfile,
    *,
    on_write: Any,
    on_read: Any,
) -> tuple[Service, dict[str, Characteristic[bytes]]]:
    """Bumble attributes for the profile; bumble adds the CCCDs itself."""
    characteristics: dict[str, Characteristic[bytes]] = {}
    for spec in profile.characteristics:
        value: Any = b""
        if "write" in spec.properties or "write-without-response" in spec.properties:
            value = CharacteristicValue(write=lambda conn, v, s=spec: on_write(conn, s, v))
        elif "read" in spec.properties:
            value = CharacteristicValue(read=lambda conn, s=spec: on_read(conn, s))
        properties = Characteristic.Properties(0)
        for p in spec.properties:
            properties |= _PROPERTIES[p]
        permissions = Characteristic.Permissions(0)
        for perm in spec.permissions:
            permissions |= _PERMISSIONS[perm]
        description = Descriptor(
            GATT_CHARACTERISTIC_USER_DESCRIPTION_DESCRIPTOR,
            Descriptor.READABLE,
            spec.description.encode("utf-8"),
        )
        characteristics[spec.key] = Characteristic(
            spec.uuid, properties, permissions, value, descriptors=[description]
        )
    service = Service(profile.service_uuid, list(characteristics.values()))
    return service, characteristics


class BumblePeripheral(Peripheral):
    """A :class:`Peripheral` on a bumble :class:`~bumble.device.Device`."""

    capabilities = PeripheralCapabilities(reports_mtu=True, advertises_service_data=True)

    def __init__(self, device: Device, *, advertising_interval_ms: float = 100.0) -> None:
        self.device = device
        #: 100 ms: quick discovery while waiting to be provisioned, as Apple's accessory
        #: guidelines suggest for the first seconds; the radio duty cycle stays low.
        self.advertising_interval_ms = advertising_interval_ms
        self._on_event: EventHandler | None = None
        self._info = b""
        self._chars: dict[str, Characteristic[bytes]] = {}
        self._connections: dict[ConnectionId, Connection] = {}
        self._indicate_only: set[ConnectionId] = set()
        self._advertising = False
        self._advertising_lock = asyncio.Lock()

    async def start(self, profile: GattProfile, on_event: EventHandler) -> None:
        self._on_event = on_event
        service, self._chars = build_gatt_service(
            profile, on_write=self._on_write, on_read=self._on_read
        )
        self.device.add_service(service)
        self.device.on("connection", self._on_connection)
        self.device.on("characteristic_subscription", self._on_subscription)
        if not self.device.powered_on:
            await self.device.power_on()

    def set_info(self, value: bytes) -> None:
        self._info = bytes(value)

    async def start_advertising(self, service_data: bytes, local_name: str) -> None:
        # One advertising operation at a time: bumble's stop_advertising is not safe to
        # run twice at once (both remove the same set; the second raises KeyError), and a
        # re-advertise can overlap close() on a loaded machine.
        async with self._advertising_lock:
            if self._advertising:
                await self.device.stop_advertising()
            await self.device.start_advertising(
                advertising_data=advertising_data(service_data),
                scan_response_data=scan_response_data(local_name),
                auto_restart=False,
                advertising_interval_min=self.advertising_interval_ms,
                advertising_interval_max=self.advertising_interval_ms,
            )
            self._advertising = True

    async def stop_advertising(self) -> None:
        async with self._advertising_lock:
            if self._advertising:
                self._advertising = False
                await self.device.stop_advertising()

    async def send(self, connection: ConnectionId, frame: bytes) -> None:
        conn = self._connections.get(connection)
        if conn is None:
            raise PeripheralError("not connected")
        tx = self._chars["tx"]
        if connection in self._indicate_only:
            await self.device.indicate_subscriber(conn, tx, frame, force=True)
        else:
            await self.device.notify_subscriber(conn, tx, frame, force=True)

    async def disconnect(self, connection: ConnectionId) -> None:
        conn = self._connections.get(connection)
        if conn is not None:
            await conn.disconnect()

    async def close(self) -> None:
        await self.stop_advertising()
        for conn in list(self._connections.values()):
            try:
                await conn.disconnect()
            except Exception as exc:
                logger.debug("disconnect on close failed: %s", type(exc).__name__)
        self._connections.clear()
        # Let in-flight HCI completions land before the caller closes the loop.
        await asyncio.sleep(0.02)

    # ------------------------------------------------------------ bumble callbacks

    def _emit(self, event: Any) -> None:
        if self._on_event is not None:
            self._on_event(event)

    def _on_connection(self, conn: Connection) -> None:
        cid = str(conn.peer_address)
        self._connections[cid] = conn
        self._advertising = False  # a legacy connectable advertiser stops on connection
        conn.on("disconnection", lambda reason: self._on_disconnection(cid, reason))
        conn.on("connection_att_mtu_update", lambda: self._emit(MtuChanged(cid, conn.att_mtu)))
        self._emit(CentralConnected(cid, conn.att_mtu))

    def _on_disconnection(self, cid: ConnectionId, reason: int) -> None:
        self._connections.pop(cid, None)
        self._indicate_only.discard(cid)
        self._emit(CentralDisconnected(cid, f"HCI reason 0x{int(reason):02x}"))

    def _on_subscription(
        self, bearer: Any, characteristic: Characteristic[bytes], notify: bool, indicate: bool
    ) -> None:
        if characteristic is not self._chars.get("tx"):
            return
        conn = bearer if isinstance(bearer, Connection) else bearer.connection
        cid = str(conn.peer_address)
        if indicate and not notify:
            self._indicate_only.add(cid)
        else:
            self._indicate_only.discard(cid)
        self._emit(SubscriptionChanged(cid, notify or indicate))

    def _on_write(self, conn: Connection, spec: CharacteristicSpec, value: bytes) -> None:
        if spec.key == "rx":
            self._emit(FrameReceived(str(conn.peer_address), bytes(value)))

    def _on_read(self, conn: Connection, spec: CharacteristicSpec) -> bytes:
        return self._info if spec.key == "info" else b""
