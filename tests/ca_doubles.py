"""A second zone CA, not :class:`bleprov.core.zone.Zone`: the proof that the hub's CA is
a seam (bleprov.core.ca.CertificateAuthority).

:class:`MemoryCa` is written from the zone certificate profile alone (docs/protocol.md,
"Zone certificates"), with ``cryptography`` directly and none of zone.py's builders: its
own names, sequential serials, its own CSR and renewal checks, state in a dict. What it
must share with our CA is only what members verify: the root names the zone (OU and URI
SAN), the issuing CA sits under it, member certificates carry the device and owner URIs
(the hub role URI on the hub's certificate only), CRLs are signed by the issuing CA with
a CRL number. A step-ca or KMS backend would be the same shape over a network.
"""

from __future__ import annotations

import hmac
import itertools
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AttributeOID, ExtendedKeyUsageOID, NameOID

from bleprov.core.ca import MemberCertificate
from bleprov.core.zone import BadCsr, NotAZoneMember, Revoked, check_key_proof

_SKEW = timedelta(minutes=5)
_ZONE = "urn:bleprov:zone:"
_HUB = "urn:bleprov:hub:"


@dataclass(frozen=True)
class _Issued:
    device_id: str
    owner: str
    public_key: ec.EllipticCurvePublicKey
    not_after: datetime


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def _usage(*, sign_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not sign_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=sign_certificates,
        crl_sign=sign_certificates,
        encipher_only=False,
        decipher_only=False,
    )


class MemoryCa:
    """An in-memory zone CA: two keys, a dict of what it issued, a set of revocations."""

    def __init__(self, *, now: datetime, name: str = "Memory") -> None:
        self._zone_id = secrets.token_hex(8)
        self._serials = itertools.count(0x1000)
        self._issued: dict[int, _Issued] = {}
        self._revoked: dict[int, datetime] = {}
        self._crl_number = 0
        start = now - _SKEW
        self._root_key = ec.generate_private_key(ec.SECP256R1())
        self._issuer_key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"{name} test CA"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, self._zone_id),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{name} root"),
            ]
        )
        root_public = self._root_key.public_key()
        self.root = (
            x509.CertificateBuilder()
            .subject_name(root_name)
            .issuer_name(root_name)
            .public_key(root_public)
            .serial_number(next(self._serials))
            .not_valid_before(start)
            .not_valid_after(start + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_usage(sign_certificates=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_public), critical=False)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(_ZONE + self._zone_id)]
                ),
                critical=False,
            )
            .sign(self._root_key, hashes.SHA256())
        )
        issuer_public = self._issuer_key.public_key()
        self.issuer = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} issuer")]))
            .issuer_name(root_name)
            .public_key(issuer_public)
            .serial_number(next(self._serials))
            .not_valid_before(start)
            .not_valid_after(start + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_usage(sign_certificates=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(issuer_public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root_public), critical=False
            )
            .sign(self._root_key, hashes.SHA256())
        )
        #: Every CA call, in order: what the hub asked of its CA.
        self.calls: list[str] = []

    # -------------------------------------------------------------- the protocol

    @property
    def zone_id(self) -> str:
        return self._zone_id

    @property
    def root_der(self) -> bytes:
        return _der(self.root)

    @property
    def issuer_der(self) -> bytes:
        return _der(self.issuer)

    @property
    def revoked_serials(self) -> frozenset[int]:
        return frozenset(self._revoked)

    @property
    def crl_number(self) -> int:
        return self._crl_number

    def issue_member(
        self,
        csr_der: bytes,
        *,
        device_id: str,
        owner: str,
        expected_binding: bytes,
        now: datetime,
        validity: timedelta = timedelta(days=30),
    ) -> MemberCertificate:
        self.calls.append("issue_member")
        public_key, named = self._csr(csr_der, expected_binding)
        if named != device_id:
            raise BadCsr("CSR names another device")
        return self._member(public_key, device_id, owner, now, validity, hub=False)

    def issue_member_key(
        self,
        point: bytes,
        proof: bytes,
        *,
        device_id: str,
        owner: str,
        expected_binding: bytes,
        now: datetime,
        validity: timedelta = timedelta(days=30),
    ) -> MemberCertificate:
        self.calls.append("issue_member_key")
        public_key = check_key_proof(
            point, proof, device_id=device_id, expected_binding=expected_binding
        )
        return self._member(public_key, device_id, owner, now, validity, hub=False)

    def renew(
        self,
        current_cert_der: bytes,
        csr_der: bytes,
        *,
        now: datetime,
        expected_binding: bytes | None = None,
        validity: timedelta = timedelta(days=30),
    ) -> MemberCertificate:
        self.calls.append("renew")
        current = x509.load_der_x509_certificate(current_cert_der)
        issued = self._issued.get(current.serial_number)
        try:
            current.verify_directly_issued_by(self.issuer)
        except (ValueError, TypeError, InvalidSignature):
            issued = None
        if issued is None or issued.public_key != current.public_key():
            raise NotAZoneMember("not a certificate this CA issued")
        if current.serial_number in self._revoked:
            raise Revoked(f"certificate serial {current.serial_number:x} is revoked")
        if now >= issued.not_after:
            raise NotAZoneMember("the current certificate has expired")
        public_key, named = self._csr(csr_der, expected_binding)
        if named != issued.device_id:
            raise BadCsr("renewal CSR names another device")
        if public_key == issued.public_key:
            raise BadCsr("renewal CSR must carry a new key")
        return self._member(public_key, issued.device_id, issued.owner, now, validity, hub=False)

    def issue_hub(
        self,
        public_key: ec.EllipticCurvePublicKey,
        *,
        now: datetime,
        validity: timedelta = timedelta(days=1),
    ) -> MemberCertificate:
        self.calls.append("issue_hub")
        return self._member(
            public_key, f"HUB-{self._zone_id.upper()}", "hub", now, validity, hub=True
        )

    def issue_user(
        self,
        public_key: ec.EllipticCurvePublicKey,
        name: str,
        now: datetime,
        *,
        validity: timedelta = timedelta(days=365),
    ) -> bytes:
        self.calls.append("issue_user")
        certificate = self._leaf(
            public_key,
            name,
            [f"{_ZONE}{self._zone_id}:user:{name}"],
            [ExtendedKeyUsageOID.CLIENT_AUTH],
            now,
            validity,
        )
        return _der(certificate)

    def revoke(self, serial: int, *, now: datetime) -> None:
        self.calls.append("revoke")
        self._revoked.setdefault(serial, now)

    def crl(self, *, now: datetime) -> bytes:
        self.calls.append("crl")
        self._crl_number += 1
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.issuer.subject)
            .last_update(now - _SKEW)
            .next_update(now + timedelta(hours=6))
            .add_extension(x509.CRLNumber(self._crl_number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._issuer_key.public_key()),
                critical=False,
            )
        )
        for serial, when in sorted(self._revoked.items()):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
            )
        return builder.sign(self._issuer_key, hashes.SHA256()).public_bytes(
            serialization.Encoding.DER
        )

    # ---------------------------------------------------------------- internals

    def _csr(
        self, csr_der: bytes, expected_binding: bytes | None
    ) -> tuple[ec.EllipticCurvePublicKey, str]:
        """The CSR's key and CN, once its signature and session binding check out."""
        try:
            csr = x509.load_der_x509_csr(csr_der)
            signature_ok = csr.is_signature_valid
            public_key = csr.public_key()
            (common_name,) = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            binding = csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value
        except (ValueError, x509.AttributeNotFound):
            raise BadCsr("CSR could not be parsed") from None
        if not signature_ok or not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise BadCsr("CSR signature does not verify")
        if expected_binding is not None and not hmac.compare_digest(
            binding, expected_binding.hex().encode("ascii")
        ):
            raise BadCsr("CSR is not bound to this session")
        return public_key, str(common_name.value)

    def _member(
        self,
        public_key: ec.EllipticCurvePublicKey,
        device_id: str,
        owner: str,
        now: datetime,
        validity: timedelta,
        *,
        hub: bool,
    ) -> MemberCertificate:
        prefix = f"{_ZONE}{self._zone_id}:"
        uris = [f"{prefix}device:{device_id}", f"{prefix}owner:{owner}"]
        if hub:
            uris.append(_HUB + self._zone_id)
        certificate = self._leaf(
            public_key,
            device_id,
            uris,
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            now,
            validity,
        )
        self._issued[certificate.serial_number] = _Issued(
            device_id, owner, public_key, certificate.not_valid_after_utc
        )
        return MemberCertificate(_der(certificate), (self.issuer_der,), self.root_der)

    def _leaf(
        self,
        public_key: ec.EllipticCurvePublicKey,
        common_name: str,
        uris: list[str],
        usages: list[x509.ObjectIdentifier],
        now: datetime,
        validity: timedelta,
    ) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.issuer.subject)
            .public_key(public_key)
            .serial_number(next(self._serials))
            .not_valid_before(now - _SKEW)
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(sign_certificates=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._issuer_key.public_key()),
                critical=False,
            )
            .sign(self._issuer_key, hashes.SHA256())
        )
