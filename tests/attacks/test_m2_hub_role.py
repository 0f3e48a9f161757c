"""M2: the hub's role is in its certificate, not in a device ID a factory can mint.

A factory issues a device the ID ``HUB-<ZONE ID>`` (any manufacturer can: device IDs are
theirs to choose). Enrolled into the zone it gets an ordinary member certificate, and it
is no more than a member: it cannot factory-reset another member, and members do not take
it for the hub when they fetch CRLs. A device whose attestation does not chain to a
trusted manufacturer root gets no zone certificate at all.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bleprov.core import membership as mb
from bleprov.core.identity import TrustPolicy
from bleprov.core.session import host as hst
from bleprov.core.zone import verify_member
from bleprov.service.trust import DeviceTrust
from bleprov.service.zone_hub import (
    EnrolmentRefused,
    ZoneEnroller,
    hub_server_credentials,
    serve_hub,
)
from bleprov.store.registry import UnknownDevice
from bleprov.tls.connection import (
    ConnectionClosed,
    ReceiveTimeout,
    RequestFailed,
    ValidatedConnection,
    ValidatedConnectionError,
    open_member_connection,
    start_member_server,
)
from tests.rig import MANUFACTURER
from tests.worlds import LOOPBACK, World


async def test_a_device_named_hub_zone_is_a_member_and_not_the_hub(world: World) -> None:
    impostor_id = f"HUB-{world.hub.zone.zone_id.upper()}"
    impostor = await world.new_device(impostor_id)
    victim = await world.new_device()
    await world.enrol(impostor)
    await world.enrol(victim)
    # The factory's name is certified as it is: an ordinary member certificate.
    impostor_trust = DeviceTrust(impostor.store, device_id=impostor_id)
    credentials = impostor_trust.credentials()
    member = verify_member(
        credentials.cert_der,
        credentials.chain_der,
        zone_root_der=credentials.root_der,
        crl_der=world.crl(),
        now=datetime.now(UTC),
    )
    assert member.device_id == impostor_id

    # 1. It cannot factory-reset another member (only the zone's hub may).
    victim_trust = DeviceTrust(
        victim.store, device_id=victim.device_id, factory_reset=victim.store.factory_reset
    )
    server = await victim_trust.serve_members(LOOPBACK, 0, crl_provider=world.crl)
    port = server.sockets[0].getsockname()[1]
    try:
        async with await open_member_connection(
            LOOPBACK, port, credentials, crl_der=world.crl(), expect_device=victim.device_id
        ) as connection:
            with pytest.raises(RequestFailed) as refused:
                await connection.request("factory-reset", {})
        assert refused.value.code == 0x63  # v2: NOT_ALLOWED (v1 0x71)
        assert mb.RECORD_ZONE in victim.store.load()

        # 2. Members do not take it for the hub: no CRL (nor renewal) from it.
        seen: list[str] = []

        async def pose_as_hub(connection: ValidatedConnection) -> None:
            while True:
                try:
                    request = await connection.next_request(5)
                except (ConnectionClosed, ReceiveTimeout):
                    return
                seen.append(request.op)
                await connection.reply(request, {"crl": world.crl()})

        fake = await start_member_server(
            LOOPBACK, 0, credentials, crl_provider=world.crl, handler=pose_as_hub
        )
        try:
            fake_port = fake.sockets[0].getsockname()[1]
            with pytest.raises(ValidatedConnectionError):
                await victim_trust.fetch_crl(LOOPBACK, fake_port)
            with pytest.raises(ValidatedConnectionError):
                await victim_trust.renew(LOOPBACK, fake_port)
            assert seen == []  # refused before a single request
        finally:
            fake.close()
            await fake.wait_closed()

        # The certificate says what it is: a member, not the hub.
        assert member.is_hub is False

        # The real hub is both.
        hub_server = await serve_hub(world.hub, LOOPBACK, 0)
        try:
            await victim_trust.fetch_crl(LOOPBACK, hub_server.sockets[0].getsockname()[1])
        finally:
            hub_server.close()
            await hub_server.wait_closed()
        hub = hub_server_credentials(world.hub, now=datetime.now(UTC))
        async with await open_member_connection(
            LOOPBACK, port, hub, crl_der=world.crl(), expect_device=victim.device_id
        ) as connection:
            await connection.request("factory-reset", {})
        assert mb.RECORD_ZONE not in victim.store.load()
    finally:
        await victim_trust.close()


async def test_an_unattested_device_gets_no_zone_certificate(world: World) -> None:
    device = await world.new_device()
    # The host does not trust the manufacturer: --allow-unknown-manufacturer's WARN policy.
    untrusting = hst.Trust((), TrustPolicy.WARN)
    session, client = await world.session(device, untrusting)
    assert session.info is not None and not session.info.attestation.trusted
    try:
        with pytest.raises(EnrolmentRefused, match="trusted manufacturer"):
            await ZoneEnroller(world.hub, world.admin).stage(
                client, session, device_id=session.info.attestation.device_id, owner="alice"
            )
        assert client.requests == 0  # refused before the device was asked for a CSR
    finally:
        await session.close()
    with pytest.raises(UnknownDevice):
        world.hub.registry.device(device.device_id)

    # Attested, it is enrolled, and the registry records the root it chained to.
    await world.enrol(device)
    record = world.hub.registry.device(device.device_id)
    assert record.manufacturer_root == MANUFACTURER.root_fingerprint.hex()
