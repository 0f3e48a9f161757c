"""M3: a member takes CRLs and renewals only from its zone's hub, and never an older CRL.

Before: any zone member could answer ``crl`` (and ``renew``) to another member, so a
member revoked since an older CRL could hand that CRL out and get back in until it went
stale (a day); and the device's CRL cache took whatever CRL came last, newer or not.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from bleprov.core.zone import BadCrl, Zone, make_csr, make_member_key
from bleprov.service.device_daemon import CrlCache
from bleprov.tls.connection import (
    ConnectionClosed,
    MemberCredentials,
    ReceiveTimeout,
    ValidatedConnection,
    ValidatedConnectionError,
    start_member_server,
)
from bleprov.tls.hub import fetch_crl, renew_membership

HOST = "127.0.0.1"
NOW = datetime.now(UTC)


def enrol(zone: Zone, device_id: str) -> MemberCredentials:
    """An ordinary member, as enrolment leaves it."""
    binding = bytes(range(32))
    key = make_member_key()
    issued = zone.issue_member(
        make_csr(key, device_id=device_id, session_binding=binding),
        device_id=device_id,
        owner="alice",
        expected_binding=binding,
        now=NOW,
    )
    return MemberCredentials.from_certificate(key, issued)


def serial(creds: MemberCredentials) -> int:
    return x509.load_der_x509_certificate(creds.cert_der).serial_number


@pytest.mark.parametrize("rogue_id", ["ROGUE-0001", "HUB-{zone}"])
async def test_a_member_posing_as_the_hub_gets_no_request(rogue_id: str) -> None:
    zone = Zone.create("Home", now=NOW - timedelta(days=1))
    lamp = enrol(zone, "LAMP-0001")
    rogue = enrol(zone, rogue_id.format(zone=zone.zone_id.upper()))
    old_crl = zone.crl(now=NOW)  # before the rogue was revoked
    zone.revoke(serial(rogue), now=NOW)
    seen: list[str] = []

    async def pose_as_hub(connection: ValidatedConnection) -> None:
        """Answer crl with the old CRL (which does not list the rogue), renew with a nonce."""
        while True:
            try:
                request = await connection.next_request(5)
            except (ConnectionClosed, ReceiveTimeout):
                return
            seen.append(request.op)
            if request.op == "crl":
                await connection.reply(request, {"crl": old_crl})
            elif request.op == "renew":
                await connection.reply(request, {"nonce": bytes(32)}, op="nonce")
            else:
                await connection.reply_error(request, 0x66, "no")

    server = await start_member_server(
        HOST, 0, rogue, crl_provider=lambda: old_crl, handler=pose_as_hub
    )
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ValidatedConnectionError):
            await fetch_crl(HOST, port, lamp)
        with pytest.raises(ValidatedConnectionError):
            await renew_membership(HOST, port, lamp)
        assert seen == []  # refused at the handshake: no CRL taken, no CSR sent
    finally:
        server.close()
        await server.wait_closed()


def _feed(*crls: bytes) -> Iterator[bytes]:
    yield from crls


async def test_the_crl_cache_refuses_an_older_crl() -> None:
    zone = Zone.create("Home", now=NOW - timedelta(days=1))
    gone = enrol(zone, "GONE-0001")
    older = zone.crl(now=NOW)
    zone.revoke(serial(gone), now=NOW)
    # A second signer from the same state (a restored backup) reuses the next number.
    twin = Zone.from_bytes(zone.to_bytes(b"p"), b"p")
    newer = zone.crl(now=NOW)
    feed = _feed(newer, older)

    async def fetch() -> bytes:
        return next(feed)

    cache = CrlCache(fetch)
    await cache.refresh()
    assert cache.current() == newer
    with pytest.raises(BadCrl, match="older"):
        await cache.refresh()  # a replayed CRL from before the revocation
    assert cache.current() == newer  # the cache keeps the newer one

    # The same CRL again changes nothing; another CRL under the same number is refused.
    twin.revoke(serial(enrol(zone, "LAMP-0002")), now=NOW)
    same_number = twin.crl(now=NOW)
    assert twin.crl_number == zone.crl_number
    assert same_number != newer
    feed = _feed(newer, same_number)
    await cache.refresh()
    assert cache.current() == newer
    with pytest.raises(BadCrl, match="number"):
        await cache.refresh()
    assert cache.current() == newer
