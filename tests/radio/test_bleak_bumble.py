"""The bleak-on-bumble backend, exercised only through bleak's public API.

Each test builds a bumble ``LocalLink`` with a peripheral (GATT server written with bumble's
own API below) and a central that the test drives with ``BleakScanner``/``BleakClient``.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError, BleakGATTProtocolError, BleakGATTProtocolErrorCode
from bleak.uuids import normalize_uuid_16, normalize_uuid_32
from bumble import data_types
from bumble.att import ATT_Error, ErrorCode
from bumble.controller import Controller
from bumble.core import UUID, AdvertisingData, DataType, InvalidStateError
from bumble.device import Connection, Device
from bumble.gatt import (
    GATT_CHARACTERISTIC_USER_DESCRIPTION_DESCRIPTOR,
    Characteristic,
    CharacteristicValue,
    Descriptor,
    Service,
)
from bumble.hci import Address, OwnAddressType
from bumble.host import Host
from bumble.link import LocalLink
from bumble.pairing import PairingConfig, PairingDelegate
from bumble.transport.common import AsyncPipeSink, Transport
from bumble.transport.tcp_server import open_tcp_server_transport_with_socket

from bleprov.radio import bleak_bumble
from bleprov.radio.bleak_bumble import (
    DEFAULT_ADDRESS,
    ENV_ADDRESS,
    ENV_TRANSPORT,
    BumbleClient,
    BumbleScanner,
    close_bumble_transports,
    resolve_bumble_device,
    use_bumble_device,
)

DEVICE_NAME = "bleprov"
PERIPHERAL_ADDRESS = "F0:F0:F0:F0:F0:F0"
CENTRAL_ADDRESS = "F1:F1:F1:F1:F1:F1"
MISSING_ADDRESS = "D0:D0:D0:D0:D0:D0"


def _uuid(n: int) -> str:
    return f"5e1f{n:04x}-2b6d-4b1e-9a3c-8d4b5e6f7a80"


SVC = _uuid(0)
RX = _uuid(1)  # write + write without response
NOTIFY = _uuid(2)  # notify only
INDICATE = _uuid(3)  # indicate only
INFO = _uuid(4)  # read only, with a 0x2901 user description
SECURE = _uuid(5)  # write needs an encrypted, authenticated link
STORE = _uuid(6)  # read + write, any value up to 512 bytes, one writable descriptor
BOTH = _uuid(7)  # notify + indicate
SLOW = _uuid(8)  # read that answers only when the test says so
STORE_DESCRIPTOR = _uuid(0x10)
OTHER_SVC = _uuid(0xFF)

USER_DESCRIPTION = normalize_uuid_16(0x2901)
CCCD = normalize_uuid_16(0x2902)
INFO_DESCRIPTION = b"Firmware version"


def _ad(*structures: tuple[int, bytes] | DataType) -> bytes:
    data = bytes(AdvertisingData(structures))
    assert len(data) <= 31, "keep legacy advertising data realistic"
    return data


_FLAGS = data_types.Flags(
    AdvertisingData.Flags.LE_GENERAL_DISCOVERABLE_MODE | AdvertisingData.Flags.BR_EDR_NOT_SUPPORTED
)
# name + 128-bit service data, no service UUID list: found by service data only
SERVICE_DATA_AD = _ad(
    _FLAGS,
    data_types.CompleteLocalName(DEVICE_NAME),
    data_types.ServiceData128BitUUID(UUID(SVC), b"\x01"),
)
UUID_LIST_AD = _ad(
    _FLAGS,
    data_types.CompleteListOf128BitServiceUUIDs([UUID(SVC)]),
    data_types.ShortenedLocalName("blep"),
)
RICH_AD = _ad(
    (AdvertisingData.Type.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS, b"\x0d\x18"),
    (AdvertisingData.Type.INCOMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS, b"\x78\x56\x34\x12"),
    (AdvertisingData.Type.SERVICE_DATA_16_BIT_UUID, b"\xaa\xfe\x10\x20"),
    (AdvertisingData.Type.MANUFACTURER_SPECIFIC_DATA, b"\x59\x00\x01\x02\x03"),
    (AdvertisingData.Type.TX_POWER_LEVEL, b"\xf4"),
    (AdvertisingData.Type.SERVICE_DATA_16_BIT_UUID, b"\xaa"),  # truncated: must be skipped
)


# --------------------------------------------------------------------------- the peripheral


class AutoAcceptDelegate(PairingDelegate):
    """Numeric comparison that accepts and records the number shown."""

    def __init__(self) -> None:
        super().__init__(
            io_capability=PairingDelegate.IoCapability.DISPLAY_OUTPUT_AND_YES_NO_INPUT,
        )
        self.numbers: list[int] = []

    async def compare_numbers(self, number: int, digits: int) -> bool:
        self.numbers.append(number)
        return True

    async def confirm(self, auto: bool = False) -> bool:
        return True


def _make_device(link: LocalLink, name: str, address: str) -> Device:
    # Controller and AsyncPipeSink need the running loop: call from a coroutine.
    controller = Controller(name, link=link)
    return Device(
        name=name, address=Address(address), host=Host(controller, AsyncPipeSink(controller))
    )


def _reject_write(connection: Connection, value: bytes) -> None:
    # bumble's server does not enforce READABLE/WRITEABLE itself; a real stack would.
    raise ATT_Error(ErrorCode.WRITE_NOT_PERMITTED)


@dataclass
class Peripheral:
    """A bumble GATT server built with bumble's own API, and what it observed."""

    device: Device
    writes: asyncio.Queue[tuple[str, bytes]] = field(default_factory=asyncio.Queue)
    subscriptions: asyncio.Queue[tuple[str, bool, bool]] = field(default_factory=asyncio.Queue)
    connections: asyncio.Queue[Connection] = field(default_factory=asyncio.Queue)
    info_value: bytes = b"fw 1.2.3"
    slow_read_started: asyncio.Event = field(default_factory=asyncio.Event)
    slow_read_release: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        props = Characteristic.Properties
        perms = Characteristic.Permissions
        self.rx = Characteristic(
            RX,
            props.WRITE | props.WRITE_WITHOUT_RESPONSE,
            perms.WRITEABLE,
            CharacteristicValue(write=lambda _c, v: self.writes.put_nowait((RX, bytes(v)))),
        )
        self.notify = Characteristic(NOTIFY, props.NOTIFY, perms.READABLE, b"")
        self.indicate = Characteristic(INDICATE, props.INDICATE, perms.READABLE, b"")
        self.both = Characteristic(BOTH, props.NOTIFY | props.INDICATE, perms.READABLE, b"")
        self.info: Characteristic[bytes] = Characteristic(
            INFO,
            props.READ,
            perms.READABLE,
            CharacteristicValue(read=lambda _c: self.info_value, write=_reject_write),
            descriptors=[
                Descriptor(
                    GATT_CHARACTERISTIC_USER_DESCRIPTION_DESCRIPTOR,
                    Descriptor.READABLE,
                    INFO_DESCRIPTION,
                )
            ],
        )
        self.secure = Characteristic(
            SECURE,
            props.WRITE,
            perms.WRITEABLE | perms.WRITE_REQUIRES_ENCRYPTION | perms.WRITE_REQUIRES_AUTHENTICATION,
            CharacteristicValue(write=lambda _c, v: self.writes.put_nowait((SECURE, bytes(v)))),
        )
        self.store_descriptor = Descriptor(
            STORE_DESCRIPTOR, Descriptor.READABLE | Descriptor.WRITEABLE, b"\x00"
        )
        self.store = Characteristic(
            STORE,
            props.READ | props.WRITE,
            perms.READABLE | perms.WRITEABLE,
            b"initial",
            descriptors=[self.store_descriptor],
        )
        self.slow: Characteristic[bytes] = Characteristic(
            SLOW, props.READ, perms.READABLE, CharacteristicValue(read=self._slow_read)
        )
        self.device.add_service(
            Service(
                SVC,
                [
                    self.rx,
                    self.notify,
                    self.indicate,
                    self.both,
                    self.info,
                    self.secure,
                    self.store,
                    self.slow,
                ],
            )
        )
        self.device.on("characteristic_subscription", self._on_subscription)
        self.device.on("connection", self.connections.put_nowait)
        self.delegate = AutoAcceptDelegate()
        self.device.pairing_config_factory = lambda _c: PairingConfig(
            sc=True, mitm=True, bonding=True, delegate=self.delegate
        )

    async def _slow_read(self, connection: Connection) -> bytes:
        self.slow_read_started.set()
        await self.slow_read_release.wait()
        return b"late"

    def _on_subscription(
        self,
        _connection: Connection,
        characteristic: Characteristic[bytes],
        notify: bool,
        indicate: bool,
    ) -> None:
        self.subscriptions.put_nowait(
            (str(characteristic.uuid.to_hex_str("-")).lower(), notify, indicate)
        )

    async def advertise(self, data: bytes) -> None:
        await self.device.start_advertising(
            advertising_data=data,
            auto_restart=True,
            advertising_interval_min=20,
            advertising_interval_max=20,
        )

    async def next_subscription(self) -> tuple[str, bool, bool]:
        return await asyncio.wait_for(self.subscriptions.get(), 1)

    async def next_write(self) -> tuple[str, bytes]:
        return await asyncio.wait_for(self.writes.get(), 1)


@dataclass
class Rig:
    link: LocalLink
    central: Device
    central_delegate: AutoAcceptDelegate
    peripheral: Peripheral


async def _shutdown(*devices: Device) -> None:
    for device in devices:
        for connection in list(device.connections.values()):
            await connection.disconnect()
        if device.is_advertising:
            await device.stop_advertising()
    # Let in-flight HCI completions land before the loop closes.
    await asyncio.sleep(0.02)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    link = LocalLink()
    peripheral = Peripheral(_make_device(link, DEVICE_NAME, PERIPHERAL_ADDRESS))
    central = _make_device(link, "central", CENTRAL_ADDRESS)
    central_delegate = AutoAcceptDelegate()
    central.pairing_config_factory = lambda _c: PairingConfig(
        sc=True, mitm=True, bonding=True, delegate=central_delegate
    )
    await peripheral.device.power_on()
    await central.power_on()
    await peripheral.advertise(SERVICE_DATA_AD)
    with use_bumble_device(central):
        yield Rig(link, central, central_delegate, peripheral)
    await _shutdown(central, peripheral.device)


async def _find() -> BLEDevice:
    device = await BleakScanner.find_device_by_filter(
        lambda d, _ad: d.address == PERIPHERAL_ADDRESS, timeout=2, backend=BumbleScanner
    )
    assert device is not None
    return device


async def _peripheral_connection(rig: Rig) -> Connection:
    return await asyncio.wait_for(rig.peripheral.connections.get(), 1)


# --------------------------------------------------------------------------- scanning


async def test_find_device_by_service_data(rig: Rig) -> None:
    device = await BleakScanner.find_device_by_filter(
        lambda _d, ad: SVC in ad.service_data, timeout=2, backend=BumbleScanner
    )
    assert device is not None
    assert device.address == PERIPHERAL_ADDRESS
    assert device.name == DEVICE_NAME
    assert isinstance(device.details, Address)


async def test_service_uuid_filter_matches_service_data_and_uuid_lists(rig: Rig) -> None:
    # Only service data is advertised: the filter still matches, as on BlueZ.
    found = await BleakScanner.discover(
        timeout=0.15, return_adv=True, service_uuids=[SVC.upper()], backend=BumbleScanner
    )
    assert list(found) == [PERIPHERAL_ADDRESS]
    none = await BleakScanner.discover(
        timeout=0.15, return_adv=True, service_uuids=[OTHER_SVC], backend=BumbleScanner
    )
    assert none == {}

    await rig.peripheral.advertise(UUID_LIST_AD)
    _, adv = await _adv_of(PERIPHERAL_ADDRESS, lambda ad: bool(ad.service_uuids), [SVC])
    assert adv.service_uuids == [SVC]
    assert adv.service_data == {}
    assert adv.local_name == "blep"


async def test_advertisement_data_fields(rig: Rig) -> None:
    device = await _find()
    _, adv = await _adv_of(PERIPHERAL_ADDRESS)
    assert adv.local_name == DEVICE_NAME
    assert adv.service_data == {SVC: b"\x01"}
    assert adv.rssi == -50  # what bumble's virtual controller reports
    assert device.name == DEVICE_NAME

    await rig.peripheral.advertise(RICH_AD)
    _, adv = await _adv_of(PERIPHERAL_ADDRESS, lambda ad: bool(ad.manufacturer_data))
    assert adv.service_uuids == [normalize_uuid_16(0x180D), normalize_uuid_32(0x12345678)]
    assert adv.service_data == {normalize_uuid_16(0xFEAA): b"\x10\x20"}
    assert adv.manufacturer_data == {0x0059: b"\x01\x02\x03"}
    assert adv.tx_power == -12
    assert adv.local_name is None
    assert isinstance(adv.rssi, int)


async def _adv_of(
    address: str,
    accept: Callable[[AdvertisementData], bool] = lambda _ad: True,
    service_uuids: list[str] | None = None,
) -> tuple[BLEDevice, AdvertisementData]:
    async with BleakScanner(service_uuids=service_uuids, backend=BumbleScanner) as scanner:
        async with asyncio.timeout(2):
            async for device, adv in scanner.advertisement_data():
                if device.address == address and accept(adv):
                    return device, adv
    raise AssertionError("unreachable")


async def test_passive_scanning(rig: Rig) -> None:
    seen: list[AdvertisementData] = []
    async with BleakScanner(
        lambda _d, ad: seen.append(ad), scanning_mode="passive", backend=BumbleScanner
    ):
        assert rig.central.scanning_is_passive
        await asyncio.sleep(0.15)
    assert seen
    assert all(ad.local_name == DEVICE_NAME for ad in seen)
    assert all(ad.service_data == {SVC: b"\x01"} for ad in seen)
    # (bumble's virtual controller reports "scan responses" even to a passive scanner,
    # so the mode is checked on the device rather than on the reports.)


async def test_stop_leaks_no_listener_and_scanners_share_the_radio(rig: Rig) -> None:
    central = rig.central
    assert central.listeners(Device.EVENT_ADVERTISEMENT) == []
    passive_seen: list[str] = []
    active = BleakScanner(backend=BumbleScanner)
    passive = BleakScanner(
        lambda d, _ad: passive_seen.append(d.address),
        scanning_mode="passive",
        backend=BumbleScanner,
    )
    await active.start()
    await passive.start()
    assert len(central.listeners(Device.EVENT_ADVERTISEMENT)) == 2
    assert central.is_scanning
    assert not central.scanning_is_passive  # active wins while an active scanner runs

    await active.stop()
    assert central.is_scanning  # the passive scanner keeps the radio scanning
    assert central.scanning_is_passive
    passive_seen.clear()
    await asyncio.sleep(0.1)
    assert PERIPHERAL_ADDRESS in passive_seen

    await passive.stop()
    await passive.stop()  # idempotent
    assert not central.is_scanning
    assert central.listeners(Device.EVENT_ADVERTISEMENT) == []


async def test_explicit_device_beats_context_device(rig: Rig) -> None:
    lonely = _make_device(LocalLink(), "lonely", "F2:F2:F2:F2:F2:F2")  # alone on its own link
    await lonely.power_on()
    with use_bumble_device(lonely) as selected:
        assert selected is lonely
        assert await resolve_bumble_device() is lonely
        assert await resolve_bumble_device(rig.central) is rig.central
        missing = await BleakScanner.find_device_by_filter(
            lambda _d, _ad: True, timeout=0.15, backend=BumbleScanner
        )
        assert missing is None
        device = await BleakScanner.find_device_by_filter(
            lambda d, _ad: d.address == PERIPHERAL_ADDRESS,
            timeout=2,
            backend=BumbleScanner,
            bumble_device=rig.central,  # type: ignore[call-arg]
        )
        assert device is not None
        async with BleakClient(device, backend=BumbleClient, bumble_device=rig.central) as client:
            assert client.is_connected
    assert await resolve_bumble_device() is rig.central  # restored on exit
    await _shutdown(lonely)


# --------------------------------------------------------------------------- connection


@pytest.mark.parametrize("mtu", [23, 247, 517])
async def test_connect_negotiates_mtu(rig: Rig, mtu: int) -> None:
    device = await _find()
    async with BleakClient(device, backend=BumbleClient, mtu=mtu) as client:
        peripheral_side = await _peripheral_connection(rig)
        assert client.mtu_size == mtu
        assert peripheral_side.att_mtu == mtu
        rx = client.services.get_characteristic(RX)
        assert rx is not None
        assert rx.max_write_without_response_size == min(mtu - 3, 512)
        # Hooks that code written for the BlueZ backend reaches through ``_backend``.
        backend = client._backend
        assert isinstance(backend, BumbleClient)
        await backend._acquire_mtu()
        assert client.mtu_size == mtu
        assert await backend.get_services() is client.services
    assert not client.is_connected
    assert client.mtu_size == mtu  # the last negotiated value, as BlueZ reports it


@pytest.mark.parametrize("mtu", [23, 247])
async def test_the_mtu_holds_when_the_peripheral_exchanges_it_too(rig: Rig, mtu: int) -> None:
    """bluetoothd on a device is a GATT client of the central as well and asks MTU 517 at
    every connection (seen in the lab): ``mtu=23`` framed at 517 all the same."""
    device = await _find()
    async with BleakClient(device, backend=BumbleClient, mtu=mtu) as client:
        peripheral_side = await _peripheral_connection(rig)
        await peripheral_side.gatt_client.request_mtu(517)
        assert peripheral_side.att_mtu == mtu
        assert client.mtu_size == mtu


async def test_discovered_services_characteristics_descriptors(rig: Rig) -> None:
    device = await _find()
    async with BleakClient(device, backend=BumbleClient, services=[SVC]) as client:
        assert [s.uuid for s in client.services] == [SVC]  # the services= filter is honoured
        service = client.services.get_service(SVC)
        assert service is not None
        chars = {c.uuid: c for c in service.characteristics}
        assert set(chars) == {RX, NOTIFY, INDICATE, BOTH, INFO, SECURE, STORE, SLOW}
        assert chars[RX].properties == ["write-without-response", "write"]
        assert chars[NOTIFY].properties == ["notify"]
        assert chars[INDICATE].properties == ["indicate"]
        assert chars[BOTH].properties == ["notify", "indicate"]
        assert chars[INFO].properties == ["read"]
        assert chars[STORE].properties == ["read", "write"]
        assert [d.uuid for d in chars[INFO].descriptors] == [USER_DESCRIPTION]
        assert [d.uuid for d in chars[NOTIFY].descriptors] == [CCCD]
        assert [d.uuid for d in chars[INDICATE].descriptors] == [CCCD]
        assert [d.uuid for d in chars[STORE].descriptors] == [STORE_DESCRIPTOR]
        assert chars[RX].descriptors == []
        assert all(c.service_uuid == SVC for c in chars.values())

        description = chars[INFO].get_descriptor(USER_DESCRIPTION)
        assert description is not None
        assert await client.read_gatt_descriptor(description) == INFO_DESCRIPTION
        cccd = chars[NOTIFY].get_descriptor(CCCD)
        assert cccd is not None
        assert await client.read_gatt_descriptor(cccd.handle) == b"\x00\x00"

        store_descriptor = chars[STORE].descriptors[0]
        await client.write_gatt_descriptor(store_descriptor, b"\x2a")
        assert rig.peripheral.store_descriptor.value == b"\x2a"
        assert await client.read_gatt_descriptor(store_descriptor) == b"\x2a"


async def test_full_discovery_includes_gap_and_reads_the_device_name(rig: Rig) -> None:
    # By address string, without scanning: the name must come from the GAP service.
    async with BleakClient(PERIPHERAL_ADDRESS, backend=BumbleClient) as client:
        uuids = {s.uuid for s in client.services}
        assert {normalize_uuid_16(0x1800), SVC} <= uuids
        assert client.name == DEVICE_NAME
        assert client.address == PERIPHERAL_ADDRESS


async def test_address_type_of_a_string_address(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    # bumble's LocalLink cannot carry a connection to a public address (it sources LE ACL
    # data from the random address), so record what the backend asks bumble for instead.
    asked: list[Address] = []

    async def record(peer_address: Address, **_kwargs: object) -> Connection:
        asked.append(peer_address)
        raise InvalidStateError("recorded")

    monkeypatch.setattr(rig.central, "connect", record)
    public = "F3:F3:F3:F3:F3:F3"
    for address, kwargs in [
        (public, {}),
        (f"{public}/P", {}),
        (public, {"address_type": "public"}),
        (public, {"winrt": {"address_type": "public"}}),
    ]:
        with pytest.raises(BleakError, match="recorded"):
            await BleakClient(address, backend=BumbleClient, **kwargs).connect()
    assert [a.is_public for a in asked] == [False, True, True, True]

    # A scanner on the same device learns the type, so a bare string then works.
    controller = Controller("public", link=rig.link, public_address=public)
    device = Device(name="pub", host=Host(controller, AsyncPipeSink(controller)))
    await device.power_on()
    await device.start_advertising(
        advertising_data=SERVICE_DATA_AD,
        own_address_type=OwnAddressType.PUBLIC,
        advertising_interval_min=20,
        advertising_interval_max=20,
    )
    found = await BleakScanner.find_device_by_address(public, timeout=2, backend=BumbleScanner)
    assert found is not None
    assert found.details == Address(public, Address.PUBLIC_DEVICE_ADDRESS)
    with pytest.raises(BleakError, match="recorded"):
        await BleakClient(public, backend=BumbleClient).connect()
    assert asked[-1] == Address(public, Address.PUBLIC_DEVICE_ADDRESS)
    await _shutdown(device)


async def test_read_and_both_write_types(rig: Rig) -> None:
    device = await _find()
    async with BleakClient(device, backend=BumbleClient) as client:
        assert await client.read_gatt_char(INFO) == b"fw 1.2.3"
        rig.peripheral.info_value = b"fw 2.0.0"
        assert await client.read_gatt_char(INFO, use_cached=True) == b"fw 1.2.3"
        assert await client.read_gatt_char(INFO) == b"fw 2.0.0"

        await client.write_gatt_char(RX, b"with response", response=True)
        assert await rig.peripheral.next_write() == (RX, b"with response")
        await client.write_gatt_char(RX, bytearray(b"command"), response=False)
        assert await rig.peripheral.next_write() == (RX, b"command")
        await client.write_gatt_char(RX, memoryview(b"default"))  # bleak picks "write"
        assert await rig.peripheral.next_write() == (RX, b"default")

        rx = client.services.get_characteristic(RX)
        assert rx is not None
        with pytest.raises(BleakError, match="max_write_without_response_size"):
            await client.write_gatt_char(rx, bytes(rx.max_write_without_response_size + 1), False)


@pytest.mark.parametrize("mtu", [23, 517])
async def test_512_byte_value_round_trip(rig: Rig, mtu: int) -> None:
    payload = bytes(range(256)) * 2
    device = await _find()
    async with BleakClient(device, backend=BumbleClient, mtu=mtu) as client:
        await client.write_gatt_char(STORE, payload, response=True)  # long write at MTU 23
        assert rig.peripheral.store.value == payload
        assert await client.read_gatt_char(STORE) == payload  # read blob at MTU 23


async def test_notify_and_indicate(rig: Rig) -> None:
    peripheral = rig.peripheral
    got: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    device = await _find()
    async with BleakClient(device, backend=BumbleClient) as client:
        await client.start_notify(NOTIFY, lambda c, d: got.put_nowait((c.uuid, bytes(d))))
        assert await peripheral.next_subscription() == (NOTIFY, True, False)
        await client.start_notify(INDICATE, lambda c, d: got.put_nowait((c.uuid, bytes(d))))
        assert await peripheral.next_subscription() == (INDICATE, False, True)

        async def on_both(c: object, d: bytearray) -> None:  # coroutine callbacks work too
            got.put_nowait((BOTH, bytes(d)))

        await client.start_notify(BOTH, on_both)
        assert await peripheral.next_subscription() == (BOTH, True, False)  # notify preferred

        await peripheral.device.notify_subscribers(peripheral.notify, b"n1")
        assert await asyncio.wait_for(got.get(), 1) == (NOTIFY, b"n1")
        await peripheral.device.indicate_subscribers(peripheral.indicate, b"i1")  # confirmed
        assert await asyncio.wait_for(got.get(), 1) == (INDICATE, b"i1")
        await peripheral.device.notify_subscribers(peripheral.both, b"b1")
        assert await asyncio.wait_for(got.get(), 1) == (BOTH, b"b1")

        with pytest.raises(BleakError, match="neither notify nor indicate"):
            await client.start_notify(INFO, lambda _c, _d: None)


async def test_force_indicate_subscribes_to_indications(rig: Rig) -> None:
    peripheral = rig.peripheral
    got: asyncio.Queue[bytes] = asyncio.Queue()
    device = await _find()
    async with BleakClient(device, backend=BumbleClient) as client:
        await client.start_notify(BOTH, lambda _c, d: got.put_nowait(bytes(d)), force_indicate=True)
        assert await peripheral.next_subscription() == (BOTH, False, True)
        await peripheral.device.indicate_subscribers(peripheral.both, b"ind")
        assert await asyncio.wait_for(got.get(), 1) == b"ind"
        with pytest.raises(BleakError, match="does not support indicate"):
            await client.start_notify(NOTIFY, lambda _c, _d: None, force_indicate=True)


async def test_stop_notify_stops_delivery(rig: Rig) -> None:
    peripheral = rig.peripheral
    got: list[bytes] = []
    second: list[bytes] = []
    device = await _find()
    async with BleakClient(device, backend=BumbleClient) as client:
        await client.start_notify(NOTIFY, lambda _c, d: got.append(bytes(d)))
        assert await peripheral.next_subscription() == (NOTIFY, True, False)
        await client.start_notify(NOTIFY, lambda _c, d: second.append(bytes(d)))  # replaces
        await peripheral.device.notify_subscribers(peripheral.notify, b"one")
        await asyncio.sleep(0.02)
        assert (got, second) == ([], [b"one"])

        await client.stop_notify(NOTIFY)
        assert await peripheral.next_subscription() == (NOTIFY, False, False)  # CCCD cleared
        peripheral_side = await _peripheral_connection(rig)
        # Even a notification the server forces through must not reach the callback.
        await peripheral.device.notify_subscriber(peripheral_side, peripheral.notify, b"x", True)
        await asyncio.sleep(0.02)
        assert second == [b"one"]
        await client.stop_notify(NOTIFY)  # not subscribed any more: a no-op


async def test_peripheral_disconnect_fires_callback(rig: Rig) -> None:
    disconnected = asyncio.Event()
    calls: list[BleakClient] = []

    def on_disconnect(client: BleakClient) -> None:
        calls.append(client)
        disconnected.set()

    device = await _find()
    client = BleakClient(device, on_disconnect, backend=BumbleClient)
    await client.connect()
    assert client.is_connected
    await client.start_notify(NOTIFY, lambda _c, _d: None)
    await (await _peripheral_connection(rig)).disconnect()
    await asyncio.wait_for(disconnected.wait(), 1)
    assert calls == [client]
    assert not client.is_connected
    with pytest.raises(BleakError, match="Not connected"):
        await client.write_gatt_char(RX, b"late", response=True)
    with pytest.raises(BleakError, match="Not connected"):
        await client.read_gatt_char(INFO)
    await client.disconnect()  # already disconnected: a no-op
    assert calls == [client]

    # The same client object connects again, with a fresh subscription state.
    await client.connect()
    assert await client.read_gatt_char(INFO) == b"fw 1.2.3"
    got: asyncio.Queue[bytes] = asyncio.Queue()
    await client.start_notify(NOTIFY, lambda _c, d: got.put_nowait(bytes(d)))
    await rig.peripheral.device.notify_subscribers(rig.peripheral.notify, b"again")
    assert await asyncio.wait_for(got.get(), 1) == b"again"
    await client.disconnect()
    assert calls == [client, client]  # like BlueZ, a local disconnect reports too
    assert not client.is_connected


async def test_link_lost_during_request_raises_bleak_error(rig: Rig) -> None:
    device = await _find()
    async with BleakClient(device, backend=BumbleClient) as client:
        read = asyncio.create_task(client.read_gatt_char(SLOW))
        await asyncio.wait_for(rig.peripheral.slow_read_started.wait(), 1)
        await (await _peripheral_connection(rig)).disconnect()
        with pytest.raises(BleakError, match="Not connected"):
            await read
        rig.peripheral.slow_read_release.set()


async def test_att_errors_map_to_bleak_protocol_errors(rig: Rig) -> None:
    device = await _find()
    async with BleakClient(device, backend=BumbleClient) as client:
        with pytest.raises(BleakGATTProtocolError) as read_only:
            await client.write_gatt_char(INFO, b"nope", response=True)
        assert read_only.value.code == BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED

        with pytest.raises(BleakGATTProtocolError) as too_long:
            await client.write_gatt_char(STORE, bytes(513), response=True)
        assert too_long.value.code == BleakGATTProtocolErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH

        with pytest.raises(BleakGATTProtocolError) as insecure:
            await client.write_gatt_char(SECURE, b"secret", response=True)
        assert insecure.value.code == BleakGATTProtocolErrorCode.INSUFFICIENT_ENCRYPTION
        assert client.is_connected  # errors do not cost the connection


async def test_connect_to_missing_address_times_out(rig: Rig) -> None:
    client = BleakClient(MISSING_ADDRESS, backend=BumbleClient, timeout=0.2)
    started = time.perf_counter()
    with pytest.raises(asyncio.TimeoutError):
        await client.connect()
    assert time.perf_counter() - started < 1.5
    assert not client.is_connected


async def test_pair_unlocks_the_protected_characteristic(rig: Rig) -> None:
    device = await _find()
    async with BleakClient(device, backend=BumbleClient) as client:
        with pytest.raises(BleakGATTProtocolError):
            await client.write_gatt_char(SECURE, b"before", response=True)
        await client.pair()
        # Numeric comparison ran, and both sides saw the same number.
        assert rig.central_delegate.numbers == rig.peripheral.delegate.numbers
        assert len(rig.central_delegate.numbers) == 1
        await client.write_gatt_char(SECURE, b"after", response=True)
        assert await rig.peripheral.next_write() == (SECURE, b"after")
        await client.pair()  # already paired: returns at once
        assert len(rig.central_delegate.numbers) == 1

        keystore = rig.central.keystore
        assert keystore is not None
        assert await keystore.get(PERIPHERAL_ADDRESS) is not None
        await client.unpair()
        assert not client.is_connected
        assert await keystore.get(PERIPHERAL_ADDRESS) is None


async def test_connect_with_pair_true(rig: Rig) -> None:
    device = await _find()
    async with BleakClient(device, backend=BumbleClient, pair=True) as client:
        await client.write_gatt_char(SECURE, b"paired on connect", response=True)
        assert await rig.peripheral.next_write() == (SECURE, b"paired on connect")


async def test_misuse_is_reported(rig: Rig) -> None:
    with pytest.raises(ValueError, match="mtu"):
        BleakClient(PERIPHERAL_ADDRESS, backend=BumbleClient, mtu=10)
    with pytest.raises(BleakError, match="not a Bluetooth device address"):
        BleakClient("not-an-address", backend=BumbleClient)
    client = BleakClient(PERIPHERAL_ADDRESS, backend=BumbleClient)
    with pytest.raises(BleakError, match="Not connected"):
        await client.pair()
    async with client:
        with pytest.raises(BleakError, match="already connected"):
            await client.connect()
        with pytest.raises(BleakError, match="already connected"):
            await BleakClient(PERIPHERAL_ADDRESS, backend=BumbleClient).connect()
    scanner = BleakScanner(backend=BumbleScanner)
    await scanner.start()
    with pytest.raises(BleakError, match="already started"):
        await scanner.start()
    await scanner.stop()


# --------------------------------------------------------------------------- transport fallback


async def test_env_transport_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """No explicit or context device: the backend opens BLEPROV_BUMBLE_TRANSPORT itself."""
    link = LocalLink()
    peripheral = Peripheral(_make_device(link, DEVICE_NAME, PERIPHERAL_ADDRESS))
    # proto=IPPROTO_TCP, or asyncio leaves Nagle on for accepted sockets (40 ms stalls).
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))  # the OS picks a free port, no race
    port = listener.getsockname()[1]
    exposed = await open_tcp_server_transport_with_socket(listener)
    # A second virtual controller on the link, reachable over HCI-on-TCP like a dongle.
    Controller("exposed", host_source=exposed.source, host_sink=exposed.sink, link=link)
    await peripheral.device.power_on()
    await peripheral.advertise(SERVICE_DATA_AD)
    monkeypatch.setenv(ENV_TRANSPORT, f"tcp-client:127.0.0.1:{port}")
    monkeypatch.delenv(ENV_ADDRESS, raising=False)
    try:
        device = await BleakScanner.find_device_by_filter(
            lambda _d, ad: SVC in ad.service_data, timeout=3, backend=BumbleScanner
        )
        assert device is not None
        async with BleakClient(device, backend=BumbleClient) as client:
            await client.write_gatt_char(RX, b"over tcp", response=True)
            assert await peripheral.next_write() == (RX, b"over tcp")
            assert client.mtu_size == 517
        central = await resolve_bumble_device()
        assert central.random_address == Address(DEFAULT_ADDRESS)
        assert await resolve_bumble_device() is central  # opened once for this loop
    finally:
        await close_bumble_transports()
        await _shutdown(peripheral.device)
        exposed.server.close()
        await exposed.close()
        await asyncio.sleep(0.02)


def test_env_transport_device_is_per_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two loops (as pytest gives two tests) never share the device or its lock, and each
    loop's device is closed when that loop shuts down."""
    opened: list[Transport] = []
    links: list[LocalLink] = []

    async def fake_open_transport(spec: str) -> Transport:
        assert spec == "virtual:test"
        controller = Controller("env", link=links[-1])
        transport = Transport(controller, AsyncPipeSink(controller))
        opened.append(transport)
        return transport

    monkeypatch.setattr(bleak_bumble, "open_transport", fake_open_transport)
    monkeypatch.setenv(ENV_TRANSPORT, "virtual:test")
    monkeypatch.setenv(ENV_ADDRESS, "C0:00:00:00:00:42")

    async def one_loop() -> Device:
        links.append(LocalLink())
        peripheral = Peripheral(_make_device(links[-1], DEVICE_NAME, PERIPHERAL_ADDRESS))
        await peripheral.device.power_on()
        await peripheral.advertise(SERVICE_DATA_AD)
        first, second = await asyncio.gather(resolve_bumble_device(), resolve_bumble_device())
        assert first is second  # concurrent callers wait on the loop's lock, open once
        assert first.random_address == Address("C0:00:00:00:00:42")
        async with BleakClient(PERIPHERAL_ADDRESS, backend=BumbleClient) as client:
            assert await client.read_gatt_char(INFO) == b"fw 1.2.3"
        await _shutdown(peripheral.device)
        assert first.powered_on
        return first

    first = asyncio.run(one_loop())
    second = asyncio.run(one_loop())
    assert first is not second
    assert len(opened) == 2
    assert not first.powered_on  # closed at its loop's shutdown
    assert not second.powered_on


async def test_no_device_configured_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_TRANSPORT, raising=False)
    with pytest.raises(BleakError, match=ENV_TRANSPORT):
        await BleakScanner.discover(timeout=0.1, backend=BumbleScanner)
