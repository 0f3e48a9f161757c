"""H1: an owned device could be taken in one BLE session (review of 0457068).

The reviewer's chain: a label holder binds as a peer to a device that already has an
owner, asks ``hello`` for the owner's name, binds again under that name (the pin is
replaced), is now "the owner" and factory-resets the device. Each step is closed at its
own depth: an owned device's label changes nothing (core enrolment authority), a pin is
never replaced by another key (core PinSet), ownership is a key (trust), and ``hello``
names the owner only to the owner."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest

from bleprov.core import membership as mb
from bleprov.core.errors import BleprovError
from bleprov.core.peer import PeerIdentity, PeerSetupError, PinSet
from bleprov.core.wifi import WifiCredentials, WifiSecurity
from bleprov.service.enrolment import EnrolmentClient
from bleprov.service.trust import DeviceTrust
from bleprov.tls.connection import RequestFailed, ValidatedConnectionError
from tests.worlds import LOOPBACK, VirginDevice, World

ELSEWHERE = WifiCredentials(b"home", WifiSecurity.WPA2_PERSONAL, passphrase="correct horse battery")


async def _as_label_holder(
    world: World, device: VirginDevice, action: Callable[[EnrolmentClient], Awaitable[object]]
) -> None:
    """Open a session with the device's label and try ``action`` in it; the device may
    refuse at any step (the session itself, or the request)."""
    session, client = await world.session(device)
    try:
        await action(client)
    finally:
        await session.close()
        await device.service.drain()


async def _repoint(client: EnrolmentClient) -> None:
    await client.set_wifi(ELSEWHERE)
    await client.commit()


def _owner_fingerprint(device: VirginDevice) -> bytes:
    owner = mb.owner_of(device.store.load())
    assert owner is not None
    return owner.fingerprint


async def _serve_peers(world: World, device: VirginDevice) -> tuple[DeviceTrust, int]:
    trust = DeviceTrust(
        device.store, device_id=device.device_id, factory_reset=device.store.factory_reset
    )
    server = await trust.serve_peers(LOOPBACK, 0)
    world.closers.append(trust.close)
    return trust, server.sockets[0].getsockname()[1]


async def test_a_label_holder_cannot_bind_an_owned_device(world: World) -> None:
    device = await world.new_device()
    owner, attacker = world.host("owner"), world.host("attacker")
    await world.bind(device, owner)
    with pytest.raises(BleprovError):
        await world.bind(device, attacker)  # the label is on the device: the attacker has it
    assert _owner_fingerprint(device) == owner.identity().fingerprint
    assert mb.pins_of(device.store.load()).names() == ["owner"]


async def test_the_reviewers_takeover_chain_fails(world: World) -> None:
    device = await world.new_device()
    owner = world.host("owner")
    await world.bind(device, owner)
    _, port = await _serve_peers(world, device)

    # 1. bind once with the label; 2. read the owner's name; 3. bind again under it;
    # 4. factory-reset as "the owner". Every step is attempted; none may succeed.
    attacker = world.host("attacker")
    with contextlib.suppress(BleprovError):
        await world.bind(device, attacker)
    owner_name = "owner"
    with contextlib.suppress(BleprovError, ValidatedConnectionError):
        async with await attacker.connect(LOOPBACK, port, device.device_id) as connection:
            hello = await connection.request("hello", {})
            owner_name = str(hello.get("owner", owner_name))
    impostor = world.host(owner_name, directory="impostor")
    with contextlib.suppress(BleprovError):
        await world.bind(device, impostor)
    with contextlib.suppress(BleprovError, ValidatedConnectionError, RequestFailed):
        async with await impostor.connect(LOOPBACK, port, device.device_id) as connection:
            await connection.request("factory-reset", {})

    records = device.store.load()
    assert mb.RECORD_OWNER in records, "the device was reset by a stranger"
    assert _owner_fingerprint(device) == owner.identity().fingerprint
    pin = mb.pins_of(records).match(owner.identity().cert_der)
    assert pin.fingerprint == owner.identity().fingerprint


async def test_a_label_holder_cannot_repoint_the_wifi_of_a_peer_bound_device(
    world: World,
) -> None:
    device = await world.new_device()
    await world.bind(device, world.host("owner"))
    before = device.store.load().get("wifi")
    with pytest.raises(BleprovError):
        await _as_label_holder(world, device, _repoint)
    assert device.store.load().get("wifi") == before


async def test_a_label_holder_cannot_repoint_the_wifi_of_a_zone_member(world: World) -> None:
    device = await world.new_device()
    await world.enrol(device)
    before = device.store.load()["wifi"]
    with pytest.raises(BleprovError):
        await _as_label_holder(world, device, _repoint)
    assert device.store.load()["wifi"] == before


async def test_a_label_holder_cannot_ask_a_peer_bound_device_for_a_zone_key(
    world: World,
) -> None:
    device = await world.new_device()
    await world.bind(device, world.host("owner"))
    with pytest.raises(BleprovError):
        await _as_label_holder(world, device, EnrolmentClient.zone_key)


def test_a_pin_is_never_replaced_by_another_key() -> None:
    now = datetime.now(UTC)
    first = PeerIdentity.create("laptop", now=now)
    second = PeerIdentity.create("laptop", now=now)
    pins = PinSet().add(first.pin)
    with pytest.raises(PeerSetupError):
        pins.add(second.pin)
    assert pins.match(first.cert_der).fingerprint == first.fingerprint


async def test_hello_names_the_owner_only_to_the_owner(world: World) -> None:
    device = await world.new_device()
    owner, guest = world.host("owner"), world.host("guest")
    await world.bind(device, owner)
    # A peer the device trusts but that is not its owner (as an admin would be).
    records = device.store.load()
    pins = mb.pins_of(records).add(guest.identity().pin)
    device.store.update({mb.RECORD_PEER_PINS: pins.to_bytes()})
    guest.pin(owner.pins().pins()[0])  # the device's pin, as binding would give it
    _, port = await _serve_peers(world, device)
    async with await guest.connect(LOOPBACK, port, device.device_id) as connection:
        hello = await connection.request("hello", {})
    assert "owner" not in hello and "owner" not in str(hello.values())
    async with await owner.connect(LOOPBACK, port, device.device_id) as connection:
        assert (await connection.request("hello", {}))["owner"]["name"] == "owner"
