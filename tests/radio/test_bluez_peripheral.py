"""BluezPeripheral, our own GATT application, against a real dbus-daemon and bluetoothd's double.

The double (tests/dbus_doubles/bluez.py, dbus-fast) owns ``org.bluez`` on a private bus,
reads the application back on ``RegisterApplication`` and turns a central's ATT requests into
the calls bluetoothd 5.66 makes: a read at ATT MTU 23 is a Read Request and Read Blobs at
offsets 22, 44..., each answer cut to 22 bytes; writes carry ``device`` and ``mtu``; a
``Value`` change of a subscribed characteristic is a notification. The same long read
against bless's BlueZ backend (which ignores the offset) is expected to fail.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

if sys.platform != "linux":
    pytest.skip("BlueZ and dbus-fast are Linux-only", allow_module_level=True)

from dbus_fast import DBusError, Message, Variant
from dbus_fast.aio import MessageBus

from bleprov.core.advertising import decode_service_data
from bleprov.core.profile import USER_DESCRIPTION_UUID, GattProfile, default_profile
from bleprov.radio import bluez
from bleprov.radio.bluez_peripheral import APP_ROOT, BluezPeripheral, characteristic_flags
from bleprov.radio.errors import RadioUnavailable
from bleprov.radio.peripheral import (
    CentralConnected,
    CentralDisconnected,
    FrameReceived,
    MtuChanged,
    Peripheral,
    PeripheralEvent,
    SubscriptionChanged,
)
from bleprov.radio.spec import RadioSpec, WatchedPeripheral, open_watched_peripheral
from tests.dbus_doubles.bluez import FakeBluez
from tests.radio.test_bluez_dbus import SERVICE_DATA, _payload, advertisements, double

TIMEOUT = 5.0
PHONE = "AA:BB:CC:DD:EE:FF"
PHONE_PATH = "/org/bluez/hci0/dev_AA_BB_CC_DD_EE_FF"
#: Longer than one ATT read at MTU 23 (22 bytes) and not a multiple of 22.
LONG_INFO = bytes((i * 7 + 3) % 256 for i in range(200))


@pytest.fixture
async def bus(system_bus: str) -> AsyncIterator[MessageBus]:
    connection = await bluez.connect_system_bus()
    yield connection
    await bluez.close_bus(connection)


@pytest.fixture
async def fake_bluez(system_bus: str, bus: MessageBus) -> AsyncIterator[FakeBluez]:
    double_ = FakeBluez()
    await double_.start(system_bus)
    await double(bus, "AddAdapter", "ss", "hci0", "pi")
    try:
        yield double_
    finally:
        await double_.stop()


class Served:
    """A started peripheral, its events, and its application as bluetoothd read it."""

    def __init__(self, peripheral: Peripheral, watched: WatchedPeripheral | None) -> None:
        self.peripheral = peripheral
        self.watched = watched
        self.events: asyncio.Queue[PeripheralEvent] = asyncio.Queue()
        self.owner = ""
        self.objects: dict[str, dict[str, dict[str, Variant]]] = {}

    async def start(self, bus: MessageBus, profile: GattProfile) -> None:
        await self.peripheral.start(profile, self.events.put_nowait)
        [(self.owner, _path, self.objects)] = await double(bus, "Applications")

    def path_of(self, uuid: str) -> str:
        [path] = [
            path
            for path, ifaces in self.objects.items()
            if ifaces.get("org.bluez.GattCharacteristic1", {}).get("UUID", Variant("s", "")).value
            == uuid
        ]
        return path

    def description_of(self, uuid: str) -> str:
        characteristic = self.path_of(uuid)
        [path] = [
            path
            for path, ifaces in self.objects.items()
            if (d := ifaces.get("org.bluez.GattDescriptor1"))
            and d["Characteristic"].value == characteristic
            and d["UUID"].value == USER_DESCRIPTION_UUID
        ]
        return path

    async def event(self) -> PeripheralEvent:
        return await asyncio.wait_for(self.events.get(), TIMEOUT)

    async def no_event(self) -> None:
        await asyncio.sleep(0.1)
        assert self.events.empty(), self.events.get_nowait()


@pytest.fixture
async def served(bus: MessageBus, fake_bluez: FakeBluez) -> AsyncIterator[Served]:
    """BluezPeripheral as ``device serve --radio bluez`` opens it on Linux."""
    async with open_watched_peripheral(RadioSpec.parse("bluez")) as watched:
        serving = Served(watched.peripheral, watched)
        await serving.start(bus, default_profile())
        try:
            yield serving
        finally:
            await watched.peripheral.close()


async def connections(bus: MessageBus) -> set[str]:
    """Unique names on the bus: who is connected."""
    reply = await bus.call(
        Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member="ListNames",
        )
    )
    assert reply is not None
    return {name for name in reply.body[0] if name.startswith(":")}


# -- the GATT application ---------------------------------------------------------------


async def test_linux_system_radio_is_our_gatt_application(bus: MessageBus, served: Served) -> None:
    """The database bless built (service, characteristics with the profile's properties, a
    0x2901 on each), now from one dbus-fast connection that also advertises."""
    profile = default_profile()
    assert isinstance(served.peripheral, BluezPeripheral)
    assert served.peripheral.capabilities.reports_mtu is True
    assert served.peripheral.capabilities.advertises_service_data is True
    [(_, app_path, _)] = await double(bus, "Applications")
    assert app_path == APP_ROOT
    services = {
        p: i["org.bluez.GattService1"]
        for p, i in served.objects.items()
        if "org.bluez.GattService1" in i
    }
    assert [(s["UUID"].value, s["Primary"].value) for s in services.values()] == [
        (profile.service_uuid, True)
    ]
    for spec in profile.characteristics:
        props = served.objects[served.path_of(spec.uuid)]["org.bluez.GattCharacteristic1"]
        assert props["Flags"].value == list(spec.properties)
        assert props["Service"].value in services
        description = served.objects[served.description_of(spec.uuid)]
        assert description["org.bluez.GattDescriptor1"]["Flags"].value == ["read"]
        assert bytes(description["org.bluez.GattDescriptor1"]["Value"].value) == (
            spec.description.encode()
        )
    assert len(served.objects) == 1 + 2 * len(profile.characteristics)

    await served.peripheral.start_advertising(_payload(profile), "bleprov-1234")
    [(adv_owner, _, props)] = await advertisements(bus)
    assert adv_owner == served.owner  # one bus connection for all of it
    sd = props["ServiceData"].value[profile.advertisement.service_data_uuid]
    assert decode_service_data(sd.value, profile) == SERVICE_DATA
    assert props["LocalName"].value == "bleprov-"
    assert props["ScanResponseServiceUUIDs"].value == [profile.service_uuid]

    await served.peripheral.close()
    assert await advertisements(bus) == []
    assert await double(bus, "Applications") == []


def test_encryption_permissions_become_encrypted_flags() -> None:
    spec = default_profile().info
    assert characteristic_flags(spec) == ["read"]
    locked = type(spec)(spec.key, spec.uuid, spec.properties, ("read-encryption-required",), "x")
    assert characteristic_flags(locked) == ["encrypt-read"]


# -- reads ------------------------------------------------------------------------------


async def test_long_read_of_info_at_mtu_23(bus: MessageBus, fake_bluez: FakeBluez) -> None:
    """bluetoothd sends each Read Blob as ReadValue with the offset and cuts the answer to
    22 bytes: the reassembled value is the info only if the offset is applied. (bless
    0.3.0 ignored the offset: this test failed on it, and in the lab its read came back
    as the first 47 bytes repeated up to 512.)"""
    served = Served(BluezPeripheral(), None)
    await served.start(bus, default_profile())
    try:
        served.peripheral.set_info(LONG_INFO)
        info = served.path_of(default_profile().info.uuid)
        value = await fake_bluez.gatt_read(served.owner, info, device=PHONE_PATH, mtu=23)
        assert value == LONG_INFO
        offsets = [c[2].get("offset", 0) for c in fake_bluez.gatt_calls]
        assert offsets == list(range(0, 200, 22))  # 10 requests, the last one 2 bytes
    finally:
        await served.peripheral.close()


async def test_long_read_of_a_user_description(fake_bluez: FakeBluez, served: Served) -> None:
    spec = default_profile().info
    assert len(spec.description) > 22
    value = await fake_bluez.gatt_read(
        served.owner,
        served.description_of(spec.uuid),
        device=PHONE_PATH,
        interface="org.bluez.GattDescriptor1",
    )
    assert value == spec.description.encode()


async def test_read_at_the_end_and_past_it(fake_bluez: FakeBluez, served: Served) -> None:
    served.peripheral.set_info(b"0123456789")
    info = served.path_of(default_profile().info.uuid)

    async def read(offset: int) -> bytes:
        (value,) = await fake_bluez.call_client(
            served.owner,
            info,
            "org.bluez.GattCharacteristic1",
            "ReadValue",
            "a{sv}",
            [fake_bluez.att_options(PHONE_PATH, 23, offset)],
        )
        return bytes(value)

    assert await read(0) == b"0123456789"
    assert await read(4) == b"456789"
    assert await read(10) == b""
    with pytest.raises(DBusError) as past:
        await read(11)
    assert past.value.type == "org.bluez.Error.InvalidOffset"


async def test_info_changing_during_a_long_read_is_not_torn(
    fake_bluez: FakeBluez, served: Served
) -> None:
    """The Read Blobs after offset 0 continue the value read at offset 0."""
    served.peripheral.set_info(b"A" * 30)
    info = served.path_of(default_profile().info.uuid)

    async def read(offset: int, device: str = PHONE_PATH) -> bytes:
        (value,) = await fake_bluez.call_client(
            served.owner,
            info,
            "org.bluez.GattCharacteristic1",
            "ReadValue",
            "a{sv}",
            [fake_bluez.att_options(device, 23, offset)],
        )
        return bytes(value)

    first = (await read(0))[:22]
    served.peripheral.set_info(b"B" * 30)
    assert first + await read(22) == b"A" * 30
    assert await read(0) == b"B" * 30  # a new read sees the new value
    other = "/org/bluez/hci0/dev_11_22_33_44_55_66"
    assert await read(0, other) == b"B" * 30


# -- connections, writes, MTU -------------------------------------------------------------


async def test_writes_are_frames_of_the_central_with_its_mtu(
    bus: MessageBus, fake_bluez: FakeBluez, served: Served
) -> None:
    device = await double(bus, "AddDevice", "sss", "hci0", PHONE, "phone")
    assert device == PHONE_PATH
    await double(bus, "ConnectDevice", "ss", "hci0", PHONE)
    assert await served.event() == CentralConnected(device, 23)
    rx = served.path_of(default_profile().rx.uuid)

    await fake_bluez.gatt_write(served.owner, rx, b"\x01open", device=device, mtu=185)
    assert await served.event() == MtuChanged(device, 185)
    assert await served.event() == FrameReceived(device, b"\x01open")
    await fake_bluez.gatt_write(served.owner, rx, b"\x02more", device=device, mtu=185)
    assert await served.event() == FrameReceived(device, b"\x02more")

    # "type" (later BlueZ; 5.66 sends none): command and request are both frames
    for kind in ("command", "request"):
        options = {**fake_bluez.att_options(device, 185), "type": Variant("s", kind)}
        await fake_bluez.call_client(
            served.owner, rx, "org.bluez.GattCharacteristic1", "WriteValue", "aya{sv}",
            [kind.encode(), options],
        )  # fmt: skip
        assert await served.event() == FrameReceived(device, kind.encode())

    # prepared writes are not our protocol: refused, no frame
    with pytest.raises(DBusError) as prepared:
        await fake_bluez.gatt_write(served.owner, rx, b"tail", device=device, mtu=185, offset=5)
    assert prepared.value.type == "org.bluez.Error.InvalidOffset"
    reliable = {**fake_bluez.att_options(device, 185), "type": Variant("s", "reliable")}
    with pytest.raises(DBusError) as refused:
        await fake_bluez.call_client(
            served.owner, rx, "org.bluez.GattCharacteristic1", "WriteValue", "aya{sv}",
            [b"x", reliable],
        )  # fmt: skip
    assert refused.value.type == "org.bluez.Error.NotSupported"
    await served.no_event()

    await double(bus, "DisconnectDevice", "ss", "hci0", PHONE)
    assert await served.event() == CentralDisconnected(device, "disconnected")


async def test_a_read_before_the_connected_signal_connects_the_central(
    bus: MessageBus, fake_bluez: FakeBluez, served: Served
) -> None:
    """bluetoothd emits Device1.Connected when idle: a request may come first. The
    request's ``device`` and ``mtu`` connect the central; the signal adds nothing."""
    device = await double(bus, "AddDevice", "sss", "hci0", PHONE, "phone")
    served.peripheral.set_info(b"info")
    info = served.path_of(default_profile().info.uuid)
    assert await fake_bluez.gatt_read(served.owner, info, device=device, mtu=517) == b"info"
    assert await served.event() == CentralConnected(device, 517)
    await double(bus, "ConnectDevice", "ss", "hci0", PHONE)
    await served.no_event()
    await double(bus, "DisconnectDevice", "ss", "hci0", PHONE)
    assert await served.event() == CentralDisconnected(device, "disconnected")


async def test_disconnect_drops_the_central(
    bus: MessageBus, fake_bluez: FakeBluez, served: Served
) -> None:
    device = await double(bus, "AddDevice", "sss", "hci0", PHONE, "phone")
    await double(bus, "ConnectDevice", "ss", "hci0", PHONE)
    assert await served.event() == CentralConnected(device, 23)
    await served.peripheral.disconnect(device)
    assert await served.event() == CentralDisconnected(device, "disconnected")
    await served.peripheral.disconnect(device)  # gone already: nothing to do
    await served.no_event()


# -- notifications ------------------------------------------------------------------------


async def test_frames_on_tx_are_notified(
    bus: MessageBus, fake_bluez: FakeBluez, served: Served
) -> None:
    device = await double(bus, "AddDevice", "sss", "hci0", PHONE, "phone")
    await double(bus, "ConnectDevice", "ss", "hci0", PHONE)
    assert await served.event() == CentralConnected(device, 23)
    tx = served.path_of(default_profile().tx.uuid)

    await fake_bluez.gatt_subscribe(served.owner, tx)
    assert await served.event() == SubscriptionChanged(device, True)
    frames = [b"\x03reply" * 30, b"\x04same", b"\x04same"]  # the same value twice: two frames
    for frame in frames:
        await served.peripheral.send(device, frame)
    for frame in frames:
        assert await asyncio.wait_for(fake_bluez.notifications.get(), TIMEOUT) == (tx, frame)

    await served.peripheral.send("/org/bluez/hci0/dev_00_00_00_00_00_00", b"nobody")
    await fake_bluez.gatt_subscribe(served.owner, tx, enabled=False)
    assert await served.event() == SubscriptionChanged(device, False)
    await asyncio.sleep(0.1)
    assert fake_bluez.notifications.empty()


async def test_a_subscription_before_the_central_is_known_waits_for_it(
    bus: MessageBus, fake_bluez: FakeBluez, served: Served
) -> None:
    device = await double(bus, "AddDevice", "sss", "hci0", PHONE, "phone")
    await fake_bluez.gatt_subscribe(served.owner, served.path_of(default_profile().tx.uuid))
    await served.no_event()
    await double(bus, "ConnectDevice", "ss", "hci0", PHONE)
    assert await served.event() == CentralConnected(device, 23)
    assert await served.event() == SubscriptionChanged(device, True)


# -- bluetoothd going away -------------------------------------------------------------------


async def test_lost_when_bluetoothd_leaves_the_bus(fake_bluez: FakeBluez, served: Served) -> None:
    assert served.watched is not None
    lost = served.watched.lost
    assert not lost.done()
    await fake_bluez.stop()
    await asyncio.wait_for(asyncio.shield(lost), TIMEOUT)
    assert lost.result() is None
    await asyncio.wait_for(served.peripheral.close(), TIMEOUT)  # nothing left to answer


async def test_lost_when_the_adapter_goes_away(fake_bluez: FakeBluez, served: Served) -> None:
    assert served.watched is not None
    fake_bluez.remove_adapter("/org/bluez/hci0")
    await asyncio.wait_for(asyncio.shield(served.watched.lost), TIMEOUT)


async def test_another_adapter_going_away_is_not_lost(
    bus: MessageBus, fake_bluez: FakeBluez, served: Served
) -> None:
    assert served.watched is not None
    await double(bus, "AddAdapter", "ss", "hci1", "pi")
    fake_bluez.remove_adapter("/org/bluez/hci1")
    await asyncio.sleep(0.2)
    assert not served.watched.lost.done()


async def test_close_is_not_a_lost_radio(bus: MessageBus, fake_bluez: FakeBluez) -> None:
    peripheral = BluezPeripheral()
    lost = peripheral.lost
    await peripheral.start(default_profile(), lambda event: None)
    await peripheral.close()
    await asyncio.sleep(0.05)
    assert lost.cancelled()
    await peripheral.close()  # twice is fine


# -- what cannot be reached ------------------------------------------------------------------


async def test_missing_bus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no_such_socket")
    peripheral = BluezPeripheral()
    with pytest.raises(bluez.BluezUnavailable, match="system bus") as caught:
        await peripheral.start(default_profile(), lambda event: None)
    assert isinstance(caught.value, RadioUnavailable)
    assert "systemctl status" in str(caught.value)
    assert "\n" not in str(caught.value)
    await peripheral.close()


async def test_no_bluetoothd(bus: MessageBus) -> None:
    peripheral = BluezPeripheral()
    lost = peripheral.lost
    with pytest.raises(bluez.BluezUnavailable, match="BlueZ is not on the system D-Bus") as caught:
        await peripheral.start(default_profile(), lambda event: None)
    assert "systemctl status bluetooth" in str(caught.value)
    assert lost.cancelled()


async def test_no_such_adapter(fake_bluez: FakeBluez) -> None:
    peripheral = BluezPeripheral(adapter="hci7")
    with pytest.raises(bluez.BluezUnavailable, match="'hci7'"):
        await peripheral.start(default_profile(), lambda event: None)


async def test_adapter_from_the_spec(bus: MessageBus, fake_bluez: FakeBluez) -> None:
    """The lead's ``bluez:hci1`` will set ``adapter`` on the spec; it is read if present."""
    await double(bus, "AddAdapter", "ss", "hci1", "pi")

    class SpecWithAdapter:
        kind = "system"
        transport = ""
        adapter = "hci1"

    async with open_watched_peripheral(SpecWithAdapter()) as watched:  # type: ignore[arg-type]
        peripheral = watched.peripheral
        assert isinstance(peripheral, BluezPeripheral)
        await peripheral.start(default_profile(), lambda event: None)
        try:
            assert peripheral.adapter_path == "/org/bluez/hci1"
        finally:
            await peripheral.close()


async def test_refused_application_is_a_bluez_error(bus: MessageBus, fake_bluez: FakeBluez) -> None:
    before = await connections(bus)
    fake_bluez.refuse_applications = ("Failed", "Failed to create entry in database")
    peripheral = BluezPeripheral()
    with pytest.raises(bluez.BluezError) as caught:
        await peripheral.start(default_profile(), lambda event: None)
    assert caught.value.name == "org.bluez.Error.Failed"
    assert "refused our GATT application" in str(caught.value)
    assert not isinstance(caught.value, bluez.BluezUnavailable)
    await asyncio.sleep(0.05)
    assert await connections(bus) == before  # its bus connection is closed
    fake_bluez.refuse_applications = None
    again = BluezPeripheral()
    await again.start(default_profile(), lambda event: None)
    await again.close()


async def test_methods_need_a_started_peripheral() -> None:
    peripheral = BluezPeripheral()
    with pytest.raises(RuntimeError):
        await peripheral.send("x", b"")
    with pytest.raises(RuntimeError):
        await peripheral.start_advertising(b"", "x")
