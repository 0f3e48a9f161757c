"""A closed device link starts nothing on its radio.

Closing the peripheral disconnects the central, and the radio reports that disconnection
while the link is closing. The link used to answer it as it answers any disconnection,
by advertising again: an HCI command in flight while the daemon closes its transport.
On Python 3.11 bumble's host then completes that command's future twice (the answer and
the transport loss race), and the daemon printed an asyncio error after "stopped"
(tests/test_device_daemon.py::test_sigterm_mid_enrolment_rolls_back, seen in CI).
"""

from __future__ import annotations

import asyncio

from bleprov.core.advertising import DeviceInfo, DeviceState
from bleprov.core.errors import BleprovError
from bleprov.core.mode_bits import Mode
from bleprov.core.profile import GattProfile
from bleprov.radio.device_link import DeviceLink, DeviceSession
from bleprov.radio.peripheral import (
    CentralConnected,
    CentralDisconnected,
    ConnectionId,
    EventHandler,
    Peripheral,
    PeripheralCapabilities,
)


class RecordingPeripheral(Peripheral):
    """Records what the link asks of the radio; close() disconnects its central and
    reports it, as bumble's does."""

    capabilities = PeripheralCapabilities(reports_mtu=True, advertises_service_data=True)

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.on_event: EventHandler | None = None
        self.central: ConnectionId | None = None

    async def start(self, profile: GattProfile, on_event: EventHandler) -> None:
        self.on_event = on_event

    def set_info(self, value: bytes) -> None:
        self.calls.append("set_info")

    async def start_advertising(self, service_data: bytes, local_name: str) -> None:
        self.calls.append("start_advertising")

    async def stop_advertising(self) -> None:
        self.calls.append("stop_advertising")

    async def send(self, connection: ConnectionId, frame: bytes) -> None:
        self.calls.append("send")

    async def disconnect(self, connection: ConnectionId) -> None:
        self.calls.append("disconnect")

    async def close(self) -> None:
        self.calls.append("close")
        central, self.central = self.central, None
        if central is not None and self.on_event is not None:
            self.on_event(CentralDisconnected(central, "closed"))

    def connect(self, central: ConnectionId) -> None:
        self.central = central
        assert self.on_event is not None
        self.on_event(CentralConnected(central, 247))


class Application:
    def __init__(self) -> None:
        self.closed: list[BleprovError | None] = []

    def session_opened(self, session: DeviceSession) -> None:
        pass

    def message_received(self, session: DeviceSession, payload: bytes) -> None:
        pass

    def session_closed(self, session: DeviceSession, error: BleprovError | None) -> None:
        self.closed.append(error)


def _info() -> DeviceInfo:
    return DeviceInfo(
        protocol_version=2,
        state=DeviceState.VIRGIN,
        modes=Mode.QR,
        discriminator=0x123,
        max_message=65536,
        rx_window=16,
        profile_version=1,
        pbkdf_salt=bytes(16),
        pbkdf_cost=(10, 8, 1),
    )


async def test_closing_with_a_central_connected_does_not_advertise_again() -> None:
    radio = RecordingPeripheral()
    link = DeviceLink(radio, Application(), _info)
    await link.start()
    radio.connect("C0:B1:00:00:00:01")
    await asyncio.sleep(0.01)
    assert link.session is not None
    radio.calls.clear()

    await link.close()
    for _ in range(5):  # whatever close left scheduled gets to run
        await asyncio.sleep(0)

    assert radio.calls[0] == "close", radio.calls
    assert "start_advertising" not in radio.calls, radio.calls
    assert not link._tasks


async def test_a_closed_link_ignores_a_late_readvertise() -> None:
    radio = RecordingPeripheral()
    link = DeviceLink(radio, Application(), _info)
    await link.start()
    await link.close()
    radio.calls.clear()
    await link.readvertise()  # e.g. a state change that lands after the daemon closed
    assert radio.calls == []
