"""End to end on the in-process virtual radio: bleak host, bumble device, framing between."""

from __future__ import annotations

import asyncio
import os

import pytest
from bleak import BleakClient
from bumble.device import Peer
from bumble.gatt import (
    GATT_CHARACTERISTIC_USER_DESCRIPTION_DESCRIPTOR,
    GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR,
)

from bleprov.core.advertising import DeviceState, OobMode
from bleprov.core.errors import (
    CreditViolation,
    MalformedFrame,
    MessageTimeout,
    OversizedMessage,
    SequenceError,
    TruncatedMessage,
)
from bleprov.core.frames import FrameChannel, FrameKind, Role
from bleprov.core.profile import default_profile
from bleprov.radio.host_link import HostLink, LinkError, find_device, scan
from bleprov.radio.linktest import EchoApplication, linktest_info, run_link_test
from bleprov.radio.virtual import make_virtual_device
from tests.conftest import VirtualDevice, VirtualRadio, next_address

PROFILE = default_profile()
MTUS = [23, 185, 247, 517]


async def test_host_finds_the_device_by_its_service_data(radio: VirtualRadio) -> None:
    await radio.make_device(discriminator=0x123)
    other = await radio.make_device(discriminator=0x456)
    host = await radio.make_host()
    found = await find_device(host, discriminator=0x456, timeout=5)
    assert found.service_data.discriminator == 0x456
    assert found.service_data.state is DeviceState.VIRGIN
    assert found.service_data.modes == OobMode.QR | OobMode.CODE
    assert found.device.address.upper() == str(other.bumble.random_address).upper()
    everyone = await scan(host, timeout=1.0)
    assert {f.service_data.discriminator for f in everyone} == {0x123, 0x456}


async def test_no_device_with_that_discriminator(radio: VirtualRadio) -> None:
    await radio.make_device(discriminator=1)
    host = await radio.make_host()
    with pytest.raises(LinkError, match="discriminator 0x002 found"):
        await find_device(host, discriminator=2, timeout=0.5)


async def test_host_reads_the_info_characteristic(radio: VirtualRadio) -> None:
    await radio.make_device(discriminator=0x77)
    host = await radio.make_host()
    found = await find_device(host, discriminator=0x77, timeout=5)
    async with HostLink(found.device, host) as link:
        assert link.info == linktest_info(0x77)


@pytest.mark.parametrize("mtu", MTUS)
async def test_64k_messages_both_ways(radio: VirtualRadio, mtu: int) -> None:
    dev = await radio.make_device()
    host = await radio.make_host(mtu=mtu)
    found = await find_device(host, discriminator=dev.discriminator, timeout=5)
    async with HostLink(found.device, host) as link:
        assert link.mtu == mtu
        [result] = await run_link_test(link, [65536])
    frame = min(mtu - 3, 512)
    assert result.frames_sent >= 65536 // frame
    assert result.frames_received >= 65536 // frame
    app = dev.app
    assert isinstance(app, EchoApplication)
    assert app.bytes == 65536


async def test_gatt_database_matches_the_profile_for_an_independent_client(
    radio: VirtualRadio,
) -> None:
    """bumble's own GATT client, not project code, reads exactly what the profile declares."""
    dev = await radio.make_device()
    central = make_virtual_device(radio.link, name="inspector", address=next_address("C1:B1"))
    await central.power_on()
    connection = await central.connect(dev.bumble.random_address)
    peer = Peer(connection)
    await peer.discover_services()
    ours = [s for s in peer.services if s.uuid.to_hex_str("-").lower() == PROFILE.service_uuid]
    assert len(ours) == 1
    service = ours[0]
    await peer.discover_characteristics(service=service)
    found = {}
    for ch in service.characteristics:
        await peer.discover_descriptors(ch)
        descriptors = {d.type: d for d in ch.descriptors}
        description = await peer.read_value(
            descriptors[GATT_CHARACTERISTIC_USER_DESCRIPTION_DESCRIPTOR]
        )
        props = set(ch.properties.name.lower().replace("_", "-").split("|"))
        found[ch.uuid.to_hex_str("-").lower()] = (
            props,
            bytes(description).decode(),
            GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR in descriptors,
        )
    expected = {
        c.uuid: (
            set(c.properties),
            c.description,
            "notify" in c.properties or "indicate" in c.properties,
        )
        for c in PROFILE.characteristics
    }
    assert found == expected
    info = await peer.read_value(service.get_characteristics_by_uuid(PROFILE.info.uuid)[0])
    assert bytes(info) == linktest_info(dev.discriminator).encode()
    await connection.disconnect()


# ---------------------------------------------------------------- framing errors


class RawHost:
    """A bleak client that writes frames by hand, to break the protocol on purpose."""

    def __init__(self, client: BleakClient) -> None:
        self.client = client
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.disconnected = asyncio.Event()

    async def open(self, *, rx_window: int = 16) -> None:
        await self.client.start_notify(
            PROFILE.tx.uuid, lambda _c, d: self.received.put_nowait(bytes(d))
        )
        channel = FrameChannel(Role.HOST, rx_window=rx_window)
        channel.connection_made(self.client.mtu_size)
        channel.open(peer_rx_window=16, peer_max_message=65536, now=0.0)
        for frame in channel.data_to_send(0.0):
            await self.write(frame)

    async def write(self, frame: bytes, *, response: bool = True) -> None:
        await self.client.write_gatt_char(PROFILE.rx.uuid, frame, response=response)


async def raw_host(radio: VirtualRadio, dev_disc: int) -> RawHost:
    host = await radio.make_host(mtu=23)
    found = await find_device(host, discriminator=dev_disc, timeout=5)
    raw: RawHost

    def gone(_client: BleakClient) -> None:
        raw.disconnected.set()

    client = BleakClient(found.device, disconnected_callback=gone, **host.client_kwargs())
    raw = RawHost(client)
    await client.connect()
    return raw


def first(total: int, seq: int, payload: bytes) -> bytes:
    return bytes([FrameKind.DATA << 6 | 0x20, seq]) + total.to_bytes(3, "big") + payload


def cont(seq: int, payload: bytes) -> bytes:
    return bytes([FrameKind.DATA << 6, seq]) + payload


async def assert_reset_and_recovered(
    radio: VirtualRadio, dev: VirtualDevice, raw: RawHost, error: type[Exception], code: int
) -> None:
    """The device sent RESET with the error's code, dropped the link, advertises again,
    kept nothing of the failed exchange, and serves the next host normally."""
    frame = await asyncio.wait_for(raw.received.get(), 5)
    while frame[0] >> 6 == FrameKind.CREDIT:  # credit granted before the violation
        frame = await asyncio.wait_for(raw.received.get(), 5)
    assert frame == bytes([FrameKind.RESET << 6, code])
    await asyncio.wait_for(raw.disconnected.wait(), 5)
    await asyncio.wait_for(dev.link.advertising.wait(), 5)
    assert dev.link.session is None
    assert isinstance(dev.link.counters.errors[-1], error)
    host = await radio.make_host(mtu=23)
    found = await find_device(host, discriminator=dev.discriminator, timeout=5)
    async with HostLink(found.device, host) as link:
        assert await link.request(b"still serving", timeout=5) == b"still serving"


async def test_malformed_frame_resets_the_exchange(radio: VirtualRadio) -> None:
    dev = await radio.make_device()
    raw = await raw_host(radio, dev.discriminator)
    await raw.open()
    await raw.write(bytes([0x3F, 0]))  # reserved control bits
    await assert_reset_and_recovered(radio, dev, raw, MalformedFrame, 0x11)


async def test_oversized_message_resets_the_exchange(radio: VirtualRadio) -> None:
    dev = await radio.make_device(max_message=1024)
    raw = await raw_host(radio, dev.discriminator)
    await raw.open()
    await raw.write(first(1025, 0, b"x" * 10))
    await assert_reset_and_recovered(radio, dev, raw, OversizedMessage, 0x12)


async def test_out_of_order_frame_resets_the_exchange(radio: VirtualRadio) -> None:
    dev = await radio.make_device()
    raw = await raw_host(radio, dev.discriminator)
    await raw.open()
    await raw.write(first(100, 0, b"x" * 15))
    await raw.write(cont(2, b"y" * 18))  # frame 1 skipped
    await assert_reset_and_recovered(radio, dev, raw, SequenceError, 0x13)


async def test_truncated_message_resets_the_exchange(radio: VirtualRadio) -> None:
    dev = await radio.make_device()
    raw = await raw_host(radio, dev.discriminator)
    await raw.open()
    await raw.write(first(100, 0, b"x" * 15))
    await raw.write(first(5, 1, b"hello"))  # a new message before the first completed
    await assert_reset_and_recovered(radio, dev, raw, TruncatedMessage, 0x14)


async def test_message_timeout_resets_the_exchange(radio: VirtualRadio) -> None:
    dev = await radio.make_device(message_timeout=0.3)
    raw = await raw_host(radio, dev.discriminator)
    await raw.open()
    await raw.write(first(100, 0, b"x" * 15))  # and then nothing
    await assert_reset_and_recovered(radio, dev, raw, MessageTimeout, 0x15)


async def test_credit_violation_resets_the_exchange(radio: VirtualRadio) -> None:
    dev = await radio.make_device(rx_window=2)
    raw = await raw_host(radio, dev.discriminator)
    await raw.open()
    # Three frames back to back, without waiting for the device's credit.
    await raw.write(first(200, 0, b"x" * 15), response=False)
    await raw.write(cont(1, b"y" * 18), response=False)
    await raw.write(cont(2, b"z" * 18), response=False)
    await assert_reset_and_recovered(radio, dev, raw, CreditViolation, 0x16)


async def test_disconnect_mid_message_leaves_nothing(radio: VirtualRadio) -> None:
    dev = await radio.make_device()
    raw = await raw_host(radio, dev.discriminator)
    await raw.open()
    await raw.write(first(1000, 0, b"x" * 15))
    await raw.client.disconnect()
    await asyncio.wait_for(dev.link.advertising.wait(), 5)
    assert dev.link.session is None
    assert isinstance(dev.link.counters.errors[-1], TruncatedMessage)
    host = await radio.make_host()
    found = await find_device(host, discriminator=dev.discriminator, timeout=5)
    async with HostLink(found.device, host) as link:
        assert await link.request(os.urandom(3000), timeout=5)


async def test_a_second_host_is_turned_away_while_one_is_connected(radio: VirtualRadio) -> None:
    dev = await radio.make_device()
    host_a = await radio.make_host()
    found = await find_device(host_a, discriminator=dev.discriminator, timeout=5)
    async with HostLink(found.device, host_a) as link_a:
        host_b = await radio.make_host()
        with pytest.raises(LinkError):
            await find_device(host_b, discriminator=dev.discriminator, timeout=0.5)
        assert await link_a.request(b"ping", timeout=5) == b"ping"
    await asyncio.wait_for(dev.link.advertising.wait(), 5)


async def test_host_side_framing_error_from_a_bad_device_frame(radio: VirtualRadio) -> None:
    """The host applies the same checks: a device sending garbage is reported, typed."""

    class GarbageApp(EchoApplication):
        def message_received(self, session, payload):  # type: ignore[no-untyped-def]
            asyncio.get_running_loop().create_task(
                session.link.peripheral.send(session.connection, b"\x3f\x00")
            )

    dev = await radio.make_device(GarbageApp())
    host = await radio.make_host()
    found = await find_device(host, discriminator=dev.discriminator, timeout=5)
    async with HostLink(found.device, host) as link:
        with pytest.raises(MalformedFrame):
            await link.request(b"hello", timeout=5)


async def test_the_host_frames_at_the_links_mtu_when_bleak_reports_the_minimum(
    radio: VirtualRadio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bleak's BlueZ backend says 23 from ``mtu_size`` unless its private ``_acquire_mtu()``
    ran: a Linux laptop would frame at 20 bytes. The characteristic's
    ``max_write_without_response_size`` knows better (BlueZ's MTU property)."""
    from bleprov.radio.bleak_bumble import BumbleClient

    monkeypatch.setattr(BumbleClient, "mtu_size", property(lambda self: 23))
    dev = await radio.make_device()
    host = await radio.make_host(mtu=247)
    found = await find_device(host, discriminator=dev.discriminator, timeout=5)
    async with HostLink(found.device, host) as link:
        assert link.mtu == 247
        [result] = await run_link_test(link, [4096])
    assert result.frames_sent <= 4096 // 200 + 1


async def test_bleaks_bluez_mtu_warning_does_not_reach_the_user(
    radio: VirtualRadio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen in the lab on bleak's real BlueZ backend at MTU 517: ``mtu_size`` (asked when
    the characteristic's size says the MTU is above 515) warned "Using default MTU value.
    Call _acquire_mtu()" on the user's terminal at every provisioning."""
    import warnings

    from bleprov.radio.bleak_bumble import BumbleClient

    def bluez_like(_self: object) -> int:
        warnings.warn("Using default MTU value. Call _acquire_mtu()", UserWarning, stacklevel=2)
        return 23

    monkeypatch.setattr(BumbleClient, "mtu_size", property(bluez_like))
    dev = await radio.make_device()
    host = await radio.make_host(mtu=517)
    found = await find_device(host, discriminator=dev.discriminator, timeout=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        async with HostLink(found.device, host) as link:
            assert link.mtu == 515  # the characteristic's size: 512 + 3


async def test_the_host_writes_no_frame_bluez_5_66_would_drop(radio: VirtualRadio) -> None:
    """Seen in the lab: BlueZ 5.66 on the device dropped the host's 512-byte writes."""
    dev = await radio.make_device()
    host = await radio.make_host(mtu=517)
    found = await find_device(host, discriminator=dev.discriminator, timeout=5)
    async with HostLink(found.device, host) as link:
        assert link.channel.frame_size == 512  # what the device may send
        assert link.channel.send_frame_size == 510  # what the host sends
        [result] = await run_link_test(link, [8192])
    assert result.frames_sent >= 8192 // 510


async def test_a_scan_hears_the_name_in_the_scan_response(radio: VirtualRadio) -> None:
    """The local name travels in the scan response only (the advertisement is full): the
    virtual controller answered a scan with the advertising data again (bumble's), so a
    scan never heard a name (issue 13)."""
    await radio.make_device(discriminator=0x874, local_name="Kitchen")
    host = await radio.make_host()
    [found] = await scan(host, timeout=1.0)
    assert found.local_name == "Kitchen"
    assert (await find_device(host, discriminator=0x874, timeout=5)).local_name == "Kitchen"
