"""The cut matrix (issue 15): the link cut at every message boundary, and inside every
message of several frames, both ways, in each pairing mode and each trust step, through
the provision() the CLI runs, on the virtual radio.

After each cut: the device is fully enrolled or exactly as it was (its store compared,
attempt counters aside: a handshake cut counts an attempt, by design); the hub and the
host agree with it (a certificate the device holds is enrolled on the hub and not
revoked, one it does not hold is not enrolled; the host pins the device exactly when the
device pins the host); provision() succeeded exactly when the device is enrolled; and
provisioning it again succeeds.

The points come from a reference run of each (mode, step): what the device's radio saw,
message by message (tests/cuts.py). ``make test`` runs a slice (:func:`in_slice`: every
cut of one enrolment, the cuts around COMMIT in the others); ``make cut-matrix`` runs
every cell (BLEPROV_CUT_MATRIX=full). Since protocol v2 the host sends its staging
requests and COMMIT in one pipelined flight: the cuts after each of them are the cuts
between pipelined messages.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bleprov.core import membership as mb
from bleprov.core.receipt import RECORD_ENROLMENT
from bleprov.service.trust import HostTrust
from bleprov.store.device_store import ATTEMPTS, PROVISIONING, REMOTE_ATTEMPTS, WIFI
from bleprov.store.registry import DeviceStatus, UnknownDevice
from tests.cuts import Cut, CuttingPeripheral, Direction, MessageTrace
from tests.pairing import PAIRING_MODES, TRUST_STEPS, device_options, provision_device
from tests.worlds import VirginDevice, World

FULL = os.environ.get("BLEPROV_CUT_MATRIX") == "full"
#: The host's ATT MTU by trust step: the least (23) where the messages are small, so that
#: Wi-Fi's requests and answers span several frames too and are cut inside as well.
MTU = {"wifi": 23, "zone": 247, "peer": 247}
#: Records every cut leaves alone, whatever happens: the factory identity, and the attempt
#: counters (a cut inside a handshake counts an attempt, pessimistically, by design).
UNTOUCHED = {PROVISIONING, ATTEMPTS, REMOTE_ATTEMPTS}
#: What a committed enrolment adds to the store, by trust step (and the record of which
#: enrolment it was, RECORD_ENROLMENT, which tests/core/test_enrolment.py checks).
ENROLLED = {
    "wifi": {WIFI},
    "zone": {WIFI, mb.RECORD_ZONE, mb.RECORD_OWNER},
    "peer": {WIFI, mb.RECORD_PEER_IDENTITY, mb.RECORD_PEER_PINS, mb.RECORD_OWNER},
}


def cut_points(trace: list[MessageTrace]) -> Iterator[Cut]:
    """After every message, and inside every message of more than one frame."""
    for message in trace:
        if message.frames > 1:
            yield Cut(message.direction, message.number, inside=True)
        yield Cut(message.direction, message.number)


def in_slice(mode: str, step: str, cut: Cut, trace: list[MessageTrace]) -> bool:
    """make test's slice: every cut of qr mode's zone enrolment (the handshake, then one
    pipelined flight: wifi/set, zone/install, COMMIT), and in every other mode and step
    the three cuts of the pipelined flight's end: between its two last staging requests
    (or after the handshake), after the last staging request (the device rolls back)
    and after COMMIT itself (it commits once the join is proven; its answer is lost)."""
    if FULL or (mode, step) == ("qr", "zone"):
        return True
    if cut.direction is not Direction.UP or cut.inside:
        return False
    close = max(m.number for m in trace if m.direction is Direction.UP)
    return cut.message in (close - 3, close - 2, close - 1)


@dataclass
class Cell:
    cut: Cut
    enrolled: bool
    error: str | None
    seconds: float


def trust_records(device: VirginDevice) -> dict[str, bytes]:
    return {k: v for k, v in device.store.load().items() if k not in UNTOUCHED}


async def settled(device: VirginDevice) -> None:
    await asyncio.wait_for(device.link.advertising.wait(), 10)
    await device.service.drain()


def check_agreement(world: World, device: VirginDevice, step: str, host: HostTrust) -> bool:
    """The device is enrolled or as it was, and the hub and host agree; True: enrolled."""
    records = trust_records(device)
    enrolled = bool(records)
    if enrolled:
        assert set(records) - {RECORD_ENROLMENT} == ENROLLED[step], sorted(records)
        assert device.network.saved_credentials is not None
        assert device.network.saved_credentials.ssid == b"home"
    else:
        assert device.network.saved_credentials is None, "Wi-Fi not rolled back"
    if step == "zone":
        membership = mb.membership_of(device.store.load())
        revoked = {entry.serial for entry in world.hub.registry.revoked_serials()}
        try:
            record = world.hub.registry.device(device.device_id)
        except UnknownDevice:
            record = None
        if membership is not None:
            assert record is not None and record.status is DeviceStatus.ENROLLED
            assert record.certificate_serial == membership.serial
            assert membership.serial not in revoked
        else:
            assert record is None or record.status is DeviceStatus.REVOKED, record
    if step == "peer":
        identity = mb.peer_identity_of(device.store.load())
        pins = {pin.name: pin.fingerprint for pin in host.pins()}
        if identity is not None:
            assert pins.get(device.device_id) == identity.fingerprint
            assert host.identity().name in mb.pins_of(device.store.load())
        else:
            assert device.device_id not in pins
    return enrolled


async def reference(world: World, mode: str, step: str) -> list[MessageTrace]:
    """What the device's radio sees in a whole provisioning without a cut."""
    device = await world.new_device(**device_options(mode), peripheral=CuttingPeripheral)
    outcome = await provision_device(
        world, device, mode, step, world.host(f"ref-{mode}"), mtu=MTU[step]
    )
    assert outcome.error is None, outcome.error
    radio = device.peripheral
    assert isinstance(radio, CuttingPeripheral)
    await world.retire(device)
    return list(radio.trace)


async def run_cell(world: World, mode: str, step: str, cut: Cut, index: int) -> Cell:
    started = time.perf_counter()
    device = await world.new_device(**device_options(mode), peripheral=CuttingPeripheral)
    radio = device.peripheral
    assert isinstance(radio, CuttingPeripheral)
    host = world.host(f"{mode}-{step}-{index}")
    before = trust_records(device)
    assert before == {}
    radio.arm(cut)
    outcome = await provision_device(world, device, mode, step, host, mtu=MTU[step])
    await settled(device)
    assert radio.done, f"{cut}: the cut point was never reached"
    enrolled = check_agreement(world, device, step, host)
    # provision() tells the truth: it succeeded exactly when the device is enrolled.
    assert (outcome.error is None) == enrolled, outcome.error
    # And the person can finish: provisioning it again (or anew) succeeds.
    if not enrolled or step == "wifi":
        again = await provision_device(world, device, mode, step, host)
        await settled(device)
        assert again.error is None, f"the new enrolment failed: {again.error}"
        assert check_agreement(world, device, step, host)
    await world.retire(device)  # one device on the air: a manual code matches only it
    error = None if outcome.error is None else type(outcome.error).__name__
    return Cell(cut, enrolled, error, time.perf_counter() - started)


@pytest.mark.cut_matrix
@pytest.mark.parametrize("step", TRUST_STEPS)
@pytest.mark.parametrize("mode", PAIRING_MODES)
async def test_every_cut_leaves_the_device_enrolled_or_as_it_was(
    world: World, mode: str, step: str
) -> None:
    trace = await reference(world, mode, step)
    cells: list[Cell] = []
    for index, cut in enumerate(cut_points(trace)):
        if not in_slice(mode, step, cut, trace):
            continue
        try:
            cells.append(await run_cell(world, mode, step, cut, index))
        except AssertionError as exc:
            raise AssertionError(f"{mode} {step}, cut {cut}: {exc}") from exc
    assert cells
    # Both outcomes occur: cuts before COMMIT leave it as it was, cuts after enrol it.
    assert {cell.enrolled for cell in cells} == {True, False}
    enrolled = sum(cell.enrolled for cell in cells)
    seconds = sum(cell.seconds for cell in cells)
    print(  # the matrix's size and time, for -s and the closing note
        f"\n{mode}/{step}: {len(cells)} cuts ({enrolled} enrolled, "
        f"{len(cells) - enrolled} as before), {seconds:.1f} s"
    )
