"""Shared fixtures: a virtual radio with one bleprov device and one bleak host."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest_asyncio
from bumble.device import Device

from bleprov.radio.bumble_peripheral import BumblePeripheral
from bleprov.radio.device_link import DeviceApplication, DeviceLink
from bleprov.radio.host_link import CentralRadio
from bleprov.radio.linktest import EchoApplication, linktest_info
from bleprov.radio.virtual import VirtualLink, make_virtual_device

_addresses = itertools.count(1)


def next_address(prefix: str) -> str:
    n = next(_addresses)
    return f"{prefix}:00:{n >> 16 & 0xFF:02X}:{n >> 8 & 0xFF:02X}:{n & 0xFF:02X}"


@dataclass
class VirtualDevice:
    """A bleprov device on the virtual radio."""

    bumble: Device
    link: DeviceLink
    app: DeviceApplication
    discriminator: int


@dataclass
class VirtualRadio:
    link: VirtualLink
    make_device: Callable[..., Awaitable[VirtualDevice]]
    make_host: Callable[..., Awaitable[CentralRadio]]


@pytest_asyncio.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    """A virtual link; factories for devices (echo by default) and bleak hosts on it."""
    link = VirtualLink()
    devices: list[DeviceLink] = []
    discriminators = itertools.count(0x100)

    async def make_device(
        app: DeviceApplication | None = None,
        *,
        discriminator: int | None = None,
        **link_options: object,
    ) -> VirtualDevice:
        disc = next(discriminators) if discriminator is None else discriminator
        bumble = make_virtual_device(link, name="bleprov-dev", address=next_address("F0:B1"))
        application = app or EchoApplication()
        device_link = DeviceLink(
            BumblePeripheral(bumble),
            application,
            lambda: linktest_info(disc),
            **link_options,  # type: ignore[arg-type]
        )
        await device_link.start()
        devices.append(device_link)
        return VirtualDevice(bumble, device_link, application, disc)

    async def make_host(*, mtu: int = 517) -> CentralRadio:
        host = make_virtual_device(link, name="bleprov-host", address=next_address("C0:B1"))
        await host.power_on()
        return CentralRadio.bumble(host, mtu=mtu)

    yield VirtualRadio(link, make_device, make_host)
    for device_link in devices:
        await device_link.close()
    link.close()
    await asyncio.sleep(0.02)
