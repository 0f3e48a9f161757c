"""The hub over validated connections: CRL fetch, renewal, and refusals."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from cryptography import x509

from bleprov.core.zone import BadCsr, Revoked, Zone, make_csr, make_member_key, verify_member
from bleprov.tls import (
    LocalZoneAuthority,
    MemberCredentials,
    PeerNotTrusted,
    PeerRefused,
    RequestFailed,
    TlsSetupError,
    fetch_crl,
    open_member_connection,
    renew_membership,
    start_hub_server,
)

from .conftest import HOST, Served, enrol, member_server, running, serial_of


def hub_id(zone: Zone) -> str:
    """The hub's device ID (a name only: the role is in its certificate)."""
    return f"HUB-{zone.zone_id.upper()}"


def hub_credentials(zone: Zone, now: datetime) -> MemberCredentials:
    """The hub's own credentials: a hub certificate (the hub role in its SAN)."""
    key = make_member_key()
    return MemberCredentials.from_certificate(key, zone.issue_hub(key.public_key(), now=now))


@contextlib.asynccontextmanager
async def hub_server(zone: Zone, now: datetime) -> AsyncIterator[Served]:
    creds = hub_credentials(zone, now)
    server = await start_hub_server(HOST, 0, creds, LocalZoneAuthority(zone))
    async with running(server, Served(0)) as served:
        yield served


async def test_fetch_crl_then_use_it(zone: Zone, now: datetime) -> None:
    lamp = enrol(zone, "LAMP-0001", now=now)
    fan = enrol(zone, "FAN-0001", now=now)
    gone = enrol(zone, "GONE-0001", now=now)
    zone.revoke(serial_of(gone), now=now)
    async with hub_server(zone, now) as hub:
        crl = await fetch_crl(HOST, hub.port, lamp, expect_device=hub_id(zone))
    assert x509.load_der_x509_crl(crl).get_revoked_certificate_by_serial_number(serial_of(gone))
    # The fetched CRL is what a member then checks its peers with.
    async with (
        member_server(fan, lambda: crl) as served,
        await open_member_connection(HOST, served.port, lamp, crl_der=crl) as c,
    ):
        assert (await c.request("echo", {}))["peer"] == "LAMP-0001"
    async with member_server(gone, lambda: crl) as served:
        with pytest.raises(PeerNotTrusted, match="revoked"):
            await open_member_connection(HOST, served.port, lamp, crl_der=crl)


async def test_renewal_rotates_the_key_and_the_new_certificate_works(
    zone: Zone, now: datetime
) -> None:
    lamp = enrol(zone, "LAMP-0001", now=now - timedelta(days=25))  # 5 days left
    fan = enrol(zone, "FAN-0001", now=now)
    async with hub_server(zone, now) as hub:
        renewed, issued = await renew_membership(HOST, hub.port, lamp)
    assert renewed.key.public_key() != lamp.key.public_key()
    assert renewed.cert_der == issued.cert_der and renewed.root_der == lamp.root_der
    assert serial_of(renewed) != serial_of(lamp)
    member = verify_member(
        renewed.cert_der,
        renewed.chain_der,
        zone_root_der=zone.root_der,
        crl_der=zone.crl(now=now + timedelta(days=20)),
        now=now + timedelta(days=20),  # past the old certificate's expiry
    )
    assert (member.device_id, member.owner) == ("LAMP-0001", "alice")
    crl = zone.crl(now=now)
    # Only the renewed credentials: the old key is not needed any more.
    async with (
        member_server(fan, lambda: crl) as served,
        await open_member_connection(HOST, served.port, renewed, crl_der=crl) as c,
    ):
        assert c.peer_member is not None and c.peer_member.device_id == "FAN-0001"
    assert served.peers[0].peer_member is not None
    assert served.peers[0].peer_member.serial == serial_of(renewed)


async def test_revoked_member_can_neither_renew_nor_fetch(zone: Zone, now: datetime) -> None:
    lamp = enrol(zone, "LAMP-0001", now=now)
    zone.revoke(serial_of(lamp), now=now)
    async with hub_server(zone, now) as hub:
        with pytest.raises(PeerRefused) as refused:
            await renew_membership(HOST, hub.port, lamp)
        assert refused.value.code == Revoked.code
        with pytest.raises(PeerRefused):
            await fetch_crl(HOST, hub.port, lamp)


async def test_hub_refuses_bad_renewal_requests(zone: Zone, now: datetime) -> None:
    lamp = enrol(zone, "LAMP-0001", now=now)
    crl = zone.crl(now=now)
    async with (
        hub_server(zone, now) as hub,
        await open_member_connection(HOST, hub.port, lamp, crl_der=crl) as c,
    ):
        with pytest.raises(RequestFailed) as no_nonce:
            await c.request("csr", {"csr": b"x"})
        assert no_nonce.value.code == 0x47
        with pytest.raises(RequestFailed) as unknown:
            await c.request("mint", {})
        assert unknown.value.code == 0x60
        # A CSR for the *current* key is refused: renewal rotates keys.
        nonce = (await c.request("renew", {}))["nonce"]
        same_key = make_csr(lamp.key, device_id="LAMP-0001", session_binding=nonce)
        with pytest.raises(RequestFailed) as reused:
            await c.request("csr", {"csr": same_key})
        assert reused.value.code == BadCsr.code
        # The nonce was single use, even though that renewal failed.
        with pytest.raises(RequestFailed) as replay:
            await c.request("csr", {"csr": same_key})
        assert replay.value.code == 0x47
        # A CSR bound to another nonce is refused.
        await c.request("renew", {})
        other = make_csr(
            enrol(zone, "LAMP-0009", now=now).key,
            device_id="LAMP-0001",
            session_binding=bytes(32),
        )
        with pytest.raises(RequestFailed) as unbound:
            await c.request("csr", {"csr": other})
        assert unbound.value.code == BadCsr.code
        assert "bound" in unbound.value.detail
        await c.request("renew", {})
        with pytest.raises(RequestFailed) as bad_request:
            await c.request("csr", {"csr": "text"})
        assert bad_request.value.code == 0x61


async def test_hub_credentials_must_be_of_its_zone(zone: Zone, now: datetime) -> None:
    other = Zone.create("Other", now=now)
    creds: MemberCredentials = enrol(other, "HUB-0001", now=now)
    with pytest.raises(TlsSetupError):
        await start_hub_server(HOST, 0, creds, LocalZoneAuthority(zone))
    with pytest.raises(TlsSetupError):
        await start_hub_server(HOST, 0, hub_credentials(other, now), LocalZoneAuthority(zone))


async def test_hub_credentials_must_carry_the_hub_role(zone: Zone, now: datetime) -> None:
    """A member certificate, even for the device ID HUB-<ZONE ID>, does not make a hub."""
    with pytest.raises(TlsSetupError, match="hub role"):
        await start_hub_server(
            HOST, 0, enrol(zone, hub_id(zone), now=now), LocalZoneAuthority(zone)
        )


async def test_a_hub_re_issuing_its_certificate_serves_the_new_one(
    zone: Zone, now: datetime
) -> None:
    """A credentials provider is asked for every connection (the running hub rotates)."""
    lamp = enrol(zone, "LAMP-0001", now=now)
    current = [hub_credentials(zone, now)]
    server = await start_hub_server(HOST, 0, lambda: current[-1], LocalZoneAuthority(zone))
    async with running(server, Served(0)) as hub:
        crl = await fetch_crl(HOST, hub.port, lamp)
        current.append(hub_credentials(zone, now))
        async with await open_member_connection(HOST, hub.port, lamp, crl_der=crl) as c:
            assert c.peer_cert_der == current[-1].cert_der
