"""BlueZ over D-Bus against a real dbus-daemon serving bluetoothd's double.

Each test starts a private ``dbus-daemon`` and points ``DBUS_SYSTEM_BUS_ADDRESS`` at it, so
dbus-fast (and bless's dbus-next) connect there as they would to the system bus. The
double (tests/dbus_doubles/bluez.py, on dbus-fast's service API) does what bluetoothd does
that matters here: ``RegisterAdvertisement`` reads the advertisement's properties back from
its owner (``GetAll``) before answering, registrations are keyed by (owner, path), and
``GattManager1`` reads the application's objects back (``GetManagedObjects``). Nothing of
dbus-fast, dbus-next or bless is faked.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

if sys.platform != "linux":
    pytest.skip("BlueZ and dbus-fast are Linux-only", allow_module_level=True)

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from bleprov.core.advertising import (
    DeviceState,
    OobMode,
    ServiceData,
    decode_service_data,
    encode_service_data,
)
from bleprov.core.profile import USER_DESCRIPTION_UUID, GattProfile, default_profile
from bleprov.radio import bluez
from bleprov.radio.bless_peripheral import BlessPeripheral, RadioUnavailable
from bleprov.radio.peripheral import (
    CentralConnected,
    CentralDisconnected,
    FrameReceived,
    PeripheralEvent,
    SubscriptionChanged,
)
from tests.dbus_doubles.bluez import FakeBluez
from tests.dbus_doubles.common import TEST_IFACE

TIMEOUT = 5.0
PHONE = "AA:BB:CC:DD:EE:FF"
SERVICE_DATA = ServiceData(
    protocol_version=2, state=DeviceState.VIRGIN, modes=OobMode.QR, discriminator=0x123
)


@pytest.fixture
async def bus(system_bus: str) -> AsyncIterator[MessageBus]:
    connection = await bluez.connect_system_bus()
    yield connection
    await bluez.close_bus(connection)


@pytest.fixture
async def fake_bluez(system_bus: str, bus: MessageBus) -> AsyncIterator[FakeBluez]:
    """The bluetoothd double serving org.bluez on the private bus."""
    double = FakeBluez()
    await double.start(system_bus)
    try:
        yield double
    finally:
        await double.stop()


async def double(
    bus: MessageBus,
    member: str,
    signature: str = "",
    *args: Any,
    path: str = "/",
    interface: str = TEST_IFACE,
) -> Any:
    """Call the double: its test controls by default, or BlueZ's API."""
    reply = await bus.call(
        Message(
            destination=bluez.BLUEZ_SERVICE,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=list(args),
        )
    )
    if reply.message_type == MessageType.ERROR:
        raise AssertionError(f"{member} failed: {reply.error_name} {reply.body}")
    return reply.body[0] if reply.body else None


async def advertisements(bus: MessageBus) -> list[tuple[str, str, dict[str, Variant]]]:
    result: list[tuple[str, str, dict[str, Variant]]] = await double(
        bus, "Advertisements", interface=TEST_IFACE
    )
    return result


async def eventually(condition: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.01)


def _payload(profile: GattProfile) -> bytes:
    return encode_service_data(SERVICE_DATA, profile)


# -- no bus, no bluetoothd --------------------------------------------------------------


async def test_missing_bus_raises_a_typed_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    address = f"unix:path={tmp_path}/no_such_socket"
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
    with pytest.raises(bluez.BluezUnavailable) as caught:
        await bluez.connect_system_bus()
    message = str(caught.value)
    assert address in message
    assert "system bus" in message
    assert "dbus" in message
    assert isinstance(caught.value.__cause__, FileNotFoundError)


async def test_bless_on_a_missing_bus_raises_radio_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no_such_socket")
    peripheral = BlessPeripheral(name="bleprov")
    assert peripheral.capabilities.advertises_service_data is True
    assert peripheral.capabilities.reports_mtu is False
    with pytest.raises(RadioUnavailable, match="system bus") as caught:
        await peripheral.start(default_profile(), lambda event: None)
    assert "DBUS_SYSTEM_BUS_ADDRESS" in str(caught.value)
    assert isinstance(caught.value.__cause__, bluez.BluezUnavailable)
    assert isinstance(caught.value.__cause__.__cause__, FileNotFoundError)
    await peripheral.close()  # a failed start leaves nothing to release


async def test_given_bless_server_on_a_missing_bus(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A bless BlueZ server built by the caller: its setup task fails with a raw error."""
    from bless.backends.bluezdbus.server import BlessServerBlueZDBus

    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no_such_socket")
    peripheral = BlessPeripheral(BlessServerBlueZDBus(name="bleprov"))
    with pytest.raises(RadioUnavailable, match="no D-Bus system bus") as caught:
        await peripheral.start(default_profile(), lambda event: None)
    assert isinstance(caught.value.__cause__, FileNotFoundError)


async def test_no_bluetoothd_on_the_bus(bus: MessageBus) -> None:
    with pytest.raises(bluez.BluezUnavailable, match="bluetoothd"):
        await bluez.find_adapter(bus)
    peripheral = BlessPeripheral(name="bleprov")
    with pytest.raises(RadioUnavailable, match="bluetoothd"):
        await peripheral.start(default_profile(), lambda event: None)


async def test_no_adapter(bus: MessageBus, fake_bluez: FakeBluez) -> None:
    peripheral = BlessPeripheral(name="bleprov")
    with pytest.raises(RadioUnavailable, match="adapter named 'hci0'"):
        await peripheral.start(default_profile(), lambda event: None)


# -- advertisement ----------------------------------------------------------------------


async def test_find_adapter(bus: MessageBus, fake_bluez: FakeBluez) -> None:
    with pytest.raises(bluez.BluezUnavailable, match="adapter"):
        await bluez.find_adapter(bus)
    await double(bus, "AddAdapter", "ss", "hci0", "pi")
    await double(bus, "AddAdapter", "ss", "hci1", "pi")
    assert await bluez.find_adapter(bus) == "/org/bluez/hci0"
    assert await bluez.find_adapter(bus, "hci1") == "/org/bluez/hci1"
    with pytest.raises(bluez.BluezUnavailable, match="hci7"):
        await bluez.find_adapter(bus, "hci7")


async def test_bluez_reads_our_advertisement_back(bus: MessageBus, fake_bluez: FakeBluez) -> None:
    profile = default_profile()
    adapter = await double(bus, "AddAdapter", "ss", "hci0", "pi")
    adv = bluez.BluezAdvertisement(
        "/org/bleprov/test/adv0",
        service_data={profile.service_uuid: _payload(profile)},
        local_name="bleprov-",
        scan_response_service_uuids=[profile.service_uuid],
    )
    await bluez.register_advertisement(bus, adapter, adv)

    [(owner, path, props)] = await advertisements(bus)
    assert owner == bus.unique_name
    assert path == adv.path
    assert props["Type"].value == "peripheral"
    assert props["ServiceUUIDs"].value == []
    assert props["ScanResponseServiceUUIDs"].value == [profile.service_uuid]
    assert props["LocalName"].value == "bleprov-"
    assert props["Discoverable"].value is True
    service_data = props["ServiceData"].value
    assert set(service_data) == {profile.service_uuid}
    assert service_data[profile.service_uuid].signature == "ay"
    assert decode_service_data(service_data[profile.service_uuid].value, profile) == SERVICE_DATA

    await bluez.unregister_advertisement(bus, adapter, adv)
    assert await advertisements(bus) == []
    history = await double(bus, "History")
    assert [h[0] for h in history] == ["register", "unregister"]
    # Unexported: BlueZ (or anyone) can no longer read it.
    reply = await bus.call(
        Message(
            destination=bus.unique_name,
            path=adv.path,
            interface=bluez.PROPERTIES_IFACE,
            member="GetAll",
            signature="s",
            body=[bluez.LE_ADVERTISEMENT_IFACE],
        )
    )
    assert reply.message_type == MessageType.ERROR


async def test_refused_registration_raises_and_unexports(
    bus: MessageBus, fake_bluez: FakeBluez
) -> None:
    adv = bluez.BluezAdvertisement("/org/bleprov/test/adv1", service_data={}, local_name="x")
    with pytest.raises(bluez.BluezError) as caught:
        await bluez.register_advertisement(bus, "/org/bluez/hci9", adv)
    assert caught.value.name.startswith("org.freedesktop.DBus.Error.")
    # the object is free again: registering it for real works
    adapter = await double(bus, "AddAdapter", "ss", "hci0", "pi")
    await bluez.register_advertisement(bus, adapter, adv)
    assert len(await advertisements(bus)) == 1
    # only the owner may unregister, as in BlueZ
    other = await bluez.connect_system_bus()
    try:
        with pytest.raises(bluez.BluezError) as not_owner:
            await bluez.call(
                other,
                adapter,
                bluez.LE_ADVERTISING_MANAGER_IFACE,
                "UnregisterAdvertisement",
                "o",
                [adv.path],
            )
        assert not_owner.value.name == "org.bluez.Error.DoesNotExist"
    finally:
        await bluez.close_bus(other)


async def test_registrations_made_at_once_keep_their_owners(
    bus: MessageBus, fake_bluez: FakeBluez
) -> None:
    """Two clients register the same path at the same moment: BlueZ (and the double, which
    learns each call's sender as dbus-fast dispatches it) keeps one registration each."""
    adapter = await double(bus, "AddAdapter", "ss", "hci0", "pi")
    other = await bluez.connect_system_bus()
    try:
        ads = [
            bluez.BluezAdvertisement("/org/bleprov/test/same", service_data={}, local_name=n)
            for n in ("first", "second")
        ]
        await asyncio.gather(
            bluez.register_advertisement(bus, adapter, ads[0]),
            bluez.register_advertisement(other, adapter, ads[1]),
        )
        names = {owner: props["LocalName"].value for owner, _, props in await advertisements(bus)}
        assert names == {bus.unique_name: "first", other.unique_name: "second"}
        await bluez.unregister_advertisement(other, adapter, ads[1])
        [(owner, _, _)] = await advertisements(bus)
        assert owner == bus.unique_name
    finally:
        await bluez.close_bus(other)


def test_advertisement_needs_a_name() -> None:
    with pytest.raises(ValueError, match="LocalName"):
        bluez.BluezAdvertisement("/a", service_data={}, local_name="")


# -- connections ------------------------------------------------------------------------


async def test_connection_monitor_follows_device_connected(
    bus: MessageBus, fake_bluez: FakeBluez
) -> None:
    await double(bus, "AddAdapter", "ss", "hci0", "pi")
    await double(bus, "AddAdapter", "ss", "hci1", "pi")
    events: list[tuple[str, bool]] = []
    monitor = bluez.BluezConnectionMonitor(
        bus, lambda path, up: events.append((path, up)), "/org/bluez/hci0"
    )
    await monitor.start()
    device = await double(bus, "AddDevice", "sss", "hci0", PHONE, "phone")
    other = await double(bus, "AddDevice", "sss", "hci1", PHONE, "phone on hci1")
    assert device == "/org/bluez/hci0/dev_AA_BB_CC_DD_EE_FF"

    await double(bus, "ConnectDevice", "ss", "hci1", PHONE)  # another adapter: ignored
    await double(bus, "ConnectDevice", "ss", "hci0", PHONE)
    await eventually(lambda: len(events) == 1)
    assert events == [(device, True)]
    assert monitor.connected == {device}

    await double(bus, "DisconnectDevice", "ss", "hci0", PHONE)
    await eventually(lambda: len(events) == 2)
    assert events[1] == (device, False)

    # Device1.Connect then our disconnect_device (Device1.Disconnect)
    await double(bus, "Connect", path=device, interface=bluez.DEVICE_IFACE)
    await eventually(lambda: len(events) == 3)
    await bluez.disconnect_device(bus, device)
    await eventually(lambda: len(events) == 4)
    assert events[2:] == [(device, True), (device, False)]

    # A device removed while connected is gone
    await double(bus, "Connect", path=device, interface=bluez.DEVICE_IFACE)
    await eventually(lambda: len(events) == 5)
    await double(
        bus, "RemoveDevice", "o", device, path="/org/bluez/hci0", interface=bluez.ADAPTER_IFACE
    )
    await eventually(lambda: len(events) == 6)
    assert events[5] == (device, False)
    assert other not in {path for path, _ in events}

    await monitor.stop()
    await double(bus, "AddDevice", "sss", "hci0", PHONE, "phone")
    await double(bus, "ConnectDevice", "ss", "hci0", PHONE)
    await asyncio.sleep(0.1)
    assert len(events) == 6


async def test_monitor_lists_devices_connected_before_it_started(
    bus: MessageBus, fake_bluez: FakeBluez
) -> None:
    await double(bus, "AddAdapter", "ss", "hci0", "pi")
    device = await double(bus, "AddDevice", "sss", "hci0", PHONE, "phone")
    await double(bus, "Connect", path=device, interface=bluez.DEVICE_IFACE)
    events: list[tuple[str, bool]] = []
    monitor = bluez.BluezConnectionMonitor(bus, lambda path, up: events.append((path, up)))
    await monitor.start()
    assert monitor.connected == {device}
    assert events == []
    await bluez.disconnect_device(bus, device)
    await eventually(lambda: events == [(device, False)])
    await monitor.stop()


# -- bless's real BlueZ backend on the double ----------------------------------------------


def _objects_by_interface(
    objects: dict[str, dict[str, dict[str, Variant]]], interface: str
) -> dict[str, dict[str, Variant]]:
    return {path: ifaces[interface] for path, ifaces in objects.items() if interface in ifaces}


async def test_bless_bluez_backend_with_our_side_channel(
    bus: MessageBus, fake_bluez: FakeBluez
) -> None:
    """bless.BlessServer (BlueZ backend, dbus-next) + our D-Bus side channel, end to end."""
    profile = default_profile()
    await double(bus, "AddAdapter", "ss", "hci0", "pi")
    events: asyncio.Queue[PeripheralEvent] = asyncio.Queue()
    peripheral = BlessPeripheral(name="bleprov")
    await peripheral.start(profile, events.put_nowait)
    try:
        # bless registered its GATT application, built from the profile, with 0x2901s
        [(owner, app_path, objects)] = await double(bus, "Applications")
        services = _objects_by_interface(objects, "org.bluez.GattService1")
        assert [s["UUID"].value for s in services.values()] == [profile.service_uuid]
        chars = _objects_by_interface(objects, "org.bluez.GattCharacteristic1")
        by_uuid = {c["UUID"].value: path for path, c in chars.items()}
        assert set(by_uuid) == {c.uuid for c in profile.characteristics}
        for spec in profile.characteristics:
            assert set(chars[by_uuid[spec.uuid]]["Flags"].value) == set(spec.properties)
        descriptors = _objects_by_interface(objects, "org.bluez.GattDescriptor1")
        descriptions = {
            chars[d["Characteristic"].value]["UUID"].value: bytes(d["Value"].value)
            for d in descriptors.values()
            if d["UUID"].value == USER_DESCRIPTION_UUID
        }
        assert descriptions == {c.uuid: c.description.encode() for c in profile.characteristics}

        # bless's own advertisement (no service data) came and went
        history = await double(bus, "History")
        assert [(h[0], h[1]) for h in history] == [("register", owner), ("unregister", owner)]
        assert await advertisements(bus) == []

        await peripheral.start_advertising(_payload(profile), "bleprov-1234")
        [(adv_owner, _, props)] = await advertisements(bus)
        assert adv_owner != owner  # ours, over dbus-fast
        sd = props["ServiceData"].value[profile.advertisement.service_data_uuid]
        assert decode_service_data(sd.value, profile) == SERVICE_DATA
        assert props["LocalName"].value == "bleprov-"

        # a central connects: Device1.Connected
        device = await double(bus, "AddDevice", "sss", "hci0", PHONE, "phone")
        await double(bus, "Connect", path=device, interface=bluez.DEVICE_IFACE)
        assert await asyncio.wait_for(events.get(), TIMEOUT) == CentralConnected(device, 23)

        async def gatt(path: str, member: str, signature: str, *args: Any) -> list[Any]:
            reply = await bus.call(
                Message(
                    destination=owner,
                    path=path,
                    interface="org.bluez.GattCharacteristic1",
                    member=member,
                    signature=signature,
                    body=list(args),
                )
            )
            assert reply.message_type == MessageType.METHOD_RETURN, reply.body
            body: list[Any] = reply.body
            return body

        # BlueZ relays the central's ATT requests to bless's objects
        peripheral.set_info(b"info value")
        [value] = await gatt(by_uuid[profile.info.uuid], "ReadValue", "a{sv}", {})
        assert value == b"info value"
        rx = by_uuid[profile.rx.uuid]
        await gatt(rx, "WriteValue", "aya{sv}", b"\x01frame", {"type": Variant("s", "command")})
        await gatt(rx, "WriteValue", "aya{sv}", b"\x02frame", {"type": Variant("s", "request")})
        assert await asyncio.wait_for(events.get(), TIMEOUT) == FrameReceived(device, b"\x01frame")
        assert await asyncio.wait_for(events.get(), TIMEOUT) == FrameReceived(device, b"\x02frame")

        tx = by_uuid[profile.tx.uuid]
        notified: asyncio.Queue[bytes] = asyncio.Queue()

        def on_signal(msg: Message) -> None:
            if msg.member == "PropertiesChanged" and msg.path == tx and "Value" in msg.body[1]:
                notified.put_nowait(bytes(msg.body[1]["Value"].value))

        bus.add_message_handler(on_signal)
        await bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="AddMatch",
                signature="s",
                body=[f"type='signal',sender='{owner}',path='{tx}'"],
            )
        )
        await gatt(tx, "StartNotify", "")
        assert await asyncio.wait_for(events.get(), TIMEOUT) == SubscriptionChanged(device, True)
        await peripheral.send(device, b"\x03reply" * 40)
        assert await asyncio.wait_for(notified.get(), TIMEOUT) == b"\x03reply" * 40
        await gatt(tx, "StopNotify", "")
        assert await asyncio.wait_for(events.get(), TIMEOUT) == SubscriptionChanged(device, False)
        bus.remove_message_handler(on_signal)

        # the device drops the central: Device1.Disconnect
        await peripheral.disconnect(device)
        event = await asyncio.wait_for(events.get(), TIMEOUT)
        assert isinstance(event, CentralDisconnected)
        assert event.connection == device

        await peripheral.stop_advertising()
        assert await advertisements(bus) == []
        await peripheral.start_advertising(_payload(profile), "bleprov")
        assert len(await advertisements(bus)) == 1
    finally:
        await peripheral.close()
    assert await advertisements(bus) == []
    assert await double(bus, "Applications") == []
