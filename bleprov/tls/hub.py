"""The zone hub over validated connections: CRLs for members, and certificate renewal.

The hub is a zone member too, so members reach it with an ordinary validated connection
and a revoked member is refused before it can ask for anything. Its certificate carries the
hub role of its zone (``urn:bleprov:hub:<zone-id>``, :meth:`~bleprov.core.zone.Zone.issue_hub`),
and a member talks CRLs and renewal only to a server whose certificate has that role: any
other member of the zone (whatever its device ID, ``HUB-<ZONE ID>`` included) is refused
at the handshake, before a request, so it can neither hand out an older CRL nor see a CSR.

Ops (docs/protocol.md, "Validated connections"):

- ``crl`` -> ``{"crl": DER}``: a fresh CRL signed by the issuing CA.
- ``renew`` -> op ``nonce``, ``{"nonce": 32 random bytes}``; then ``csr`` with
  ``{"csr": DER}`` -> op ``renewed``, ``{"cert", "chain", "root"}``. The CSR is for a *new*
  key and carries the nonce as its session binding (zone.make_csr), so it was made for
  this connection, after this challenge; the current certificate is the one the member
  authenticated with in the handshake, never one it sends.

Python 3.11's ``ssl`` has no keying-material exporter, which would bind the CSR to the TLS
session itself; the nonce binds it to this connection's state on the hub instead.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from cryptography import x509

from bleprov.core.ca import CertificateAuthority
from bleprov.core.errors import BleprovError, ProtocolError
from bleprov.core.zone import (
    DEFAULT_MEMBER_VALIDITY,
    SESSION_BINDING_SIZE,
    MemberCertificate,
    ZoneError,
    make_csr,
    make_member_key,
    verify_member,
)
from bleprov.tls.connection import (
    BAD_REQUEST,
    DEFAULT_TIMEOUT,
    IDLE_TIMEOUT,
    INTERNAL,
    UNEXPECTED_MESSAGE,
    UNKNOWN_OP,
    BadMessage,
    ConnectionClosed,
    MemberCredentials,
    PeerNotTrusted,
    ReceiveTimeout,
    Request,
    ValidatedConnection,
    ValidatedConnectionError,
    open_member,
    start_member_server,
)
from bleprov.tls.context import TlsSetupError

logger = logging.getLogger(__name__)

OP_CRL: Final = "crl"
OP_RENEW: Final = "renew"
OP_NONCE: Final = "nonce"
OP_CSR: Final = "csr"
OP_RENEWED: Final = "renewed"


class RenewalFailed(ValidatedConnectionError):
    """The hub's answer to a renewal is unusable (wrong device, key, zone or chain)."""


class ZoneAuthority(Protocol):
    """What the hub server needs of the zone CA (the real one sits over the registry)."""

    @property
    def root_der(self) -> bytes: ...

    @property
    def issuer_der(self) -> bytes: ...

    def crl(self, *, now: datetime) -> bytes: ...

    def renew(
        self, current_cert_der: bytes, csr_der: bytes, *, binding: bytes, now: datetime
    ) -> MemberCertificate: ...


class LocalZoneAuthority:
    """A :class:`ZoneAuthority` straight over a CA (no registry): tests, tools."""

    def __init__(
        self, zone: CertificateAuthority, *, validity: timedelta = DEFAULT_MEMBER_VALIDITY
    ) -> None:
        self.zone = zone
        self.validity = validity

    @property
    def root_der(self) -> bytes:
        return self.zone.root_der

    @property
    def issuer_der(self) -> bytes:
        return self.zone.issuer_der

    def crl(self, *, now: datetime) -> bytes:
        return self.zone.crl(now=now)

    def renew(
        self, current_cert_der: bytes, csr_der: bytes, *, binding: bytes, now: datetime
    ) -> MemberCertificate:
        return self.zone.renew(
            current_cert_der,
            csr_der,
            now=now,
            expected_binding=binding,
            validity=self.validity,
        )


def _now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- hub side


async def start_hub_server(
    host: str,
    port: int,
    creds: MemberCredentials | Callable[[], MemberCredentials],
    authority: ZoneAuthority,
) -> asyncio.Server:
    """Serve ``crl`` and ``renew``/``csr`` to the zone's members (module docstring).

    ``creds`` (or what the provider returns, asked for every connection) must be a hub
    certificate of the authority's zone: members refuse any other.
    """
    current = creds if isinstance(creds, MemberCredentials) else creds()
    if current.root_der != authority.root_der or current.chain_der[0] != authority.issuer_der:
        raise TlsSetupError("the hub's credentials are not of the authority's zone")
    try:
        is_hub = verify_member(
            current.cert_der,
            current.chain_der,
            zone_root_der=authority.root_der,
            crl_der=None,
            now=_now(),
        ).is_hub
    except ZoneError as exc:
        raise TlsSetupError(f"the hub's certificate does not verify: {exc}") from None
    if not is_hub:
        raise TlsSetupError("the hub's certificate lacks the hub role (Zone.issue_hub makes one)")

    async def handle(connection: ValidatedConnection) -> None:
        nonce: bytes | None = None  # the one outstanding renewal challenge
        while True:
            try:
                request = await connection.next_request(IDLE_TIMEOUT)
            except (ConnectionClosed, ReceiveTimeout):
                return
            if request.op == OP_CRL:
                nonce = None
                try:
                    crl = authority.crl(now=_now())
                except BleprovError as exc:
                    logger.error("hub: could not sign a CRL: %s", exc)
                    await connection.reply_error(request, INTERNAL, "the hub could not sign a CRL")
                    continue
                await connection.reply(request, {"crl": crl})
            elif request.op == OP_RENEW:
                nonce = secrets.token_bytes(SESSION_BINDING_SIZE)
                await connection.reply(request, {"nonce": nonce}, op=OP_NONCE)
            elif request.op == OP_CSR:
                binding, nonce = nonce, None  # single use, whatever happens next
                await _renew(connection, request, authority, binding)
            else:
                await connection.reply_error(request, UNKNOWN_OP, "unknown op")

    return await start_member_server(
        host,
        port,
        creds,
        crl_provider=lambda: authority.crl(now=_now()),
        handler=handle,
    )


async def _renew(
    connection: ValidatedConnection,
    request: Request,
    authority: ZoneAuthority,
    binding: bytes | None,
) -> None:
    if binding is None:
        await connection.reply_error(request, UNEXPECTED_MESSAGE, "send renew first for a nonce")
        return
    csr = request.body.get("csr")
    if not isinstance(csr, bytes):
        await connection.reply_error(request, BAD_REQUEST, "csr must be DER bytes")
        return
    try:
        issued = authority.renew(connection.peer_cert_der, csr, binding=binding, now=_now())
    except ProtocolError as exc:
        logger.warning("hub: renewal for %s refused: %s", connection.peer_name, exc)
        await connection.reply_error(request, exc.code, str(exc))
        return
    except BleprovError as exc:
        logger.error("hub: renewal for %s failed: %s", connection.peer_name, exc)
        await connection.reply_error(request, INTERNAL, "the hub could not renew")
        return
    logger.info("hub: renewed the certificate of %s", connection.peer_name)
    await connection.reply(
        request,
        {"cert": issued.cert_der, "chain": list(issued.chain_der), "root": issued.root_der},
        op=OP_RENEWED,
    )


# ------------------------------------------------------------------------ member side


async def _open_hub(
    host: str,
    port: int,
    creds: MemberCredentials,
    *,
    expect_device: str | None,
    timeout: float,
) -> tuple[ValidatedConnection, bytes]:
    """Connect to the hub of our zone (the role in its certificate, checked before any
    request) without a CRL, fetch one, then check the hub against it too."""
    connection = await open_member(
        host,
        port,
        creds,
        crl_der=None,
        expect_device=expect_device,
        timeout=timeout,
        expect_hub=True,
    )
    try:
        crl = (await connection.request(OP_CRL, {}, timeout)).get("crl")
        if not isinstance(crl, bytes):
            raise BadMessage("crl reply needs crl (DER bytes)")
        try:
            # Checks the CRL (issuing CA's signature, fresh) and that the hub is not on it.
            verify_member(
                connection.peer_cert_der,
                creds.chain_der,
                zone_root_der=creds.root_der,
                crl_der=crl,
                now=_now(),
            )
        except ZoneError as exc:
            raise PeerNotTrusted(f"hub or its CRL refused: {exc}", reason=exc) from exc
    except BaseException:
        await connection.close()
        raise
    return connection, crl


async def fetch_crl(
    host: str,
    port: int,
    creds: MemberCredentials,
    *,
    expect_device: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> bytes:
    """A fresh CRL from the hub of our zone, checked (the hub's role, the CRL's issuer,
    signature and freshness) before it is returned. Whether it is newer than one held is
    the caller's to check (:func:`~bleprov.core.zone.crl_supersedes`)."""
    connection, crl = await _open_hub(
        host, port, creds, expect_device=expect_device, timeout=timeout
    )
    await connection.close()
    return crl


async def renew_membership(
    host: str,
    port: int,
    creds: MemberCredentials,
    *,
    expect_device: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[MemberCredentials, MemberCertificate]:
    """A new key and certificate from the hub of our zone (refused before any request if
    the server lacks the hub role); the old key is no longer needed after it.

    The caller stores the result (e.g. with the device store's staged commit) and then
    forgets the old key.
    """
    device_id = creds.device_id
    connection, crl = await _open_hub(
        host, port, creds, expect_device=expect_device, timeout=timeout
    )
    async with connection:
        nonce = (await connection.request(OP_RENEW, {}, timeout)).get("nonce")
        if not isinstance(nonce, bytes) or len(nonce) != SESSION_BINDING_SIZE:
            raise BadMessage(f"nonce must be {SESSION_BINDING_SIZE} bytes")
        key = make_member_key()
        csr = make_csr(key, device_id=device_id, session_binding=nonce)
        body = await connection.request(OP_CSR, {"csr": csr}, timeout)
    issued = _issued(body)
    if issued.root_der != creds.root_der:
        raise RenewalFailed("the hub returned another zone root")
    try:
        member = verify_member(
            issued.cert_der,
            issued.chain_der,
            zone_root_der=creds.root_der,
            crl_der=crl,
            now=_now(),
        )
    except ZoneError as exc:
        raise RenewalFailed(f"the renewed certificate does not verify: {exc}") from exc
    if member.device_id != device_id:
        raise RenewalFailed("the renewed certificate names another device")
    if x509.load_der_x509_certificate(issued.cert_der).public_key() != key.public_key():
        raise RenewalFailed("the renewed certificate is not for our new key")
    return MemberCredentials.from_certificate(key, issued), issued


def _issued(body: dict[str, Any]) -> MemberCertificate:
    cert, chain, root = body.get("cert"), body.get("chain"), body.get("root")
    if (
        not isinstance(cert, bytes)
        or not isinstance(root, bytes)
        or not isinstance(chain, list)
        or not 1 <= len(chain) <= 2
        or not all(isinstance(c, bytes) for c in chain)
    ):
        raise BadMessage("renewed reply needs cert, chain (1-2) and root as DER bytes")
    return MemberCertificate(cert, tuple(chain), root)
