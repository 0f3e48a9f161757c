"""Radio specifications: one string names the radio a command runs on.

- ``system`` (host) / ``bluez`` (device): the operating system's stack; bleak on the
  host; on the device our own GATT application on BlueZ over D-Bus (Linux), bless on
  macOS and Windows. ``system:hci1`` / ``bluez:hci0`` name the adapter on Linux (a
  machine with two; default: BlueZ's first).
- ``bumble:<transport>``: bumble driving a controller through a bumble transport, e.g.
  ``bumble:tcp-client:127.0.0.1:9100`` (a virtual controller served by
  ``python -m bleprov.radio.virtual hub``), ``bumble:usb:0`` or ``bumble:serial:/dev/ttyACM0``
  (an HCI dongle).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from bleprov.core.errors import BleprovError
from bleprov.radio.errors import RadioUnavailable, bumble_radio_unavailable

if TYPE_CHECKING:
    # Imported where a radio is opened: parsing a spec (``--radio`` checked as the command
    # line is parsed, ``--help``) must not load bumble (0.3 s) or bleak.
    from bumble.device import Device
    from bumble.transport.common import Transport

    from bleprov.radio.host_link import CentralRadio
    from bleprov.radio.peripheral import Peripheral

DEFAULT_DEVICE_ADDRESS: Final = "F0:B1:E9:00:00:01"
DEFAULT_HOST_ADDRESS: Final = "C0:B1:E9:00:00:01"
#: A BlueZ adapter's name as the kernel gives it.
_ADAPTER_NAME: Final = re.compile(r"hci[0-9]{1,3}")


class RadioSpecError(BleprovError):
    """A radio specification string could not be understood."""


@dataclass(frozen=True)
class RadioSpec:
    kind: str  # "system" or "bumble"
    transport: str = ""
    #: The system stack's adapter (``hci1``); empty: the stack's default.
    adapter: str = ""

    @classmethod
    def parse(cls, text: str) -> RadioSpec:
        text = text.strip()
        if text in ("system", "bluez"):
            return cls("system")
        for prefix in ("system:", "bluez:"):
            if text.startswith(prefix):
                adapter = text[len(prefix) :]
                if not _ADAPTER_NAME.fullmatch(adapter):
                    raise RadioSpecError(
                        f"unknown adapter {adapter!r} in {text!r}: name a BlueZ adapter "
                        "such as hci0 (bluetoothctl list; btmgmt info)"
                    )
                return cls("system", adapter=adapter)
        if text.startswith("bumble:") and len(text) > len("bumble:"):
            return cls("bumble", text[len("bumble:") :])
        raise RadioSpecError(
            f"unknown radio {text!r}: use 'system' (or 'bluez'), or 'bumble:<transport>' "
            "such as bumble:tcp-client:127.0.0.1:9100; 'system:hci1' names an adapter"
        )

    def __str__(self) -> str:
        if self.kind == "system":
            return f"system:{self.adapter}" if self.adapter else "system"
        return f"bumble:{self.transport}"


@contextlib.asynccontextmanager
async def open_central(spec: RadioSpec, *, mtu: int = 517) -> AsyncIterator[CentralRadio]:
    """Yield the central radio ``spec`` names; close it afterwards.

    ``mtu`` is what a bumble central asks for; system stacks negotiate their own.
    """
    from bleprov.radio.host_link import CentralRadio

    if spec.kind == "system":
        yield CentralRadio.system(spec.adapter or None)
        return
    address = os.environ.get("BLEPROV_BUMBLE_ADDRESS", DEFAULT_HOST_ADDRESS)
    device, transport = await _open_bumble(spec, name="bleprov-host", address=address)
    try:
        try:
            await device.power_on()
        except transport_errors() as exc:
            raise bumble_radio_unavailable(spec.transport, exc) from None
        from bleprov.radio.gatt_cache import GattCache

        yield CentralRadio.bumble(device, mtu=mtu, gatt_cache=GattCache.default())
    finally:
        await close_transport(transport)


@contextlib.asynccontextmanager
async def open_peripheral(spec: RadioSpec, *, name: str = "bleprov") -> AsyncIterator[Peripheral]:
    """Yield the peripheral ``spec`` names; close its transport afterwards."""
    async with open_watched_peripheral(spec, name=name) as watched:
        yield watched.peripheral


@dataclass(frozen=True)
class WatchedPeripheral:
    """A peripheral and a future that completes when its radio goes away (a bumble
    transport closed by the other end: the hub stopped, the dongle unplugged; bluetoothd
    stopped or the adapter removed). A daemon
    waits on ``lost`` so that it does not advertise into nothing."""

    peripheral: Peripheral
    lost: asyncio.Future[None]


#: Seconds a dead bumble transport may take to close before it is abandoned.
TRANSPORT_CLOSE_TIMEOUT: Final = 2.0


def device_address(device_id: str) -> str:
    """The bumble radio's address for a device: a static random address (Core spec, Vol 6,
    Part B, 1.3.2.1: the two top bits set) derived from its ID, so it is the same at every
    start and two devices on one radio never hide each other."""
    digest = bytearray(hashlib.sha256(b"bleprov device address " + device_id.encode()).digest())
    digest[0] |= 0xC0
    return ":".join(f"{b:02X}" for b in digest[:6])


@contextlib.asynccontextmanager
async def open_watched_peripheral(
    spec: RadioSpec, *, name: str = "bleprov", address: str | None = None
) -> AsyncIterator[WatchedPeripheral]:
    """:func:`open_peripheral`, and how to know its radio went away. On Linux the system
    stack is our own BlueZ GATT application (:mod:`bleprov.radio.bluez_peripheral`), whose
    ``lost`` completes when bluetoothd or the adapter goes away; bless on macOS and Windows
    reports its failures as errors, so its ``lost`` never completes. ``adapter`` on the spec
    (``hci1``), where given, picks the BlueZ controller. A bumble radio takes ``address``
    (:func:`device_address`); ``BLEPROV_BUMBLE_ADDRESS`` overrides it."""
    if spec.kind == "system" and sys.platform == "linux":
        from bleprov.radio.bluez_peripheral import BluezPeripheral

        bluez = BluezPeripheral(adapter=spec.adapter or None, name=name)
        try:
            yield WatchedPeripheral(bluez, bluez.lost)
        finally:
            bluez.lost.cancel()
        return
    if spec.kind == "system":
        from bleprov.radio.bless_peripheral import BlessPeripheral

        never = asyncio.get_running_loop().create_future()
        try:
            yield WatchedPeripheral(BlessPeripheral(name=name, adapter=spec.adapter or None), never)
        finally:
            never.cancel()
        return
    from bleprov.radio.bumble_peripheral import BumblePeripheral

    address = os.environ.get("BLEPROV_BUMBLE_ADDRESS") or address or DEFAULT_DEVICE_ADDRESS
    device, transport = await _open_bumble(spec, name=name, address=address)
    try:
        yield WatchedPeripheral(BumblePeripheral(device), transport.source.terminated)
    finally:
        await close_transport(transport)


async def close_transport(transport: Transport) -> None:
    """Close a bumble transport, promptly even when its other end is gone."""
    with contextlib.suppress(*transport_errors(), TimeoutError):
        async with asyncio.timeout(TRANSPORT_CLOSE_TIMEOUT):
            await transport.close()


@functools.cache
def transport_errors() -> tuple[type[Exception], ...]:
    """What a bumble transport raises when nothing (or no controller) answers there, or
    when a command goes unanswered after the other end went away. A function, so that
    bumble is imported only where a radio is used (or such an error is caught)."""
    from bumble.core import CommandTimeoutError
    from bumble.transport.common import (
        TransportInitError,
        TransportLostError,
        TransportSpecError,
    )

    return (
        OSError,
        TransportInitError,
        TransportLostError,
        TransportSpecError,
        CommandTimeoutError,
    )


async def _open_bumble(spec: RadioSpec, *, name: str, address: str) -> tuple[Device, Transport]:
    """The transport ``spec`` names and a device on it; :class:`RadioUnavailable` when
    nothing answers there (a hub not started, a dongle unplugged)."""
    from bleprov.radio.virtual import open_hci_device

    try:
        return await open_hci_device(spec.transport, name=name, address=address)
    except transport_errors() as exc:
        raise bumble_radio_unavailable(spec.transport, exc) from None


__all__ = [
    "RadioSpec",
    "RadioSpecError",
    "RadioUnavailable",
    "WatchedPeripheral",
    "device_address",
    "open_central",
    "open_peripheral",
    "open_watched_peripheral",
    "transport_errors",
]
