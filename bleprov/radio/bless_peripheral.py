"""The device adapter over bless's server API (BlueZ, macOS, Windows; bumble in tests).

bless gives one GATT server API on every platform, but its callbacks see no connection, MTU
or write type, and on BlueZ it advertises only the first service UUID and the name. So
:class:`BlessPeripheral` builds the database from the profile and moves frames through
bless's public API only (``add_new_service``/``add_new_characteristic``/``add_new_descriptor``,
``read_request_func``/``write_request_func``, ``update_value``), identically on every
backend, and gets what bless lacks from the side, per backend:

- **BlueZ** (bless's ``BlessServerBlueZDBus``): our own ``LEAdvertisement1`` with the service
  data replaces bless's advertisement, and ``org.bluez.Device1.Connected`` changes become
  connection events (:mod:`bleprov.radio.bluez`, dbus-fast). The MTU is not visible, so the
  host announces it in-band (``reports_mtu=False``).
- **Backends with link hooks** (:class:`BlessLinkHooks`, e.g.
  :class:`bleprov.radio.bless_bumble.BlessServerBumble`): connection, MTU and subscription
  events come through the hook, and raw advertising data through ``start()``.
- **macOS/Windows**: no service data on air and no connection events; a central counts as
  connected while it is subscribed to ``tx`` (bless's ``is_connected()``, polled) or once it
  writes, under one synthetic connection id.

Only one central at a time is served: frames written by "the" central are attributed to the
most recently connected one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import operator
import sys
import threading
import uuid as uuid_module
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, runtime_checkable

from bless.backends.attribute import GATTAttributePermissions
from bless.backends.characteristic import GATTCharacteristicProperties
from bless.backends.descriptor import GATTDescriptorProperties
from bless.backends.server import BaseBlessServer

from bleprov.core import wire_codes
from bleprov.core.frames import ATT_MIN_MTU
from bleprov.core.profile import USER_DESCRIPTION_UUID, GattProfile
from bleprov.radio.errors import SYSTEM_RADIO_HINT, RadioUnavailable
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

    from bleprov.radio.bluez import BluezAdvertisement, BluezConnectionMonitor

logger = logging.getLogger(__name__)

#: Connection id on platforms that report no connections (macOS, Windows).
SYNTHETIC_CONNECTION: Final = "central"

_PROPERTIES: Final = {
    "read": GATTCharacteristicProperties.read,
    "write": GATTCharacteristicProperties.write,
    "write-without-response": GATTCharacteristicProperties.write_without_response,
    "notify": GATTCharacteristicProperties.notify,
    "indicate": GATTCharacteristicProperties.indicate,
}
_PERMISSIONS: Final = {
    "readable": GATTAttributePermissions.readable,
    "writeable": GATTAttributePermissions.writeable,
    "read-encryption-required": GATTAttributePermissions.read_encryption_required,
    "write-encryption-required": GATTAttributePermissions.write_encryption_required,
}
_AD_FLAGS: Final = wire_codes.AD_FLAG_BITS
_AD_TYPE_FLAGS: Final = wire_codes.AD_FLAGS
_AD_TYPE_COMPLETE_128_BIT_UUIDS: Final = wire_codes.AD_COMPLETE_128_BIT_UUIDS
_AD_TYPE_SHORTENED_LOCAL_NAME: Final = wire_codes.AD_SHORTENED_LOCAL_NAME
_AD_TYPE_SERVICE_DATA_128: Final = wire_codes.AD_SERVICE_DATA_128


BackendKind = Literal["hooks", "bluez", "generic"]
#: Builds a bless server from the advertised name (called inside the running loop).
ServerFactory = Callable[[str], Any]


class LinkListener(Protocol):
    """What a bless backend with :class:`BlessLinkHooks` reports about its links."""

    def link_connected(self, connection: ConnectionId, mtu: int) -> None: ...

    def link_disconnected(self, connection: ConnectionId, reason: str) -> None: ...

    def link_mtu_changed(self, connection: ConnectionId, mtu: int) -> None: ...

    def link_subscription_changed(
        self, connection: ConnectionId, characteristic_uuid: str, enabled: bool
    ) -> None: ...


@runtime_checkable
class BlessLinkHooks(Protocol):
    """The narrow side channel a bless backend may offer beyond bless's API.

    Such a backend's ``start()`` also takes ``advertising_data``/``scan_response_data``
    (raw AD structures) and ``advertise=False`` (register the database only).
    """

    def set_link_listener(self, listener: LinkListener | None) -> None: ...

    async def stop_advertising(self) -> None: ...

    async def disconnect_central(self, connection: ConnectionId) -> None: ...


def advertising_payloads(
    profile: GattProfile, service_data: bytes, local_name: str
) -> tuple[bytes, bytes]:
    """Raw advertising data and scan response laid out as the profile's [advertisement]."""
    adv = profile.advertisement
    if len(service_data) != adv.service_data_size:
        raise ValueError(
            f"service data is {len(service_data)} bytes, the profile says {adv.service_data_size}"
        )
    data = b""
    if adv.flags:
        flags = functools.reduce(operator.or_, (_AD_FLAGS[f] for f in adv.flags), 0)
        data += _ad(_AD_TYPE_FLAGS, bytes([flags]))
    data += _ad(_AD_TYPE_SERVICE_DATA_128, _uuid_le(adv.service_data_uuid) + service_data)
    scan = b""
    if "complete-128-bit-service-uuids" in adv.scan_response:
        scan += _ad(_AD_TYPE_COMPLETE_128_BIT_UUIDS, _uuid_le(profile.service_uuid))
    name = short_name(profile, local_name)
    if "shortened-local-name" in adv.scan_response and name:
        scan += _ad(_AD_TYPE_SHORTENED_LOCAL_NAME, name.encode())
    return data, scan


def short_name(profile: GattProfile, local_name: str) -> str:
    """``local_name`` cut to the profile's limit in bytes, on a character boundary."""
    cut = local_name.encode()[: profile.advertisement.max_local_name]
    return cut.decode("utf-8", "ignore")


def _ad(ad_type: int, payload: bytes) -> bytes:
    return bytes([len(payload) + 1, ad_type]) + payload


def _uuid_le(value: str) -> bytes:
    return uuid_module.UUID(value).bytes[::-1]


def _norm(value: object) -> str:
    return str(uuid_module.UUID(str(value)))


def _default_server_factory(adapter: str | None) -> ServerFactory:
    def build(name: str) -> Any:
        bless = importlib.import_module("bless")  # picks the platform's backend on import
        kwargs = {"adapter": adapter} if adapter else {}
        return bless.BlessServer(name=name, **kwargs)

    return build


def is_bluez_server(server: object) -> bool:
    """Whether ``server`` is bless's BlueZ backend (which this adapter completes over D-Bus)."""
    if sys.platform != "linux":
        return False
    from bless.backends.bluezdbus.server import BlessServerBlueZDBus

    return isinstance(server, BlessServerBlueZDBus)


def _kind_of(server: object) -> BackendKind:
    if isinstance(server, BlessLinkHooks):
        return "hooks"
    if is_bluez_server(server):
        return "bluez"
    return "generic"


def _platform_kind() -> BackendKind:
    return "bluez" if sys.platform == "linux" else "generic"


CAPABILITIES: Final[dict[BackendKind, PeripheralCapabilities]] = {
    "hooks": PeripheralCapabilities(reports_mtu=True, advertises_service_data=True),
    # bluetoothd cuts notifications to MTU - 5 (BluezPeripheral.capabilities says why).
    "bluez": PeripheralCapabilities(
        reports_mtu=False, advertises_service_data=True, notification_overhead=2
    ),
    "generic": PeripheralCapabilities(reports_mtu=False, advertises_service_data=False),
}


class _Link:
    """Receives :class:`LinkListener` calls without making them public API of the adapter."""

    def __init__(self, owner: BlessPeripheral) -> None:
        self._owner = owner

    def link_connected(self, connection: ConnectionId, mtu: int) -> None:
        self._owner._link_up(connection, mtu)

    def link_disconnected(self, connection: ConnectionId, reason: str) -> None:
        self._owner._link_down(connection, reason)

    def link_mtu_changed(self, connection: ConnectionId, mtu: int) -> None:
        if connection in self._owner._links:
            self._owner._emit(MtuChanged(connection, mtu))

    def link_subscription_changed(
        self, connection: ConnectionId, characteristic_uuid: str, enabled: bool
    ) -> None:
        profile = self._owner._profile
        if profile is not None and _norm(characteristic_uuid) == profile.tx.uuid:
            self._owner._emit(SubscriptionChanged(connection, enabled))


class BlessPeripheral(Peripheral):
    """A :class:`Peripheral` on a bless server.

    ``server`` is a bless server (any :class:`BaseBlessServer`), a factory called with the
    name inside :meth:`start`, or ``None`` for ``bless.BlessServer`` of this platform.
    :attr:`capabilities` describes the platform's default backend until :meth:`start` has
    built a server from a factory, then that server's backend.
    """

    def __init__(
        self,
        server: Any | ServerFactory | None = None,
        *,
        name: str = "bleprov",
        adapter: str | None = None,
        poll_interval: float = 0.5,
    ) -> None:
        self._name = name
        self._adapter = adapter
        self._poll_interval = poll_interval
        #: bless.BlessServer on Linux: check the bus and BlueZ ourselves before bless does.
        self._precheck_bluez = server is None and _platform_kind() == "bluez"
        self._server: Any = None
        self._factory: ServerFactory
        if server is None:
            self._factory = _default_server_factory(adapter)
            self._kind = _platform_kind()
        elif isinstance(server, BaseBlessServer):
            self._server = server
            self._factory = _default_server_factory(adapter)
            self._kind = _kind_of(server)
        elif callable(server):
            self._factory = server
            self._kind = _platform_kind()
        else:
            raise TypeError("server must be a bless server, a factory or None")
        self.capabilities = CAPABILITIES[self._kind]
        self._profile: GattProfile | None = None
        self._on_event: EventHandler | None = None
        self._info = b""
        self._started = False
        self._closed = False
        self._links: list[ConnectionId] = []
        self._pending: list[Callable[[ConnectionId], PeripheralEvent]] = []
        self._listener = _Link(self)
        # BlueZ side channel
        self._bus: MessageBus | None = None
        self._adapter_path = ""
        self._monitor: BluezConnectionMonitor | None = None
        self._advertisement: BluezAdvertisement | None = None
        self._adv_serial = 0
        # macOS/Windows
        self._poll_task: asyncio.Task[None] | None = None
        self._bless_started = False
        self._generic_advertising = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    @property
    def server(self) -> Any:
        """The bless server (after :meth:`start`, or when one was given)."""
        return self._server

    # -- Peripheral API -------------------------------------------------------------------

    async def start(self, profile: GattProfile, on_event: EventHandler) -> None:
        if self._started:
            raise RuntimeError("BlessPeripheral.start() was already called")
        self._profile, self._on_event = profile, on_event
        self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
        self._started = True
        try:
            if self._server is None:
                if self._precheck_bluez:
                    await self._open_bluez()
                self._server = self._factory(self._name)
                self._kind = _kind_of(self._server)
                self.capabilities = CAPABILITIES[self._kind]
            await self._start_backend(self._server, profile)
        except BaseException:
            await self._abandon(self._server)
            raise

    async def _start_backend(self, server: Any, profile: GattProfile) -> None:
        server.read_request_func = self._on_read
        server.write_request_func = self._on_write
        if self._kind == "bluez":
            await _await_bluez_setup(server)
        await self._build_gatt(server, profile)
        if self._kind == "hooks":
            server.set_link_listener(self._listener)
            await server.start(advertise=False)
        elif self._kind == "bluez":
            await self._start_bluez(server, profile)
        else:
            self._poll_task = asyncio.get_running_loop().create_task(self._poll_subscriptions())

    async def _abandon(self, server: Any) -> None:
        """A failed start leaves nothing open; the peripheral is then closed."""
        self._closed = True
        if self._poll_task is not None:
            self._poll_task.cancel()
        if self._kind == "hooks" and server is not None:
            server.set_link_listener(None)
        if self._monitor is not None:
            with contextlib.suppress(Exception):
                await self._monitor.stop()
        if self._bus is not None:
            from bleprov.radio import bluez

            await bluez.close_bus(self._bus)
        bless_bus = getattr(server, "bus", None) if self._kind == "bluez" else None
        if bless_bus is not None:
            bless_bus.disconnect()

    def set_info(self, value: bytes) -> None:
        self._info = bytes(value)
        if self._server is not None and self._profile is not None and self._started:
            info = self._server.get_characteristic(self._profile.info.uuid)
            if info is not None:
                info.value = bytearray(self._info)

    async def start_advertising(self, service_data: bytes, local_name: str) -> None:
        server, profile = self._require_started()
        if self._kind == "hooks":
            adv, scan = advertising_payloads(profile, service_data, local_name)
            await server.start(advertising_data=adv, scan_response_data=scan)
        elif self._kind == "bluez":
            await self._advertise_bluez(profile, service_data, local_name)
        else:
            advertising_payloads(profile, service_data, local_name)  # same validation
            await self._advertise_generic(short_name(profile, local_name) or self._name)

    async def stop_advertising(self) -> None:
        server, _ = self._require_started()
        if self._kind == "hooks":
            await server.stop_advertising()
        elif self._kind == "bluez":
            await self._unadvertise_bluez()
        else:
            await self._stop_generic_advertising()

    async def send(self, connection: ConnectionId, frame: bytes) -> None:
        server, profile = self._require_started()
        if connection not in self._links:
            logger.debug("dropping a %d-byte frame for a connection that is gone", len(frame))
            return
        tx = server.get_characteristic(profile.tx.uuid)
        tx.value = bytearray(frame)
        if not server.update_value(profile.service_uuid, profile.tx.uuid):
            raise RadioUnavailable("bless could not update tx: the service is not registered")
        await asyncio.sleep(0)  # let a backend that schedules the notification send it

    async def disconnect(self, connection: ConnectionId) -> None:
        server, _ = self._require_started()
        if connection not in self._links:
            return
        if self._kind == "hooks":
            await server.disconnect_central(connection)
        elif self._kind == "bluez":
            await self._disconnect_bluez(connection)
        else:
            self._link_down(connection, "dropped locally (this platform cannot disconnect)")

    async def close(self) -> None:
        if self._closed or not self._started:
            self._closed = True
            return
        self._closed = True
        server = self._server
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
        if self._kind == "hooks":
            await server.stop()
            server.set_link_listener(None)
        elif self._kind == "bluez":
            await self._close_bluez(server)
        else:
            await self._stop_generic_advertising()
        for connection in list(self._links):
            self._link_down(connection, "closed")

    # -- GATT database and bless callbacks -------------------------------------------------

    @staticmethod
    async def _build_gatt(server: Any, profile: GattProfile) -> None:
        """Service, characteristics and a 0x2901 user description on each, from the profile."""
        await server.add_new_service(profile.service_uuid)
        for spec in profile.characteristics:
            properties = functools.reduce(
                operator.or_,
                (_PROPERTIES[p] for p in spec.properties),
                GATTCharacteristicProperties(0),
            )
            permissions = functools.reduce(
                operator.or_,
                (_PERMISSIONS[p] for p in spec.permissions),
                GATTAttributePermissions(0),
            )
            await server.add_new_characteristic(
                profile.service_uuid, spec.uuid, properties, None, permissions
            )
            await server.add_new_descriptor(
                profile.service_uuid,
                spec.uuid,
                USER_DESCRIPTION_UUID,
                GATTDescriptorProperties.read,
                bytearray(spec.description.encode()),
                GATTAttributePermissions.readable,
            )

    def _on_read(self, characteristic: Any, **_: Any) -> bytearray:
        """bless read callback (synchronous, no connection): serve the info value."""
        if self._profile is not None and _norm(characteristic.uuid) == self._profile.info.uuid:
            return bytearray(self._info)
        return bytearray(characteristic.value)

    def _on_write(self, characteristic: Any, value: Any, **_: Any) -> None:
        """bless write callback (either write type): a frame from the current central."""
        if self._profile is None or characteristic is None:
            return
        if _norm(characteristic.uuid) != self._profile.rx.uuid:
            logger.debug("ignoring a write to %s", characteristic.uuid)
            return
        data = bytes(value)
        self._in_loop(self._for_current, lambda connection: FrameReceived(connection, data))

    def _in_loop(self, func: Callable[..., None], *args: Any) -> None:
        """macOS and Windows call bless's callbacks on their own threads: hop to the loop."""
        if self._loop is None or threading.get_ident() == self._loop_thread:
            func(*args)
        else:
            self._loop.call_soon_threadsafe(func, *args)

    # -- connection bookkeeping -------------------------------------------------------------

    def _emit(self, event: PeripheralEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:
            logger.exception("peripheral event handler failed on %s", type(event).__name__)

    def _link_up(self, connection: ConnectionId, mtu: int) -> None:
        if connection in self._links:
            return
        self._links.append(connection)
        self._emit(CentralConnected(connection, mtu))
        pending, self._pending = self._pending, []
        for make in pending:
            self._emit(make(connection))

    def _link_down(self, connection: ConnectionId, reason: str) -> None:
        if connection not in self._links:
            return
        self._links.remove(connection)
        self._emit(CentralDisconnected(connection, reason))

    def _for_current(self, make: Callable[[ConnectionId], PeripheralEvent]) -> None:
        """Attribute a connection-less bless callback to the current central."""
        if not self._links:
            if self._kind == "generic":
                self._link_up(SYNTHETIC_CONNECTION, ATT_MIN_MTU)
            elif len(self._pending) < MAX_PENDING_EVENTS:
                self._pending.append(make)
                return
            else:
                logger.warning("dropping an event that arrived with no central connected")
                return
        self._emit(make(self._links[-1]))

    def _require_started(self) -> tuple[Any, GattProfile]:
        if not self._started or self._closed or self._profile is None:
            raise RuntimeError("BlessPeripheral is not started (or already closed)")
        return self._server, self._profile

    # -- BlueZ: what bless cannot do, over D-Bus -------------------------------------------

    async def _open_bluez(self) -> None:
        """Typed errors for a missing bus, bluetoothd or adapter (bless's are raw, and its
        dbus-next leaks a socket when the bus is missing)."""
        from bleprov.radio import bluez

        try:
            self._bus = await bluez.connect_system_bus()
            await bluez.find_adapter(self._bus, self._adapter or "hci0")
        except bluez.BluezError as exc:
            if "ServiceUnknown" in str(exc):  # a bus, but no bluetoothd on it
                raise RadioUnavailable(
                    f"the system Bluetooth is unavailable (BlueZ is not on the system D-Bus): "
                    f"{SYSTEM_RADIO_HINT}"
                ) from exc
            raise RadioUnavailable(str(exc)) from exc

    async def _start_bluez(self, server: Any, profile: GattProfile) -> None:
        from bleprov.radio import bluez

        try:
            if self._bus is None:
                self._bus = await bluez.connect_system_bus()
            self._adapter_path = str(server.adapter.path)
            self._monitor = bluez.BluezConnectionMonitor(
                self._bus, self._on_bluez_connection, self._adapter_path
            )
            await self._monitor.start()
        except bluez.BluezError as exc:
            raise RadioUnavailable(str(exc)) from exc
        notifiable = [
            c for c in profile.characteristics if {"notify", "indicate"} & set(c.properties)
        ]
        if [c.uuid for c in notifiable] == [profile.tx.uuid]:
            # bless's own hooks for GattCharacteristic1.StartNotify/StopNotify; they do not
            # say which characteristic, hence only when tx is the only notifiable one.
            server.app.StartNotify = lambda _: self._for_current(
                lambda c: SubscriptionChanged(c, True)
            )
            server.app.StopNotify = lambda _: self._for_current(
                lambda c: SubscriptionChanged(c, False)
            )
        try:
            await server.start()  # registers the GATT application and bless's advertisement
            await server.app.stop_advertising(server.adapter)  # which has no service data
        except Exception as exc:
            raise RadioUnavailable(
                f"BlueZ refused bless's GATT application ({type(exc).__name__}: {exc})"
            ) from exc

    def _on_bluez_connection(self, device_path: str, connected: bool) -> None:
        if connected:
            self._link_up(device_path, ATT_MIN_MTU)
        else:
            self._link_down(device_path, "disconnected")

    async def _advertise_bluez(
        self, profile: GattProfile, service_data: bytes, local_name: str
    ) -> None:
        from bleprov.radio import bluez

        advertising_payloads(profile, service_data, local_name)  # validates the layout
        adv = profile.advertisement
        scan_uuids = (
            [profile.service_uuid] if "complete-128-bit-service-uuids" in adv.scan_response else []
        )
        self._adv_serial += 1
        advertisement = bluez.BluezAdvertisement(
            f"{bluez.ADVERTISEMENT_PATH}{self._adv_serial}",
            service_data={adv.service_data_uuid: service_data},
            local_name=short_name(profile, local_name) or self._name,
            scan_response_service_uuids=scan_uuids,
        )
        await self._unadvertise_bluez()
        assert self._bus is not None
        try:
            await bluez.register_advertisement(self._bus, self._adapter_path, advertisement)
        except bluez.BluezError as exc:
            raise RadioUnavailable(f"BlueZ refused our advertisement: {exc}") from exc
        self._advertisement = advertisement

    async def _unadvertise_bluez(self) -> None:
        from bleprov.radio import bluez

        advertisement, self._advertisement = self._advertisement, None
        if advertisement is None or self._bus is None:
            return
        try:
            await bluez.unregister_advertisement(self._bus, self._adapter_path, advertisement)
        except bluez.BluezError as exc:
            logger.warning("could not unregister the advertisement: %s", exc)

    async def _disconnect_bluez(self, connection: ConnectionId) -> None:
        from bleprov.radio import bluez

        assert self._bus is not None
        if not await bluez.disconnect_device(self._bus, connection):
            self._link_down(connection, "disconnected")

    async def _close_bluez(self, server: Any) -> None:
        from bleprov.radio import bluez

        await self._unadvertise_bluez()
        if self._monitor is not None:
            await self._monitor.stop()
        # bless's stop() first unregisters its own advertisement, which we already removed
        # (it would raise IndexError): do the rest of it, then release its bus.
        try:
            await server.app.unregister(server.adapter)
            server.bus.unexport(server.app.path, server.app)
        except Exception as exc:
            logger.warning("could not unregister bless's GATT application: %s", exc)
        server.bus.disconnect()
        with contextlib.suppress(Exception):
            await server.bus.wait_for_disconnect()
        if self._bus is not None:
            await bluez.close_bus(self._bus)

    # -- macOS/Windows --------------------------------------------------------------------

    async def _advertise_generic(self, name: str) -> None:
        """Only bless's own advertisement (UUID and name) exists here; its content is fixed.

        bless's start() publishes the services as well, so it runs once; later the
        advertising is resumed without it (CoreBluetooth would add the services twice).
        """
        server = self._server
        if not self._bless_started:
            server.name = name
            await server.start()
            self._bless_started = self._generic_advertising = True
        elif not self._generic_advertising:
            if sys.platform == "darwin":
                core_bluetooth = importlib.import_module("CoreBluetooth")
                await server.peripheral_manager_delegate.start_advertising(
                    {
                        core_bluetooth.CBAdvertisementDataLocalNameKey: server.name,
                        core_bluetooth.CBAdvertisementDataServiceUUIDsKey: [
                            service.obj.UUID() for service in server.services.values()
                        ],
                    }
                )
            else:
                await server.start()  # WinRT: only restarts the service providers' advertising
            self._generic_advertising = True

    async def _stop_generic_advertising(self) -> None:
        if self._generic_advertising:
            self._generic_advertising = False
            await self._server.stop()

    async def _poll_subscriptions(self) -> None:
        """No connection events on these platforms: follow bless's subscription state."""
        subscribed = False
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                now = bool(await self._server.is_connected())
            except Exception:
                logger.exception("bless is_connected() failed")
                continue
            if now == subscribed:
                continue
            subscribed = now
            if now:
                self._for_current(lambda c: SubscriptionChanged(c, True))
            elif self._links:
                connection = self._links[-1]
                self._emit(SubscriptionChanged(connection, False))
                self._link_down(connection, "unsubscribed (the platform reports no disconnection)")


async def _await_bluez_setup(server: Any) -> None:
    """bless's BlueZ setup task fails with raw errors; say what is missing instead."""
    try:
        await server.setup_task
    except Exception as exc:
        raise RadioUnavailable(_explain_bluez_setup_failure(exc)) from exc


def _explain_bluez_setup_failure(exc: Exception) -> str:
    from bleprov.radio.bluez import system_bus_address

    what = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OSError):
        return (
            f"no D-Bus system bus at {system_bus_address()} ({what}); bless's BlueZ backend "
            "needs the system bus and bluetoothd: install and start dbus and bluez "
            "(systemctl status dbus bluetooth), or set DBUS_SYSTEM_BUS_ADDRESS"
        )
    if "ServiceUnknown" in str(getattr(exc, "type", "")) or "org.bluez" in str(exc):
        return f"BlueZ (bluetoothd) is not running on the system bus ({what})"
    if "adapter" in str(exc).lower():
        return f"BlueZ has no usable Bluetooth adapter ({what}); check `bluetoothctl list`"
    return f"bless could not set up its BlueZ backend ({what})"
