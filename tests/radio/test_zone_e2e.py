"""Zone enrolment and peer binding end to end over the virtual radio, then validated
connections over loopback TLS: what enrolment is for.

Virgin devices (factory identity and label only) are found by their label, authenticated,
given Wi-Fi and a zone certificate in one session and one commit, and then open mutual
TLS 1.3 to each other with the zone chain and the CRL. Revocation, renewal through the hub,
a non-admin refused, an interrupted enrolment rolled back on both sides; and peer binding
with no hub: bind, connect, unbind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from bleprov.core import membership as mb
from bleprov.core.advertising import AdvertisedFlags, DeviceState
from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.session.device import DeviceOwned
from bleprov.core.window import WindowPurpose
from bleprov.radio.host_link import CentralRadio, scan
from bleprov.radio.virtual import make_virtual_device
from bleprov.service.device_daemon import ValidatedConnections
from bleprov.service.trust import DeviceTrust, HostTrust, member_hello
from bleprov.service.zone_hub import (
    EnrolmentRefused,
    ZoneEnroller,
    hub_server_credentials,
    serve_hub,
)
from bleprov.store.device_store import DeviceStore
from bleprov.store.keys import KeyFileProvider
from bleprov.store.registry import DeviceStatus, NotAuthorized
from bleprov.tls.connection import RequestFailed, ValidatedConnectionError, open_member_connection
from tests.rig import PASSWORD
from tests.worlds import LOOPBACK, World

#: The window code's KDF at the lowest cost hosts accept: behaviour, not scrypt.
CHEAP_WINDOW = ScryptCost(n=1 << 10, r=1, p=1)


async def test_two_virgin_devices_join_a_zone_and_open_a_validated_connection(
    world: World,
) -> None:
    first = await world.new_device()
    second = await world.new_device()
    first_membership = await world.enrol(first)
    second_membership = await world.enrol(second)

    for device, membership in ((first, first_membership), (second, second_membership)):
        records = device.store.load()
        assert {"wifi", mb.RECORD_ZONE, mb.RECORD_OWNER} <= set(records)
        owner = mb.owner_of(records)
        assert owner == mb.Owner(
            "zone", mb.spki_fingerprint(world.hub.zone.root_der), "alice", world.hub.zone.zone_id
        )
        assert device.network.saved_credentials is not None
        registered = world.hub.registry.device(device.device_id)
        assert registered.owner == "alice" and registered.enrolled_by == "admin"
        assert registered.certificate_serial == membership.serial
        # The key never crossed the air, and nothing rests on disk in plaintext.
        key_der = membership.key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
        on_disk = (device.store.directory / "device.store").read_bytes()  # type: ignore[attr-defined]
        assert key_der not in on_disk and PASSWORD.encode() not in on_disk

    serving = DeviceTrust(first.store, device_id=first.device_id)
    server = await serving.serve_members(LOOPBACK, 0, crl_provider=world.crl)
    world.closers.append(serving.close)
    port = server.sockets[0].getsockname()[1]
    dialer = DeviceTrust(second.store, device_id=second.device_id)
    hello = await member_hello(
        LOOPBACK, port, dialer.credentials(), crl_der=world.crl(), device=first.device_id
    )
    # A member learns who the device is, not who owns it (only the owner is told).
    assert hello == {"name": first.device_id, "role": "member"}

    # Revoked: the second device can no longer connect to the first.
    world.hub.revoke(second.device_id, actor=world.admin, now=datetime.now(UTC))
    assert world.hub.registry.device(second.device_id).status is DeviceStatus.REVOKED
    with pytest.raises(ValidatedConnectionError):
        await member_hello(
            LOOPBACK, port, dialer.credentials(), crl_der=world.crl(), device=first.device_id
        )


async def test_members_renew_through_the_hub_and_a_revoked_one_cannot(world: World) -> None:
    first = await world.new_device()
    second = await world.new_device()
    await world.enrol(first)
    await world.enrol(second)
    hub_server = await serve_hub(world.hub, LOOPBACK, 0)
    world.closers.append(_closer(hub_server))
    hub_port = hub_server.sockets[0].getsockname()[1]

    trust = DeviceTrust(first.store, device_id=first.device_id)
    before = mb.membership_of(first.store.load())
    assert before is not None
    crl = await trust.fetch_crl(LOOPBACK, hub_port)
    assert x509.load_der_x509_crl(crl).issuer == world.hub.zone.issuer_certificate.subject
    await trust.renew(LOOPBACK, hub_port)
    after = mb.membership_of(first.store.load())
    assert after is not None
    assert after.serial != before.serial and after.key.public_key() != before.key.public_key()
    assert world.hub.registry.device(first.device_id).certificate_serial == after.serial

    # The renewed certificate is what the member now connects with.
    serving = DeviceTrust(second.store, device_id=second.device_id)
    server = await serving.serve_members(LOOPBACK, 0, crl_provider=world.crl)
    world.closers.append(serving.close)
    hello = await member_hello(
        LOOPBACK,
        server.sockets[0].getsockname()[1],
        trust.credentials(),
        crl_der=world.crl(),
        device=second.device_id,
    )
    assert hello["name"] == second.device_id

    world.hub.revoke(second.device_id, actor=world.admin, now=datetime.now(UTC))
    revoked = DeviceTrust(second.store, device_id=second.device_id)
    with pytest.raises(ValidatedConnectionError):
        await revoked.renew(LOOPBACK, hub_port)


async def test_only_an_admin_enrols(world: World) -> None:
    device = await world.new_device()
    alice = world.hub.authenticate("alice", "alice passphrase")
    session, client = await world.session(device)
    assert session.info is not None
    with pytest.raises(NotAuthorized):
        await ZoneEnroller(world.hub, alice).stage(
            client, session, device_id=session.info.attestation.device_id, owner="alice"
        )
    assert client.requests == 0  # refused before the device was asked for anything
    await session.close()


async def test_an_enrolled_device_is_not_enrolled_twice(world: World) -> None:
    device = await world.new_device()
    await world.enrol(device)
    # Its label opens nothing any more (tests/attacks/test_h1_owned_device.py) ...
    with pytest.raises(DeviceOwned):
        await world.session(device)
    # ... and reset by hand without telling the hub, the hub still refuses it until an
    # admin revokes its old certificate.
    device.runtime.factory_reset()
    await device.link.readvertise()
    session, client = await world.session(device)
    assert session.info is not None
    try:
        with pytest.raises(EnrolmentRefused):
            await ZoneEnroller(world.hub, world.admin).stage(
                client, session, device_id=device.device_id, owner="alice"
            )
    finally:
        await session.close()


async def test_an_interrupted_enrolment_leaves_neither_side_half_way(world: World) -> None:
    device = await world.new_device()
    session, client = await world.session(device)
    assert session.info is not None
    enroller = ZoneEnroller(world.hub, world.admin)
    pending = await enroller.stage(client, session, device_id=device.device_id, owner="alice")
    await session.link.close()  # gone before COMMIT
    await asyncio.wait_for(device.link.advertising.wait(), 5)
    await device.service.drain()
    await enroller.abandon(pending)
    assert mb.RECORD_ZONE not in device.store.load()  # device: back where it was
    assert mb.RECORD_OWNER not in device.store.load()
    record = world.hub.registry.device(device.device_id)
    assert record.status is DeviceStatus.REVOKED  # hub: the issued certificate is dead
    assert pending.serial in world.hub.zone.revoked_serials
    # And the device can be enrolled afresh.
    membership = await world.enrol(device)
    assert membership.serial != pending.serial


async def test_peer_binding_then_a_mutually_authenticated_connection_then_unbinding(
    world: World,
) -> None:
    device = await world.new_device()
    host_store = DeviceStore(world.tmp / "host" / "store", KeyFileProvider(world.tmp / "host.key"))
    host = HostTrust(host_store, name="laptop-alice")
    session, client = await world.session(device)
    device_pin = await client.peer_bind(host.identity())
    await client.commit()
    host.pin(device_pin)  # after the device committed: both or neither
    await session.close()
    await device.service.drain()
    assert device_pin.name == device.device_id
    owner = mb.owner_of(device.store.load())
    assert owner == mb.Owner("peer", host.identity().fingerprint, "laptop-alice")

    trust = DeviceTrust(device.store, device_id=device.device_id)
    server = await trust.serve_peers(LOOPBACK, 0)
    world.closers.append(trust.close)
    port = server.sockets[0].getsockname()[1]
    async with await host.connect(LOOPBACK, port, device.device_id) as connection:
        assert connection.peer_pin == device_pin
        assert (await connection.request("hello", {}))["name"] == device.device_id

    stranger = HostTrust(
        DeviceStore(world.tmp / "stranger" / "store", KeyFileProvider(world.tmp / "s.key")),
        name="stranger",
    )
    stranger.pin(device_pin)  # knowing the device's certificate is not being pinned by it
    with pytest.raises(ValidatedConnectionError):
        await stranger.connect(LOOPBACK, port, device.device_id)

    await host.unbind(LOOPBACK, port, device.device_id)
    assert device.device_id not in host.pins()
    assert "laptop-alice" not in trust.pins()
    assert mb.owner_of(device.store.load()) is None
    host.pin(device_pin)  # even re-pinned here, the device no longer trusts us
    with pytest.raises(ValidatedConnectionError):
        async with await host.connect(LOOPBACK, port, device.device_id) as connection:
            await connection.request("hello", {})


def _closer(server: asyncio.Server) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        server.close()
        await server.wait_closed()

    return close


async def test_only_the_owner_resets_a_device_remotely(world: World) -> None:
    device = await world.new_device()
    owner, guest = world.host("owner"), world.host("guest")
    await world.bind(device, owner)  # the first binding owns the device
    trust = DeviceTrust(
        device.store,
        device_id=device.device_id,
        factory_reset=device.store.factory_reset,
        windows=device.runtime,
    )
    server = await trust.serve_peers(LOOPBACK, 0)
    world.closers.append(trust.close)
    port = server.sockets[0].getsockname()[1]
    code = await owner.open_window(
        LOOPBACK, port, device.device_id, purpose=WindowPurpose.ADMIN, cost=CHEAP_WINDOW
    )
    await world.bind_in_window(code, device, guest)  # the guest is an admin
    owner_record = mb.owner_of(device.store.load())
    assert owner_record is not None and owner_record.is_owner(owner.identity().fingerprint)
    async with await guest.connect(LOOPBACK, port, device.device_id) as connection:
        with pytest.raises(RequestFailed):
            await connection.request("factory-reset", {})
    assert mb.RECORD_PEER_PINS in device.store.load()
    async with await owner.connect(LOOPBACK, port, device.device_id) as connection:
        await connection.request("factory-reset", {})
    records = device.store.load()
    assert not {mb.RECORD_PEER_PINS, mb.RECORD_OWNER, mb.RECORD_PEER_IDENTITY} & set(records)
    assert device.store.provisioning() is not None  # the factory identity stays


async def test_the_zone_hub_resets_a_member_and_another_member_cannot(world: World) -> None:
    first = await world.new_device()
    second = await world.new_device()
    await world.enrol(first)
    await world.enrol(second)
    trust = DeviceTrust(
        first.store, device_id=first.device_id, factory_reset=first.store.factory_reset
    )
    server = await trust.serve_members(LOOPBACK, 0, crl_provider=world.crl)
    world.closers.append(trust.close)
    port = server.sockets[0].getsockname()[1]
    other = DeviceTrust(second.store, device_id=second.device_id).credentials()
    async with await open_member_connection(
        LOOPBACK, port, other, crl_der=world.crl(), expect_device=first.device_id
    ) as connection:
        with pytest.raises(RequestFailed):
            await connection.request("factory-reset", {})
    assert mb.RECORD_ZONE in first.store.load()
    hub = hub_server_credentials(world.hub, now=datetime.now(UTC))
    async with await open_member_connection(
        LOOPBACK, port, hub, crl_der=world.crl(), expect_device=first.device_id
    ) as connection:
        await connection.request("factory-reset", {})
    assert mb.RECORD_ZONE not in first.store.load() and "wifi" not in first.store.load()


async def test_the_daemon_renews_through_the_hub_and_serves_the_new_certificate(
    world: World,
) -> None:
    device = await world.new_device()
    session, client = await world.session(device)
    # A short-lived certificate: two thirds of its validity (clock skew included) are past.
    enroller = ZoneEnroller(world.hub, world.admin, validity=timedelta(minutes=1))
    await enroller.stage(client, session, device_id=device.device_id, owner="alice")
    await client.commit()  # and nobody tells the hub: the enrolment stays pending
    await session.close()
    await device.service.drain()
    before = mb.membership_of(device.store.load())
    assert before is not None and before.renew_after() <= datetime.now(UTC)
    assert world.hub.registry.device(device.device_id).status is DeviceStatus.PENDING

    hub_server = await serve_hub(world.hub, LOOPBACK, 0)
    world.closers.append(_closer(hub_server))
    lines: list[str] = []
    service = ValidatedConnections(
        device.runtime,
        (LOOPBACK, 0),
        hub=(LOOPBACK, hub_server.sockets[0].getsockname()[1]),
        emit=lines.append,
    )
    world.closers.append(service.close)
    await service.state_changed(DeviceState.ENROLLED)
    for _ in range(200):
        if sum("serving zone members" in line for line in lines) >= 2:
            break
        await asyncio.sleep(0.05)
    after = mb.membership_of(device.store.load())
    assert after is not None and after.serial != before.serial, lines
    assert after.key.public_key() != before.key.public_key()  # a new key, too
    assert after.renew_after() > datetime.now(UTC)  # a full-length certificate now
    assert world.hub.registry.device(device.device_id).certificate_serial == after.serial
    # Renewing with the pending certificate proved the device holds its key: confirmed.
    assert world.hub.registry.device(device.device_id).status is DeviceStatus.ENROLLED
    confirms = [
        e for e in world.hub.registry.audit(subject=device.device_id) if e.action == "confirm"
    ]
    assert len(confirms) == 1 and confirms[0].detail.endswith("by renewal")
    port = device.runtime.trust.servers[-1].sockets[0].getsockname()[1]
    hub = hub_server_credentials(world.hub, now=datetime.now(UTC))
    async with await open_member_connection(
        LOOPBACK, port, hub, crl_der=world.crl(), expect_device=device.device_id
    ) as connection:
        assert connection.peer_cert_der == after.cert_der  # served with the new certificate


async def test_the_advertisement_shows_an_open_button_window_until_it_closes(
    world: World,
) -> None:
    device = await world.new_device()
    device.runtime.server.button.length = 1.0
    host = make_virtual_device(world.radio, name="scanner", address="C0:B1:00:00:02:01")
    await host.power_on()
    radio = CentralRadio.bumble(host, mtu=247)

    async def flags() -> AdvertisedFlags:
        [found] = [f for f in await scan(radio, timeout=0.3) if f.device.address.startswith("F0")]
        return found.service_data.flags

    assert AdvertisedFlags.BUTTON_WINDOW_OPEN not in await flags()
    device.runtime.press_button()
    await asyncio.sleep(0.1)
    assert AdvertisedFlags.BUTTON_WINDOW_OPEN in await flags()
    await asyncio.sleep(1.2)
    assert AdvertisedFlags.BUTTON_WINDOW_OPEN not in await flags()
