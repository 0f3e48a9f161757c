"""The hub's side of zone enrolment and renewal, over any secure session.

:class:`ZoneEnroller` runs the certificate step inside an enrolment session: it checks
that the acting user is an admin, asks the device for a CSR bound to this session, has the
zone CA certify it for the device named by the verified attestation, records who enrolled
what for whom, and stages the certificate on the device. The caller commits (with the
Wi-Fi credentials, in the device's one atomic write). Until the caller learns the device's
answer the registry keeps the enrolment *pending*: :meth:`ZoneEnroller.confirm` once the
device committed, :meth:`ZoneEnroller.abandon` (the certificate revoked) once it is known
not to have. An outcome never learnt (the answer lost, the device gone) stays pending,
never revoked blindly: the device may hold that certificate. A pending enrolment is
confirmed when the device later authenticates with its certificate (a renewal) and
superseded by a new enrolment of the same device (docs/protocol.md, "Enrolment
outcome").

:class:`HubAuthority` is the zone CA behind the hub's validated-connection server
(:mod:`bleprov.tls`): members renew and fetch CRLs there. :class:`HubIdentity` is that
server's TLS identity, a hub certificate (the hub role in its SAN) for a key that lives in
the hub's memory only; :func:`run_hub` is ``bleprov zone serve``.

Only an *attested* device gets a zone certificate: its attestation must chain to a
manufacturer root the host trusts (``--trust``). A device that merely claims a
manufacturer (``--allow-unknown-manufacturer``) names itself, and a zone certificate would
certify that unauthenticated name to every member.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

from cryptography import x509

from bleprov.core.identity import AttestationResult
from bleprov.core.membership import ZONE_KEY_BINDING
from bleprov.core.receipt import enrolment_id_of
from bleprov.core.zone import (
    DEFAULT_CRL_LIFETIME,
    DEFAULT_HUB_VALIDITY,
    DEFAULT_MEMBER_VALIDITY,
    HUB_URN_PREFIX,
    MemberCertificate,
    make_member_key,
    member_names,
)
from bleprov.core.zone import hub_device_id as _hub_device_id
from bleprov.service.enrolment import EnrolmentClient
from bleprov.service.hub_rules import EnrolmentRefused as EnrolmentRefused
from bleprov.service.hub_rules import ZoneHub, check_may_enrol, check_may_renew
from bleprov.session import SessionInfo
from bleprov.store.registry import DeviceStatus, User
from bleprov.tls.connection import MemberCredentials
from bleprov.tls.hub import start_hub_server

logger = logging.getLogger(__name__)


class BindingSource(Protocol):
    """What the enroller needs of the session: who it authenticated, its channel binding."""

    info: SessionInfo | None

    def channel_binding(self, label: bytes) -> bytes: ...


def attested(session: BindingSource, device_id: str) -> AttestationResult:
    """The session's attestation, if it proved ``device_id`` under a trusted manufacturer
    root; else :class:`EnrolmentRefused` (nothing is asked of the device)."""
    info = session.info
    if info is None:
        raise EnrolmentRefused("the session is not open: no attestation to enrol on")
    attestation = info.attestation
    if not hmac.compare_digest(attestation.device_id.encode(), device_id.encode()):
        raise EnrolmentRefused("the device ID to enrol is not the one the attestation proved")
    if not attestation.trusted:
        raise EnrolmentRefused(
            f"device {attestation.device_id} did not prove its identity: its attestation "
            "does not chain to a trusted manufacturer root, and a zone certificate would "
            "certify an unauthenticated name; give the factory's root.pem with --trust "
            "(and drop --allow-unknown-manufacturer)"
        )
    return attestation


@dataclass(frozen=True)
class PendingEnrolment:
    """A certificate issued, recorded and staged on the device, not yet committed."""

    device_id: str
    owner: str
    certificate: MemberCertificate
    serial: int
    not_after: datetime
    #: The zone key and its proof of possession, as the device sent them.
    key_bytes: int
    #: The enrolment's ID (hex), bound to its session: what the device's receipt names.
    enrolment_id: str | None = None


class ZoneEnroller:
    """Certificate step of one enrolment, on behalf of an authenticated admin."""

    def __init__(
        self,
        hub: ZoneHub,
        user: User,
        *,
        validity: timedelta = DEFAULT_MEMBER_VALIDITY,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.hub = hub
        self.user = user
        self.validity = validity
        self.clock = clock

    async def stage(
        self,
        client: EnrolmentClient,
        session: BindingSource,
        *,
        device_id: str,
        owner: str,
    ) -> PendingEnrolment:
        """CSR -> certificate -> registry -> staged on the device (not yet committed)."""
        pending = await self.issue(client, session, device_id=device_id, owner=owner)
        try:
            await client.zone_install(pending.certificate)
        except BaseException:
            await self.abandon(pending)
            raise
        return pending

    async def issue(
        self,
        client: EnrolmentClient,
        session: BindingSource,
        *,
        device_id: str,
        owner: str,
    ) -> PendingEnrolment:
        """Zone key (the one the device pushed) -> certificate -> registry, pending: what
        ``zone/install`` then stages on the device, in the host's pipelined flight.

        ``device_id`` must come from the device's verified attestation, never from the
        device's own words in this session; that attestation must chain to a trusted
        manufacturer root (:func:`attested`), whose fingerprint the registry records.
        """
        registry = self.hub.registry
        # One read: the admin and the device (the record's transaction checks them again).
        await asyncio.to_thread(check_may_enrol, registry, self.user, device_id)
        attestation = attested(session, device_id)
        binding = session.channel_binding(ZONE_KEY_BINDING)
        point, proof = await client.zone_key()
        now = self.clock()
        certificate = self.hub.ca.issue_member_key(
            point,
            proof,
            device_id=device_id,
            owner=owner,
            expected_binding=binding,
            now=now,
            validity=self.validity,
        )
        leaf = x509.load_der_x509_certificate(certificate.cert_der)
        pending = PendingEnrolment(
            device_id,
            owner,
            certificate,
            leaf.serial_number,
            leaf.not_valid_after_utc,
            len(point) + len(proof),
            enrolment_id_of(session.channel_binding).hex(),
        )
        # Recorded before the device sees it, pending until the device's commit is known:
        # a certificate in the wild is always on record.
        await asyncio.to_thread(
            registry.record_enrolment,
            device_id,
            owner=owner,
            enrolled_by=self.user,
            serial=pending.serial,
            not_after=pending.not_after,
            manufacturer_root=attestation.manufacturer_root_fingerprint.hex(),
            enrolment_id=pending.enrolment_id,
        )
        return pending

    async def confirm(self, pending: PendingEnrolment, *, how: str = "the device answered") -> None:
        """The device committed the enrolment: the registry counts it enrolled."""
        if pending.enrolment_id is not None:
            await self.confirm_id(pending.device_id, pending.enrolment_id, how=how)

    async def confirm_id(self, device_id: str, enrolment_id: str, *, how: str) -> None:
        """The device said it committed the enrolment ``enrolment_id`` (hex)."""
        await asyncio.to_thread(
            self.hub.registry.confirm_enrolment,
            device_id,
            enrolment_id=enrolment_id,
            actor=self.user,
            how=how,
        )
        logger.info("enrolment of %s confirmed (%s)", device_id, how)

    async def revoke_pending(self, device_id: str, enrolment_id: str) -> bool:
        """The device said it did not commit the enrolment ``enrolment_id`` (hex): revoke
        its certificate if the registry still keeps exactly that enrolment pending (a
        newer one, or a revocation since, is left alone). Whether it revoked."""
        record = await asyncio.to_thread(self.hub.registry.device, device_id)
        if record.status is not DeviceStatus.PENDING or record.enrolment_id != enrolment_id:
            return False
        logger.warning(
            "enrolment %s of %s was not committed: revoking certificate %x",
            enrolment_id,
            device_id,
            record.certificate_serial,
        )
        await asyncio.to_thread(self.hub.revoke, device_id, actor=self.user, now=self.clock())
        return True

    async def abandon(self, pending: PendingEnrolment) -> None:
        """The device did not commit (it said so, or refused the commit): revoke what
        was issued. Never for an outcome not known: that stays pending."""
        logger.warning(
            "enrolment of %s not committed: revoking certificate %x",
            pending.device_id,
            pending.serial,
        )
        await asyncio.to_thread(
            self.hub.revoke, pending.device_id, actor=self.user, now=self.clock()
        )


@dataclass(frozen=True)
class _SignedCrl:
    der: bytes
    revoked: frozenset[int]
    resign_at: datetime


class HubAuthority:
    """The zone CA as the hub's validated-connection server uses it (renewal, CRLs).

    The server asks for a CRL on every connection (and members on every ``crl``), so the
    CRL signed last is served again while the registry's revocations are unchanged and it
    is less than half its life old. Signing saves zone.bin (a scrypt run) and bumps the
    CRL number; a revocation by another process (``bleprov zone revoke``) changes the
    registry and so is in the very next CRL served.
    """

    def __init__(self, hub: ZoneHub, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.hub = hub
        self.clock = clock
        self._crl: _SignedCrl | None = None

    @property
    def root_der(self) -> bytes:
        return self.hub.ca.root_der

    @property
    def issuer_der(self) -> bytes:
        return self.hub.ca.issuer_der

    def crl(self, *, now: datetime) -> bytes:
        revoked = frozenset(r.serial for r in self.hub.registry.revoked_serials())
        cached = self._crl
        if cached is not None and cached.revoked == revoked and now < cached.resign_at:
            return cached.der
        der = self.hub.crl(now=now)
        self._crl = _SignedCrl(der, revoked, now + DEFAULT_CRL_LIFETIME / 2)
        return der

    def renew(
        self, current_cert_der: bytes, csr_der: bytes, *, binding: bytes, now: datetime
    ) -> MemberCertificate:
        """Renew a member that authenticated with ``current_cert_der`` (mutual TLS).

        The registry must still list the device as enrolled; the zone checks the current
        certificate (path, not revoked) and that the CSR is for a new key bound to
        ``binding`` (the hub's nonce on this connection).
        """
        current = x509.load_der_x509_certificate(current_cert_der)
        _, device_id, _ = member_names(current)
        check_may_renew(self.hub.registry, device_id, current.serial_number)
        renewed = self.hub.ca.renew(current_cert_der, csr_der, now=now, expected_binding=binding)
        leaf = x509.load_der_x509_certificate(renewed.cert_der)
        self.hub.registry.record_renewal(device_id, leaf.serial_number, leaf.not_valid_after_utc)
        return renewed


#: ``bleprov zone serve``'s port (docs/raspberry-pi.md: devices run with --hub HOST:8444).
DEFAULT_HUB_PORT: Final = 8444


def hub_device_id(hub: ZoneHub) -> str:
    """The device ID in the hub's certificate: a name for logs, not the hub's proof."""
    return _hub_device_id(hub.ca.zone_id)


def hub_server_credentials(
    hub: ZoneHub, *, now: datetime, validity: timedelta = DEFAULT_HUB_VALIDITY
) -> MemberCredentials:
    """A fresh key and a short-lived *hub* certificate (the hub role in its SAN).

    Never written anywhere: members check it like any member's (zone, path, CRL) and
    talk hub operations (and let it factory-reset them) only for the role it carries.
    """
    key = make_member_key()
    issued = hub.ca.issue_hub(key.public_key(), now=now, validity=validity)
    return MemberCredentials.from_certificate(key, issued)


class HubIdentity:
    """The running hub's TLS identity, re-issued (a new key too) at half its life."""

    def __init__(
        self,
        hub: ZoneHub,
        *,
        validity: timedelta = DEFAULT_HUB_VALIDITY,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.hub = hub
        self.validity = validity
        self.clock = clock
        self._current: MemberCredentials | None = None
        self._reissue_at = datetime.min.replace(tzinfo=UTC)

    def __call__(self) -> MemberCredentials:
        now = self.clock()
        if self._current is None or now >= self._reissue_at:
            self._current = hub_server_credentials(self.hub, now=now, validity=self.validity)
            self._reissue_at = now + self.validity / 2
            serial = x509.load_der_x509_certificate(self._current.cert_der).serial_number
            logger.info("hub: new TLS identity, certificate serial %x", serial)
        return self._current


async def serve_hub(
    hub: ZoneHub,
    host: str,
    port: int,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    identity: HubIdentity | None = None,
) -> asyncio.Server:
    """The hub's validated-connection server: CRLs and renewals for its members."""
    return await start_hub_server(
        host, port, identity or HubIdentity(hub, clock=clock), HubAuthority(hub, clock=clock)
    )


async def run_hub(
    hub: ZoneHub,
    host: str,
    port: int,
    *,
    stop: asyncio.Event,
    emit: Callable[[str], None],
    notify: Callable[[str], object] = lambda _message: None,
) -> None:
    """``bleprov zone serve``: serve until ``stop`` is set, then close cleanly.

    Emits one ``ready:`` line (ending with the listening HOST:PORT) and tells ``notify``
    (systemd's sd_notify) ``READY=1`` once members can connect, ``STOPPING=1`` on the way
    out. Nothing secret is emitted.
    """
    identity = HubIdentity(hub)
    server = await serve_hub(hub, host, port, identity=identity)
    try:
        bound = server.sockets[0].getsockname()
        address = f"{bound[0]}:{bound[1]}"
        root = hashlib.sha256(hub.ca.root_der).hexdigest()
        emit(
            f"tls: hub certificate {hub_device_id(hub)}, role {HUB_URN_PREFIX}"
            f"{hub.ca.zone_id}, key in memory only, re-issued every "
            f"{identity.validity.total_seconds() / 7200:g} h; zone root SHA-256 {root}"
        )
        emit(f"ready: hub of zone {hub.ca.zone_id} serving CRLs and renewals on {address}")
        notify(f"READY=1\nSTATUS=serving zone {hub.ca.zone_id} on {address}")
        await stop.wait()
    finally:
        notify("STOPPING=1")
        emit("stopping")
        server.close()
        # Python 3.12+ waits here for open connections (idle ones last up to 120 s).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await server.wait_closed()
        emit("stopped")
