"""BlessPeripheral over BlessServerBumble on an in-process bumble LocalLink.

The peripheral runs bless's server API (reads, writes and notifications routed by bless
exactly as on BlueZ) on a bumble device; the central is bumble's own GATT client, so what
is checked is what a real central sees on the air: the database, the advertisement, reads,
both write types, notifications and indications, and the link events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from bumble.controller import Controller
from bumble.core import UUID, AdvertisingData
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.gatt import GATT_CHARACTERISTIC_USER_DESCRIPTION_DESCRIPTOR
from bumble.gatt_client import CharacteristicProxy, ServiceProxy
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

from bleprov.core.advertising import (
    AdvertisedFlags,
    DeviceState,
    OobMode,
    ServiceData,
    decode_service_data,
    encode_service_data,
)
from bleprov.core.profile import GattProfile, default_profile
from bleprov.radio.bless_bumble import BlessServerBumble
from bleprov.radio.bless_peripheral import (
    SYNTHETIC_CONNECTION,
    BlessLinkHooks,
    BlessPeripheral,
    advertising_payloads,
)
from bleprov.radio.peripheral import (
    CentralConnected,
    CentralDisconnected,
    FrameReceived,
    MtuChanged,
    PeripheralEvent,
    SubscriptionChanged,
)

PERIPHERAL_ADDRESS = "F0:F0:F0:F0:F0:F0"
CENTRAL_ADDRESS = "F1:F1:F1:F1:F1:F1"
TIMEOUT = 5.0
SERVICE_DATA = ServiceData(
    protocol_version=2,
    state=DeviceState.VIRGIN,
    modes=OobMode.QR | OobMode.CODE,
    discriminator=0xABC,
    flags=AdvertisedFlags.BUTTON_WINDOW_OPEN,
)
INFO = b"\xa1\x01\x01 bleprov info (not secret)"
PROPERTY_BITS = {
    "read": 0x02,
    "write-without-response": 0x04,
    "write": 0x08,
    "notify": 0x10,
    "indicate": 0x20,
}


def make_device(link: LocalLink, name: str, address: str) -> Device:
    """A bumble device on ``link``; Controller/AsyncPipeSink need the running loop."""
    controller = Controller(name, link=link)
    host = Host(controller, AsyncPipeSink(controller))
    return Device(name=name, address=Address(address), host=host)


@dataclass
class Rig:
    profile: GattProfile
    peripheral: BlessPeripheral
    server: BlessServerBumble
    central: Device
    events: asyncio.Queue[PeripheralEvent] = field(default_factory=asyncio.Queue)

    async def next_event(self) -> PeripheralEvent:
        return await asyncio.wait_for(self.events.get(), TIMEOUT)

    async def scan(self) -> Advertisement:
        found: asyncio.Future[Advertisement] = asyncio.get_running_loop().create_future()

        def on_advertisement(adv: Advertisement) -> None:
            if adv.address == Address(PERIPHERAL_ADDRESS) and not found.done():
                found.set_result(adv)

        self.central.on(Device.EVENT_ADVERTISEMENT, on_advertisement)
        await self.central.start_scanning(filter_duplicates=True)
        try:
            return await asyncio.wait_for(found, TIMEOUT)
        finally:
            await self.central.stop_scanning()
            self.central.remove_listener(Device.EVENT_ADVERTISEMENT, on_advertisement)

    async def connect(self) -> tuple[Connection, Peer, str]:
        """Connect; returns the link, a GATT client and the connection id the device saw."""
        connection = await self.central.connect(Address(PERIPHERAL_ADDRESS))
        event = await self.next_event()
        assert isinstance(event, CentralConnected)
        assert event.mtu == 23
        return connection, Peer(connection), event.connection


async def _make_rig(server_class: type[BlessServerBumble]) -> Rig:
    link = LocalLink()  # type: ignore[no-untyped-call]
    device = make_device(link, "bleprov", PERIPHERAL_ADDRESS)
    device.advertising_interval_min = device.advertising_interval_max = 20  # ms, not 1 s
    central = make_device(link, "central", CENTRAL_ADDRESS)
    await central.power_on()
    server = server_class(name="bleprov", device=device)
    peripheral = BlessPeripheral(server, poll_interval=0.01)
    profile = default_profile()
    rig = Rig(profile, peripheral, server, central)
    await peripheral.start(profile, rig.events.put_nowait)
    peripheral.set_info(INFO)
    await peripheral.start_advertising(encode_service_data(SERVICE_DATA, profile), "bleprov-1234")
    return rig


async def _close_rig(rig: Rig) -> None:
    await rig.peripheral.close()
    await rig.central.stop_advertising()
    await asyncio.sleep(0.02)  # let bumble's cancelled HCI tasks settle before the loop ends


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    rig = await _make_rig(BlessServerBumble)
    yield rig
    await _close_rig(rig)


@pytest.fixture
async def rig_plain() -> AsyncIterator[Rig]:
    rig = await _make_rig(PlainBlessServer)
    yield rig
    await _close_rig(rig)


async def discover(
    peer: Peer, profile: GattProfile
) -> tuple[ServiceProxy, list[CharacteristicProxy[bytes]]]:
    await peer.discover_services()
    services = peer.get_services_by_uuid(UUID(profile.service_uuid))
    assert len(services) == 1
    service = services[0]
    characteristics = await service.discover_characteristics()
    for characteristic in characteristics:
        await characteristic.discover_descriptors()
    return service, characteristics


def by_uuid(
    characteristics: list[CharacteristicProxy[bytes]], uuid: str
) -> CharacteristicProxy[bytes]:
    [found] = [c for c in characteristics if c.uuid == UUID(uuid)]
    return found


async def test_capabilities_say_what_bumble_reports(rig: Rig) -> None:
    assert isinstance(rig.server, BlessLinkHooks)
    assert rig.peripheral.capabilities.reports_mtu is True
    assert rig.peripheral.capabilities.advertises_service_data is True


async def test_advertisement_carries_the_service_data(rig: Rig) -> None:
    adv = await rig.scan()
    assert adv.is_connectable
    service_data = adv.data.get(AdvertisingData.Type.SERVICE_DATA_128_BIT_UUID)
    assert service_data is not None
    uuid, payload = service_data
    assert uuid == UUID(rig.profile.advertisement.service_data_uuid)
    assert decode_service_data(bytes(payload), rig.profile) == SERVICE_DATA
    flags = adv.data.get(AdvertisingData.Type.FLAGS)
    assert flags is not None
    assert int(flags) == 0x06  # LE general discoverable, BR/EDR not supported


def test_payloads_follow_the_profile_layout() -> None:
    profile = default_profile()
    data, scan = advertising_payloads(
        profile, encode_service_data(SERVICE_DATA, profile), "bleprov-1234"
    )
    assert len(data) == profile.advertisement.advertising_data_size
    assert len(data) <= 31
    assert len(scan) <= 31
    parsed = AdvertisingData.from_bytes(scan)
    assert parsed.get(AdvertisingData.Type.SHORTENED_LOCAL_NAME) == "bleprov-"
    assert parsed.get(AdvertisingData.Type.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS) == [
        UUID(profile.service_uuid)
    ]
    with pytest.raises(ValueError, match="service data"):
        advertising_payloads(profile, b"\x01", "x")


async def test_database_is_exactly_the_profile(rig: Rig) -> None:
    _, peer, _ = await rig.connect()
    _, characteristics = await discover(peer, rig.profile)
    assert {c.uuid for c in characteristics} == {UUID(c.uuid) for c in rig.profile.characteristics}
    for spec in rig.profile.characteristics:
        characteristic = by_uuid(characteristics, spec.uuid)
        expected_bits = sum(PROPERTY_BITS[p] for p in spec.properties)
        assert int(characteristic.properties) == expected_bits, spec.key
        descriptions = [
            d
            for d in characteristic.descriptors
            if d.type == GATT_CHARACTERISTIC_USER_DESCRIPTION_DESCRIPTOR
        ]
        assert len(descriptions) == 1, spec.key
        assert await descriptions[0].read_value() == spec.description.encode(), spec.key


async def test_info_is_served_on_read(rig: Rig) -> None:
    _, peer, _ = await rig.connect()
    _, characteristics = await discover(peer, rig.profile)
    info = by_uuid(characteristics, rig.profile.info.uuid)
    assert await info.read_value() == INFO
    rig.peripheral.set_info(b"updated")
    assert await info.read_value() == b"updated"


async def test_writes_of_both_types_become_frames(rig: Rig) -> None:
    _, peer, connection_id = await rig.connect()
    _, characteristics = await discover(peer, rig.profile)
    rx = by_uuid(characteristics, rig.profile.rx.uuid)
    await peer.write_value(rx, b"\x00with response", with_response=True)
    assert await rig.next_event() == FrameReceived(connection_id, b"\x00with response")
    await peer.write_value(rx, b"\x01without response", with_response=False)
    assert await rig.next_event() == FrameReceived(connection_id, b"\x01without response")
    big = bytes(range(256)) * 2  # 512 bytes: a long (prepared) write at MTU 23
    await peer.write_value(rx, big, with_response=True)
    assert await rig.next_event() == FrameReceived(connection_id, big)


async def test_notifications_up_to_512_bytes_at_mtu_517(rig: Rig) -> None:
    connection, peer, connection_id = await rig.connect()
    assert await peer.request_mtu(517) == 517
    assert await rig.next_event() == MtuChanged(connection_id, 517)
    _, characteristics = await discover(peer, rig.profile)
    tx = by_uuid(characteristics, rig.profile.tx.uuid)
    received: asyncio.Queue[bytes] = asyncio.Queue()
    await peer.subscribe(tx, received.put_nowait, prefer_notify=True)
    assert await rig.next_event() == SubscriptionChanged(connection_id, True)
    frames = [b"\x10" * 512, b"short", bytes(range(200))]
    for frame in frames:
        await rig.peripheral.send(connection_id, frame)
    for frame in frames:
        assert await asyncio.wait_for(received.get(), TIMEOUT) == frame
    await peer.unsubscribe(tx)
    assert await rig.next_event() == SubscriptionChanged(connection_id, False)
    await rig.peripheral.send(connection_id, b"nobody listens")
    await asyncio.sleep(0.05)
    assert received.empty()
    assert connection.att_mtu == 517


async def test_indications_when_the_central_prefers_them(rig: Rig) -> None:
    _, peer, connection_id = await rig.connect()
    _, characteristics = await discover(peer, rig.profile)
    tx = by_uuid(characteristics, rig.profile.tx.uuid)
    received: asyncio.Queue[bytes] = asyncio.Queue()
    await peer.subscribe(tx, received.put_nowait, prefer_notify=False)
    assert await rig.next_event() == SubscriptionChanged(connection_id, True)
    for frame in (b"first", b"second"):
        await rig.peripheral.send(connection_id, frame)
    assert await asyncio.wait_for(received.get(), TIMEOUT) == b"first"
    assert await asyncio.wait_for(received.get(), TIMEOUT) == b"second"


async def test_central_disconnect_is_reported(rig: Rig) -> None:
    connection, _, connection_id = await rig.connect()
    assert connection_id == str(Address(CENTRAL_ADDRESS))
    await connection.disconnect()
    event = await rig.next_event()
    assert isinstance(event, CentralDisconnected)
    assert event.connection == connection_id
    assert event.reason
    # Advertising resumes after the central left, as BlueZ keeps advertising.
    adv = await rig.scan()
    assert adv.data.get(AdvertisingData.Type.SERVICE_DATA_128_BIT_UUID) is not None


async def test_device_can_disconnect_the_central(rig: Rig) -> None:
    connection, _, connection_id = await rig.connect()
    gone: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    connection.once(Connection.EVENT_DISCONNECTION, gone.set_result)
    await rig.peripheral.disconnect(connection_id)
    await asyncio.wait_for(gone, TIMEOUT)
    event = await rig.next_event()
    assert isinstance(event, CentralDisconnected)
    assert event.connection == connection_id


async def test_stop_advertising_goes_quiet(rig: Rig) -> None:
    await rig.peripheral.stop_advertising()
    assert not await rig.server.is_advertising()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(rig.scan(), 0.3)
    await rig.peripheral.start_advertising(encode_service_data(SERVICE_DATA, rig.profile), "b")
    assert await rig.server.is_advertising()
    await rig.scan()


class PlainBlessServer(BlessServerBumble):
    """A bless backend with nothing beyond bless's API, as CoreBluetooth and WinRT are.

    No link hooks; ``is_connected()`` means "a central is subscribed", as on those platforms.
    """

    set_link_listener = None  # type: ignore[assignment]  # hides the hooks (Protocol check)

    async def is_connected(self) -> bool:
        return any(
            cccd not in (b"", b"\x00\x00")
            for cccds in self.device.gatt_server.subscribers.values()
            for cccd in cccds.values()
        )


async def test_platform_without_link_events(rig_plain: Rig) -> None:
    """macOS/Windows path: no service data on air, one synthetic connection, subscription polled."""
    rig = rig_plain
    assert not isinstance(rig.server, BlessLinkHooks)
    assert rig.peripheral.capabilities.reports_mtu is False
    assert rig.peripheral.capabilities.advertises_service_data is False
    adv = await rig.scan()
    assert adv.data.get(AdvertisingData.Type.SERVICE_DATA_128_BIT_UUID) is None
    uuids = adv.data.get(AdvertisingData.Type.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS)
    assert uuids == [UUID(rig.profile.service_uuid)]

    connection = await rig.central.connect(Address(PERIPHERAL_ADDRESS))
    peer = Peer(connection)
    _, characteristics = await discover(peer, rig.profile)
    await peer.write_value(by_uuid(characteristics, rig.profile.rx.uuid), b"hi", with_response=True)
    assert await rig.next_event() == CentralConnected(SYNTHETIC_CONNECTION, 23)
    assert await rig.next_event() == FrameReceived(SYNTHETIC_CONNECTION, b"hi")

    tx = by_uuid(characteristics, rig.profile.tx.uuid)
    received: asyncio.Queue[bytes] = asyncio.Queue()
    await peer.subscribe(tx, received.put_nowait)
    assert await rig.next_event() == SubscriptionChanged(SYNTHETIC_CONNECTION, True)
    await rig.peripheral.send(SYNTHETIC_CONNECTION, b"reply")
    assert await asyncio.wait_for(received.get(), TIMEOUT) == b"reply"
    await peer.unsubscribe(tx)
    assert await rig.next_event() == SubscriptionChanged(SYNTHETIC_CONNECTION, False)
    event = await rig.next_event()
    assert isinstance(event, CentralDisconnected)
    assert event.connection == SYNTHETIC_CONNECTION
