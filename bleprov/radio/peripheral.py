"""The one small interface device code uses to be a BLE peripheral.

A :class:`Peripheral` builds the GATT database from a :class:`~bleprov.core.profile.GattProfile`,
advertises the profile's service data, delivers frames written to the ``rx`` characteristic,
sends frames on ``tx`` and reports connection, disconnection, subscription and MTU as
:class:`PeripheralEvent` objects. Adapters: :mod:`bleprov.radio.bumble_peripheral` (virtual
radio or an HCI dongle driven directly), :mod:`bleprov.radio.bluez_peripheral` (our own GATT
application on BlueZ over D-Bus, Linux) and :mod:`bleprov.radio.bless_peripheral` (bless on
macOS/Windows).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from bleprov.core.profile import GattProfile

#: Events an adapter keeps while their central is not yet known (a BlueZ signal race).
MAX_PENDING_EVENTS: Final = 64

#: Identifies one central's connection: its address on bumble, the D-Bus device path on BlueZ.
ConnectionId = str


@dataclass(frozen=True)
class CentralConnected:
    connection: ConnectionId
    #: ATT MTU known at connection time (23 until an exchange raises it).
    mtu: int


@dataclass(frozen=True)
class CentralDisconnected:
    connection: ConnectionId
    reason: str


@dataclass(frozen=True)
class MtuChanged:
    connection: ConnectionId
    mtu: int


@dataclass(frozen=True)
class SubscriptionChanged:
    """The central enabled or disabled notifications/indications on ``tx``."""

    connection: ConnectionId
    enabled: bool


@dataclass(frozen=True)
class FrameReceived:
    """The central wrote ``data`` to ``rx`` (either write type)."""

    connection: ConnectionId
    data: bytes


PeripheralEvent = (
    CentralConnected | CentralDisconnected | MtuChanged | SubscriptionChanged | FrameReceived
)
EventHandler = Callable[[PeripheralEvent], None]


@dataclass(frozen=True)
class PeripheralCapabilities:
    """What an adapter can report; the device link compensates for what it cannot."""

    #: MtuChanged events arrive (otherwise the host announces its MTU in-band).
    reports_mtu: bool
    #: The service data can be advertised (otherwise only the service UUID and name).
    advertises_service_data: bool
    #: Bytes of each notification's value the stack takes for itself: frames sent on
    #: ``tx`` are that much shorter (``FrameChannel.send_overhead``).
    notification_overhead: int = 0


class Peripheral(abc.ABC):
    """A GATT server for one profile, serving one central at a time."""

    capabilities: PeripheralCapabilities

    @abc.abstractmethod
    async def start(self, profile: GattProfile, on_event: EventHandler) -> None:
        """Build the GATT database from ``profile`` and power the radio on."""

    @abc.abstractmethod
    def set_info(self, value: bytes) -> None:
        """Set the value the ``info`` characteristic returns on read."""

    @abc.abstractmethod
    async def start_advertising(self, service_data: bytes, local_name: str) -> None:
        """Advertise the service data (and a short name in the scan response)."""

    @abc.abstractmethod
    async def stop_advertising(self) -> None: ...

    @abc.abstractmethod
    async def send(self, connection: ConnectionId, frame: bytes) -> None:
        """Notify ``frame`` on ``tx``; returns when the stack has accepted it."""

    @abc.abstractmethod
    async def disconnect(self, connection: ConnectionId) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop advertising, drop connections, release the radio."""
