"""A bleak 3.x backend (central role) that runs on a bumble ``Device``.

Host code written only against bleak's public API (``BleakScanner``, ``BleakClient``) runs
unchanged on bumble's virtual radio or on an HCI dongle opened through a bumble transport:
pass ``backend=BumbleScanner`` / ``backend=BumbleClient`` and nothing else changes.

Which bumble ``Device`` the backend drives, first match wins:

1. ``bumble_device=`` keyword given to ``BleakScanner``/``BleakClient`` (bleak forwards it);
2. the device installed with ``with use_bumble_device(device): ...`` (a context variable, so
   it follows tasks started inside the block and never leaks into other tests or loops);
3. a device on the transport named by ``BLEPROV_BUMBLE_TRANSPORT`` (for example
   ``tcp-client:127.0.0.1:9100``), at the address in ``BLEPROV_BUMBLE_ADDRESS``. It is opened
   once per event loop and closed when that loop shuts down its async generators (as
   ``asyncio.run`` and pytest-asyncio do) or by :func:`close_bumble_transports`.

Deliberate differences from the platform backends are listed in the docstrings of
:class:`BumbleScanner` and :class:`BumbleClient`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid as uuid_module
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import Any, Literal, TypeVar

from bleak.args import SizedBuffer
from bleak.args.winrt import WinRTClientArgs
from bleak.assigned_numbers import CHARACTERISTIC_PROPERTIES, CharacteristicPropertyName
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakError,
    BleakGATTProtocolError,
)
from bumble import att, core, gatt, gatt_client, hci
from bumble.device import Advertisement, Connection, Device
from bumble.keys import PairingKeys
from bumble.transport import open_transport
from bumble.transport.common import Transport

from bleprov.radio.gatt_cache import (
    CachedCharacteristic,
    CachedDescriptor,
    CachedService,
    CacheEntry,
    GattCache,
)

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_MTU",
    "ENV_ADDRESS",
    "ENV_TRANSPORT",
    "BumbleClient",
    "BumbleScanner",
    "close_bumble_transports",
    "resolve_bumble_device",
    "use_bumble_device",
]

logger = logging.getLogger(__name__)

ENV_TRANSPORT = "BLEPROV_BUMBLE_TRANSPORT"
ENV_ADDRESS = "BLEPROV_BUMBLE_ADDRESS"
#: Static random address (two top bits set) used for the transport device by default.
DEFAULT_ADDRESS = "C0:FF:EE:00:00:01"
#: ATT MTU requested after connecting; 517 carries a full 512-byte attribute value.
DEFAULT_MTU = 517

_MAX_ATTRIBUTE_VALUE = gatt.GATT_MAX_ATTRIBUTE_VALUE_SIZE  # 512, Core Vol 3 Part F 3.2.9
_MAX_MTU = 0xFFFF
# After a connect timeout the controller gets LE Create Connection Cancel; a real one answers
# with a failed LE Connection Complete within milliseconds, bumble's virtual one never does.
_CONNECT_CANCEL_GRACE = 0.5
_DISCONNECT_TIMEOUT = 10.0
_POWER_ON_TIMEOUT = 10.0
_POWER_OFF_TIMEOUT = 1.0
_ADDRESS_BOOK_LIMIT = 1024
_RSSI_UNAVAILABLE = 127
_BLEAK_RSSI_UNKNOWN = -127  # what bleak's BlueZ backend reports when RSSI is missing
_TRANSPORT_DEVICE_NAME = "bleprov-central"

_T = TypeVar("_T")

_ADType = core.AdvertisingData.Type
_UUID_LIST_SIZES: dict[int, int] = {
    _ADType.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS: 2,
    _ADType.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS: 2,
    _ADType.INCOMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS: 4,
    _ADType.COMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS: 4,
    _ADType.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS: 16,
    _ADType.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS: 16,
}
_SERVICE_DATA_SIZES: dict[int, int] = {
    _ADType.SERVICE_DATA_16_BIT_UUID: 2,
    _ADType.SERVICE_DATA_32_BIT_UUID: 4,
    _ADType.SERVICE_DATA_128_BIT_UUID: 16,
}
_BLUETOOTH_BASE_UUID = bytes.fromhex("00001000800000805f9b34fb")  # after the 32-bit prefix


# --------------------------------------------------------------------------- device selection

_context_device: ContextVar[Device | None] = ContextVar("bleprov_bumble_device", default=None)


def use_bumble_device(device: Device) -> contextlib.AbstractContextManager[Device]:
    """Make ``device`` the default for scanners and clients created inside the block.

    A context variable rather than a global, so concurrent tests or tasks that pick different
    devices cannot see each other's choice; the previous value is restored on exit.
    """
    return _use_bumble_device(device)


@contextlib.contextmanager
def _use_bumble_device(device: Device) -> Iterator[Device]:
    token = _context_device.set(device)
    try:
        yield device
    finally:
        _context_device.reset(token)


class _LoopTransports:
    """Devices opened from ``BLEPROV_BUMBLE_TRANSPORT`` for one event loop.

    Everything here (lock, device, transport) belongs to that loop: sharing an asyncio
    primitive or a bumble host between loops breaks in confusing ways.
    """

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.opened: dict[tuple[str, str], tuple[Device, Transport]] = {}
        self.closer: AsyncGenerator[None, None] | None = None

    async def aclose(self) -> None:
        opened, self.opened = self.opened, {}
        for device, transport in opened.values():
            try:
                # Flushing the host fails pending commands and reports every connection
                # as disconnected, so clients see the link go away instead of hanging.
                await asyncio.wait_for(device.power_off(), _POWER_OFF_TIMEOUT)
            except (TimeoutError, core.BaseBumbleError, OSError):
                logger.debug("power_off of the transport device failed", exc_info=True)
            finally:
                await transport.close()


_loop_transports: dict[asyncio.AbstractEventLoop, _LoopTransports] = {}


def _transports_for(loop: asyncio.AbstractEventLoop) -> _LoopTransports:
    for stale in [other for other in _loop_transports if other.is_closed()]:
        del _loop_transports[stale]
    registry = _loop_transports.get(loop)
    if registry is None:
        registry = _loop_transports[loop] = _LoopTransports()
    return registry


async def _close_at_loop_shutdown(registry: _LoopTransports) -> AsyncGenerator[None, None]:
    """Suspended async generator whose ``finally`` runs in ``loop.shutdown_asyncgens()``.

    asyncio has no "loop is closing" hook; pending async generators are the one thing
    ``asyncio.run`` and ``asyncio.Runner`` finalise, with the loop still running.
    """
    try:
        yield
    finally:
        await registry.aclose()


async def _open_transport_device(spec: str, address: str) -> tuple[Device, Transport]:
    try:
        own_address = hci.Address(address)
    except ValueError as exc:
        raise BleakError(f"{ENV_ADDRESS}={address!r} is not a Bluetooth address") from exc
    try:
        transport = await open_transport(spec)
    except Exception as exc:
        raise BleakBluetoothNotAvailableError(
            f"cannot open bumble transport {spec!r} ({ENV_TRANSPORT}): {exc}",
            BleakBluetoothNotAvailableReason.NO_BLUETOOTH,
        ) from exc
    try:
        device = Device.with_hci(
            _TRANSPORT_DEVICE_NAME, own_address, transport.source, transport.sink
        )
        await asyncio.wait_for(device.power_on(), _POWER_ON_TIMEOUT)
    except BaseException as exc:
        await transport.close()
        if isinstance(exc, Exception):
            raise BleakBluetoothNotAvailableError(
                f"no working controller on bumble transport {spec!r}: {exc!r}",
                BleakBluetoothNotAvailableReason.NO_BLUETOOTH,
            ) from exc
        raise
    logger.debug("opened bumble transport %s as %s", spec, own_address)
    return device, transport


async def _transport_device() -> Device:
    spec = os.environ.get(ENV_TRANSPORT, "").strip()
    if not spec:
        raise BleakBluetoothNotAvailableError(
            "no bumble device: pass bumble_device=..., use use_bumble_device(...), "
            f"or set {ENV_TRANSPORT} (e.g. tcp-client:127.0.0.1:9100)",
            BleakBluetoothNotAvailableReason.NO_BLUETOOTH,
        )
    address = os.environ.get(ENV_ADDRESS, "").strip() or DEFAULT_ADDRESS
    registry = _transports_for(asyncio.get_running_loop())
    async with registry.lock:
        key = (spec, address)
        opened = registry.opened.get(key)
        if opened is None:
            opened = registry.opened[key] = await _open_transport_device(spec, address)
            if registry.closer is None:
                registry.closer = _close_at_loop_shutdown(registry)
                await registry.closer.asend(None)
        return opened[0]


async def resolve_bumble_device(bumble_device: Device | None = None) -> Device:
    """Return the device the backend uses: explicit, then context, then the env transport.

    Useful to configure the device the backend will drive, e.g. its
    ``pairing_config_factory``, when it comes from ``BLEPROV_BUMBLE_TRANSPORT``.
    """
    if bumble_device is not None:
        return bumble_device
    contextual = _context_device.get()
    if contextual is not None:
        return contextual
    return await _transport_device()


async def close_bumble_transports() -> None:
    """Close the devices this event loop opened from ``BLEPROV_BUMBLE_TRANSPORT``.

    Happens automatically at loop shutdown; call it to release the transport earlier.
    """
    registry = _loop_transports.get(asyncio.get_running_loop())
    if registry is None:
        return
    async with registry.lock:
        closer, registry.closer = registry.closer, None
        if closer is not None:
            await closer.aclose()
        await registry.aclose()


# --------------------------------------------------------------------------- per-device state


class _DeviceState:
    """Coordination the bumble ``Device`` itself does not do: one scan shared by several
    scanners, one LE connection attempt at a time, and the address types seen on air."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.connect_lock = asyncio.Lock()
        self.scan_lock = asyncio.Lock()
        self.scanners: dict[BumbleScanner, bool] = {}  # scanner -> wants active scanning
        self.scan_mode: bool | None = None  # True active, False passive, None not scanning
        self.addresses: dict[str, hci.Address] = {}
        self.names: dict[str, str] = {}

    def remember(self, address: hci.Address, name: str | None) -> None:
        key = address.to_string(with_type_qualifier=False)
        self.addresses.pop(key, None)
        self.addresses[key] = address
        if name:
            self.names[key] = name
        while len(self.addresses) > _ADDRESS_BOOK_LIMIT:
            oldest = next(iter(self.addresses))
            del self.addresses[oldest]
            self.names.pop(oldest, None)

    async def add_scanner(self, device: Device, scanner: BumbleScanner, active: bool) -> None:
        async with self.scan_lock:
            self.scanners[scanner] = active
            try:
                await self._apply_scan_mode(device)
            except BaseException:
                del self.scanners[scanner]
                raise

    async def remove_scanner(self, device: Device, scanner: BumbleScanner) -> None:
        async with self.scan_lock:
            if self.scanners.pop(scanner, None) is not None:
                await self._apply_scan_mode(device)

    async def _apply_scan_mode(self, device: Device) -> None:
        # Active wins over passive: passive scanners merely also see scan responses.
        wanted = any(self.scanners.values()) if self.scanners else None
        if wanted == self.scan_mode:
            return
        if self.scan_mode is not None:
            self.scan_mode = None
            await device.stop_scanning()
        if wanted is not None:
            await device.start_scanning(active=wanted, filter_duplicates=False)
            self.scan_mode = wanted


_device_states: weakref.WeakKeyDictionary[Device, _DeviceState] = weakref.WeakKeyDictionary()


def _state_for(device: Device) -> _DeviceState:
    loop = asyncio.get_running_loop()
    state = _device_states.get(device)
    if state is None or state.loop is not loop:
        state = _device_states[device] = _DeviceState(loop)
    return state


# --------------------------------------------------------------------------- conversions


def _uuid_from_le(raw: bytes) -> str:
    """bleak's normalized 128-bit, lower-case UUID string from 2/4/16 little-endian bytes."""
    big_endian = raw[::-1]
    if len(big_endian) == 2:
        big_endian = b"\x00\x00" + big_endian
    if len(big_endian) == 4:
        big_endian += _BLUETOOTH_BASE_UUID
    return str(uuid_module.UUID(bytes=big_endian))


def _uuid_str(value: core.UUID) -> str:
    # str(core.UUID) gives "UUID-16:2902 (name)"; go through the bytes instead.
    return _uuid_from_le(value.to_bytes())


def _properties(flags: int) -> list[CharacteristicPropertyName]:
    return [name for bit, name in CHARACTERISTIC_PROPERTIES.items() if flags & bit]


def _address_text(address: hci.Address) -> str:
    return address.to_string(with_type_qualifier=False)


def _parse_advertisement(adv: Advertisement) -> AdvertisementData:
    """Decode the AD structures defensively: a malformed field from some other device on
    the air must not stop the scan."""
    complete_name: str | None = None
    short_name: str | None = None
    service_uuids: dict[str, None] = {}  # ordered set
    service_data: dict[str, bytes] = {}
    manufacturer_data: dict[int, bytes] = {}
    tx_power: int | None = None
    for ad_type, value in adv.data.ad_structures:
        kind = int(ad_type)
        if (size := _UUID_LIST_SIZES.get(kind)) is not None:
            for offset in range(0, len(value) - size + 1, size):
                service_uuids[_uuid_from_le(value[offset : offset + size])] = None
        elif (size := _SERVICE_DATA_SIZES.get(kind)) is not None:
            if len(value) >= size:
                service_data[_uuid_from_le(value[:size])] = bytes(value[size:])
        elif kind == _ADType.MANUFACTURER_SPECIFIC_DATA:
            if len(value) >= 2:
                manufacturer_data[int.from_bytes(value[:2], "little")] = bytes(value[2:])
        elif kind == _ADType.COMPLETE_LOCAL_NAME:
            complete_name = value.decode("utf-8", errors="replace")
        elif kind == _ADType.SHORTENED_LOCAL_NAME:
            short_name = value.decode("utf-8", errors="replace")
        elif kind == _ADType.TX_POWER_LEVEL and value:
            tx_power = int.from_bytes(value[:1], "little", signed=True)
    rssi = adv.rssi if adv.rssi != _RSSI_UNAVAILABLE else _BLEAK_RSSI_UNKNOWN
    return AdvertisementData(
        local_name=complete_name if complete_name is not None else short_name,
        manufacturer_data=manufacturer_data,
        service_data=service_data,
        service_uuids=list(service_uuids),
        tx_power=tx_power,
        rssi=rssi,
        platform_data=(adv,),
    )


def _cancelled_by_caller() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


# --------------------------------------------------------------------------- scanner


class BumbleScanner(BaseBleakScanner):
    """bleak scanner backend on a bumble ``Device``.

    - ``service_uuids`` matches advertised service UUID lists *and* service-data UUIDs,
      like BlueZ does, so a device advertising only service data is found by its UUID.
    - ``BLEDevice.details`` is the advertiser's ``bumble.hci.Address`` (keeps the address
      type a client needs); ``AdvertisementData.platform_data`` is ``(Advertisement,)``.
    - Several scanners may run on one device; the radio scans actively while any of them
      asked for active scanning and stops when the last one stops.
    - bumble merges an advertisement with the scan response that follows it, so one
      ``AdvertisementData`` carries both (BlueZ accumulates them in a similar way).
    """

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        *,
        bumble_device: Device | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        if scanning_mode not in ("active", "passive"):
            raise BleakError(f"unknown scanning_mode {scanning_mode!r}")
        self._active = scanning_mode == "active"
        self._explicit_device = bumble_device
        self._device: Device | None = None
        self._state: _DeviceState | None = None
        # One bound-method object, so remove_listener() finds exactly what on() added.
        self._listener: Callable[[Advertisement], None] = self._on_advertisement

    async def start(self) -> None:
        if self._device is not None:
            raise BleakError("Scanner already started")
        device = await resolve_bumble_device(self._explicit_device)
        state = _state_for(device)
        self.seen_devices = {}
        device.on(Device.EVENT_ADVERTISEMENT, self._listener)
        try:
            await state.add_scanner(device, self, self._active)
        except BaseException as exc:
            device.remove_listener(Device.EVENT_ADVERTISEMENT, self._listener)
            if isinstance(exc, core.BaseBumbleError):
                raise BleakError(f"cannot start scanning: {exc}") from exc
            raise
        self._device, self._state = device, state

    async def stop(self) -> None:
        device, state = self._device, self._state
        if device is None or state is None:
            return
        self._device = self._state = None
        device.remove_listener(Device.EVENT_ADVERTISEMENT, self._listener)
        try:
            await state.remove_scanner(device, self)
        except core.BaseBumbleError as exc:
            raise BleakError(f"cannot stop scanning: {exc}") from exc

    def _on_advertisement(self, adv: Advertisement) -> None:
        # Runs inside bumble's event emitter: an exception here would unwind into the HCI
        # packet handler, so log it instead.
        try:
            self._handle_advertisement(adv)
        except Exception:
            logger.exception("error while handling an advertisement from %s", adv.address)

    def _handle_advertisement(self, adv: Advertisement) -> None:
        state = self._state
        if state is None:
            return
        data = _parse_advertisement(adv)
        state.remember(adv.address, data.local_name)
        if not self.is_allowed_uuid(data.service_uuids + list(data.service_data)):
            return
        address = _address_text(adv.address)
        name = data.local_name
        if name is None and (previous := self.seen_devices.get(str(adv.address))):
            name = previous[0].name  # a later packet without the name must not erase it
        if name is None:
            # Nor a scan started between an advertisement and its scan response: the
            # name this radio last heard, as BlueZ keeps a device's Alias across scans.
            name = state.names.get(address)
        device = self.create_or_update_device(str(adv.address), address, name, adv.address, data)
        self.call_detection_callbacks(device, data)


# --------------------------------------------------------------------------- client


class BumbleClient(BaseBleakClient):
    """bleak client backend on a bumble ``Device`` (GATT client, central role).

    Extra keyword arguments (bleak forwards unknown ones to the backend):

    - ``bumble_device``: the bumble ``Device`` to use (see the module docstring);
    - ``mtu``: ATT MTU requested right after connecting (default 517; 23 skips the exchange);
    - ``address_type``: ``"public"`` or ``"random"`` when connecting by address string; bleak's
      ``winrt={"address_type": ...}`` and a ``"/P"`` suffix are honoured too. Otherwise the type
      seen by a scanner on the same device is used, else random (most LE peripherals);
    - ``gatt_cache``: a :class:`~bleprov.radio.gatt_cache.GattCache` of known devices'
      layouts, keyed by their Database Hash, as BlueZ keeps one (default: none);
    - ``prefetch``: the UUID of a characteristic of ``services`` to read during ``connect``,
      together with the Database Hash on a known device (one ATT Read Multiple); the next
      ``read_gatt_char`` of it returns that value once;
    - ``descriptors``: ``"all"`` (default) discovers every characteristic's descriptors;
      ``"subscribable"`` only those of characteristics that notify, indicate or have
      extended properties (the CCCD is all a client of such a service needs; the others'
      descriptors are then missing from ``services``, unlike on BlueZ).

    With ``services`` given, discovery is targeted (Core spec, Vol 3, Part G, 4.4.2): the
    Database Hash is read by type, each service found by UUID (its first instance only),
    then its characteristics and descriptors. On a device in ``gatt_cache`` whose hash
    still matches, nothing is discovered at all.

    ``start_notify(..., force_indicate=True)`` (bleak's WinRT keyword) subscribes to
    indications when a characteristic offers both; by default notifications are preferred and
    indications used when they are the only option. ``pair()`` runs bumble's SMP with the
    device's ``pairing_config_factory``. As on BlueZ, WinRT and CoreBluetooth,
    ``disconnected_callback`` runs once whenever an established connection ends, including
    after ``disconnect()``; it does not run when ``connect()`` itself fails.
    """

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        services: set[str] | None = None,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = 10.0,
        bumble_device: Device | None = None,
        mtu: int = DEFAULT_MTU,
        address_type: Literal["public", "random"] | None = None,
        winrt: WinRTClientArgs | None = None,
        gatt_cache: GattCache | None = None,
        prefetch: str | None = None,
        descriptors: Literal["all", "subscribable"] = "all",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        if not att.ATT_DEFAULT_MTU <= mtu <= _MAX_MTU:
            raise ValueError(f"mtu must be in {att.ATT_DEFAULT_MTU}..{_MAX_MTU}, got {mtu}")
        if address_type is None and winrt is not None:
            address_type = winrt.get("address_type")
        self._explicit_device = bumble_device
        self._requested_mtu = mtu
        self._requested_services = services
        self._gatt_cache = gatt_cache
        self._prefetch = prefetch.lower() if prefetch else None
        if descriptors not in ("all", "subscribable"):
            raise ValueError(f"descriptors must be 'all' or 'subscribable', not {descriptors!r}")
        self._all_descriptors = descriptors == "all"
        #: Values read during connect, served once by the next read of their handle.
        self._prefetched: dict[int, bytes] = {}
        #: The cache key of a connection set up from the cache (ATT errors drop it).
        self._cached_key: str | None = None
        self._peer_address, self._address_is_typed = _peer_address(
            address_or_ble_device, address_type
        )
        self._name = (
            address_or_ble_device.name if isinstance(address_or_ble_device, BLEDevice) else None
        )
        self._device: Device | None = None
        self._connection: Connection | None = None
        self._connecting = False
        self._established = False
        self._last_mtu = att.ATT_DEFAULT_MTU
        self._characteristics: dict[int, gatt_client.CharacteristicProxy[bytes]] = {}
        self._notify_callbacks: dict[int, NotifyCallback] = {}
        self._subscribers: dict[int, Callable[[bytes], None]] = {}
        self._bond_names: set[str] = set()
        self._disconnection_listener: Callable[[int], None] = self._on_disconnection
        self._pairing_listener: Callable[[PairingKeys], None] = self._on_pairing

    # -- properties

    @property
    def name(self) -> str:
        return self._name or self.address.replace(":", "-")

    @property
    def mtu_size(self) -> int:
        connection = self._connection
        return connection.att_mtu if connection is not None else self._last_mtu

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    @property
    def bumble_connection(self) -> Connection | None:
        """The live bumble ``Connection`` (encryption, PHY, ...); ``None`` when disconnected."""
        return self._connection

    # -- connection

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        """Connect, optionally pair, exchange the MTU and discover services, all within
        ``timeout`` (raising ``TimeoutError``, which is ``asyncio.TimeoutError``)."""
        if self._connection is not None:
            raise BleakError("Client is already connected")
        if self._connecting:
            raise BleakError("Client is already connecting")
        self._connecting = True
        try:
            await self._connect(pair, float(kwargs.get("timeout", self._timeout)))
        finally:
            self._connecting = False

    async def _connect(self, pair: bool, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        device = await resolve_bumble_device(self._explicit_device)
        state = _state_for(device)
        peer_address = self._peer_address
        if not self._address_is_typed:
            peer_address = state.addresses.get(_address_text(peer_address), peer_address)
        if self._name is None:
            self._name = state.names.get(_address_text(peer_address))

        # The peripheral's own GATT client may exchange the MTU too (bluetoothd's does, at
        # every connection): our server answers no more than we asked, so ``mtu`` holds.
        device.gatt_server.max_mtu = self._requested_mtu
        connection = await _establish_link(device, state, peer_address, deadline, timeout)
        self._device = device
        self._connection = connection
        self._established = False
        self._last_mtu = connection.att_mtu
        self._characteristics = {}
        self.services = None
        self._bond_names.add(str(connection.peer_address))
        connection.on(Connection.EVENT_DISCONNECTION, self._disconnection_listener)
        connection.on(Connection.EVENT_PAIRING, self._pairing_listener)
        try:
            async with asyncio.timeout_at(deadline):
                await self._setup(connection, pair)
        except BaseException as exc:
            await self._abort(connection)
            if isinstance(exc, TimeoutError):
                raise TimeoutError(
                    f"connecting to {peer_address} timed out after {timeout} s"
                ) from exc
            raise
        self._established = True

    async def _setup(self, connection: Connection, pair: bool) -> None:
        if pair and not connection.is_encrypted:
            await self._gatt(connection, connection.pair(), "pairing")
        if self._requested_mtu > att.ATT_DEFAULT_MTU:
            await self._exchange_mtu(connection)
        self._prefetched = {}
        self._cached_key = None
        if self._requested_services:
            collection, characteristics = await self._gatt(
                connection, self._targeted_setup(connection), "service discovery"
            )
        else:
            collection, characteristics = await self._gatt(
                connection, self._discover(connection), "service discovery"
            )
        self.services = collection
        self._characteristics = characteristics
        if self._name is None:
            await self._read_device_name(connection, collection)

    async def _exchange_mtu(self, connection: Connection) -> None:
        try:
            await self._gatt(
                connection,
                connection.gatt_client.request_mtu(self._requested_mtu),
                "MTU exchange",
            )
        except BleakGATTProtocolError as exc:
            # A server that rejects the exchange keeps the link at the default MTU.
            logger.debug("peer rejected the MTU exchange: %s", exc)
        self._last_mtu = connection.att_mtu

    async def _discover(
        self, connection: Connection
    ) -> tuple[BleakGATTServiceCollection, dict[int, gatt_client.CharacteristicProxy[bytes]]]:
        client = connection.gatt_client
        wanted = [core.UUID(u) for u in sorted(self._requested_services or ())]
        # discover_services(uuids) returns the filtered list; client.services holds them all.
        services = await client.discover_services(wanted)
        collection = BleakGATTServiceCollection()
        characteristics: dict[int, gatt_client.CharacteristicProxy[bytes]] = {}
        for service in services:
            bleak_service = BleakGATTService(service, service.handle, _uuid_str(service.uuid))
            collection.add_service(bleak_service)
            for characteristic in await client.discover_characteristics((), service):
                descriptors = await client.discover_descriptors(characteristic)
                characteristic.descriptors_discovered = True  # spare subscribe() a re-discovery
                flags = int(characteristic.properties)
                flags |= await _extended_properties(client, characteristic) << 8
                bleak_characteristic = BleakGATTCharacteristic(
                    characteristic,
                    characteristic.handle,
                    _uuid_str(characteristic.uuid),
                    _properties(flags),
                    self._max_write_without_response_size,
                    bleak_service,
                )
                collection.add_characteristic(bleak_characteristic)
                characteristics[characteristic.handle] = characteristic
                for descriptor in descriptors:
                    collection.add_descriptor(
                        BleakGATTDescriptor(
                            descriptor,
                            descriptor.handle,
                            _uuid_str(descriptor.type),
                            bleak_characteristic,
                        )
                    )
        return collection, characteristics

    def _cache_key(self, connection: Connection) -> str:
        return str(connection.peer_address)

    async def _targeted_setup(
        self, connection: Connection
    ) -> tuple[BleakGATTServiceCollection, dict[int, gatt_client.CharacteristicProxy[bytes]]]:
        """The requested services from the cache if the device's hash still matches it,
        else by targeted discovery (stored in the cache when the device has a hash)."""
        requested = sorted(u.lower() for u in self._requested_services or ())
        key = self._cache_key(connection)
        entry = self._gatt_cache.get(key) if self._gatt_cache is not None else None
        if (
            entry is not None
            and sorted(s.uuid for s in entry.services) == requested
            and (entry.all_descriptors or not self._all_descriptors)
        ):
            if await self._validate_cached(connection, entry):
                logger.debug("%s: database hash matches the cache, no discovery", key)
                self._cached_key = key
                return self._build(connection, entry.services)
            logger.debug("%s: database hash changed, discovering again", key)
        client = connection.gatt_client
        # Without a cache the hash would be read for nothing.
        hash_handle, database_hash = (
            await _read_database_hash(client) if self._gatt_cache is not None else (None, b"")
        )
        services = []
        for uuid in requested:
            found = await _discover_service_layout(client, uuid, self._all_descriptors)
            if found is not None:
                services.append(found)
        layout = tuple(services)
        if (
            self._gatt_cache is not None
            and hash_handle is not None
            and len(database_hash) == 16
            and len(layout) == len(requested)
        ):
            self._gatt_cache.put(
                key, CacheEntry(database_hash, hash_handle, layout, self._all_descriptors)
            )
        built = self._build(connection, layout)
        if (handle := self._prefetch_handle(layout)) is not None:
            self._prefetched[handle] = bytes(await client.read_value(handle))
        return built

    def _prefetch_handle(self, layout: tuple[CachedService, ...]) -> int | None:
        for service in layout:
            for characteristic in service.characteristics:
                if characteristic.uuid == self._prefetch:
                    return characteristic.handle
        return None

    async def _validate_cached(self, connection: Connection, entry: CacheEntry) -> bool:
        """Read the Database Hash at its cached handle, and the prefetched value in the
        same request (ATT Read Multiple: the hash is 16 bytes, so the rest of the
        response is the other value); True if the hash is the cached one."""
        client = connection.gatt_client
        prefetch = self._prefetch_handle(entry.services)
        handles = [entry.hash_handle] if prefetch is None else [entry.hash_handle, prefetch]
        request: att.ATT_PDU = (
            att.ATT_Read_Multiple_Request(set_of_handles=handles)
            if len(handles) > 1
            else att.ATT_Read_Request(attribute_handle=entry.hash_handle)
        )
        response = await client.send_request(request)
        if response is None:
            return False
        if response.op_code == att.Opcode.ATT_ERROR_RESPONSE:
            if response.error_code != att.ATT_REQUEST_NOT_SUPPORTED_ERROR or prefetch is None:
                return False
            # A server without Read Multiple: the hash alone, the value read later.
            response = await client.send_request(
                att.ATT_Read_Request(attribute_handle=entry.hash_handle)
            )
            if response is None or response.op_code == att.Opcode.ATT_ERROR_RESPONSE:
                return False
            prefetch = None
        values = bytes(
            response.set_of_values
            if isinstance(response, att.ATT_Read_Multiple_Response)
            else response.attribute_value
        )
        if values[:16] != entry.database_hash:
            return False
        # A full response may have cut the value short, and some servers (bumble's) leave
        # out a value that does not fit: then it is read whole later instead.
        if prefetch is not None and 16 < len(values) < connection.att_mtu - 1:
            self._prefetched[prefetch] = values[16:]
        return True

    def _build(
        self, connection: Connection, layout: tuple[CachedService, ...]
    ) -> tuple[BleakGATTServiceCollection, dict[int, gatt_client.CharacteristicProxy[bytes]]]:
        """bleak's service collection and bumble's proxies for a known layout, without
        any I/O."""
        client = connection.gatt_client
        collection = BleakGATTServiceCollection()
        characteristics: dict[int, gatt_client.CharacteristicProxy[bytes]] = {}
        for service in layout:
            proxy = gatt_client.ServiceProxy(  # type: ignore[no-untyped-call]
                client, service.start, service.end, core.UUID(service.uuid)
            )
            bleak_service = BleakGATTService(proxy, service.start, service.uuid)
            collection.add_service(bleak_service)
            for c in service.characteristics:
                characteristic: gatt_client.CharacteristicProxy[bytes] = (
                    gatt_client.CharacteristicProxy(
                        client, c.handle, c.end, core.UUID(c.uuid), c.properties & 0xFF
                    )
                )
                characteristic.descriptors = [
                    gatt_client.DescriptorProxy(client, d.handle, core.UUID(d.uuid))
                    for d in c.descriptors
                ]
                characteristic.descriptors_discovered = True
                proxy.characteristics.append(characteristic)
                bleak_characteristic = BleakGATTCharacteristic(
                    characteristic,
                    c.handle,
                    c.uuid,
                    _properties(c.properties),
                    self._max_write_without_response_size,
                    bleak_service,
                )
                collection.add_characteristic(bleak_characteristic)
                characteristics[c.handle] = characteristic
                for d, descriptor in zip(c.descriptors, characteristic.descriptors, strict=True):
                    collection.add_descriptor(
                        BleakGATTDescriptor(descriptor, d.handle, d.uuid, bleak_characteristic)
                    )
        return collection, characteristics

    async def _read_device_name(
        self, connection: Connection, collection: BleakGATTServiceCollection
    ) -> None:
        try:
            device_name = collection.get_characteristic(
                _uuid_str(gatt.GATT_DEVICE_NAME_CHARACTERISTIC)
            )
        except BleakError:  # several Device Name characteristics: none is authoritative
            return
        if device_name is None or "read" not in device_name.properties:
            return
        try:
            value = await self._gatt(
                connection, connection.gatt_client.read_value(device_name.handle), "name read"
            )
        except BleakError:
            return
        self._name = value.decode("utf-8", errors="replace") or None

    def _max_write_without_response_size(self) -> int:
        # From the link itself, as BlueZ's characteristic MTU property is.
        connection = self._connection
        mtu = connection.att_mtu if connection is not None else self._last_mtu
        return min(mtu - 3, _MAX_ATTRIBUTE_VALUE)

    async def disconnect(self) -> None:
        """Disconnect; ``is_connected`` is False afterwards even if this raises."""
        connection = self._connection
        if connection is None:
            return
        try:
            async with asyncio.timeout(_DISCONNECT_TIMEOUT):
                await connection.disconnect()
        except core.BaseBumbleError as exc:
            # Typically the link was already gone (unknown connection identifier).
            logger.debug("disconnect of %s: %s", self.address, exc)
        finally:
            if self._connection is connection:
                self._handle_disconnection(
                    connection, hci.HCI_CONNECTION_TERMINATED_BY_LOCAL_HOST_ERROR
                )

    async def _abort(self, connection: Connection) -> None:
        """Drop a half-set-up connection without reporting it as an established one."""
        self._established = False
        with contextlib.suppress(core.BaseBumbleError, TimeoutError):
            async with asyncio.timeout(_DISCONNECT_TIMEOUT):
                if self._connection is connection:
                    await connection.disconnect()
        if self._connection is connection:
            self._handle_disconnection(
                connection, hci.HCI_CONNECTION_TERMINATED_BY_LOCAL_HOST_ERROR
            )

    def _on_disconnection(self, reason: int) -> None:
        connection = self._connection
        if connection is None:
            return
        try:
            self._handle_disconnection(connection, reason)
        except Exception:
            logger.exception("error while handling the disconnection of %s", self.address)

    def _handle_disconnection(self, connection: Connection, reason: int) -> None:
        logger.debug("disconnected from %s (reason 0x%02X)", self.address, reason)
        connection.remove_listener(Connection.EVENT_DISCONNECTION, self._disconnection_listener)
        connection.remove_listener(Connection.EVENT_PAIRING, self._pairing_listener)
        self._last_mtu = connection.att_mtu
        self._connection = None
        self._characteristics = {}
        self._notify_callbacks.clear()
        self._subscribers.clear()
        established, self._established = self._established, False
        if established and self._disconnected_callback is not None:
            try:
                self._disconnected_callback()
            except Exception:
                logger.exception("disconnected_callback raised")

    def _on_pairing(self, keys: PairingKeys) -> None:
        connection = self._connection
        if connection is not None:
            # After pairing, bumble swaps in the identity address: keys are stored under it.
            self._bond_names.add(str(connection.peer_address))

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        """Pair with bumble's SMP using the device's ``pairing_config_factory``.

        Returns at once if the link is already encrypted (paired), as BlueZ does.
        """
        connection = self._require_connection()
        if connection.is_encrypted:
            return
        await self._gatt(connection, connection.pair(), "pairing")

    async def unpair(self) -> None:
        """Disconnect and forget the keys bonded with this peer."""
        device = self._device or await resolve_bumble_device(self._explicit_device)
        if self._connection is not None:
            await self.disconnect()
        names = {*self._bond_names, str(self._peer_address)}
        self._bond_names.clear()
        keystore = device.keystore
        if keystore is None:
            return
        for name in names:
            with contextlib.suppress(KeyError):
                await keystore.delete(name)
        try:
            await device.refresh_resolving_list()
        except core.BaseBumbleError:
            logger.debug("could not refresh the resolving list", exc_info=True)

    # -- compatibility with code written for the BlueZ backend

    async def _acquire_mtu(self) -> None:
        """BlueZ-backend hook some applications call; the MTU is exchanged on connect."""
        connection = self._require_connection()
        if (
            self._requested_mtu > att.ATT_DEFAULT_MTU
            and not connection.gatt_client.mtu_exchange_done
        ):
            await self._exchange_mtu(connection)

    async def get_services(self, **kwargs: Any) -> BleakGATTServiceCollection:
        """Services found on connect (discovering them again if they were never read)."""
        connection = self._require_connection()
        if self.services is None:
            collection, characteristics = await self._gatt(
                connection, self._discover(connection), "service discovery"
            )
            self.services, self._characteristics = collection, characteristics
        return self.services

    # -- I/O

    def _require_connection(self) -> Connection:
        connection = self._connection
        if connection is None:
            raise BleakError("Not connected")
        return connection

    async def _gatt(self, connection: Connection, operation: Awaitable[_T], what: str) -> _T:
        """Await a bumble operation, translating its failures into bleak's exceptions."""
        try:
            return await operation
        except att.ATT_Error as exc:
            self._distrust_cache()
            raise BleakGATTProtocolError(int(exc.error_code)) from exc
        except asyncio.CancelledError:
            # bumble cancels requests in flight when the link drops; the caller did not ask
            # for a cancellation, so report it as the disconnection it is.
            if self._connection is not connection and not _cancelled_by_caller():
                raise BleakError(f"Not connected: link lost during {what}") from None
            raise
        except (core.TimeoutError, core.CommandTimeoutError) as exc:
            raise TimeoutError(f"{what} timed out") from exc
        except core.BaseBumbleError as exc:
            raise BleakError(f"{what} failed: {exc}") from exc

    def _distrust_cache(self) -> None:
        """An ATT error on a connection set up from the cache: the entry may be wrong (a
        stale or tampered file whose hash still matches), so the next connection
        discovers again. A wrong cache costs a rediscovery, nothing more."""
        key, self._cached_key = self._cached_key, None
        if key is not None and self._gatt_cache is not None:
            logger.debug("%s: ATT error on cached handles, forgetting the cache entry", key)
            self._gatt_cache.forget(key)

    def _proxy(
        self, characteristic: BleakGATTCharacteristic
    ) -> gatt_client.CharacteristicProxy[bytes]:
        proxy = self._characteristics.get(characteristic.handle)
        if proxy is None:
            raise BleakError(
                f"characteristic {characteristic.uuid} (handle {characteristic.handle}) "
                "was not discovered on this connection"
            )
        return proxy

    async def read_gatt_char(
        self,
        characteristic: BleakGATTCharacteristic,
        *,
        use_cached: bool = False,
        **kwargs: Any,
    ) -> bytearray:
        connection = self._require_connection()
        return await self._read(connection, characteristic.handle, use_cached, characteristic.uuid)

    async def read_gatt_descriptor(
        self,
        descriptor: BleakGATTDescriptor,
        *,
        use_cached: bool = False,
        **kwargs: Any,
    ) -> bytearray:
        connection = self._require_connection()
        return await self._read(connection, descriptor.handle, use_cached, descriptor.uuid)

    async def _read(
        self, connection: Connection, handle: int, use_cached: bool, uuid: str
    ) -> bytearray:
        client = connection.gatt_client
        if (prefetched := self._prefetched.pop(handle, None)) is not None:
            return bytearray(prefetched)
        if use_cached and (cached := client.cached_values.get(handle)) is not None:
            return bytearray(cached[1])
        value = await self._gatt(connection, client.read_value(handle), f"read of {uuid}")
        return bytearray(value)

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        connection = self._require_connection()
        payload = bytes(data)
        if not response and len(payload) > (limit := self._max_write_without_response_size()):
            # An ATT command cannot be fragmented and the server drops it silently.
            raise BleakError(
                f"{len(payload)} bytes exceed max_write_without_response_size ({limit})"
            )
        await self._gatt(
            connection,
            connection.gatt_client.write_value(characteristic.handle, payload, response),
            f"write to {characteristic.uuid}",
        )

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        connection = self._require_connection()
        await self._gatt(
            connection,
            connection.gatt_client.write_value(descriptor.handle, bytes(data), True),
            f"write to descriptor {descriptor.uuid}",
        )

    async def start_notify(
        self,
        characteristic: BleakGATTCharacteristic,
        callback: NotifyCallback,
        **kwargs: Any,
    ) -> None:
        connection = self._require_connection()
        proxy = self._proxy(characteristic)
        force_indicate = bool(kwargs.get("force_indicate", False))
        properties = proxy.properties
        can_notify = bool(properties & gatt.Characteristic.Properties.NOTIFY)
        can_indicate = bool(properties & gatt.Characteristic.Properties.INDICATE)
        if not (can_notify or can_indicate):
            raise BleakError(
                f"characteristic {characteristic.uuid} supports neither notify nor indicate"
            )
        if force_indicate and not can_indicate:
            raise BleakError(f"characteristic {characteristic.uuid} does not support indicate")
        if proxy.get_descriptor(gatt.GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR) is None:
            raise BleakError(f"characteristic {characteristic.uuid} has no CCCD (0x2902)")

        handle = characteristic.handle
        if handle in self._subscribers:
            # Already subscribed: bleak semantics are "this callback from now on".
            self._notify_callbacks[handle] = callback
            return

        def on_value(value: bytes) -> None:
            current = self._notify_callbacks.get(handle)
            if current is None:
                return
            try:
                current(bytearray(value))
            except Exception:
                logger.exception("notification callback for handle %d raised", handle)

        self._notify_callbacks[handle] = callback
        self._subscribers[handle] = on_value
        client = connection.gatt_client
        try:
            await self._gatt(
                connection,
                client.subscribe(proxy, on_value, prefer_notify=not force_indicate),
                f"subscription to {characteristic.uuid}",
            )
        except BaseException:
            if self._subscribers.get(handle) is on_value:
                del self._subscribers[handle]
                self._notify_callbacks.pop(handle, None)
            _forget_subscriber(client, proxy, on_value)
            raise

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        connection = self._require_connection()
        handle = characteristic.handle
        subscriber = self._subscribers.pop(handle, None)
        self._notify_callbacks.pop(handle, None)
        if subscriber is None:
            logger.debug("stop_notify on %s: not subscribed", characteristic.uuid)
            return
        await self._gatt(
            connection,
            connection.gatt_client.unsubscribe(self._proxy(characteristic), subscriber),
            f"unsubscription from {characteristic.uuid}",
        )


def _peer_address(
    address_or_ble_device: BLEDevice | str, address_type: Literal["public", "random"] | None
) -> tuple[hci.Address, bool]:
    """The peer's bumble address and whether its type is known for sure."""
    if isinstance(address_or_ble_device, BLEDevice):
        details = address_or_ble_device.details
        if isinstance(details, hci.Address) and address_type is None:
            return details, True
        text = address_or_ble_device.address
    else:
        text = address_or_ble_device
    text = text.strip()
    public = text.upper().endswith("/P")
    if public:
        text = text[:-2]
    if address_type is not None:
        public = address_type == "public"
    try:
        address = hci.Address(
            text,
            hci.Address.PUBLIC_DEVICE_ADDRESS if public else hci.Address.RANDOM_DEVICE_ADDRESS,
        )
    except ValueError as exc:
        raise BleakError(f"{text!r} is not a Bluetooth device address") from exc
    return address, public or address_type is not None


async def _establish_link(
    device: Device,
    state: _DeviceState,
    address: hci.Address,
    deadline: float,
    timeout: float,
) -> Connection:
    """Create the LE link before ``deadline``, one attempt per device at a time."""
    loop = asyncio.get_running_loop()
    if device.find_connection_by_bd_addr(address, transport=core.PhysicalTransport.LE):
        raise BleakError(f"{address} is already connected through this bumble device")
    try:
        async with asyncio.timeout_at(deadline):
            await state.connect_lock.acquire()
    except TimeoutError as exc:
        raise TimeoutError(f"connecting to {address} timed out after {timeout} s") from exc
    try:
        remaining = max(deadline - loop.time(), 0.001)
        # bumble cancels the attempt itself after `remaining`; the grace covers controllers
        # (bumble's virtual one) that never confirm the cancellation.
        return await asyncio.wait_for(
            device.connect(address, transport=core.PhysicalTransport.LE, timeout=remaining),
            remaining + _CONNECT_CANCEL_GRACE,
        )
    except (TimeoutError, core.TimeoutError) as exc:
        raise TimeoutError(f"connecting to {address} timed out after {timeout} s") from exc
    except core.BaseBumbleError as exc:
        raise BleakError(f"connecting to {address} failed: {exc}") from exc
    finally:
        state.connect_lock.release()


async def _extended_properties(
    client: gatt_client.Client, characteristic: gatt_client.CharacteristicProxy[bytes]
) -> int:
    """Bits of the 0x2900 descriptor (reliable write, writable auxiliaries), 0 if absent."""
    descriptor = characteristic.get_descriptor(
        gatt.GATT_CHARACTERISTIC_EXTENDED_PROPERTIES_DESCRIPTOR
    )
    if descriptor is None:
        return 0
    try:
        value = await client.read_value(descriptor.handle)
    except att.ATT_Error:
        return 0
    return int.from_bytes(value[:2], "little") & 0x3


async def _read_database_hash(client: gatt_client.Client) -> tuple[int | None, bytes]:
    """The Database Hash (0x2B2A) read by type over the whole database, and its handle;
    ``(None, b"")`` if the server has none (it cannot be cached then)."""
    response = await client.send_request(
        att.ATT_Read_By_Type_Request(
            starting_handle=0x0001,
            ending_handle=0xFFFF,
            attribute_type=gatt.GATT_DATABASE_HASH_CHARACTERISTIC,
        )
    )
    if (
        response is None
        or response.op_code == att.Opcode.ATT_ERROR_RESPONSE
        or not response.attributes
    ):
        return None, b""
    handle, value = response.attributes[0]
    return int(handle), bytes(value)


async def _discover_service_layout(
    client: gatt_client.Client, uuid: str, all_descriptors: bool
) -> CachedService | None:
    """One service by UUID (Find By Type Value; its first instance: no request for
    more), its characteristics, and the descriptors of all of them or only of those that
    notify, indicate or have extended properties."""
    response = await client.send_request(
        att.ATT_Find_By_Type_Value_Request(
            starting_handle=0x0001,
            ending_handle=0xFFFF,
            attribute_type=gatt.GATT_PRIMARY_SERVICE_ATTRIBUTE_TYPE,
            attribute_value=core.UUID(uuid).to_pdu_bytes(),
        )
    )
    if response is None or response.op_code == att.Opcode.ATT_ERROR_RESPONSE:
        if response is not None and response.error_code != att.ATT_ATTRIBUTE_NOT_FOUND_ERROR:
            raise att.ATT_Error(error_code=response.error_code, message="service discovery")
        return None
    if not response.handles_information:
        return None
    start, end = response.handles_information[0]
    if not 0 < start <= end:
        return None
    service = gatt_client.ServiceProxy(  # type: ignore[no-untyped-call]
        client, start, end, core.UUID(uuid)
    )
    found = []
    wanted = (
        gatt.Characteristic.Properties.NOTIFY
        | gatt.Characteristic.Properties.INDICATE
        | gatt.Characteristic.Properties.EXTENDED_PROPERTIES
    )
    for characteristic in await client.discover_characteristics((), service):
        properties = int(characteristic.properties)
        descriptors: tuple[CachedDescriptor, ...] = ()
        if (all_descriptors or properties & wanted) and (
            characteristic.handle < characteristic.end_group_handle
        ):
            discovered = await client.discover_descriptors(characteristic)
            characteristic.descriptors_discovered = True
            descriptors = tuple(CachedDescriptor(_uuid_str(d.type), d.handle) for d in discovered)
            properties |= await _extended_properties(client, characteristic) << 8
        found.append(
            CachedCharacteristic(
                _uuid_str(characteristic.uuid),
                characteristic.handle - 1,
                characteristic.handle,
                characteristic.end_group_handle,
                properties,
                descriptors,
            )
        )
    return CachedService(uuid, start, end, tuple(found))


def _forget_subscriber(
    client: gatt_client.Client,
    proxy: gatt_client.CharacteristicProxy[bytes],
    subscriber: Callable[[bytes], None],
) -> None:
    """Undo bumble's subscriber registration after a failed CCCD write, so a retry (after
    pairing, say) does not deliver every value twice."""
    for table in (client.notification_subscribers, client.indication_subscribers):
        subscribers = table.get(proxy.handle)
        if subscribers is None:
            continue
        subscribers.discard(subscriber)
        if not subscribers or subscribers == {proxy}:
            del table[proxy.handle]
