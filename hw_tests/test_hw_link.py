"""The foundation exchange on real adapters (see conftest.py for how to enable)."""

from __future__ import annotations

import asyncio

import pytest
from bleak import BleakClient

from bleprov.core.frames import FrameChannel, FrameKind, Role
from bleprov.core.profile import default_profile
from bleprov.radio.host_link import HostLink, find_device, scan
from bleprov.radio.linktest import run_link_test

from .conftest import HardwareSetup

pytestmark = pytest.mark.hardware
PROFILE = default_profile()


async def test_scan_sees_the_device(hardware: HardwareSetup) -> None:
    found = await scan(hardware.host, timeout=10)
    assert hardware.discriminator in {f.service_data.discriminator for f in found}


async def test_info_and_64k_both_ways(hardware: HardwareSetup) -> None:
    found = await find_device(hardware.host, discriminator=hardware.discriminator, timeout=20)
    async with HostLink(found.device, hardware.host) as link:
        assert link.info is not None
        assert link.info.discriminator == hardware.discriminator
        results = await run_link_test(link, [1, 512, 65536], timeout=300)
    assert [r.size for r in results] == [1, 512, 65536]


async def test_malformed_frame_resets_and_the_device_readvertises(
    hardware: HardwareSetup,
) -> None:
    found = await find_device(hardware.host, discriminator=hardware.discriminator, timeout=20)
    got: asyncio.Queue[bytes] = asyncio.Queue()
    async with BleakClient(found.device, **hardware.host.client_kwargs()) as client:
        await client.start_notify(PROFILE.tx.uuid, lambda _c, d: got.put_nowait(bytes(d)))
        channel = FrameChannel(Role.HOST)
        channel.connection_made(client.mtu_size)
        channel.open(peer_rx_window=16, peer_max_message=65536, now=0.0)
        for frame in channel.data_to_send(0.0):
            await client.write_gatt_char(PROFILE.rx.uuid, frame, response=True)
        await client.write_gatt_char(PROFILE.rx.uuid, b"\x3f\x00", response=True)
        assert await asyncio.wait_for(got.get(), 10) == bytes([FrameKind.RESET << 6, 0x11])
    again = await find_device(hardware.host, discriminator=hardware.discriminator, timeout=30)
    async with HostLink(again.device, hardware.host) as link:
        assert await link.request(b"after reset", timeout=30) == b"after reset"
