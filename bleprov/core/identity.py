"""Factory identity of a bleprov device and the attestation that proves it to a host.

A manufacturer runs a two-level CA, as Matter does (PAA -> PAI -> DAC): a self-signed
*attestation root* it distributes to hosts, and an *attestation intermediate* that signs
device certificates. Each device gets a unique ID, a P-256 attestation key with a
certificate naming that ID, and an X25519 static key for the Noise-based ``qr`` mode.

After any out-of-band handshake the device signs the session's handshake hash
(:meth:`DeviceIdentity.sign_handshake`) and sends an :class:`AttestationRecord`: its
certificate, the SHA-256 of its intermediate's DER (protocol v2: the intermediate by
reference, the root never, as the host holds it) and the signature. The host finds the
intermediate in its :class:`IntermediateCache` or fetches it (:func:`encode_chain`), makes
the :class:`Attestation` (:meth:`AttestationRecord.resolve`) and checks the chain to a
trusted root and the signature with :func:`verify_attestation`. The device ID a host
reports is always read from the verified certificate.

Signature input (for the protocol specification)::

    "bleprov attestation v1" 0x00 || u8 len(context) || context
                                  || u8 len(handshake_hash) || handshake_hash

signed with ECDSA P-256 / SHA-256, DER-encoded signature. The length prefixes keep the
context/hash boundary unambiguous; the label keeps these signatures from ever being
valid for any other use of the key.

Pure code: bytes in, bytes out, ``now`` passed in. Chain validation uses
``cryptography.x509.verification`` (webpki rules, customised for the device profile).
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from bleprov.core import cbor
from bleprov.core.crypto import pki
from bleprov.core.crypto.loading import (
    PARSE_ERRORS,
    KeyPassphraseMismatch,
    KeyTooDear,
    UnreadableCertificate,
    UnreadableKey,
    load_der_certificate,
    load_der_private_key,
)
from bleprov.core.crypto.pki import SigningKey
from bleprov.core.crypto.primitives import X25519PrivateKey, generate_x25519_key, scrypt
from bleprov.core.errors import BleprovError, MalformedData, ProtocolError
from bleprov.core.wire_codes import ErrorCode

# ------------------------------------------------------------------------ constants

#: Domain-separation label of the attestation signature (includes the trailing NUL).
SIGNATURE_LABEL: Final = b"bleprov attestation v1\x00"
#: Version of the :class:`AttestationRecord` CBOR array (v1 carried the whole chain).
ATTESTATION_VERSION: Final = 2
#: SHA-256 of the intermediate's DER names it in a record.
INTERMEDIATE_HASH_SIZE: Final = 32
#: Bounds of the attestation message: a P-256 certificate is ~500 bytes; 2 KiB leaves room
#: for longer names without letting a peer make us parse megabytes.
MAX_CERTIFICATE_SIZE: Final = 2048
MAX_CHAIN_LENGTH: Final = 3
MIN_SIGNATURE_SIZE: Final = 8
#: Largest DER ECDSA P-256 signature: SEQUENCE of two 33-byte INTEGERs.
MAX_SIGNATURE_SIZE: Final = 72
MAX_ATTESTATION_SIZE: Final = MAX_CERTIFICATE_SIZE + 3 + INTERMEDIATE_HASH_SIZE + 128
#: A fetched chain: the intermediate, and the root if asked for.
MAX_FETCHED_CHAIN: Final = 2
MAX_CHAIN_SIZE: Final = MAX_FETCHED_CHAIN * (MAX_CERTIFICATE_SIZE + 3) + 1
#: Intermediates a host keeps (a few per manufacturer it trusts).
INTERMEDIATE_CACHE_LIMIT: Final = 64
MAX_CACHE_SIZE: Final = INTERMEDIATE_CACHE_LIMIT * (MAX_CERTIFICATE_SIZE + 3) + 64
_INTERMEDIATES_LABEL: Final = "bleprov intermediates"
MAX_CONTEXT_SIZE: Final = 255
MIN_HANDSHAKE_HASH_SIZE: Final = 32
MAX_HANDSHAKE_HASH_SIZE: Final = 64

#: Device IDs: 4 to 32 characters of ``0-9 A-Z`` and inner hyphens. Safe in an X.500
#: PrintableString, a URN, a file name and a terminal; generated IDs are 16 hex digits.
DEVICE_ID_PATTERN: Final = re.compile(r"[0-9A-Z][0-9A-Z-]{2,30}[0-9A-Z]", re.ASCII)
DEVICE_URN_PREFIX: Final = "urn:bleprov:device:"
MAX_MANUFACTURER_NAME: Final = 32

#: Validity. A device certificate cannot be renewed in the field (the device has no channel
#: to its factory), so it must outlive shelf time plus service life; Matter DACs are
#: commonly valid for the product's life. Each issuer outlives what it signs, and a device
#: certificate is capped at its intermediate's end (path validation checks every link).
DEFAULT_ROOT_VALIDITY: Final = timedelta(days=40 * 365)
DEFAULT_INTERMEDIATE_VALIDITY: Final = timedelta(days=30 * 365)
DEFAULT_DEVICE_VALIDITY: Final = timedelta(days=25 * 365)
#: notBefore is backdated this much so a host whose clock runs slow still accepts a
#: certificate issued minutes ago.
CLOCK_SKEW_ALLOWANCE: Final = timedelta(hours=1)

#: Stored keys of a manufacturer are guarded by an operator passphrase; PKCS#8
#: BestAvailableEncryption alone is PBKDF2 with 2048 iterations, so the passphrase is
#: first stretched with scrypt (N=2^15, r=8, p=1: 32 MiB, ~0.1 s).
_SCRYPT_N: Final = 1 << 15
_SCRYPT_R: Final = 8
_SCRYPT_P: Final = 1
_SALT_SIZE: Final = 16

_IDENTITY_LABEL: Final = "bleprov device identity"
_MANUFACTURER_LABEL: Final = "bleprov manufacturer"
_STORE_VERSION: Final = 1
_MAX_STORE_SIZE: Final = 16384
_MAX_KEY_SIZE: Final = 1024

# --------------------------------------------------------------------------- errors


class IdentityError(BleprovError):
    """Local identity material is unusable: wrong passphrase, corrupt store, bad argument."""


class InvalidDeviceId(IdentityError):
    """A device ID does not match :data:`DEVICE_ID_PATTERN`."""


class AttestationError(ProtocolError):
    """The device failed to prove its identity: broken chain, expiry, bad signature."""

    code = ErrorCode.ATTESTATION


class UnknownManufacturer(AttestationError):
    """The chain does not reach a trusted root: it ends at a sound root of its own (REFUSE
    policy) or at an issuer that is neither trusted nor presented (any policy)."""

    code = ErrorCode.UNKNOWN_MANUFACTURER


class MalformedAttestation(AttestationError, MalformedData):
    """The attestation message could not be decoded."""

    code = ErrorCode.MALFORMED_ATTESTATION


# --------------------------------------------------------------------------- helpers


#: cryptography parses names and extensions on first access; these are what a hostile
#: certificate that loaded can still raise there.
def utc_seconds(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now.astimezone(UTC).replace(microsecond=0)


def validate_device_id(device_id: str) -> str:
    """Return ``device_id`` if it is well-formed, else raise :class:`InvalidDeviceId`."""
    if not isinstance(device_id, str) or DEVICE_ID_PATTERN.fullmatch(device_id) is None:
        raise InvalidDeviceId("device ID must be 4-32 characters of 0-9, A-Z and inner '-'")
    return device_id


def new_device_id() -> str:
    """A fresh random device ID: 16 uppercase hex digits (64 random bits)."""
    return secrets.token_hex(8).upper()


def signed_message(handshake_hash: bytes, context: bytes) -> bytes:
    """The exact bytes an attestation signature covers (see the module docstring)."""
    if not 1 <= len(context) <= MAX_CONTEXT_SIZE:
        raise ValueError(f"context must be 1 to {MAX_CONTEXT_SIZE} bytes")
    if not MIN_HANDSHAKE_HASH_SIZE <= len(handshake_hash) <= MAX_HANDSHAKE_HASH_SIZE:
        raise ValueError(
            f"handshake hash must be {MIN_HANDSHAKE_HASH_SIZE} to {MAX_HANDSHAKE_HASH_SIZE} bytes"
        )
    return b"".join(
        (
            SIGNATURE_LABEL,
            bytes([len(context)]),
            context,
            bytes([len(handshake_hash)]),
            handshake_hash,
        )
    )


def printable(text: str, limit: int = 64) -> str:
    """Peer-chosen text made safe for a log line or a dialog."""
    return "".join(c if " " <= c <= "~" else "?" for c in text[:limit])


def _organization(certificate: x509.Certificate) -> str:
    try:
        values = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    except PARSE_ERRORS:
        return ""
    value = values[0].value if len(values) == 1 else ""
    return printable(value) if isinstance(value, str) else ""


def _load_key(data: object, passphrase: bytes | None, what: str) -> object:
    if not isinstance(data, bytes) or not 0 < len(data) <= _MAX_KEY_SIZE:
        raise IdentityError(f"{what} must be a byte string of at most {_MAX_KEY_SIZE} bytes")
    try:
        return load_der_private_key(data, passphrase)
    except KeyPassphraseMismatch:
        raise IdentityError(
            f"{what}: passphrase given for a plain key, or missing for an encrypted one"
        ) from None
    except KeyTooDear as exc:
        raise IdentityError(f"{what}: {exc}") from None
    except UnreadableKey:
        raise IdentityError(f"{what}: wrong passphrase or corrupt key") from None


def _load_ec_key(data: object, passphrase: bytes | None, what: str) -> SigningKey:
    key = _load_key(data, passphrase, what)
    if not pki.is_p256_private_key(key):
        raise IdentityError(f"{what} is not a P-256 key")
    return key


def _load_stored_certificate(data: object, what: str) -> x509.Certificate:
    if not isinstance(data, bytes) or not 0 < len(data) <= MAX_CERTIFICATE_SIZE:
        raise IdentityError(f"{what} must be at most {MAX_CERTIFICATE_SIZE} bytes of DER")
    certificate = certificate_or_none(data)
    if certificate is None:
        raise IdentityError(f"{what} is not a DER certificate")
    return certificate


def certificate_or_none(data: bytes) -> x509.Certificate | None:
    """A DER certificate whose key, serial and dates parse (:func:`load_der_certificate`),
    or None for anything cryptography will not accept cleanly."""
    try:
        return load_der_certificate(data)
    except UnreadableCertificate:
        return None


def _same_public_key(key: SigningKey, certificate: x509.Certificate) -> bool:
    return key.public_key() == certificate.public_key()


def _is_int(value: object, expected: int) -> bool:
    """Exactly the integer ``expected``: not True, not 1.0."""
    return type(value) is int and value == expected


def _passphrase(passphrase: bytes | None) -> bytes | None:
    if passphrase is not None and (not isinstance(passphrase, bytes) or not passphrase):
        raise IdentityError("passphrase must be non-empty bytes or None")
    return passphrase


# ---------------------------------------------------------------------- attestation


@dataclass(frozen=True)
class Attestation:
    """A device's attestation with its chain resolved: what :func:`verify_attestation`
    checks. ``chain`` holds the certificates above the device's, issuer first (the
    intermediate, then the root if the host asked for it)."""

    device_certificate: bytes
    chain: tuple[bytes, ...]
    signature: bytes

    def record(self) -> AttestationRecord:
        """What travels: the intermediate by its hash, no root."""
        return AttestationRecord(
            self.device_certificate, intermediate_hash(self.chain[0]), self.signature
        )


def intermediate_hash(der: bytes) -> bytes:
    """SHA-256 of a certificate's DER: how a record names the intermediate."""
    return hashlib.sha256(der).digest()


@dataclass(frozen=True)
class AttestationRecord:
    """The ATTESTATION record's body: ``[2, device_certificate, intermediate_hash,
    signature]`` in deterministic CBOR, the certificate DER, the hash SHA-256 of the
    intermediate's DER, the signature DER ECDSA."""

    device_certificate: bytes
    intermediate_hash: bytes
    signature: bytes

    def encode(self) -> bytes:
        return cbor.dumps(
            [ATTESTATION_VERSION, self.device_certificate, self.intermediate_hash, self.signature]
        )

    @classmethod
    def decode(cls, raw: bytes) -> AttestationRecord:
        """Parse a record; anything malformed raises :class:`MalformedAttestation`."""
        value = cbor.decode_array(raw, MAX_ATTESTATION_SIZE, MalformedAttestation, "attestation")
        if len(value) != 4 or not _is_int(value[0], ATTESTATION_VERSION):
            raise MalformedAttestation(
                "attestation must be [2, certificate, intermediate hash, signature]"
            )
        _, leaf, digest, signature = value
        if not isinstance(digest, bytes) or len(digest) != INTERMEDIATE_HASH_SIZE:
            raise MalformedAttestation(
                f"intermediate hash must be a byte string of {INTERMEDIATE_HASH_SIZE} bytes"
            )
        if (
            not isinstance(signature, bytes)
            or not MIN_SIGNATURE_SIZE <= len(signature) <= MAX_SIGNATURE_SIZE
        ):
            raise MalformedAttestation(
                f"signature must be {MIN_SIGNATURE_SIZE} to {MAX_SIGNATURE_SIZE} bytes"
            )
        return cls(_certificate_bytes(leaf), digest, signature)

    def resolve(self, chain: Sequence[bytes]) -> Attestation:
        """The attestation with ``chain`` (intermediate first) above the device's
        certificate; an intermediate other than the one the record names is refused."""
        if not chain or intermediate_hash(chain[0]) != self.intermediate_hash:
            raise AttestationError("the intermediate does not match the attestation's hash")
        return Attestation(self.device_certificate, tuple(chain), self.signature)


class ChainRequest(enum.IntEnum):
    """The body of a host's CHAIN_REQUEST record: what it asks the device for."""

    INTERMEDIATE = 1
    #: The intermediate and the root: for a host that would show (and pin) an unknown
    #: manufacturer's root fingerprint (TrustPolicy.WARN).
    INTERMEDIATE_AND_ROOT = 2


def encode_chain(certificates: Sequence[bytes]) -> bytes:
    """A CHAIN record's body: ``[+ bstr]``, the intermediate first."""
    return cbor.dumps(list(certificates))


def decode_chain(raw: bytes) -> tuple[bytes, ...]:
    """Parse a CHAIN record's body: 1 or 2 DER certificates."""
    value = cbor.decode_array(raw, MAX_CHAIN_SIZE, MalformedAttestation, "chain")
    if not 1 <= len(value) <= MAX_FETCHED_CHAIN:
        raise MalformedAttestation(f"chain must hold 1 to {MAX_FETCHED_CHAIN} certificates")
    return tuple(_certificate_bytes(c) for c in value)


class IntermediateCache:
    """Intermediates a host validated against its trusted roots, by SHA-256 of their DER:
    the second device of a manufacturer costs no fetch. An entry is a lookup aid, not a
    trust anchor: every use validates it again against the roots trusted then, so it may
    also be seeded with intermediates a manufacturer publishes beside its root."""

    def __init__(
        self,
        intermediates: Iterable[bytes] = (),
        *,
        limit: int = INTERMEDIATE_CACHE_LIMIT,
        on_change: Callable[[IntermediateCache], None] | None = None,
    ) -> None:
        self._entries: dict[bytes, bytes] = {}
        self._limit = limit
        #: Called after an entry is added or dropped: how a host keeps the cache in its
        #: trust store (an adapter's callback; this module does no I/O).
        self.on_change: Callable[[IntermediateCache], None] | None = None
        for der in intermediates:
            self.add(der)
        self.on_change = on_change

    def to_bytes(self) -> bytes:
        """CBOR ``["bleprov intermediates", 1, [der...]]``, oldest first."""
        return cbor.dumps([_INTERMEDIATES_LABEL, _STORE_VERSION, list(self._entries.values())])

    @classmethod
    def from_bytes(cls, raw: bytes) -> IntermediateCache:
        """Inverse of :meth:`to_bytes`; anything else raises :class:`IdentityError`."""
        value = cbor.decode_array(raw, MAX_CACHE_SIZE, IdentityError, "intermediate cache")
        if (
            len(value) != 3
            or value[0] != _INTERMEDIATES_LABEL
            or not _is_int(value[1], _STORE_VERSION)
            or not isinstance(value[2], list)
            or not all(
                isinstance(d, bytes) and 0 < len(d) <= MAX_CERTIFICATE_SIZE for d in value[2]
            )
        ):
            raise IdentityError("not a version-1 intermediate cache")
        return cls(value[2])

    def get(self, digest: bytes) -> bytes | None:
        return self._entries.get(digest)

    def add(self, der: bytes) -> None:
        """Keep ``der`` (validated by the caller); the oldest entry goes past the limit."""
        digest = intermediate_hash(der)
        known = digest in self._entries
        self._entries.pop(digest, None)
        self._entries[digest] = der
        while len(self._entries) > self._limit:
            del self._entries[next(iter(self._entries))]
        if not known:
            self._changed()

    def discard(self, digest: bytes) -> None:
        if self._entries.pop(digest, None) is not None:
            self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, digest: object) -> bool:
        return digest in self._entries


def _certificate_bytes(value: object) -> bytes:
    if not isinstance(value, bytes) or not 1 <= len(value) <= MAX_CERTIFICATE_SIZE:
        raise MalformedAttestation(
            f"certificate must be a byte string of 1 to {MAX_CERTIFICATE_SIZE} bytes"
        )
    return value


# -------------------------------------------------------------------- device identity


class DeviceIdentity:
    """A device's factory identity: ID, attestation key and chain, Noise static key.

    ``chain`` holds the certificates above the device certificate, issuer first, ending
    with the manufacturer root. The attestation names the intermediate by hash; the device
    sends it (and the root) only when a host asks (:meth:`chain_for`): a host that does
    not know the manufacturer may ask for the root to show (and pin) its fingerprint.
    """

    __slots__ = ("_attestation_key", "_noise_static_key", "certificate", "chain", "device_id")

    def __init__(
        self,
        *,
        attestation_key: SigningKey,
        certificate: x509.Certificate,
        chain: Sequence[x509.Certificate],
        noise_static_key: X25519PrivateKey,
    ) -> None:
        if not pki.is_p256_private_key(attestation_key):
            raise IdentityError("attestation key must be P-256")
        if not _same_public_key(attestation_key, certificate):
            raise IdentityError("attestation key does not match the device certificate")
        if not 1 <= len(chain) <= MAX_CHAIN_LENGTH:
            raise IdentityError(f"chain must hold 1 to {MAX_CHAIN_LENGTH} certificates")
        try:
            self.device_id: str = device_id_of(certificate)
        except AttestationError as exc:
            raise IdentityError(f"device certificate: {exc}") from None
        self.certificate: x509.Certificate = certificate
        self.chain: tuple[x509.Certificate, ...] = tuple(chain)
        self._attestation_key = attestation_key
        self._noise_static_key = noise_static_key

    @property
    def attestation_key(self) -> SigningKey:
        return self._attestation_key

    @property
    def noise_static_key(self) -> X25519PrivateKey:
        return self._noise_static_key

    @property
    def noise_static_public_key(self) -> bytes:
        """The raw 32-byte X25519 public key printed in the QR label."""
        return self._noise_static_key.public_key().public_bytes_raw()

    def sign_handshake(self, handshake_hash: bytes, *, context: bytes) -> bytes:
        """DER ECDSA P-256/SHA-256 signature over :func:`signed_message`."""
        return pki.ecdsa_sign(self._attestation_key, signed_message(handshake_hash, context))

    def attestation(self, handshake_hash: bytes, *, context: bytes) -> Attestation:
        return Attestation(
            pki.der(self.certificate),
            tuple(pki.der(c) for c in self.chain),
            self.sign_handshake(handshake_hash, context=context),
        )

    def attest(self, handshake_hash: bytes, *, context: bytes) -> bytes:
        """The encoded :class:`AttestationRecord` for this session."""
        return self.attestation(handshake_hash, context=context).record().encode()

    def chain_for(self, request: ChainRequest) -> bytes:
        """A CHAIN record's body: the intermediate, and the root if asked for."""
        count = 1 if request is ChainRequest.INTERMEDIATE else MAX_FETCHED_CHAIN
        return encode_chain([pki.der(c) for c in self.chain[:count]])

    def to_bytes(self, passphrase: bytes | None) -> bytes:
        """CBOR ``["bleprov device identity", 1, attestation key, noise key, cert, [chain]]``.

        Keys are PKCS#8 DER, encrypted with BestAvailableEncryption when a passphrase is
        given (PBKDF2 with few iterations: pass a high-entropy key, not a human password).
        """
        passphrase = _passphrase(passphrase)
        return cbor.dumps(
            [
                _IDENTITY_LABEL,
                _STORE_VERSION,
                pki.pkcs8_der(self._attestation_key, passphrase),
                pki.pkcs8_der(self._noise_static_key, passphrase),
                pki.der(self.certificate),
                [pki.der(c) for c in self.chain],
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes, passphrase: bytes | None) -> DeviceIdentity:
        """Inverse of :meth:`to_bytes`; any problem raises :class:`IdentityError`."""
        passphrase = _passphrase(passphrase)
        value = cbor.decode_array(data, _MAX_STORE_SIZE, IdentityError, "device identity")
        if len(value) != 6 or value[0] != _IDENTITY_LABEL or not _is_int(value[1], _STORE_VERSION):
            raise IdentityError("not a version-1 bleprov device identity")
        _, _, attestation_der, noise_der, certificate_der, chain_der = value
        if not isinstance(chain_der, list):
            raise IdentityError("chain must be an array")
        noise_key = _load_key(noise_der, passphrase, "noise static key")
        if not isinstance(noise_key, X25519PrivateKey):
            raise IdentityError("noise static key is not an X25519 key")
        return cls(
            attestation_key=_load_ec_key(attestation_der, passphrase, "attestation key"),
            certificate=_load_stored_certificate(certificate_der, "device certificate"),
            chain=[_load_stored_certificate(c, "chain certificate") for c in chain_der],
            noise_static_key=noise_key,
        )

    def __repr__(self) -> str:
        return (
            f"DeviceIdentity(device_id={self.device_id!r}, "
            f"noise_static_public_key={self.noise_static_public_key.hex()!r})"
        )


# ----------------------------------------------------------------------- manufacturer


class Manufacturer:
    """A manufacturer's attestation CA: root (pathLen 1) and intermediate (pathLen 0)."""

    __slots__ = (
        "_intermediate_key",
        "_root_key",
        "intermediate_certificate",
        "name",
        "root_certificate",
    )

    def __init__(
        self,
        *,
        root_key: SigningKey,
        root_certificate: x509.Certificate,
        intermediate_key: SigningKey,
        intermediate_certificate: x509.Certificate,
    ) -> None:
        if not _same_public_key(root_key, root_certificate) or not _same_public_key(
            intermediate_key, intermediate_certificate
        ):
            raise IdentityError("manufacturer keys do not match their certificates")
        try:
            intermediate_certificate.verify_directly_issued_by(root_certificate)
        except (ValueError, TypeError, InvalidSignature):
            raise IdentityError("intermediate is not issued by the root") from None
        self.name: str = _organization(root_certificate)
        self.root_certificate: x509.Certificate = root_certificate
        self.intermediate_certificate: x509.Certificate = intermediate_certificate
        self._root_key = root_key
        self._intermediate_key = intermediate_key

    @classmethod
    def create(
        cls,
        name: str,
        *,
        now: datetime,
        root_validity: timedelta = DEFAULT_ROOT_VALIDITY,
        intermediate_validity: timedelta = DEFAULT_INTERMEDIATE_VALIDITY,
    ) -> Manufacturer:
        """Make a new root and intermediate; ``name`` goes in both subjects' O and CN."""
        if (
            not 1 <= len(name) <= MAX_MANUFACTURER_NAME
            or printable(name, MAX_MANUFACTURER_NAME) != name
            or name != name.strip()
        ):
            raise IdentityError(
                f"manufacturer name must be 1-{MAX_MANUFACTURER_NAME} printable ASCII characters"
            )
        start = utc_seconds(now) - CLOCK_SKEW_ALLOWANCE
        root_key = pki.generate_signing_key()
        root = pki.ca_certificate(
            subject=_ca_name(name, "Attestation Root"),
            key=root_key,
            issuer=None,
            issuer_key=root_key,
            path_length=1,
            not_before=start,
            not_after=start + root_validity,
        )
        intermediate_key = pki.generate_signing_key()
        intermediate = pki.ca_certificate(
            subject=_ca_name(name, "Attestation Intermediate"),
            key=intermediate_key,
            issuer=root,
            issuer_key=root_key,
            path_length=0,
            not_before=start,
            not_after=min(start + intermediate_validity, root.not_valid_after_utc),
        )
        return cls(
            root_key=root_key,
            root_certificate=root,
            intermediate_key=intermediate_key,
            intermediate_certificate=intermediate,
        )

    @property
    def root_fingerprint(self) -> bytes:
        """SHA-256 of the root certificate's DER, as :class:`AttestationResult` reports it."""
        return pki.fingerprint(self.root_certificate)

    def root_certificate_pem(self) -> bytes:
        """The root certificate to install on hosts (their ``trusted_roots``)."""
        return pki.certificate_pem(self.root_certificate)

    def issue_device(
        self,
        device_id: str | None = None,
        *,
        now: datetime,
        validity: timedelta = DEFAULT_DEVICE_VALIDITY,
    ) -> DeviceIdentity:
        """Generate a device's keys and certificate; a random ID unless one is given."""
        device_id = new_device_id() if device_id is None else validate_device_id(device_id)
        start = utc_seconds(now) - CLOCK_SKEW_ALLOWANCE
        end = min(utc_seconds(now) + validity, self.intermediate_certificate.not_valid_after_utc)
        if end <= start:
            raise IdentityError("device certificate validity is empty (intermediate expired?)")
        key = pki.generate_signing_key()
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.name),
                x509.NameAttribute(NameOID.COMMON_NAME, device_id),
                x509.NameAttribute(NameOID.SERIAL_NUMBER, device_id),
            ]
        )
        certificate = pki.sign(
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.intermediate_certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(pki.key_usage(digital_signature=True), critical=True)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(DEVICE_URN_PREFIX + device_id)]
                ),
                critical=False,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(pki.authority_key_id(self.intermediate_certificate), critical=False),
            self._intermediate_key,
        )
        return DeviceIdentity(
            attestation_key=key,
            certificate=certificate,
            chain=(self.intermediate_certificate, self.root_certificate),
            noise_static_key=generate_x25519_key(),
        )

    def to_bytes(self, passphrase: bytes) -> bytes:
        """CBOR ``["bleprov manufacturer", 1, salt, root key, root, intermediate key, ...]``.

        Keys are PKCS#8 with BestAvailableEncryption under scrypt(passphrase, salt): the
        CA keys are never stored in the clear.
        """
        if not isinstance(passphrase, bytes) or not passphrase:
            raise IdentityError("a manufacturer store needs a non-empty passphrase")
        salt = secrets.token_bytes(_SALT_SIZE)
        key = stretch_passphrase(passphrase, salt)
        return cbor.dumps(
            [
                _MANUFACTURER_LABEL,
                _STORE_VERSION,
                salt,
                pki.pkcs8_der(self._root_key, key),
                pki.der(self.root_certificate),
                pki.pkcs8_der(self._intermediate_key, key),
                pki.der(self.intermediate_certificate),
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes, passphrase: bytes) -> Manufacturer:
        """Inverse of :meth:`to_bytes`; any problem raises :class:`IdentityError`."""
        if not isinstance(passphrase, bytes) or not passphrase:
            raise IdentityError("a manufacturer store needs a non-empty passphrase")
        value = cbor.decode_array(data, _MAX_STORE_SIZE, IdentityError, "manufacturer store")
        if (
            len(value) != 7
            or value[0] != _MANUFACTURER_LABEL
            or not _is_int(value[1], _STORE_VERSION)
        ):
            raise IdentityError("not a version-1 bleprov manufacturer store")
        _, _, salt, root_key, root, intermediate_key, intermediate = value
        if not isinstance(salt, bytes) or len(salt) != _SALT_SIZE:
            raise IdentityError(f"salt must be {_SALT_SIZE} bytes")
        key = stretch_passphrase(passphrase, salt)
        return cls(
            root_key=_load_ec_key(root_key, key, "root key"),
            root_certificate=_load_stored_certificate(root, "root certificate"),
            intermediate_key=_load_ec_key(intermediate_key, key, "intermediate key"),
            intermediate_certificate=_load_stored_certificate(
                intermediate, "intermediate certificate"
            ),
        )

    def __repr__(self) -> str:
        return f"Manufacturer(name={self.name!r}, root_fingerprint={self.root_fingerprint.hex()!r})"


def _ca_name(manufacturer: str, role: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, manufacturer),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{manufacturer} {role}"),
        ]
    )


def stretch_passphrase(passphrase: bytes, salt: bytes) -> bytes:
    return scrypt(passphrase, salt=salt, length=32, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)


# ----------------------------------------------------------------------- verification


class TrustPolicy(enum.Enum):
    """What a host does with a sound chain that ends at a root it does not trust."""

    REFUSE = "refuse"
    WARN = "warn"


@dataclass(frozen=True)
class AttestationResult:
    """A verified attestation. ``device_id`` comes from the certificate.

    ``manufacturer`` is the root's organization name: authenticated when ``trusted``,
    merely claimed otherwise (``warning`` then says so).
    """

    device_id: str
    manufacturer_root_fingerprint: bytes
    trusted: bool
    warning: str | None = None
    manufacturer: str = ""


def device_id_of(certificate: x509.Certificate) -> str:
    """The device ID a certificate names consistently in CN, serialNumber and SAN URI."""
    try:
        subject = certificate.subject
        names = [
            subject.get_attributes_for_oid(oid)
            for oid in (NameOID.COMMON_NAME, NameOID.SERIAL_NUMBER)
        ]
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = list(san)
    except (x509.ExtensionNotFound, *PARSE_ERRORS):
        raise AttestationError("device certificate does not name a device") from None
    if any(len(attributes) != 1 for attributes in names):
        raise AttestationError("device certificate needs exactly one CN and one serialNumber")
    common_name, serial = (attributes[0].value for attributes in names)
    if not isinstance(common_name, str) or common_name != serial:
        raise AttestationError("device certificate CN and serialNumber differ")
    try:
        device_id = validate_device_id(common_name)
    except InvalidDeviceId:
        raise AttestationError("device certificate names an invalid device ID") from None
    expected = x509.UniformResourceIdentifier(DEVICE_URN_PREFIX + device_id)
    if uris != [expected]:
        raise AttestationError("device certificate SAN must be exactly the device URN")
    return device_id


def _check_leaf_key_usage(_policy: Policy, _cert: x509.Certificate, usage: x509.KeyUsage) -> None:
    if not usage.digital_signature or usage.key_cert_sign:
        raise ValueError("device keyUsage must be digitalSignature and not keyCertSign")


def _check_leaf_basic_constraints(
    _policy: Policy, _cert: x509.Certificate, constraints: x509.BasicConstraints
) -> None:
    if constraints.ca:
        raise ValueError("device certificate must not be a CA")


def _verify_path(
    leaf: x509.Certificate,
    presented: list[x509.Certificate],
    anchors: list[x509.Certificate],
    now: datetime,
) -> list[x509.Certificate]:
    """Webpki path validation with the device-certificate profile on the leaf.

    CAs get cryptography's webpki CA rules (basicConstraints cA critical, keyCertSign,
    pathLen, SKI/AKI shapes); the leaf additionally must carry a critical keyUsage with
    digitalSignature, basicConstraints cA false and a SAN. Unknown critical extensions
    fail anywhere in the chain. The path must be exactly device <- intermediate <- root.
    """
    device_policy = (
        ExtensionPolicy.webpki_defaults_ee()
        .require_present(x509.KeyUsage, Criticality.CRITICAL, _check_leaf_key_usage)
        .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, _check_leaf_basic_constraints)
        .require_present(x509.SubjectAlternativeName, Criticality.NON_CRITICAL, None)
    )
    verifier = (
        PolicyBuilder()
        .store(Store(anchors))
        .time(now)
        .max_chain_depth(1)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=device_policy)
        .build_client_verifier()
    )
    chain = verifier.verify(leaf, presented).chain
    if len(chain) != 3:
        raise VerificationError("device certificate must be issued by an intermediate")
    return chain


def verification_reason(exc: Exception) -> str:
    """A verifier message without the certificate dump it appends."""
    return printable(str(exc).split(" (encountered processing", 1)[0], 160)


def _load_peer_certificate(data: bytes) -> x509.Certificate:
    certificate = certificate_or_none(data)
    if certificate is None:
        raise MalformedAttestation("certificate is not valid DER")
    return certificate


def _trusted_root(root: x509.Certificate | bytes) -> x509.Certificate:
    if isinstance(root, x509.Certificate):
        return root
    certificate = certificate_or_none(root)
    if certificate is None:
        raise IdentityError("a trusted root is not a DER certificate")
    return certificate


def _validate_chain(
    leaf: x509.Certificate,
    presented: list[x509.Certificate],
    roots: list[x509.Certificate],
    now: datetime,
) -> tuple[list[x509.Certificate], bool]:
    """The validated path and whether it ends at a trusted root.

    A chain that fails against the trusted roots is retried against the self-signed roots
    it presents (their self-signatures checked), unless it names a trusted root as an
    issuer: then the failure stands (a chain imitating a trusted manufacturer is an error,
    not a warning).
    """
    failure = "no trusted roots configured"
    if roots:
        try:
            return _verify_path(leaf, presented, roots, now), True
        except VerificationError as exc:
            failure = verification_reason(exc)
        except PARSE_ERRORS:
            raise AttestationError("certificate chain could not be parsed") from None
    trusted_subjects = {root.subject for root in roots}
    trusted_der = {pki.der(root) for root in roots}
    try:
        claims_trusted = any(c.issuer in trusted_subjects for c in [leaf, *presented])
        own_roots = [
            c for c in presented if c.issuer == c.subject and pki.der(c) not in trusted_der
        ]
    except PARSE_ERRORS:
        raise AttestationError("certificate chain could not be parsed") from None
    if claims_trusted:
        raise AttestationError(f"certificate chain does not validate: {failure}")
    if not own_roots:
        raise UnknownManufacturer("chain ends at an issuer that is neither trusted nor presented")
    for own_root in own_roots:
        # cryptography trusts a Store's certificates as given; this one came from the peer.
        try:
            own_root.verify_directly_issued_by(own_root)
        except (InvalidSignature, *PARSE_ERRORS):
            raise AttestationError("the presented root's self-signature does not verify") from None
    try:
        return _verify_path(leaf, presented, own_roots, now), False
    except VerificationError as exc:
        raise AttestationError(
            f"certificate chain does not validate: {verification_reason(exc)}"
        ) from None
    except PARSE_ERRORS:
        raise AttestationError("certificate chain could not be parsed") from None


def verify_attestation(
    attestation: Attestation,
    handshake_hash: bytes,
    *,
    context: bytes,
    trusted_roots: Iterable[x509.Certificate | bytes],
    now: datetime,
    policy: TrustPolicy,
) -> AttestationResult:
    """Check a device's attestation for this session's ``handshake_hash``.

    Order: decode, chain (always), signature (always), then trust. A broken chain, expiry,
    wrong key usage or bad signature raises :class:`AttestationError`; a sound chain to an
    unknown root raises :class:`UnknownManufacturer` under REFUSE and returns
    ``trusted=False`` with a warning under WARN.
    """
    message = signed_message(handshake_hash, context)
    when = utc_seconds(now)
    roots = [_trusted_root(root) for root in trusted_roots]
    leaf = _load_peer_certificate(attestation.device_certificate)
    presented = [_load_peer_certificate(der) for der in attestation.chain]

    path, trusted = _validate_chain(leaf, presented, roots, when)
    device_id = device_id_of(leaf)
    public_key = leaf.public_key()
    if not pki.is_p256_public_key(public_key):
        raise AttestationError("device key must be P-256")
    if not pki.ecdsa_verify(public_key, attestation.signature, message):
        raise AttestationError("attestation signature does not verify")

    root = path[-1]
    fingerprint = pki.fingerprint(root)
    manufacturer = _organization(root)
    if trusted:
        return AttestationResult(device_id, fingerprint, trusted=True, manufacturer=manufacturer)
    if policy is TrustPolicy.REFUSE:
        raise UnknownManufacturer(
            f"device {device_id} chains to an untrusted root (SHA-256 {fingerprint.hex()})"
        )
    warning = (
        f"device {device_id} claims manufacturer {manufacturer!r}, whose root "
        f"(SHA-256 {fingerprint.hex()}) is not trusted: its identity is not authenticated"
    )
    return AttestationResult(
        device_id, fingerprint, trusted=False, warning=warning, manufacturer=manufacturer
    )
