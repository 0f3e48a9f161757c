"""Protocol flights and bytes of a whole enrolment, through the provision() the CLI runs,
on the virtual radio (issue 17: "qr + zone: <= 2 protocol flights; code + zone: <= 3").

A flight is what one side sends before it must wait for the other: the host's flights
are counted at its message link (every session message it sends or receives, the
handshake's included) as the runs of sends that follow a receive. The host's CLOSE at
the session's end is not counted (nothing waits for it). Bytes are the framing layer's
frames (section 4: every DATA, OPEN and CREDIT frame, both ways) as the device's radio
sees them: the ATT values on the air, without ATT and link-layer headers.

``pytest -s`` prints the table the closing note quotes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from bleprov.radio.host_link import HostLink
from tests.cuts import CuttingPeripheral, Direction
from tests.pairing import device_options, provision_device
from tests.worlds import World


@dataclass
class CountingPeripheral(CuttingPeripheral):
    """Never cuts; adds up every frame's bytes, by direction."""

    sizes: dict[Direction, int] = field(default_factory=lambda: dict.fromkeys(Direction, 0))
    messages: list[tuple[Direction, int]] = field(default_factory=list)

    def _frame(self, direction: Direction, frame: bytes) -> None:
        self.sizes[direction] += len(frame)
        if frame and frame[0] & 0xE0 == 0x20:  # the first DATA frame of a message
            self.messages.append((direction, int.from_bytes(frame[2:5], "big")))
        super()._frame(direction, frame)


@dataclass
class Flights:
    events: list[str] = field(default_factory=list)

    def count(self) -> int:
        """Runs of host sends, each after something was received (the first one too)."""
        flights, waited = 0, True
        for event in self.events:
            if event == "S" and waited:
                flights += 1
            waited = event == "R"
        return flights


@pytest.fixture
def flights(monkeypatch: pytest.MonkeyPatch) -> Flights:
    record = Flights()
    send, receive = HostLink.send, HostLink.receive

    def sending(self: HostLink, payload: bytes) -> None:
        record.events.append("S")
        send(self, payload)

    async def receiving(self: HostLink, timeout: float | None = None) -> bytes:
        data = await receive(self, timeout)
        record.events.append("R")
        return data

    monkeypatch.setattr(HostLink, "send", sending)
    monkeypatch.setattr(HostLink, "receive", receiving)
    return record


#: The targets: flights of the whole enrolment, handshake included.
MOST_FLIGHTS = {("qr", "zone"): 2, ("code", "zone"): 3, ("qr", "wifi"): 2, ("qr", "peer"): 3}
CASES = [(mode, step, 247) for mode, step in sorted(MOST_FLIGHTS)] + [("qr", "zone", 23)]


@pytest.mark.parametrize(("mode", "step", "mtu"), CASES)
async def test_an_enrolment_takes_at_most_its_flights(
    world: World, flights: Flights, mode: str, step: str, mtu: int
) -> None:
    device = await world.new_device(**device_options(mode), peripheral=CountingPeripheral)
    radio = device.peripheral
    assert isinstance(radio, CountingPeripheral)
    outcome = await provision_device(world, device, mode, step, world.host(f"fl-{mode}"), mtu=mtu)
    assert outcome.error is None, outcome.error
    events = flights.events
    # The last host send is its CLOSE, after the last answer: nobody waits for it.
    assert events[-1] == "S"
    counted = Flights(events[:-1]).count()
    up, down = radio.sizes[Direction.UP], radio.sizes[Direction.DOWN]
    print(
        f"\n{mode}+{step} MTU {mtu}: {counted} flights, {up + down} B of frames "
        f"({up} up, {down} down); messages {radio.messages}"
    )
    assert counted <= MOST_FLIGHTS[mode, step]


async def test_a_failed_join_in_the_pipelined_flight_is_retried_and_the_zone_stays_staged(
    world: World, flights: Flights
) -> None:
    """The commit held behind a wrong password is refused (not proven), the zone staged
    in the same flight stays: new credentials and COMMIT in one more flight enrol it, with
    the one certificate the hub issued."""
    from bleprov.core import membership as mb
    from bleprov.core.wifi import WifiCredentials
    from bleprov.service.provisioning import ZonePlan, provision
    from bleprov.service.zone_hub import ZoneEnroller
    from bleprov.store.registry import DeviceStatus
    from tests.pairing import authentication, open_host
    from tests.rig import HOME

    wrong = WifiCredentials(HOME.ssid, HOME.security, passphrase="not the password")

    class Typo:
        def preset(self) -> WifiCredentials:
            return wrong

        async def choose(self, results: object) -> WifiCredentials:
            raise AssertionError("no scan: the network was named")

        async def retry(self, status: object, tried: WifiCredentials) -> WifiCredentials:
            assert tried == wrong
            return HOME

    device = await world.new_device()
    session = await open_host(world, device, authentication(device, "qr"))
    try:
        report = await provision(
            session, wifi=Typo(), zone=ZonePlan(ZoneEnroller(world.hub, world.admin), "alice")
        )
    finally:
        await session.close()
        await device.service.drain()
    assert report.wifi_attempts == 2 and report.zone is not None
    assert Flights(flights.events[:-1]).count() == 3  # the handshake, two pipelined flights
    membership = mb.membership_of(device.store.load())
    assert membership is not None and membership.serial == report.zone.serial
    record = world.hub.registry.device(device.device_id)
    assert record.status is DeviceStatus.ENROLLED
    assert record.certificate_serial == report.zone.serial
