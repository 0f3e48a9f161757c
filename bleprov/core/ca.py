"""The zone CA as the hub sees it: one interface, so a zone can be backed by another CA.

:class:`CertificateAuthority` is every CA operation the hub performs: certify a member's
key from a CSR bound to the enrolment session, renew a member for a new key, certify the
hub's own (in-memory) key with the hub role, certify a user, revoke a serial, sign the
current CRL, and the zone root and issuing CA the hub hands to members. It is sans-IO:
certificates, CSRs and CRLs cross it as DER bytes, time is passed in.

:class:`bleprov.core.zone.Zone` is our CA (keys in memory, sealed in zone.bin by the
hub's store). Another CA (step-ca, a cloud KMS) implements this protocol; the hub's
rules (bleprov.service) and its validated-connection server (bleprov.tls) only use it.
Whatever the CA, its certificates follow the zone profile the members verify
(:func:`bleprov.core.zone.verify_member`, docs/protocol.md "Zone certificates"): the
device and owner URIs, the hub role URI only on the hub's certificate.

The CA checks what a certificate claims (the CSR's binding, device, key); *who* may have
one (an admin enrolling, a device still enrolled) is the hub's rule, decided before the
CA is asked (bleprov.service.hub_rules).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # a type only: keys are made and held by the caller
    from bleprov.core.crypto.pki import VerifyingKey


@dataclass(frozen=True)
class MemberCertificate:
    """What a device receives: its certificate, the chain above it (issuing CA), the root."""

    cert_der: bytes
    chain_der: tuple[bytes, ...]
    root_der: bytes


class CertificateAuthority(Protocol):
    """A zone's CA: what the hub issues, renews, revokes and publishes through.

    Refusals are :class:`bleprov.core.zone.ZoneError` (a bad CSR, a revoked or foreign
    certificate: the member is told) or :class:`bleprov.core.zone.ZoneSetupError` (the CA
    cannot issue, e.g. a validity beyond its own).
    """

    @property
    def zone_id(self) -> str:
        """The zone's ID (16 hex digits), the one in every URI its certificates carry."""
        ...

    @property
    def root_der(self) -> bytes:
        """The zone root certificate: what members trust."""
        ...

    @property
    def issuer_der(self) -> bytes:
        """The issuing CA's certificate: the chain sent with every member certificate."""
        ...

    @property
    def revoked_serials(self) -> frozenset[int]:
        """Every serial revoked so far: what the next CRL lists."""
        ...

    @property
    def crl_number(self) -> int:
        """The number of the last CRL signed (0: none yet)."""
        ...

    def issue_member(
        self,
        csr_der: bytes,
        *,
        device_id: str,
        owner: str,
        expected_binding: bytes,
        now: datetime,
        validity: timedelta = ...,
    ) -> MemberCertificate:
        """Certify the key of a CSR that names ``device_id`` (from the verified
        attestation) and carries ``expected_binding`` (the session's channel binding)."""
        ...

    def issue_member_key(
        self,
        point: bytes,
        proof: bytes,
        *,
        device_id: str,
        owner: str,
        expected_binding: bytes,
        now: datetime,
        validity: timedelta = ...,
    ) -> MemberCertificate:
        """Certify the zone key ``point`` (65-byte P-256 point) whose ``proof`` (raw
        ECDSA) signs ``device_id`` and ``expected_binding`` (docs/protocol.md section 12,
        "The zone key"); BadCsr when it does not."""
        ...

    def renew(
        self,
        current_cert_der: bytes,
        csr_der: bytes,
        *,
        now: datetime,
        expected_binding: bytes | None = None,
        validity: timedelta = ...,
    ) -> MemberCertificate:
        """A new certificate for the device and owner of ``current_cert_der`` (this
        zone's, valid, unrevoked), for the *new* key of a CSR naming the same device."""
        ...

    def issue_hub(
        self, public_key: VerifyingKey, *, now: datetime, validity: timedelta = ...
    ) -> MemberCertificate:
        """The hub's own certificate (the hub role in its SAN), for a key the hub made."""
        ...

    def issue_user(
        self,
        public_key: VerifyingKey,
        name: str,
        now: datetime,
        *,
        validity: timedelta = ...,
    ) -> bytes:
        """A DER user certificate (a person who authenticates to the hub, not a device)."""
        ...

    def revoke(self, serial: int, *, now: datetime) -> None:
        """Add ``serial`` to the revocation list; the next :meth:`crl` carries it."""
        ...

    def crl(self, *, now: datetime) -> bytes:
        """A DER CRL of every revoked serial, signed by the issuing CA, numbered anew."""
        ...


def apply_revocations(ca: CertificateAuthority, revoked: Iterable[tuple[int, datetime]]) -> bool:
    """Give the CA every revoked (serial, when) it lacks; whether any was missing.

    The hub's registry is the truth about revocations: a CRL is signed only after this,
    so a revocation recorded by another process (or before a crash) is never left off.
    """
    known = ca.revoked_serials
    missing = [(serial, when) for serial, when in revoked if serial not in known]
    for serial, when in missing:
        ca.revoke(serial, now=when)
    return bool(missing)
