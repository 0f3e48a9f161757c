"""Zone members over validated connections: accepted, and every kind of refusal."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest

from bleprov.core.zone import BadCrl, CertificateExpired, Revoked, Zone
from bleprov.tls import (
    ConnectFailed,
    PeerNotTrusted,
    PeerRefused,
    TlsSetupError,
    UnexpectedPeer,
    open_member_connection,
)
from bleprov.tls.connection import MemberCredentials

from .conftest import HOST, enrol, member_server, serial_of


async def test_member_connects_to_member(zone: Zone, now: datetime) -> None:
    hub = enrol(zone, "HUB-0001", now=now)
    lamp = enrol(zone, "LAMP-0001", now=now, owner="bob")
    crl = zone.crl(now=now)
    async with member_server(hub, lambda: crl) as served:
        async with await open_member_connection(
            HOST, served.port, lamp, crl_der=crl, expect_device="HUB-0001"
        ) as connection:
            assert connection.peer_member is not None and connection.peer_pin is None
            assert connection.peer_member.device_id == "HUB-0001"
            assert connection.peer_member.zone_id == zone.zone_id
            reply = await connection.request("echo", {"n": 1, "blob": b"\x00" * 1000})
        assert connection.closed
    assert reply == {"echo": {"n": 1, "blob": b"\x00" * 1000}, "peer": "LAMP-0001"}
    [seen] = served.peers
    assert seen.peer_member is not None
    assert (seen.peer_member.device_id, seen.peer_member.owner) == ("LAMP-0001", "bob")
    assert seen.peer_member.serial == serial_of(lamp)


async def test_crl_provider_is_asked_per_connection(zone: Zone, now: datetime) -> None:
    """Revoking a member takes effect on its next connection, without restarting."""
    hub = enrol(zone, "HUB-0001", now=now)
    lamp = enrol(zone, "LAMP-0001", now=now)
    calls: list[int] = []

    def crl_provider() -> bytes:
        calls.append(1)
        return zone.crl(now=now)

    async with member_server(hub, crl_provider) as served:
        async with await open_member_connection(
            HOST, served.port, lamp, crl_der=zone.crl(now=now)
        ) as connection:
            await connection.request("echo", {})
        zone.revoke(serial_of(lamp), now=now)
        with pytest.raises(PeerRefused) as refused:
            await open_member_connection(HOST, served.port, lamp, crl_der=zone.crl(now=now))
    assert refused.value.code == Revoked.code
    assert len(calls) == 2
    assert len(served.peers) == 1


async def test_revoked_member_refused_both_ways(
    zone: Zone, now: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    hub = enrol(zone, "HUB-0001", now=now)
    lamp = enrol(zone, "LAMP-0001", now=now)
    zone.revoke(serial_of(lamp), now=now)
    crl = zone.crl(now=now)
    caplog.set_level(logging.INFO, logger="bleprov.tls")
    # The revoked member as client: the server refuses it with the Revoked code.
    async with member_server(hub, lambda: crl) as served:
        with pytest.raises(PeerRefused) as refused:
            await open_member_connection(HOST, served.port, lamp, crl_der=crl)
    assert refused.value.code == Revoked.code
    assert served.peers == []
    assert any("refused" in r.message and "revoked" in r.message for r in caplog.records)
    # The revoked member as server: the client refuses it.
    async with member_server(lamp, lambda: crl) as served:
        with pytest.raises(PeerNotTrusted) as not_trusted:
            await open_member_connection(HOST, served.port, hub, crl_der=crl)
    assert isinstance(not_trusted.value.reason, Revoked)
    assert served.peers == []


async def test_expired_member_refused_both_ways(zone: Zone, now: datetime) -> None:
    hub = enrol(zone, "HUB-0001", now=now)
    stale = enrol(zone, "OLD-0001", now=now - timedelta(days=40), days=30)
    crl = zone.crl(now=now)
    async with member_server(hub, lambda: crl) as served:
        with pytest.raises(PeerRefused):
            await open_member_connection(HOST, served.port, stale, crl_der=crl)
    assert served.peers == []
    async with member_server(stale, lambda: crl) as served:
        with pytest.raises(PeerNotTrusted, match="expired"):
            await open_member_connection(HOST, served.port, hub, crl_der=crl)
    assert served.peers == []


async def test_member_of_another_zone_refused_both_ways(zone: Zone, now: datetime) -> None:
    other = Zone.create("Neighbour", now=now - timedelta(days=1))
    hub = enrol(zone, "HUB-0001", now=now)
    intruder = enrol(other, "INTRUDER-01", now=now)
    async with member_server(hub, lambda: zone.crl(now=now)) as served:
        # Each side refuses the other; which one speaks first is a race.
        with pytest.raises((PeerRefused, PeerNotTrusted)):
            await open_member_connection(HOST, served.port, intruder, crl_der=other.crl(now=now))
    assert served.peers == []
    async with member_server(intruder, lambda: other.crl(now=now)) as served:
        with pytest.raises(PeerNotTrusted):
            await open_member_connection(HOST, served.port, hub, crl_der=zone.crl(now=now))
    assert served.peers == []


async def test_client_with_stale_crl_refuses_the_server(zone: Zone, now: datetime) -> None:
    """The check after the handshake names reasons TLS cannot see, such as a stale CRL."""
    hub = enrol(zone, "HUB-0001", now=now)
    lamp = enrol(zone, "LAMP-0001", now=now)
    stale_crl = zone.crl(now=now - timedelta(days=2))
    async with member_server(hub, lambda: zone.crl(now=now)) as served:
        with pytest.raises(PeerNotTrusted) as not_trusted:
            await open_member_connection(HOST, served.port, lamp, crl_der=stale_crl)
    assert isinstance(not_trusted.value.reason, BadCrl)
    assert served.peers == []


async def test_expect_device_mismatch(zone: Zone, now: datetime) -> None:
    hub = enrol(zone, "HUB-0001", now=now)
    lamp = enrol(zone, "LAMP-0001", now=now)
    crl = zone.crl(now=now)
    async with member_server(hub, lambda: crl) as served:
        with pytest.raises(UnexpectedPeer, match="HUB-0001"):
            await open_member_connection(
                HOST, served.port, lamp, crl_der=crl, expect_device="LAMP-0002"
            )


async def test_server_with_stale_crl_provider_refuses_everyone(zone: Zone, now: datetime) -> None:
    hub = enrol(zone, "HUB-0001", now=now)
    lamp = enrol(zone, "LAMP-0001", now=now)
    stale = zone.crl(now=now - timedelta(days=2))
    async with member_server(hub, lambda: stale) as served:
        with pytest.raises(PeerRefused) as refused:
            await open_member_connection(HOST, served.port, lamp, crl_der=zone.crl(now=now))
    assert refused.value.code == BadCrl.code
    assert served.peers == []


async def test_nothing_listening(zone: Zone, now: datetime) -> None:
    lamp = enrol(zone, "LAMP-0001", now=now)
    with pytest.raises(ConnectFailed):
        await open_member_connection(HOST, 1, lamp, crl_der=zone.crl(now=now))


def test_credentials_key_must_match(zone: Zone, now: datetime) -> None:
    lamp = enrol(zone, "LAMP-0001", now=now)
    other = enrol(zone, "LAMP-0002", now=now)
    with pytest.raises(TlsSetupError):
        MemberCredentials(other.key, lamp.cert_der, lamp.chain_der, lamp.root_der)
    assert "PRIVATE" not in repr(lamp) and "LAMP-0001" in repr(lamp)


def test_expired_certificate_is_what_the_core_says(zone: Zone, now: datetime) -> None:
    """Sanity: the stale member above is expired by the core's rules too."""
    from bleprov.core.zone import verify_member

    stale = enrol(zone, "OLD-0001", now=now - timedelta(days=40), days=30)
    with pytest.raises(CertificateExpired):
        verify_member(
            stale.cert_der, stale.chain_der, zone_root_der=zone.root_der, crl_der=None, now=now
        )
