"""A hub's zone CA: members enrol with a CSR, connect with mutual TLS, get revoked by CRL.

A zone (webinos' personal zone, a Matter fabric) is a two-level CA kept by the hub: a
*zone root* (pathLen 1) that members trust, and an *issuing CA* (pathLen 0) that signs
member certificates and CRLs. The zone ID is 16 random hex digits, in the root's subject
(OU) and in its URI SAN ``urn:bleprov:zone:<zone-id>``.

Enrolment: the device makes its own P-256 key (:func:`make_member_key`; it never leaves
the device) and a CSR (:func:`make_csr`) that carries the *session binding*: 32 bytes the
caller derives from the secure session that carries the CSR (e.g. from its handshake
hash). The binding travels as the PKCS#9 challengePassword attribute, lowercase hex, so
the CSR signature covers it: a CSR made for another session, or replayed into this one,
does not match, and :meth:`Zone.issue_member` compares it in constant time.

Member certificate profile: subject ``CN=<device-id>``; SAN URIs
``urn:bleprov:zone:<zone-id>:device:<device-id>`` and
``urn:bleprov:zone:<zone-id>:owner:<owner>``; keyUsage digitalSignature (critical; TLS 1.3
only signs with the certificate key, key agreement is ephemeral ECDHE, so no
keyAgreement); extendedKeyUsage serverAuth + clientAuth; basicConstraints cA false
(critical); SKI/AKI; a random 159-bit serial; 30 days by default, at most 90.

The hub's role: the hub's own certificate (:meth:`Zone.issue_hub`) carries a third SAN URI,
``urn:bleprov:hub:<zone-id>``, and :func:`verify_member` reports it as
:attr:`MemberIdentity.is_hub`. Only :meth:`Zone.issue_hub` writes that URI; the member
paths (:meth:`Zone.issue_member`, :meth:`Zone.renew`) build every SAN themselves from the
verified device ID and owner and copy nothing from a CSR, so no device can ask for the
role. "Is this the hub of zone Z" is answered by that URI alone, never by a device ID (a
factory may mint any ID, ``HUB-<ZONE ID>`` included).

Revocation: :meth:`Zone.revoke` records a serial; :meth:`Zone.crl` signs a CRL with the
issuing CA, with a CRL number that increases with every CRL. :func:`verify_member`
refuses a CRL that is past its nextUpdate (a stale CRL may omit recent revocations, as
OpenSSL also refuses it). Renewal (:meth:`Zone.renew`) needs a valid, unrevoked current
certificate and a CSR for a *new* key: every renewal rotates the member's key.

Pure code: bytes in, bytes out, ``now`` passed in. Path validation uses
``cryptography.x509.verification`` (webpki rules, member profile on the leaf); the CRL,
the zone-ID match and the SAN shape are checked here, since that API has no revocation.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import AttributeOID, ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from bleprov.core import cbor
from bleprov.core.ca import CertificateAuthority
from bleprov.core.ca import MemberCertificate as MemberCertificate  # its old home
from bleprov.core.crypto import pki, primitives
from bleprov.core.crypto.loading import (
    PARSE_ERRORS,
    KeyTooDear,
    UnreadableKey,
    load_der_private_key,
)
from bleprov.core.crypto.pki import SigningKey, VerifyingKey
from bleprov.core.errors import BleprovError, ProtocolError
from bleprov.core.identity import (
    CLOCK_SKEW_ALLOWANCE,
    MAX_CERTIFICATE_SIZE,
    InvalidDeviceId,
    certificate_or_none,
    printable,
    stretch_passphrase,
    utc_seconds,
    validate_device_id,
    verification_reason,
)
from bleprov.core.wire_codes import ErrorCode

# ------------------------------------------------------------------------ constants

ZONE_URN_PREFIX: Final = "urn:bleprov:zone:"
#: Zone IDs: 16 lowercase hex digits (64 random bits).
ZONE_ID_PATTERN: Final = re.compile(r"[0-9a-f]{16}", re.ASCII)
#: Owners: 1-64 characters that are safe in a URN and a terminal.
OWNER_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}", re.ASCII)
_MEMBER_URI: Final = re.compile(r"urn:bleprov:zone:([0-9a-f]{16}):(device|owner):(.*)", re.DOTALL)
_USER_URI: Final = re.compile(r"urn:bleprov:zone:([0-9a-f]{16}):user:(.*)", re.DOTALL)
#: The hub's role, in its certificate's SAN (one URI naming the zone it is the hub of).
HUB_URN_PREFIX: Final = "urn:bleprov:hub:"
MAX_ZONE_NAME: Final = 32
SESSION_BINDING_SIZE: Final = 32
#: A P-256 CSR with a CN and the binding is ~300 bytes.
MAX_CSR_SIZE: Final = 2048
#: Largest CRL accepted: ~40 bytes an entry, room for ~1500 revoked members.
MAX_CRL_SIZE: Final = 65536
_MAX_CRL_NUMBER: Final = 1 << 159  # RFC 5280 section 5.2.3: at most 20 octets

DEFAULT_ROOT_VALIDITY: Final = timedelta(days=20 * 365)
DEFAULT_ISSUER_VALIDITY: Final = timedelta(days=10 * 365)
#: Short-lived member certificates: a member renews well before expiry, so a revoked or
#: forgotten device drops out within a month even where CRLs do not reach.
DEFAULT_MEMBER_VALIDITY: Final = timedelta(days=30)
MAX_MEMBER_VALIDITY: Final = timedelta(days=90)
DEFAULT_CRL_LIFETIME: Final = timedelta(days=1)
#: User certificates (people who enrol and revoke) live a year at most.
MAX_USER_VALIDITY: Final = timedelta(days=365)
#: The hub's own certificate: short-lived (its key lives in the hub's memory only, and a
#: hub certificate may factory-reset any member), re-issued by the running hub.
DEFAULT_HUB_VALIDITY: Final = timedelta(days=1)
MAX_HUB_VALIDITY: Final = timedelta(days=7)
#: The hub certificate's owner name (its owner URI; members never own by it).
HUB_OWNER: Final = "hub"

_STORE_LABEL: Final = "bleprov zone"
_STORE_VERSION: Final = 1
_SALT_SIZE: Final = 16
_MAX_KEY_SIZE: Final = 1024
_MAX_STORE_SIZE: Final = 16384 + 64 * 1024

# --------------------------------------------------------------------------- errors


class ZoneSetupError(BleprovError):
    """Local zone material is unusable: wrong passphrase, corrupt store, bad argument."""


class ZoneError(ProtocolError):
    """A peer's zone material was refused."""

    code = ErrorCode.ZONE


class NotAZoneMember(ZoneError):
    """The certificate does not chain to the zone root, or is not a member certificate."""

    code = ErrorCode.NOT_A_ZONE_MEMBER


class Revoked(ZoneError):
    """The certificate's serial is on the zone's CRL (or the hub's revocation list)."""

    code = ErrorCode.REVOKED


class CertificateExpired(ZoneError):
    """The certificate is sound but outside its validity period."""

    code = ErrorCode.CERTIFICATE_EXPIRED


class WrongZone(ZoneError):
    """The certificate names a zone other than the root's."""

    code = ErrorCode.WRONG_ZONE


class BadCsr(ZoneError):
    """The CSR is malformed, badly signed, not P-256, or not bound to this session."""

    code = ErrorCode.BAD_CSR


class BadCrl(ZoneError):
    """The CRL is malformed, not signed by the zone's issuing CA, or stale."""

    code = ErrorCode.BAD_CRL


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class UserIdentity:
    """A verified zone user (a person, not a device); fields read from the certificate."""

    zone_id: str
    name: str
    serial: int


@dataclass(frozen=True)
class MemberIdentity:
    """A verified member; every field is read from the verified certificate.

    ``is_hub``: the certificate carries the hub role of ``zone_id`` (only the zone CA's
    hub-issuing path writes it), which is what makes a member *the* hub of its zone.
    """

    zone_id: str
    device_id: str
    owner: str
    serial: int
    is_hub: bool = False


@dataclass(frozen=True)
class CrlInfo:
    """What a CRL says about itself: its number, and until when it is fresh."""

    number: int
    next_update: datetime


# --------------------------------------------------------------------------- helpers


def _is_p256(key: object) -> bool:
    return pki.is_p256_public_key(key)


def _zone_name(name: str, zone_id: str, role: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, zone_id),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Zone {role}"),
        ]
    )


def _validate_owner(owner: str) -> str:
    if not isinstance(owner, str) or OWNER_PATTERN.fullmatch(owner) is None:
        raise ZoneSetupError("owner must be 1-64 characters of A-Z a-z 0-9 . _ @ - (URN-safe)")
    return owner


def _binding_bytes(binding: bytes) -> bytes:
    if not isinstance(binding, bytes) or len(binding) != SESSION_BINDING_SIZE:
        raise ValueError(f"session binding must be {SESSION_BINDING_SIZE} bytes")
    return binding


def _binding_text(binding: bytes) -> bytes:
    if not isinstance(binding, bytes) or len(binding) != SESSION_BINDING_SIZE:
        raise ValueError(f"session binding must be {SESSION_BINDING_SIZE} bytes")
    return binding.hex().encode("ascii")


def zone_id_of_root(root: x509.Certificate) -> str:
    """The zone ID a zone root names consistently in its subject OU and its URI SAN."""
    try:
        units = root.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
        san = root.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except (x509.ExtensionNotFound, *PARSE_ERRORS):
        raise NotAZoneMember("zone root does not name a zone") from None
    if len(units) != 1 or not isinstance(units[0].value, str):
        raise NotAZoneMember("zone root needs exactly one OU naming the zone")
    zone_id = units[0].value
    if ZONE_ID_PATTERN.fullmatch(zone_id) is None or uris != [ZONE_URN_PREFIX + zone_id]:
        raise NotAZoneMember("zone root OU and SAN do not name the same zone ID")
    return zone_id


def hub_device_id(zone_id: str) -> str:
    """The device ID in the hub's certificate: a display name, never proof of the role."""
    return f"HUB-{zone_id.upper()}"


def member_names(certificate: x509.Certificate) -> tuple[str, str, str]:
    """``(zone_id, device_id, owner)`` from a member certificate's CN and SAN URIs.

    Exactly one device URI and one owner URI, both naming the same zone, and a single CN
    equal to the device ID; anything else raises :class:`NotAZoneMember`. The hub's
    certificate has a third URI, its role (see :func:`member_role`).
    """
    zone_id, device_id, owner, _ = _member_names(certificate)
    return zone_id, device_id, owner


def member_role(certificate: x509.Certificate) -> bool:
    """Whether a member certificate carries the hub role of the zone it names."""
    return _member_names(certificate)[3]


def _member_names(certificate: x509.Certificate) -> tuple[str, str, str, bool]:
    try:
        common_names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = list(san)
    except (x509.ExtensionNotFound, *PARSE_ERRORS):
        raise NotAZoneMember("certificate does not name a zone member") from None
    if any(
        isinstance(n, x509.UniformResourceIdentifier) and _USER_URI.fullmatch(n.value)
        for n in names
    ):
        raise NotAZoneMember("a user certificate is not a device member certificate")
    if not all(isinstance(n, x509.UniformResourceIdentifier) for n in names):
        raise NotAZoneMember("member SAN must hold URIs only")
    uris = [str(n.value) for n in names]
    roles = [u for u in uris if u.startswith(HUB_URN_PREFIX)]
    members = [u for u in uris if not u.startswith(HUB_URN_PREFIX)]
    if len(members) != 2 or len(roles) > 1:
        raise NotAZoneMember("member SAN must be two URIs (device, owner), and the hub role")
    parsed: dict[str, tuple[str, str]] = {}
    for uri in members:
        match = _MEMBER_URI.fullmatch(uri)
        if match is None:
            raise NotAZoneMember("member SAN URI is not a bleprov zone URN")
        zone_id, kind, value = match.groups()
        parsed[kind] = (zone_id, value)
    if set(parsed) != {"device", "owner"}:
        raise NotAZoneMember("member SAN must name one device and one owner")
    (zone_id, device_id), (owner_zone, owner) = parsed["device"], parsed["owner"]
    if zone_id != owner_zone:
        raise NotAZoneMember("member SAN URIs name different zones")
    try:
        validate_device_id(device_id)
        _validate_owner(owner)
    except (InvalidDeviceId, ZoneSetupError):
        raise NotAZoneMember("member SAN names an invalid device ID or owner") from None
    if len(common_names) != 1 or common_names[0].value != device_id:
        raise NotAZoneMember("member CN must equal the device ID of its SAN")
    if roles and not hmac.compare_digest(roles[0].encode(), (HUB_URN_PREFIX + zone_id).encode()):
        raise NotAZoneMember("the hub role names another zone than the member URIs")
    return zone_id, device_id, owner, bool(roles)


def user_names(certificate: x509.Certificate) -> tuple[str, str]:
    """``(zone_id, name)`` from a user certificate: one user URI in the SAN, CN the name.

    A device member certificate (device and owner URIs) raises :class:`NotAZoneMember`,
    as :func:`member_names` refuses a user certificate: neither stands in for the other.
    """
    try:
        common_names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = list(san)
    except (x509.ExtensionNotFound, *PARSE_ERRORS):
        raise NotAZoneMember("certificate does not name a zone user") from None
    if len(names) != 1 or not isinstance(names[0], x509.UniformResourceIdentifier):
        raise NotAZoneMember("user SAN must be exactly one URI")
    match = _USER_URI.fullmatch(str(names[0].value))
    if match is None:
        raise NotAZoneMember("user SAN URI is not a bleprov zone user URN")
    zone_id, name = match.groups()
    if OWNER_PATTERN.fullmatch(name) is None:
        raise NotAZoneMember("user SAN names an invalid user name")
    if len(common_names) != 1 or common_names[0].value != name:
        raise NotAZoneMember("user CN must equal the user name of its SAN")
    return zone_id, name


# ------------------------------------------------------------------------ device side


def make_member_key() -> SigningKey:
    """A device's zone key: P-256, generated on the device and never sent anywhere."""
    return pki.generate_signing_key()


def make_csr(key: SigningKey, *, device_id: str, session_binding: bytes) -> bytes:
    """DER CSR for ``key`` naming ``CN=device_id``, with the binding as challengePassword."""
    if not _is_p256(key.public_key()):
        raise ValueError("zone member keys are P-256")
    validate_device_id(device_id)
    return pki.der(
        pki.sign(
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
            .add_attribute(AttributeOID.CHALLENGE_PASSWORD, _binding_text(session_binding)),
            key,
        )
    )


#: What a zone key's proof of possession signs, before the device ID and the binding
#: (docs/protocol.md section 12, "The zone key").
KEY_PROOF_CONTEXT: Final = b"bleprov zone key v2\x00"
#: A zone key on the air: the uncompressed SEC1 point of a P-256 key.
ZONE_KEY_SIZE: Final = 65


def key_proof_message(device_id: str, session_binding: bytes) -> bytes:
    """``"bleprov zone key v2" 0x00 || u8 len(device_id) || device_id || binding``."""
    validate_device_id(device_id)
    name = device_id.encode("ascii")
    return KEY_PROOF_CONTEXT + bytes([len(name)]) + name + _binding_bytes(session_binding)


def make_key_proof(
    key: SigningKey, *, device_id: str, session_binding: bytes
) -> tuple[bytes, bytes]:
    """The zone key as it travels (65-byte point) and its proof of possession: a raw
    ECDSA signature by that key over :func:`key_proof_message`. Instead of a PKCS#10
    CSR (about 300 bytes): 129 bytes, bound to the session and the device the same way."""
    if not _is_p256(key.public_key()):
        raise ValueError("zone member keys are P-256")
    point = primitives.p256_public_point(key)
    return point, pki.ecdsa_sign_raw(key, key_proof_message(device_id, session_binding))


def check_key_proof(
    point: bytes, proof: bytes, *, device_id: str, expected_binding: bytes
) -> VerifyingKey:
    """The P-256 key ``point`` if ``proof`` is its signature over this device's and this
    session's :func:`key_proof_message`; else BadCsr (made elsewhere, or not on P-256)."""
    if not isinstance(point, bytes) or len(point) != ZONE_KEY_SIZE or point[0] != 0x04:
        raise BadCsr(f"the zone key must be a {ZONE_KEY_SIZE}-byte uncompressed P-256 point")
    if not isinstance(proof, bytes) or len(proof) != pki.RAW_SIGNATURE_SIZE:
        raise BadCsr(f"the proof of possession must be {pki.RAW_SIGNATURE_SIZE} bytes")
    try:
        key = primitives.p256_public_key(point)
    except ValueError:
        raise BadCsr("the zone key is not a point on P-256") from None
    if not pki.ecdsa_verify_raw(key, proof, key_proof_message(device_id, expected_binding)):
        raise BadCsr("the zone key's proof does not verify: not made in this session")
    return key


@dataclass(frozen=True)
class _CheckedCsr:
    public_key: VerifyingKey
    device_id: str
    binding: bytes = field(repr=False)


def _check_csr(csr_der: bytes) -> _CheckedCsr:
    """Parse a CSR: signature, P-256 key, one CN, a well-formed binding; else BadCsr."""
    if not isinstance(csr_der, bytes) or not 0 < len(csr_der) <= MAX_CSR_SIZE:
        raise BadCsr(f"CSR must be 1 to {MAX_CSR_SIZE} bytes of DER")
    try:
        csr = x509.load_der_x509_csr(csr_der)
        signature_ok = csr.is_signature_valid
        public_key = csr.public_key()
        common_names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        binding_text = csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value
    except x509.AttributeNotFound:
        raise BadCsr("CSR carries no session binding") from None
    except (*PARSE_ERRORS, CryptographyDeprecationWarning, x509.InvalidVersion):
        raise BadCsr("CSR could not be parsed") from None
    if not signature_ok:
        raise BadCsr("CSR signature does not verify")
    if not pki.is_ec_public_key(public_key) or not _is_p256(public_key):
        raise BadCsr("CSR key must be P-256 ECDSA")
    if len(common_names) != 1 or not isinstance(common_names[0].value, str):
        raise BadCsr("CSR subject needs exactly one CN")
    try:
        binding = bytes.fromhex(binding_text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise BadCsr("CSR session binding is not hex") from None
    if len(binding) != SESSION_BINDING_SIZE or binding.hex().encode("ascii") != binding_text:
        raise BadCsr(f"CSR session binding must be {SESSION_BINDING_SIZE} bytes, lowercase hex")
    return _CheckedCsr(public_key, common_names[0].value, binding)


# ------------------------------------------------------------------------ verification


def _check_member_key_usage(_policy: Policy, _cert: x509.Certificate, usage: x509.KeyUsage) -> None:
    if not usage.digital_signature or usage.key_cert_sign or usage.crl_sign:
        raise ValueError("member keyUsage must be digitalSignature, not a CA usage")


def _check_member_basic_constraints(
    _policy: Policy, _cert: x509.Certificate, constraints: x509.BasicConstraints
) -> None:
    if constraints.ca:
        raise ValueError("member certificate must not be a CA")


def _check_member_eku(
    _policy: Policy, _cert: x509.Certificate, usage: x509.ExtendedKeyUsage
) -> None:
    wanted = {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    if not wanted <= set(usage):
        raise ValueError("member extendedKeyUsage must include serverAuth and clientAuth")


def _check_user_eku(_policy: Policy, _cert: x509.Certificate, usage: x509.ExtendedKeyUsage) -> None:
    if ExtendedKeyUsageOID.CLIENT_AUTH not in set(usage):
        raise ValueError("user extendedKeyUsage must include clientAuth")


def _verify_path(
    leaf: x509.Certificate,
    presented: list[x509.Certificate],
    root: x509.Certificate,
    when: datetime,
    eku_check: Callable[[Policy, x509.Certificate, x509.ExtendedKeyUsage], None] = (
        _check_member_eku
    ),
) -> None:
    """Webpki path validation, member (or user) profile on the leaf, leaf <- CA <- root."""
    member_policy = (
        ExtensionPolicy.webpki_defaults_ee()
        .require_present(x509.KeyUsage, Criticality.CRITICAL, _check_member_key_usage)
        .require_present(
            x509.BasicConstraints, Criticality.AGNOSTIC, _check_member_basic_constraints
        )
        .require_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, eku_check)
        .require_present(x509.SubjectAlternativeName, Criticality.NON_CRITICAL, None)
    )
    verifier = (
        PolicyBuilder()
        .store(Store([root]))
        .time(when)
        .max_chain_depth(1)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=member_policy)
        .build_client_verifier()
    )
    chain = verifier.verify(leaf, presented).chain
    if len(chain) != 3:
        raise VerificationError("member certificate must be issued by the zone's issuing CA")


def _load_peer_certificate(data: object, error: type[ZoneError], what: str) -> x509.Certificate:
    if not isinstance(data, bytes) or not 0 < len(data) <= MAX_CERTIFICATE_SIZE:
        raise error(f"{what} must be 1 to {MAX_CERTIFICATE_SIZE} bytes of DER")
    certificate = certificate_or_none(data)
    if certificate is None:
        raise error(f"{what} is not a DER certificate")
    return certificate


def _check_crl(crl_der: bytes, issuer: x509.Certificate, serial: int, when: datetime) -> None:
    """CRL signed by ``issuer``, fresh at ``when``, with a CRL number; ``serial`` not on it."""
    if not isinstance(crl_der, bytes) or not 0 < len(crl_der) <= MAX_CRL_SIZE:
        raise BadCrl(f"CRL must be 1 to {MAX_CRL_SIZE} bytes of DER")
    try:
        crl = x509.load_der_x509_crl(crl_der)
        issuer_key = issuer.public_key()
        signature_ok = (
            crl.issuer == issuer.subject
            and pki.is_ec_public_key(issuer_key)
            and crl.is_signature_valid(issuer_key)
        )
        crl.extensions.get_extension_for_class(x509.CRLNumber)
        last_update = crl.last_update_utc
        next_update = crl.next_update_utc
        entry = crl.get_revoked_certificate_by_serial_number(serial)
    except x509.ExtensionNotFound:
        raise BadCrl("CRL has no CRL number") from None
    except (*PARSE_ERRORS, CryptographyDeprecationWarning, InvalidSignature):
        raise BadCrl("CRL could not be parsed") from None
    if not signature_ok:
        raise BadCrl("CRL is not signed by the zone's issuing CA")
    if last_update > when + CLOCK_SKEW_ALLOWANCE:
        raise BadCrl("CRL was issued in the future")
    if next_update is None or when >= next_update:
        raise BadCrl("CRL is stale (past its nextUpdate): fetch a fresh one")
    if entry is not None:
        raise Revoked(f"certificate serial {serial:x} is revoked")


def _verify_member(
    leaf: x509.Certificate,
    presented: list[x509.Certificate],
    root: x509.Certificate,
    when: datetime,
) -> MemberIdentity:
    """Zone match, path and validity of a parsed member certificate (no revocation)."""
    zone_id = zone_id_of_root(root)
    cert_zone, device_id, owner, is_hub = _member_names(leaf)
    if not hmac.compare_digest(cert_zone, zone_id):
        raise WrongZone(f"certificate is for zone {cert_zone}, not {zone_id}")
    _verify_chain(leaf, presented, root, when, _check_member_eku)
    return MemberIdentity(zone_id, device_id, owner, leaf.serial_number, is_hub)


def _verify_chain(
    leaf: x509.Certificate,
    presented: list[x509.Certificate],
    root: x509.Certificate,
    when: datetime,
    eku_check: Callable[[Policy, x509.Certificate, x509.ExtendedKeyUsage], None],
) -> None:
    """:func:`_verify_path`, telling an expired certificate from one that never chained."""
    try:
        _verify_path(leaf, presented, root, when, eku_check)
    except VerificationError as exc:
        expiry = leaf.not_valid_after_utc
        if when > expiry:
            try:
                _verify_path(leaf, presented, root, expiry, eku_check)
            except VerificationError:
                pass
            else:
                raise CertificateExpired(f"certificate expired at {expiry.isoformat()}") from None
        raise NotAZoneMember(f"certificate does not validate: {verification_reason(exc)}") from None
    except PARSE_ERRORS:
        raise NotAZoneMember("certificate chain could not be parsed") from None


def verify_user(
    cert_der: bytes,
    chain_der: Sequence[bytes],
    *,
    zone_root_der: bytes,
    now: datetime,
) -> UserIdentity:
    """Check a zone *user* certificate (see :meth:`Zone.issue_user`) for this zone's root.

    Path (webpki rules, user profile: clientAuth), zone match, validity. Revocation and
    whether the user is still enabled are the hub's to check (registry, revoked serials).
    """
    when = utc_seconds(now)
    root = certificate_or_none(zone_root_der) if isinstance(zone_root_der, bytes) else None
    if root is None:
        raise ZoneSetupError("zone root is not a DER certificate")
    if isinstance(chain_der, bytes | str) or not 1 <= len(chain_der) <= 2:
        raise NotAZoneMember("chain must hold the issuing CA (and optionally the root)")
    leaf = _load_peer_certificate(cert_der, NotAZoneMember, "user certificate")
    presented = [_load_peer_certificate(c, NotAZoneMember, "chain certificate") for c in chain_der]
    zone_id = zone_id_of_root(root)
    cert_zone, name = user_names(leaf)
    if not hmac.compare_digest(cert_zone, zone_id):
        raise WrongZone(f"certificate is for zone {cert_zone}, not {zone_id}")
    _verify_chain(leaf, presented, root, when, _check_user_eku)
    return UserIdentity(zone_id, name, leaf.serial_number)


def verify_member(
    cert_der: bytes,
    chain_der: Sequence[bytes],
    *,
    zone_root_der: bytes,
    crl_der: bytes | None,
    now: datetime,
) -> MemberIdentity:
    """Check a member certificate for the zone of ``zone_root_der``.

    Path (webpki rules with the member profile), the zone ID of the certificate against
    the root's, and, when ``crl_der`` is given, the CRL (signature by the issuing CA,
    freshness, serial). Pass ``crl_der=None`` only where revocation is checked another way.
    Raises a :class:`ZoneError` subclass; a bad ``zone_root_der`` is the caller's
    configuration and raises :class:`ZoneSetupError`.
    """
    when = utc_seconds(now)
    root = certificate_or_none(zone_root_der) if isinstance(zone_root_der, bytes) else None
    if root is None:
        raise ZoneSetupError("zone root is not a DER certificate")
    if isinstance(chain_der, bytes | str) or not 1 <= len(chain_der) <= 2:
        raise NotAZoneMember("chain must hold the issuing CA (and optionally the root)")
    leaf = _load_peer_certificate(cert_der, NotAZoneMember, "member certificate")
    presented = [_load_peer_certificate(c, NotAZoneMember, "chain certificate") for c in chain_der]
    identity = _verify_member(leaf, presented, root, when)
    if crl_der is not None:
        try:
            issuer = next(c for c in presented if c.subject == leaf.issuer)
        except (StopIteration, *PARSE_ERRORS):
            raise NotAZoneMember("chain does not hold the member's issuer") from None
        _check_crl(crl_der, issuer, identity.serial, when)
    return identity


def crl_info(crl_der: bytes) -> CrlInfo:
    """A CRL's number and nextUpdate, parsed only: the signature is checked elsewhere
    (:func:`verify_member` with ``crl_der``). Malformed, or without either: BadCrl."""
    if not isinstance(crl_der, bytes) or not 0 < len(crl_der) <= MAX_CRL_SIZE:
        raise BadCrl(f"CRL must be 1 to {MAX_CRL_SIZE} bytes of DER")
    try:
        crl = x509.load_der_x509_crl(crl_der)
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        next_update = crl.next_update_utc
    except x509.ExtensionNotFound:
        raise BadCrl("CRL has no CRL number") from None
    except (*PARSE_ERRORS, CryptographyDeprecationWarning):
        raise BadCrl("CRL could not be parsed") from None
    if next_update is None:
        raise BadCrl("CRL has no nextUpdate")
    return CrlInfo(number, next_update)


def crl_supersedes(candidate_der: bytes, current_der: bytes | None) -> bool:
    """Whether a CRL just fetched replaces the one held: only a higher CRL number does.

    The same CRL again is no news (False). A lower number is an older CRL, possibly
    replayed to hide a revocation, and a different CRL under the same number is one the
    zone must never sign (RFC 5280 section 5.2.3): both raise :class:`BadCrl`, and the
    caller keeps what it holds. Both CRLs are of the same issuing CA (the caller's).
    """
    candidate = crl_info(candidate_der)
    if current_der is None:
        return True
    current = crl_info(current_der)
    if candidate.number > current.number:
        return True
    if candidate.number < current.number:
        raise BadCrl(f"refused an older CRL (number {candidate.number}, holding {current.number})")
    if hmac.compare_digest(candidate_der, current_der):
        return False
    raise BadCrl(f"refused another CRL under the number {candidate.number} already held")


# ------------------------------------------------------------------------------ zone


class Zone:
    """A hub's zone CA: root, issuing CA, revoked serials and the CRL counter.

    Our :class:`~bleprov.core.ca.CertificateAuthority`: the hub's store seals its keys
    in zone.bin (:meth:`to_bytes`); the hub's rules use it only through that protocol.
    """

    __slots__ = (
        "_crl_number",
        "_issuer_key",
        "_revoked",
        "_root_key",
        "issuer_certificate",
        "root_certificate",
        "zone_id",
    )

    def __init__(
        self,
        *,
        root_key: SigningKey,
        root_certificate: x509.Certificate,
        issuer_key: SigningKey,
        issuer_certificate: x509.Certificate,
        revoked: dict[int, datetime] | None = None,
        crl_number: int = 0,
    ) -> None:
        if (
            root_key.public_key() != root_certificate.public_key()
            or issuer_key.public_key() != issuer_certificate.public_key()
        ):
            raise ZoneSetupError("zone keys do not match their certificates")
        try:
            issuer_certificate.verify_directly_issued_by(root_certificate)
            self.zone_id: str = zone_id_of_root(root_certificate)
        except (ValueError, TypeError, InvalidSignature, NotAZoneMember):
            raise ZoneSetupError("issuing CA is not issued by a zone root") from None
        self.root_certificate: x509.Certificate = root_certificate
        self.issuer_certificate: x509.Certificate = issuer_certificate
        self._root_key = root_key
        self._issuer_key = issuer_key
        self._revoked: dict[int, datetime] = dict(revoked or {})
        self._crl_number = crl_number

    @classmethod
    def create(
        cls,
        name: str,
        *,
        now: datetime,
        root_validity: timedelta = DEFAULT_ROOT_VALIDITY,
        issuer_validity: timedelta = DEFAULT_ISSUER_VALIDITY,
    ) -> Zone:
        """A new zone with a random ID: root (pathLen 1) and issuing CA (pathLen 0)."""
        if (
            not 1 <= len(name) <= MAX_ZONE_NAME
            or printable(name, MAX_ZONE_NAME) != name
            or name != name.strip()
        ):
            raise ZoneSetupError(f"zone name must be 1-{MAX_ZONE_NAME} printable ASCII characters")
        zone_id = secrets.token_hex(8)
        start = utc_seconds(now) - CLOCK_SKEW_ALLOWANCE
        root_key = pki.generate_signing_key()
        root_subject = _zone_name(name, zone_id, "Root")
        root = pki.ca_certificate(
            subject=root_subject,
            key=root_key,
            issuer=None,
            issuer_key=root_key,
            path_length=1,
            not_before=start,
            not_after=start + root_validity,
            alt_name=x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(ZONE_URN_PREFIX + zone_id)]
            ),
        )
        issuer_key = pki.generate_signing_key()
        issuer = pki.ca_certificate(
            subject=_zone_name(name, zone_id, "Issuing CA"),
            key=issuer_key,
            issuer=root,
            issuer_key=root_key,
            path_length=0,
            not_before=start,
            not_after=min(start + issuer_validity, root.not_valid_after_utc),
        )
        return cls(
            root_key=root_key,
            root_certificate=root,
            issuer_key=issuer_key,
            issuer_certificate=issuer,
        )

    @property
    def root_der(self) -> bytes:
        return pki.der(self.root_certificate)

    @property
    def issuer_der(self) -> bytes:
        return pki.der(self.issuer_certificate)

    @property
    def revoked_serials(self) -> frozenset[int]:
        return frozenset(self._revoked)

    @property
    def crl_number(self) -> int:
        """The number of the last CRL signed (0: none yet)."""
        return self._crl_number

    def advance_crl_number(self, published: int) -> None:
        """Make the next CRL's number exceed ``published``.

        For a hub whose CRL was signed by another copy of this zone (another process): a
        CRL number must never repeat nor go back (RFC 5280 section 5.2.3).
        """
        if type(published) is not int or not 0 <= published < _MAX_CRL_NUMBER:
            raise ZoneSetupError("a CRL number is a non-negative integer of at most 20 octets")
        self._crl_number = max(self._crl_number, published)

    # -------------------------------------------------------------------- issuing

    def _leaf(
        self,
        public_key: VerifyingKey,
        *,
        common_name: str,
        uris: list[str],
        usages: list[x509.ObjectIdentifier],
        now: datetime,
        validity: timedelta,
        limit: timedelta,
        what: str,
    ) -> x509.Certificate:
        """An end-entity certificate from the issuing CA: the one builder for members and
        users (CN, URI SANs, digitalSignature, the given EKUs, SKI/AKI, random serial)."""
        if not timedelta(0) < validity <= limit:
            raise ZoneSetupError(f"{what} validity must be positive and at most {limit}")
        start = utc_seconds(now) - CLOCK_SKEW_ALLOWANCE
        end = min(utc_seconds(now) + validity, self.issuer_certificate.not_valid_after_utc)
        if end <= start:
            raise ZoneSetupError(f"{what} validity is empty (issuing CA expired?)")
        return pki.sign(
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.issuer_certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(pki.key_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(pki.authority_key_id(self.issuer_certificate), critical=False),
            self._issuer_key,
        )

    def _issue(
        self,
        public_key: VerifyingKey,
        *,
        device_id: str,
        owner: str,
        now: datetime,
        validity: timedelta,
    ) -> MemberCertificate:
        """A member certificate: the SAN is the device and owner URIs, never the hub role
        (whatever the CSR asked for: nothing but its key is taken from it)."""
        prefix = f"{ZONE_URN_PREFIX}{self.zone_id}:"
        certificate = self._leaf(
            public_key,
            common_name=device_id,
            uris=[f"{prefix}device:{device_id}", f"{prefix}owner:{owner}"],
            usages=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            now=now,
            validity=validity,
            limit=MAX_MEMBER_VALIDITY,
            what="member",
        )
        return MemberCertificate(pki.der(certificate), (self.issuer_der,), self.root_der)

    def issue_hub(
        self,
        public_key: VerifyingKey,
        *,
        now: datetime,
        validity: timedelta = DEFAULT_HUB_VALIDITY,
    ) -> MemberCertificate:
        """The hub's own certificate: a member certificate plus the hub role's SAN URI.

        The one place that writes ``urn:bleprov:hub:<zone-id>``. Called by the hub for a
        key it made itself (no CSR: nothing the role depends on comes from outside).
        """
        if not _is_p256(public_key):
            raise ZoneSetupError("the hub's key is P-256")
        device_id = hub_device_id(self.zone_id)
        prefix = f"{ZONE_URN_PREFIX}{self.zone_id}:"
        certificate = self._leaf(
            public_key,
            common_name=device_id,
            uris=[
                f"{prefix}device:{device_id}",
                f"{prefix}owner:{HUB_OWNER}",
                HUB_URN_PREFIX + self.zone_id,
            ],
            usages=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            now=now,
            validity=validity,
            limit=MAX_HUB_VALIDITY,
            what="hub",
        )
        return MemberCertificate(pki.der(certificate), (self.issuer_der,), self.root_der)

    def issue_member(
        self,
        csr_der: bytes,
        *,
        device_id: str,
        owner: str,
        expected_binding: bytes,
        now: datetime,
        validity: timedelta = DEFAULT_MEMBER_VALIDITY,
    ) -> MemberCertificate:
        """Certify the key of a CSR made in this session by ``device_id``.

        ``device_id`` is what the hub learnt from the device's verified attestation; the
        CSR's CN must name it, and its binding must equal ``expected_binding``.
        """
        validate_device_id(device_id)
        _validate_owner(owner)
        expected = _binding_text(expected_binding)
        csr = _check_csr(csr_der)
        if not hmac.compare_digest(csr.binding.hex().encode("ascii"), expected):
            raise BadCsr("CSR is not bound to this session")
        if csr.device_id != device_id:
            raise BadCsr("CSR names another device")
        return self._issue(
            csr.public_key, device_id=device_id, owner=owner, now=now, validity=validity
        )

    def issue_member_key(
        self,
        point: bytes,
        proof: bytes,
        *,
        device_id: str,
        owner: str,
        expected_binding: bytes,
        now: datetime,
        validity: timedelta = DEFAULT_MEMBER_VALIDITY,
    ) -> MemberCertificate:
        """Certify a zone key the device proved it holds in this session
        (:func:`check_key_proof`): the enrolment's form of :meth:`issue_member`."""
        validate_device_id(device_id)
        _validate_owner(owner)
        key = check_key_proof(point, proof, device_id=device_id, expected_binding=expected_binding)
        return self._issue(key, device_id=device_id, owner=owner, now=now, validity=validity)

    def renew(
        self,
        current_cert_der: bytes,
        csr_der: bytes,
        *,
        now: datetime,
        expected_binding: bytes | None = None,
        validity: timedelta = DEFAULT_MEMBER_VALIDITY,
    ) -> MemberCertificate:
        """A new certificate for the same device and owner, for a *new* key.

        The caller has proven possession of the current certificate's key (the member
        authenticated with it over mutual TLS). The current certificate must be this
        zone's, unexpired and unrevoked; the CSR must name the same device and a key other
        than the current one (renewal rotates keys). Its binding is checked against
        ``expected_binding`` when the caller has one (e.g. a TLS exporter value).
        """
        leaf = _load_peer_certificate(current_cert_der, NotAZoneMember, "current certificate")
        member = _verify_member(
            leaf, [self.issuer_certificate], self.root_certificate, utc_seconds(now)
        )
        if member.serial in self._revoked:
            raise Revoked(f"certificate serial {member.serial:x} is revoked")
        csr = _check_csr(csr_der)
        if expected_binding is not None and not hmac.compare_digest(
            csr.binding.hex().encode("ascii"), _binding_text(expected_binding)
        ):
            raise BadCsr("CSR is not bound to this session")
        if csr.device_id != member.device_id:
            raise BadCsr("renewal CSR names another device")
        if csr.public_key == leaf.public_key():
            raise BadCsr("renewal CSR must carry a new key")
        return self._issue(
            csr.public_key,
            device_id=member.device_id,
            owner=member.owner,
            now=now,
            validity=validity,
        )

    def issue_user(
        self,
        public_key: VerifyingKey,
        name: str,
        now: datetime,
        *,
        validity: timedelta = MAX_USER_VALIDITY,
    ) -> bytes:
        """A DER *user* certificate: a person who authenticates to the hub, not a device.

        Subject ``CN=<name>``, SAN ``urn:bleprov:zone:<zone-id>:user:<name>``, keyUsage
        digitalSignature, extendedKeyUsage clientAuth only (a user never serves TLS), at
        most :data:`MAX_USER_VALIDITY`. :func:`member_names` refuses it as a device.
        """
        if not _is_p256(public_key):
            raise ZoneSetupError("zone user keys are P-256")
        if not isinstance(name, str) or OWNER_PATTERN.fullmatch(name) is None:
            raise ZoneSetupError("user name must be 1-64 characters of A-Z a-z 0-9 . _ @ -")
        certificate = self._leaf(
            public_key,
            common_name=name,
            uris=[f"{ZONE_URN_PREFIX}{self.zone_id}:user:{name}"],
            usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
            now=now,
            validity=validity,
            limit=MAX_USER_VALIDITY,
            what="user",
        )
        return pki.der(certificate)

    # ------------------------------------------------------------------ revocation

    def revoke(self, serial: int, *, now: datetime) -> None:
        """Add ``serial`` to the revocation list; the next :meth:`crl` carries it."""
        if type(serial) is not int or serial <= 0:
            raise ZoneSetupError("serial must be a positive integer")
        self._revoked.setdefault(serial, utc_seconds(now))

    def crl(self, *, now: datetime, next_update: timedelta = DEFAULT_CRL_LIFETIME) -> bytes:
        """A DER CRL of every revoked serial, signed by the issuing CA, numbered anew."""
        if next_update <= timedelta(0):
            raise ZoneSetupError("next_update must be positive")
        when = utc_seconds(now)
        self._crl_number += 1
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.issuer_certificate.subject)
            .last_update(when - CLOCK_SKEW_ALLOWANCE)
            .next_update(when + next_update)
            .add_extension(x509.CRLNumber(self._crl_number), critical=False)
            .add_extension(pki.authority_key_id(self.issuer_certificate), critical=False)
        )
        for serial, revoked_at in sorted(self._revoked.items()):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(revoked_at)
                .build()
            )
        return pki.der(pki.sign(builder, self._issuer_key))

    # ----------------------------------------------------------------- persistence

    def to_bytes(self, passphrase: bytes) -> bytes:
        """CBOR ``["bleprov zone", 1, salt, root key, root, issuer key, issuer, crl number,
        [[serial, revoked at (POSIX seconds)]...]]``.

        Keys are PKCS#8 with BestAvailableEncryption under scrypt(passphrase, salt), as in
        :mod:`bleprov.core.identity`: CA keys are never stored in the clear.
        """
        if not isinstance(passphrase, bytes) or not passphrase:
            raise ZoneSetupError("a zone store needs a non-empty passphrase")
        salt = secrets.token_bytes(_SALT_SIZE)
        stretched = stretch_passphrase(passphrase, salt)

        def pkcs8(key: SigningKey) -> bytes:
            return pki.pkcs8_der(key, stretched)

        return cbor.dumps(
            [
                _STORE_LABEL,
                _STORE_VERSION,
                salt,
                pkcs8(self._root_key),
                self.root_der,
                pkcs8(self._issuer_key),
                self.issuer_der,
                self._crl_number,
                [[s, int(t.timestamp())] for s, t in sorted(self._revoked.items())],
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes, passphrase: bytes) -> Zone:
        """Inverse of :meth:`to_bytes`; any problem raises :class:`ZoneSetupError`."""
        if not isinstance(passphrase, bytes) or not passphrase:
            raise ZoneSetupError("a zone store needs a non-empty passphrase")
        value = cbor.decode_array(data, _MAX_STORE_SIZE, ZoneSetupError, "zone store")
        if (
            len(value) != 9
            or value[0] != _STORE_LABEL
            or type(value[1]) is not int
            or value[1] != _STORE_VERSION
        ):
            raise ZoneSetupError("not a version-1 bleprov zone store")
        _, _, salt, root_key, root, issuer_key, issuer, crl_number, revoked = value
        if not isinstance(salt, bytes) or len(salt) != _SALT_SIZE:
            raise ZoneSetupError(f"salt must be {_SALT_SIZE} bytes")
        if type(crl_number) is not int or crl_number < 0:
            raise ZoneSetupError("CRL number must be a non-negative integer")
        key = stretch_passphrase(passphrase, salt)
        return cls(
            root_key=_load_store_key(root_key, key, "root key"),
            root_certificate=_load_store_certificate(root, "root certificate"),
            issuer_key=_load_store_key(issuer_key, key, "issuer key"),
            issuer_certificate=_load_store_certificate(issuer, "issuer certificate"),
            revoked=_load_revoked(revoked),
            crl_number=crl_number,
        )

    def __repr__(self) -> str:
        return f"Zone(zone_id={self.zone_id!r}, revoked={len(self._revoked)})"


def _load_store_key(data: object, key: bytes, what: str) -> SigningKey:
    if not isinstance(data, bytes) or not 0 < len(data) <= _MAX_KEY_SIZE:
        raise ZoneSetupError(f"{what} must be at most {_MAX_KEY_SIZE} bytes")
    try:
        private_key = load_der_private_key(data, key)
    except KeyTooDear as exc:
        raise ZoneSetupError(f"{what}: {exc}") from None
    except UnreadableKey:
        raise ZoneSetupError(f"{what}: wrong passphrase or corrupt key") from None
    if not pki.is_ec_private_key(private_key) or not _is_p256(private_key.public_key()):
        raise ZoneSetupError(f"{what} is not a P-256 key")
    return private_key


def _load_store_certificate(data: object, what: str) -> x509.Certificate:
    certificate = (
        certificate_or_none(data)
        if isinstance(data, bytes) and 0 < len(data) <= MAX_CERTIFICATE_SIZE
        else None
    )
    if certificate is None:
        raise ZoneSetupError(f"{what} is not a DER certificate")
    return certificate


def _load_revoked(value: object) -> dict[int, datetime]:
    if not isinstance(value, list):
        raise ZoneSetupError("revoked serials must be an array")
    revoked: dict[int, datetime] = {}
    for entry in value:
        if (
            not isinstance(entry, list)
            or len(entry) != 2
            or not all(type(v) is int and v > 0 for v in entry)
        ):
            raise ZoneSetupError("a revoked entry must be [serial, POSIX seconds]")
        try:
            revoked[entry[0]] = datetime.fromtimestamp(entry[1], UTC)
        except (OverflowError, OSError, ValueError):
            raise ZoneSetupError("revocation time out of range") from None
    return revoked


def _zone_is_a_certificate_authority(zone: Zone) -> CertificateAuthority:
    """Never called: mypy checks here that :class:`Zone` implements the CA protocol."""
    return zone
