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

import pytest

from bleprov.core import membership as mb
from bleprov.core.enrolment.messages import Endpoint, Request, decode
from bleprov.radio.secure_link import SecureDeviceChannel
from bleprov.service.zone_hub import ZoneEnroller
from bleprov.store.registry import DeviceStatus
from tests.cuts import CuttingPeripheral
from tests.pairing import PAIRING_MODES, device_options, provision_device
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
