"""Lost messages at the end of an enrolment (issue 15, S1-S3): whatever is lost, the device
ends enrolled or as it was, and the hub and the host agree with it.

S1: the device commits a zone enrolment and its answer is lost: the host used to revoke
the certificate, leaving the device with a revoked certificate, owned, its label dead (a
bricked enrolment, in every pairing mode). S2: the same for a peer binding: the device
pinned the host, the host never pinned the device. S3: the host process dies between
``zone/install`` and COMMIT: the device rolls back, the hub kept the device as enrolled and
refused to enrol it again until an admin revoked it.
"""

from __future__ import annotations

import asyncio
import io

import pytest
from rich.console import Console

from bleprov.core import membership as mb
from bleprov.core.enrolment.messages import Endpoint, Request, decode
from bleprov.service.host_session import DeviceAuthentication
from bleprov.service.zone_hub import ZoneEnroller
from bleprov.session import SecureDeviceChannel, SecureHostLink
from bleprov.store.registry import DeviceStatus
from tests.cuts import CuttingPeripheral
from tests.pairing import (
    PAIRING_MODES,
    authentication,
    device_options,
    open_host,
    provision_device,
)
from tests.worlds import VirginDevice, World


def lose_the_commit_answer(device: VirginDevice) -> None:
    """The link drops the moment the device has read COMMIT: it commits, and its answer
    never leaves (the host walked out of range, or the radio failed)."""
    radio = device.peripheral
    assert isinstance(radio, CuttingPeripheral)
    service = device.service
    original = service.received

    def received(channel: SecureDeviceChannel, data: bytes) -> None:
        original(channel, data)
        message = decode(data)
        if isinstance(message, Request) and message.endpoint == Endpoint.COMMIT:
            service.received = original  # type: ignore[method-assign]
            radio.cut_now()

    service.received = received  # type: ignore[method-assign]


async def settled(device: VirginDevice) -> None:
    await asyncio.wait_for(device.link.advertising.wait(), 10)
    await device.service.drain()


@pytest.mark.parametrize("mode", PAIRING_MODES)
async def test_s1_a_lost_commit_answer_leaves_a_zone_member_enrolled_on_both_sides(
    world: World, mode: str
) -> None:
    device = await world.new_device(**device_options(mode), peripheral=CuttingPeripheral)
    lose_the_commit_answer(device)
    outcome = await provision_device(world, device, mode, "zone", world.host("laptop"))
    await settled(device)
    membership = mb.membership_of(device.store.load())
    assert membership is not None, outcome  # the device committed
    record = world.hub.registry.device(device.device_id)
    assert record.status is DeviceStatus.ENROLLED, "the hub must agree with the device"
    assert record.certificate_serial == membership.serial
    revoked = {entry.serial for entry in world.hub.registry.revoked_serials()}
    assert membership.serial not in revoked
    assert outcome.error is None, f"provision failed: {outcome.error}"
    assert outcome.report is not None and outcome.report.zone is not None
    assert outcome.report.zone.serial == membership.serial


@pytest.mark.parametrize("mode", PAIRING_MODES)
async def test_s2_a_lost_commit_answer_leaves_a_peer_binding_pinned_on_both_sides(
    world: World, mode: str
) -> None:
    host = world.host("laptop")
    device = await world.new_device(**device_options(mode), peripheral=CuttingPeripheral)
    lose_the_commit_answer(device)
    outcome = await provision_device(world, device, mode, "peer", host)
    await settled(device)
    records = device.store.load()
    identity = mb.peer_identity_of(records)
    assert identity is not None  # the device committed: it pins the host ...
    assert host.identity().name in mb.pins_of(records)
    pins = host.pins()
    assert device.device_id in pins, "... and the host must pin the device"
    pinned = {pin.name: pin.fingerprint for pin in pins}
    assert pinned[device.device_id] == identity.fingerprint
    assert outcome.error is None, f"provision failed: {outcome.error}"


async def test_s3_a_host_dying_before_commit_leaves_the_hub_pending_until_superseded(
    world: World,
) -> None:
    device = await world.new_device()
    session, client = await world.session(device)
    assert session.info is not None
    enroller = ZoneEnroller(world.hub, world.admin)
    staged = await enroller.stage(client, session, device_id=device.device_id, owner="alice")
    # The host process dies here: no COMMIT, no revocation, the link just drops.
    await session.link.close()
    await settled(device)
    assert mb.RECORD_ZONE not in device.store.load()  # the device rolled back
    record = world.hub.registry.device(device.device_id)
    assert record.status is not DeviceStatus.ENROLLED, "the hub must not count it enrolled"
    assert str(record.status) == "pending"
    # Whoever set it up comes back: a fresh enrolment supersedes the pending one.
    outcome = await provision_device(world, device, "qr", "zone", world.host("laptop"))
    assert outcome.error is None, f"a new enrolment was refused: {outcome.error}"
    membership = mb.membership_of(device.store.load())
    assert membership is not None and membership.serial != staged.serial
    record = world.hub.registry.device(device.device_id)
    assert record.status is DeviceStatus.ENROLLED
    assert record.certificate_serial == membership.serial
    revoked = {entry.serial for entry in world.hub.registry.revoked_serials()}
    assert staged.serial in revoked  # the superseded certificate is dead
    assert membership.serial not in revoked


def hide_after_the_cut(device: VirginDevice) -> CuttingPeripheral:
    """The device goes out of reach the moment its COMMIT answer is lost (taken out of
    range, powered off): provision() cannot ask it."""
    radio = device.peripheral
    assert isinstance(radio, CuttingPeripheral)
    cut_now = radio.cut_now

    def cut_and_hide() -> None:
        radio.hidden = True
        cut_now()

    radio.cut_now = cut_and_hide  # type: ignore[method-assign]
    return radio


async def back_in_reach(device: VirginDevice, radio: CuttingPeripheral) -> None:
    await radio.back_in_reach()


@pytest.mark.parametrize("step", ["zone", "peer"])
async def test_an_outcome_not_learnt_stays_pending_and_the_next_run_finishes_it(
    world: World, step: str
) -> None:
    """The device committed, its answer was lost and it went out of reach: nothing is
    revoked or pinned blindly, the hub keeps the enrolment pending, one line says what to
    do; the next run (the same command) asks the device with the receipt and finishes."""
    from bleprov.cli.host import finish_earlier
    from bleprov.service.provisioning import EnrolmentOutcomeUnknown, PeerPlan, ZonePlan

    host = world.host("laptop")
    device = await world.new_device(peripheral=CuttingPeripheral)
    lose_the_commit_answer(device)
    radio = hide_after_the_cut(device)
    outcome = await provision_device(
        world, device, "qr", step, host, redial_within=1.5, unresolved=host
    )
    await device.service.drain()
    assert isinstance(outcome.error, EnrolmentOutcomeUnknown)
    message = str(outcome.error)
    assert "\n" not in message and "run the same command again" in message
    records = device.store.load()
    assert mb.RECORD_OWNER in records  # it did commit
    [kept] = host.unresolved()
    assert kept.device_id == device.device_id
    assert device.device_id not in host.pins()
    if step == "zone":
        assert "pending" in message
        record = world.hub.registry.device(device.device_id)
        assert record.status is DeviceStatus.PENDING
        assert record.certificate_serial not in {
            entry.serial for entry in world.hub.registry.revoked_serials()
        }

    # The next run: the device's label opens nothing now (it has an owner), so the CLI
    # asks it with the receipt of the enrolment it kept.
    await back_in_reach(device, radio)
    zone = ZonePlan(ZoneEnroller(world.hub, world.admin), "alice") if step == "zone" else None
    peer = PeerPlan(host) if step == "peer" else None
    auth = authentication(device, "qr")

    async def again(again_auth: DeviceAuthentication) -> SecureHostLink:
        return await open_host(world, device, again_auth)

    quiet = Console(file=io.StringIO())
    assert await finish_earlier(quiet, host, again, auth, zone, peer, as_json=False)
    assert host.unresolved() == []
    if step == "zone":
        membership = mb.membership_of(device.store.load())
        assert membership is not None
        record = world.hub.registry.device(device.device_id)
        assert record.status is DeviceStatus.ENROLLED
        assert record.certificate_serial == membership.serial
    else:
        identity = mb.peer_identity_of(device.store.load())
        assert identity is not None
        assert {pin.name: pin.fingerprint for pin in host.pins()} == {
            device.device_id: identity.fingerprint
        }


async def test_an_outcome_not_learnt_of_a_device_that_rolled_back_is_settled_by_the_next_run(
    world: World,
) -> None:
    """The link and the device are gone before COMMIT arrives: the device rolls back, the
    host cannot tell. The next run opens a session with the label (the device has no
    owner), learns there that the earlier enrolment was not committed, revokes its
    pending certificate, and enrols the device afresh."""
    from bleprov.service.provisioning import EnrolmentOutcomeUnknown

    host = world.host("laptop")
    device = await world.new_device(peripheral=CuttingPeripheral)
    radio = device.peripheral
    assert isinstance(radio, CuttingPeripheral)
    hide_after_the_cut(device)
    service = device.service
    original = service.received

    def received(channel: SecureDeviceChannel, data: bytes) -> None:
        message = decode(data)
        if isinstance(message, Request) and message.endpoint == Endpoint.COMMIT:
            service.received = original  # type: ignore[method-assign]
            radio.cut_now()  # COMMIT never reaches the enrolment service
            return
        original(channel, data)

    service.received = received  # type: ignore[method-assign]
    outcome = await provision_device(
        world, device, "qr", "zone", host, redial_within=1.5, unresolved=host
    )
    await settled_hidden(device)
    assert isinstance(outcome.error, EnrolmentOutcomeUnknown)
    assert device.store.load().keys() <= {"provisioning", "attempts"}  # rolled back
    [kept] = host.unresolved()
    first = world.hub.registry.device(device.device_id)
    assert first.status is DeviceStatus.PENDING

    await back_in_reach(device, radio)
    again = await provision_device(world, device, "qr", "zone", host, unresolved=host)
    assert again.error is None, again.error
    assert host.unresolved() == []
    membership = mb.membership_of(device.store.load())
    assert membership is not None and membership.serial != kept.zone_serial
    record = world.hub.registry.device(device.device_id)
    assert (record.status, record.certificate_serial) == (DeviceStatus.ENROLLED, membership.serial)
    revoked = {entry.serial for entry in world.hub.registry.revoked_serials()}
    assert kept.zone_serial in revoked and membership.serial not in revoked
    actions = [entry.action for entry in world.hub.registry.audit(subject=device.device_id)]
    assert actions == ["enrol", "revoke", "enrol", "confirm"]


async def settled_hidden(device: VirginDevice) -> None:
    """Wait for the device's session to end while it advertises nothing."""
    for _ in range(200):
        if device.link.session is None:
            break
        await asyncio.sleep(0.02)
    await device.service.drain()


async def test_an_interrupted_commit_revokes_nothing_and_is_kept_for_the_next_run(
    world: World,
) -> None:
    """Ctrl-C while COMMIT is on its way: the device may have committed (here it did), so
    the certificate is not revoked; the hub keeps it pending and the host keeps the
    receipt for the next run."""
    host = world.host("laptop")
    device = await world.new_device()
    service = device.service
    original = service.received
    running: list[asyncio.Task[object]] = []

    def received(channel: SecureDeviceChannel, data: bytes) -> None:
        original(channel, data)
        message = decode(data)
        if isinstance(message, Request) and message.endpoint == Endpoint.COMMIT:
            service.received = original  # type: ignore[method-assign]
            running[0].cancel()  # the person presses Ctrl-C

    service.received = received  # type: ignore[method-assign]
    task = asyncio.get_running_loop().create_task(
        provision_device(world, device, "qr", "zone", host, unresolved=host)
    )
    running.append(task)
    with pytest.raises(asyncio.CancelledError):
        await task
    await device.service.drain()
    assert mb.membership_of(device.store.load()) is not None
    record = world.hub.registry.device(device.device_id)
    assert record.status is DeviceStatus.PENDING
    assert record.certificate_serial not in {
        entry.serial for entry in world.hub.registry.revoked_serials()
    }
    [kept] = host.unresolved()
    assert (kept.device_id, kept.zone_serial) == (device.device_id, record.certificate_serial)


async def test_a_commit_that_never_arrived_is_learnt_from_the_rolled_back_receipt(
    world: World,
) -> None:
    """COMMIT never reaches the device (compare mode: nothing the host holds reopens a
    session without a person). The device rolled back, and still answers the receipt of
    the session it rolled back: not committed. The certificate is revoked, nothing is
    pinned or kept, one line says to run the command again."""
    from bleprov.service.provisioning import NotCommitted

    host = world.host("laptop")
    device = await world.new_device(**device_options("compare"), peripheral=CuttingPeripheral)
    radio = device.peripheral
    assert isinstance(radio, CuttingPeripheral)
    service = device.service
    original = service.received

    def received(channel: SecureDeviceChannel, data: bytes) -> None:
        message = decode(data)
        if isinstance(message, Request) and message.endpoint == Endpoint.COMMIT:
            service.received = original  # type: ignore[method-assign]
            radio.cut_now()  # lost on its way: the device never acts on it
            return
        original(channel, data)

    service.received = received  # type: ignore[method-assign]
    outcome = await provision_device(world, device, "compare", "zone", host, unresolved=host)
    await settled(device)
    assert isinstance(outcome.error, NotCommitted), outcome.error
    assert "\n" not in str(outcome.error) and "run the same command again" in str(outcome.error)
    assert device.store.load().keys() <= {"provisioning", "attempts"}
    record = world.hub.registry.device(device.device_id)
    assert record.status is DeviceStatus.REVOKED
    assert host.unresolved() == [] and device.device_id not in host.pins()
