"""Peer binding without a CA: long-term self-signed identities, pinned by each other.

Two parties bound without a hub (host and device, or two devices) exchange their
:class:`PeerPin` over the secure session and keep each other's pin in a :class:`PinSet`.
Afterwards they open mutual TLS with their own :class:`PeerIdentity` and accept exactly
the pinned keys. Unbinding removes the pin on both sides.

A pin is the peer's self-signed certificate; what is compared is its *fingerprint*, the
SHA-256 of the SubjectPublicKeyInfo DER, so a peer that re-issues its certificate for the
same key still matches, and a certificate with the same name and another key does not.

Certificate profile (what :meth:`PeerIdentity.create` makes and :meth:`PeerPin.from_certificate`
checks): self-signed P-256 ECDSA/SHA-256, subject ``CN=<name>``, SAN exactly one URI
``urn:bleprov:peer:<name>``; keyUsage digitalSignature (critical); extendedKeyUsage
serverAuth + clientAuth; basicConstraints cA false (critical); SKI; a random serial.

Pure code: bytes in, bytes out, ``now`` passed in.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bleprov.core import cbor
from bleprov.core.crypto import pki
from bleprov.core.crypto.loading import PARSE_ERRORS, UnreadableKey, load_der_private_key
from bleprov.core.crypto.pki import SigningKey, VerifyingKey
from bleprov.core.errors import BleprovError, ProtocolError
from bleprov.core.identity import (
    CLOCK_SKEW_ALLOWANCE,
    MAX_CERTIFICATE_SIZE,
    certificate_or_none,
    utc_seconds,
)
from bleprov.core.wire_codes import ErrorCode
from bleprov.core.zone import OWNER_PATTERN

# ------------------------------------------------------------------------ constants

PEER_URN_PREFIX: Final = "urn:bleprov:peer:"
#: Peer names: 1-64 characters of the zone owner charset (device IDs and host names fit).
NAME_PATTERN: Final = OWNER_PATTERN
#: A device keeps at most this many peers; unbind one to bind another.
MAX_PINS: Final = 32
DEFAULT_PEER_VALIDITY: Final = timedelta(days=20 * 365)
FINGERPRINT_SIZE: Final = 32

_IDENTITY_LABEL: Final = "bleprov peer identity"
_PINS_LABEL: Final = "bleprov peer pins"
_VERSION: Final = 1
_MAX_KEY_SIZE: Final = 1024
_MAX_IDENTITY_SIZE: Final = 64 + 64 + _MAX_KEY_SIZE + MAX_CERTIFICATE_SIZE + 16
_MAX_PINS_SIZE: Final = 64 + MAX_PINS * (MAX_CERTIFICATE_SIZE + 3) + 16

# --------------------------------------------------------------------------- errors


class PeerSetupError(BleprovError):
    """A local argument is unusable: a bad name, a full pin set."""


class PeerError(ProtocolError):
    """A peer's identity was refused."""

    code = ErrorCode.PEER


class NotPinned(PeerError):
    """The certificate's key is not one of the pinned peers'."""

    code = ErrorCode.NOT_PINNED


class BadPeerIdentity(PeerError):
    """A peer certificate, identity record or pin set is malformed or inconsistent."""

    code = ErrorCode.BAD_PEER_IDENTITY


# --------------------------------------------------------------------------- helpers


def _validate_name(name: object) -> str:
    if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
        raise PeerSetupError("peer name must be 1-64 characters of A-Z a-z 0-9 . _ @ - ")
    return name


def _spki_fingerprint(public_key: VerifyingKey) -> bytes:
    return hashlib.sha256(pki.spki_der(public_key)).digest()


def _is_p256(key: object) -> bool:
    return pki.is_p256_public_key(key)


@dataclass(frozen=True)
class _Checked:
    name: str
    public_key: VerifyingKey


def _check_certificate(cert_der: object) -> _Checked:
    """Bounded parse and profile check of a peer certificate, else BadPeerIdentity."""
    if not isinstance(cert_der, bytes) or not 0 < len(cert_der) <= MAX_CERTIFICATE_SIZE:
        raise BadPeerIdentity(f"peer certificate must be 1 to {MAX_CERTIFICATE_SIZE} bytes of DER")
    certificate = certificate_or_none(cert_der)
    if certificate is None:
        raise BadPeerIdentity("peer certificate is not a DER certificate")
    try:
        public_key = certificate.public_key()
        common_names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = list(san)
        certificate.verify_directly_issued_by(certificate)
    except x509.ExtensionNotFound:
        raise BadPeerIdentity("peer certificate has no subjectAltName") from None
    except InvalidSignature:
        raise BadPeerIdentity("peer certificate's self-signature does not verify") from None
    except PARSE_ERRORS:
        raise BadPeerIdentity(
            "peer certificate is not self-signed or could not be parsed"
        ) from None
    if not pki.is_ec_public_key(public_key) or not _is_p256(public_key):
        raise BadPeerIdentity("peer key must be P-256 ECDSA")
    if (
        len(names) != 1
        or not isinstance(names[0], x509.UniformResourceIdentifier)
        or not str(names[0].value).startswith(PEER_URN_PREFIX)
    ):
        raise BadPeerIdentity(f"peer SAN must be exactly one {PEER_URN_PREFIX}<name> URI")
    name = str(names[0].value)[len(PEER_URN_PREFIX) :]
    if NAME_PATTERN.fullmatch(name) is None:
        raise BadPeerIdentity("peer SAN names an invalid peer name")
    if len(common_names) != 1 or common_names[0].value != name:
        raise BadPeerIdentity("peer CN must equal the name in its SAN")
    return _Checked(name, public_key)


# ----------------------------------------------------------------------------- pins


@dataclass(frozen=True)
class PeerPin:
    """What one side keeps of the other: its name and self-signed certificate."""

    name: str
    cert_der: bytes

    def __post_init__(self) -> None:
        # Built directly or from_certificate: either way name and certificate agree.
        if _check_certificate(self.cert_der).name != self.name:
            raise BadPeerIdentity("pin name differs from the certificate's name")

    @classmethod
    def from_certificate(cls, cert_der: bytes) -> PeerPin:
        """A pin for a peer's certificate; anything off the profile raises BadPeerIdentity."""
        return cls(_check_certificate(cert_der).name, cert_der)

    @property
    def fingerprint(self) -> bytes:
        """SHA-256 of the SubjectPublicKeyInfo DER: what pinning compares."""
        return _spki_fingerprint(_check_certificate(self.cert_der).public_key)


def fingerprint_of(cert_der: bytes) -> bytes:
    """The pin fingerprint of any certificate (bounded parse; BadPeerIdentity otherwise)."""
    if not isinstance(cert_der, bytes) or not 0 < len(cert_der) <= MAX_CERTIFICATE_SIZE:
        raise BadPeerIdentity(f"certificate must be 1 to {MAX_CERTIFICATE_SIZE} bytes of DER")
    certificate = certificate_or_none(cert_der)
    if certificate is None:
        raise BadPeerIdentity("not a DER certificate")
    try:
        public_key = certificate.public_key()
    except PARSE_ERRORS:
        raise BadPeerIdentity("certificate key could not be parsed") from None
    if not _is_p256(public_key):
        raise BadPeerIdentity("peer key must be P-256 ECDSA")
    assert pki.is_ec_public_key(public_key)
    return _spki_fingerprint(public_key)


class PinSet:
    """An immutable set of pinned peers, at most one per name and one per key."""

    __slots__ = ("_fingerprints", "_pins")

    def __init__(self, pins: Iterable[PeerPin] = ()) -> None:
        self._pins: dict[str, PeerPin] = {}
        self._fingerprints: dict[str, bytes] = {}
        for pin in pins:
            self._put(pin)

    def _put(self, pin: PeerPin) -> None:
        if not isinstance(pin, PeerPin):
            raise PeerSetupError("a PinSet holds PeerPin values")
        fingerprint = pin.fingerprint
        # A pin is never replaced by another key: a name is a label, the key is the peer.
        held = self._fingerprints.get(pin.name)
        if held is not None and not hmac.compare_digest(held, fingerprint):
            raise PeerSetupError(
                f"a peer named {pin.name!r} is pinned with another key; unbind or forget "
                "it first (a name never moves to a new key)"
            )
        # One name per key: a peer that renamed itself replaces its old pin.
        for name, existing in list(self._fingerprints.items()):
            if existing == fingerprint and name != pin.name:
                del self._pins[name], self._fingerprints[name]
        if pin.name not in self._pins and len(self._pins) >= MAX_PINS:
            raise PeerSetupError(f"at most {MAX_PINS} peers can be pinned; unbind one first")
        self._pins[pin.name] = pin
        self._fingerprints[pin.name] = fingerprint

    def add(self, pin: PeerPin) -> PinSet:
        """A new set with ``pin``; the same key under a new name replaces its old pin, and
        a name already pinned with another key raises PeerSetupError."""
        new = PinSet(self._pins.values())
        new._put(pin)
        return new

    def remove(self, name: str) -> PinSet:
        """A new set without ``name``; removing an absent name is a no-op (unbind twice)."""
        return PinSet(p for n, p in self._pins.items() if n != name)

    def names(self) -> list[str]:
        return sorted(self._pins)

    def pins(self) -> list[PeerPin]:
        """The pins in name order (what a TLS trust store is built from)."""
        return [self._pins[n] for n in sorted(self._pins)]

    def __len__(self) -> int:
        return len(self._pins)

    def __contains__(self, name: object) -> bool:
        return name in self._pins

    def __iter__(self) -> Iterator[PeerPin]:
        return iter(self.pins())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PinSet) and self.to_bytes() == other.to_bytes()

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    def __repr__(self) -> str:
        return f"PinSet({self.names()!r})"

    def match(self, cert_der: bytes) -> PeerPin:
        """The pin whose key the certificate carries; NotPinned if none.

        Every pin is compared, each in constant time, so timing says nothing about which
        pin (if any) matched.
        """
        fingerprint = fingerprint_of(cert_der)
        found: PeerPin | None = None
        for name in sorted(self._pins):
            if hmac.compare_digest(self._fingerprints[name], fingerprint):
                found = self._pins[name]
        if found is None:
            raise NotPinned("peer's key is not pinned: bind the peer first")
        return found

    def to_bytes(self) -> bytes:
        """Deterministic CBOR ``["bleprov peer pins", 1, [certificate...]]``, by name."""
        return cbor.dumps([_PINS_LABEL, _VERSION, [p.cert_der for p in self.pins()]])

    @classmethod
    def from_bytes(cls, raw: bytes) -> PinSet:
        """Inverse of :meth:`to_bytes`; anything else raises BadPeerIdentity."""
        value = cbor.decode_array(raw, _MAX_PINS_SIZE, BadPeerIdentity, "pin set")
        if (
            len(value) != 3
            or value[0] != _PINS_LABEL
            or type(value[1]) is not int
            or value[1] != _VERSION
        ):
            raise BadPeerIdentity("not a version-1 bleprov pin set")
        certificates = value[2]
        if not isinstance(certificates, list) or len(certificates) > MAX_PINS:
            raise BadPeerIdentity(f"pin set must be an array of at most {MAX_PINS} certificates")
        pins = [PeerPin.from_certificate(c) for c in certificates]
        if [p.name for p in pins] != sorted({p.name for p in pins}):
            raise BadPeerIdentity("pin set names must be unique and in order")
        result = cls(pins)
        if len(result) != len(pins):
            raise BadPeerIdentity("pin set pins one key under two names")
        return result


# ------------------------------------------------------------------------- identity


@dataclass(frozen=True, repr=False)
class PeerIdentity:
    """Our own long-term peer identity: a P-256 key and its self-signed certificate."""

    name: str
    key: SigningKey
    cert_der: bytes

    def __post_init__(self) -> None:
        checked = _check_certificate(self.cert_der)
        if checked.name != self.name:
            raise BadPeerIdentity("identity name differs from its certificate's name")
        if not pki.is_ec_private_key(self.key) or (self.key.public_key() != checked.public_key):
            raise BadPeerIdentity("identity key does not match its certificate")

    @classmethod
    def create(
        cls, name: str, *, now: datetime, validity: timedelta = DEFAULT_PEER_VALIDITY
    ) -> PeerIdentity:
        """A fresh key and self-signed certificate naming ``name`` (profile: module doc)."""
        _validate_name(name)
        if validity <= timedelta(0):
            raise PeerSetupError("validity must be positive")
        key = pki.generate_signing_key()
        public_key = key.public_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        start = utc_seconds(now) - CLOCK_SKEW_ALLOWANCE
        certificate = pki.sign(
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(utc_seconds(now) + validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(pki.key_usage(digital_signature=True), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(PEER_URN_PREFIX + name)]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False),
            key,
        )
        return cls(name, key, pki.der(certificate))

    @property
    def fingerprint(self) -> bytes:
        """SHA-256 of our SubjectPublicKeyInfo DER (show it to a user comparing pins)."""
        return _spki_fingerprint(self.key.public_key())

    @property
    def pin(self) -> PeerPin:
        """What the other side stores to accept us."""
        return PeerPin(self.name, self.cert_der)

    def to_bytes(self) -> bytes:
        """Deterministic CBOR ``["bleprov peer identity", 1, name, PKCS#8 key, certificate]``.

        The key is *not* encrypted here: the caller keeps this record in the encrypted
        device store, and a second layer would need a second secret to manage.
        """
        key = pki.pkcs8_der(self.key)
        return cbor.dumps([_IDENTITY_LABEL, _VERSION, self.name, key, self.cert_der])

    @classmethod
    def from_bytes(cls, raw: bytes) -> PeerIdentity:
        """Inverse of :meth:`to_bytes`; anything else raises BadPeerIdentity."""
        value = cbor.decode_array(raw, _MAX_IDENTITY_SIZE, BadPeerIdentity, "peer identity")
        if (
            len(value) != 5
            or value[0] != _IDENTITY_LABEL
            or type(value[1]) is not int
            or value[1] != _VERSION
        ):
            raise BadPeerIdentity("not a version-1 bleprov peer identity")
        _, _, name, key_der, cert_der = value
        if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
            raise BadPeerIdentity("peer identity has an invalid name")
        if not isinstance(key_der, bytes) or not 0 < len(key_der) <= _MAX_KEY_SIZE:
            raise BadPeerIdentity(f"peer key must be 1 to {_MAX_KEY_SIZE} bytes of PKCS#8")
        try:
            key = load_der_private_key(key_der, None)
        except UnreadableKey:
            raise BadPeerIdentity("peer key is not an unencrypted PKCS#8 key") from None
        if not pki.is_ec_private_key(key) or not _is_p256(key.public_key()):
            raise BadPeerIdentity("peer key is not a P-256 key")
        if not isinstance(cert_der, bytes):
            raise BadPeerIdentity("peer certificate must be bytes")
        return cls(name, key, cert_der)

    def __repr__(self) -> str:
        return f"PeerIdentity(name={self.name!r}, fingerprint={self.fingerprint.hex()[:16]}...)"
