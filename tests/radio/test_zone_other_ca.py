"""The hub's CA is a seam: a zone backed by another CA (tests.ca_doubles.MemoryCa, not
bleprov.core.zone.Zone) enrols a virgin device over the virtual radio, and the device
then opens validated TLS connections with the certificate that CA issued.

Nothing in the hub's services changes for it: the enroller, the hub's TLS identity, its
CRL and renewal server all run over bleprov.core.ca.CertificateAuthority through
bleprov.service.hub_rules.RegistryHub.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio
from cryptography import x509

from bleprov.core import membership as mb
from bleprov.radio.virtual import VirtualLink
from bleprov.service.hub_rules import RegistryHub
from bleprov.service.trust import DeviceTrust, member_hello
from bleprov.service.zone_hub import serve_hub
from bleprov.store.registry import DeviceStatus, Registry, Role
from bleprov.tls.connection import ValidatedConnectionError
from tests.ca_doubles import MemoryCa
from tests.rig import CHEAP
from tests.worlds import LOOPBACK, World


@pytest_asyncio.fixture
async def memory_world(tmp_path: Path) -> AsyncIterator[tuple[World, MemoryCa]]:
    """tests.worlds' world, its hub a registry over the in-memory CA."""
    ca = MemoryCa(now=datetime.now(UTC))
    registry = Registry.open(f"sqlite:///{tmp_path / 'registry.sqlite'}", passphrase_cost=CHEAP)
    registry.add_user("admin", Role.ADMIN, passphrase="admin passphrase", actor=None)
    admin = registry.authenticate("admin", "admin passphrase")
    registry.add_user("alice", Role.MEMBER, passphrase="alice passphrase", actor=admin)
    hub = RegistryHub(ca, registry)
    radio = VirtualLink()
    world = World(tmp_path, radio, hub, admin)  # type: ignore[arg-type]
    yield world, ca
    for close in reversed(world.closers):
        await close()
    radio.close()
    hub.close()
    await asyncio.sleep(0.02)


async def test_a_device_enrolled_by_another_ca_opens_validated_connections(
    memory_world: tuple[World, MemoryCa],
) -> None:
    world, ca = memory_world
    first = await world.new_device()
    second = await world.new_device()
    first_membership = await world.enrol(first)
    await world.enrol(second)

    # The certificate on the device is the memory CA's, on record in the registry.
    assert ca.calls[:2] == ["issue_member_key", "issue_member_key"]
    leaf = x509.load_der_x509_certificate(first_membership.cert_der)
    assert leaf.issuer == ca.issuer.subject
    assert leaf.serial_number == first_membership.serial
    owner = mb.owner_of(first.store.load())
    assert owner == mb.Owner("zone", mb.spki_fingerprint(ca.root_der), "alice", ca.zone_id)
    record = world.hub.registry.device(first.device_id)
    assert record.status is DeviceStatus.ENROLLED
    assert record.certificate_serial == first_membership.serial

    # Mutual TLS between the two members: zone chain and the memory CA's CRL.
    serving = DeviceTrust(first.store, device_id=first.device_id)
    server = await serving.serve_members(LOOPBACK, 0, crl_provider=world.crl)
    world.closers.append(serving.close)
    port = server.sockets[0].getsockname()[1]
    dialer = DeviceTrust(second.store, device_id=second.device_id)
    hello = await member_hello(
        LOOPBACK, port, dialer.credentials(), crl_der=world.crl(), device=first.device_id
    )
    assert hello == {"name": first.device_id, "role": "member"}

    # The hub's server (its TLS identity from the memory CA): CRL, then renewal.
    hub_server = await serve_hub(world.hub, LOOPBACK, 0)
    world.closers.append(_closer(hub_server))
    hub_port = hub_server.sockets[0].getsockname()[1]
    crl = await dialer.fetch_crl(LOOPBACK, hub_port)
    assert x509.load_der_x509_crl(crl).issuer == ca.issuer.subject
    before = mb.membership_of(second.store.load())
    await dialer.renew(LOOPBACK, hub_port)
    after = mb.membership_of(second.store.load())
    assert before is not None and after is not None and after.serial != before.serial
    assert "issue_hub" in ca.calls and "renew" in ca.calls
    assert world.hub.registry.device(second.device_id).certificate_serial == after.serial

    # Revoked through the hub's rules: on the memory CA's next CRL, refused by the first.
    world.hub.revoke(second.device_id, actor=world.admin, now=datetime.now(UTC))
    assert after.serial in ca.revoked_serials
    with pytest.raises(ValidatedConnectionError):
        await member_hello(
            LOOPBACK, port, dialer.credentials(), crl_der=world.crl(), device=first.device_id
        )


def _closer(server: asyncio.Server) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        server.close()
        await server.wait_closed()

    return close
