"""Keys and certificates from bytes we did not just make: the one place that knows what
``cryptography`` raises on them.

Its loaders raise ValueError for most damage, but not for all of it (issue 15, F3):
``x509.InvalidVersion`` (an Exception, not a ValueError) for a damaged version field,
``UnsupportedAlgorithm`` for a key or signature algorithm it does not know (a
certificate's key is parsed on first use, so one that loaded can still raise it),
TypeError for a passphrase given to a plain key or missing for an encrypted one. Every
parse of untrusted or at-rest bytes goes through here and gets :class:`UnreadableKey` or
:class:`UnreadableCertificate`, which the caller turns into its own typed error. Both are
ValueErrors, so an ``except ValueError`` left somewhere still holds.

An encrypted PKCS#8 key carries its KDF and cost in the clear (RFC 8018: PBES2's PBKDF2
iteration count, or scrypt's N, r, p), outside anything authenticated: a tampered file
could make the loader run PBKDF2 for minutes, or allocate a GiB for scrypt, before the
padding check fails (F5). The key loaders read that cost first and refuse any KDF but
PBKDF2, and more than :data:`MAX_PBKDF2_ITERATIONS`.
"""

from __future__ import annotations

import binascii
import re
from typing import Final

from cryptography import x509
from cryptography.exceptions import InternalError, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.utils import CryptographyDeprecationWarning

#: What ``cryptography`` raises on hostile bytes, at load or on first access to a lazily
#: parsed part (names, extensions, the public key).
PARSE_ERRORS: Final = (
    ValueError,
    TypeError,
    # A name whose string tag no ASN.1 string has (e.g. 13): cryptography before 50
    # raised KeyError from the name's lazy parse, not ValueError.
    KeyError,
    x509.InvalidVersion,  # not a ValueError: a damaged version field raises it
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
    UnsupportedAlgorithm,
    InternalError,
)

#: The most PBKDF2 iterations an encrypted key may ask for. What we write: 600 000 for a
#: user's key file (OWASP 2023, ``hub_files.USER_KEY_ITERATIONS``) and 2048 for zone.bin's
#: and manufacturer.bin's keys (``BestAvailableEncryption``, behind our own scrypt).
#: A million leaves room to raise the first by two thirds (about 0.2 s on a laptop core),
#: and refuses the 2^31 a tampered file can claim (about six minutes).
MAX_PBKDF2_ITERATIONS: Final = 1_000_000

_OID_PBES2: Final = bytes.fromhex("06092a864886f70d01050d")
_OID_PBKDF2: Final = bytes.fromhex("06092a864886f70d01050c")
_SEQUENCE: Final = 0x30
_INTEGER: Final = 0x02
_ENCRYPTED_PEM: Final = re.compile(
    rb"-----BEGIN ENCRYPTED PRIVATE KEY-----([^-]*)-----END ENCRYPTED PRIVATE KEY-----"
)


class UnreadableCertificate(ValueError):
    """Bytes that are not a certificate this code can use (its key and dates included)."""


class UnreadableKey(ValueError):
    """Bytes that are not a private key this code can load (or a wrong passphrase)."""


class KeyPassphraseMismatch(UnreadableKey):
    """A passphrase was given for a plain key, or none for an encrypted one."""


class KeyTooDear(UnreadableKey):
    """An encrypted key asks for a KDF other than PBKDF2, or for too many iterations."""


# ------------------------------------------------------------------- certificates


def _checked(certificate: x509.Certificate) -> x509.Certificate:
    """Touch what every caller uses and cryptography parses lazily: the key, the serial
    (RFC 5280: positive) and the validity dates, so none of them raises later."""
    try:
        certificate.public_key()
        serial = certificate.serial_number
        _ = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    except (*PARSE_ERRORS, CryptographyDeprecationWarning):
        raise UnreadableCertificate("the certificate's key or dates do not parse") from None
    if serial <= 0:
        raise UnreadableCertificate("the certificate's serial number is not positive")
    return certificate


def load_der_certificate(data: bytes) -> x509.Certificate:
    """A DER certificate whose key, serial and dates parse; else UnreadableCertificate.

    A non-positive serial number (RFC 5280 forbids it) counts as malformed; cryptography
    only warns about it today, and raises that warning when run with ``-W error``.
    """
    try:
        certificate = x509.load_der_x509_certificate(data)
    except (*PARSE_ERRORS, CryptographyDeprecationWarning):
        raise UnreadableCertificate("not a DER certificate") from None
    return _checked(certificate)


def load_pem_certificate(data: bytes) -> x509.Certificate:
    """The first certificate of PEM ``data``, as :func:`load_der_certificate` checks it."""
    try:
        certificate = x509.load_pem_x509_certificate(data)
    except (*PARSE_ERRORS, CryptographyDeprecationWarning):
        raise UnreadableCertificate("not a PEM certificate") from None
    return _checked(certificate)


def load_pem_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate of PEM ``data`` (at least one), each checked."""
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except (*PARSE_ERRORS, CryptographyDeprecationWarning):
        raise UnreadableCertificate("not PEM certificates") from None
    return [_checked(c) for c in certificates]


# ---------------------------------------------------------------------- private keys


def _tlv(data: bytes, at: int, end: int) -> tuple[int, int, int]:
    """One DER element in ``data[at:end]``: (tag, body start, body end)."""
    if at + 2 > end:
        raise UnreadableKey("the key's encryption header is truncated")
    tag, first = data[at], data[at + 1]
    at += 2
    if first & 0x80:
        size = first & 0x7F
        if not 1 <= size <= 4 or at + size > end:
            raise UnreadableKey("the key's encryption header has a bad length")
        length = int.from_bytes(data[at : at + size], "big")
        at += size
    else:
        length = first
    if at + length > end:
        raise UnreadableKey("the key's encryption header overruns the key")
    return tag, at, at + length


def _elements(data: bytes, start: int, end: int, count: int) -> list[tuple[int, int, int]]:
    """The first ``count`` elements of a constructed DER body (fewer is malformed)."""
    out: list[tuple[int, int, int]] = []
    at = start
    while len(out) < count:
        element = _tlv(data, at, end)
        out.append(element)
        at = element[2]
    return out


def check_key_encryption_cost(der: bytes) -> None:
    """Refuse an encrypted PKCS#8 key whose KDF is not PBKDF2, or whose iteration count
    exceeds :data:`MAX_PBKDF2_ITERATIONS`, before anything derives a key from it. A plain
    key (PKCS#8 or SEC 1: its first element is an INTEGER) costs nothing and passes."""
    tag, start, end = _tlv(der, 0, len(der))
    if tag != _SEQUENCE:
        return  # not a DER structure at all: the loader refuses it at no cost
    [(first, algorithm_start, algorithm_end)] = _elements(der, start, end, 1)
    if first != _SEQUENCE:
        return  # PrivateKeyInfo or ECPrivateKey: version INTEGER first, no encryption
    oid, params = _elements(der, algorithm_start, algorithm_end, 2)
    if der[algorithm_start : oid[2]] != _OID_PBES2 or params[0] != _SEQUENCE:
        raise KeyTooDear("the key is encrypted with a scheme other than PBES2")
    [(kdf_tag, kdf_start, kdf_end)] = _elements(der, params[1], params[2], 1)
    kdf_oid, kdf_params = _elements(der, kdf_start, kdf_end, 2)
    if kdf_tag != _SEQUENCE or der[kdf_start : kdf_oid[2]] != _OID_PBKDF2:
        raise KeyTooDear("the key's KDF is not PBKDF2")
    if kdf_params[0] != _SEQUENCE:
        raise UnreadableKey("the key's PBKDF2 parameters are malformed")
    _salt, (count_tag, count_start, count_end) = _elements(der, kdf_params[1], kdf_params[2], 2)
    body = der[count_start:count_end]
    if count_tag != _INTEGER or not 1 <= len(body) <= 4:
        raise KeyTooDear(f"the key asks for more than {MAX_PBKDF2_ITERATIONS} PBKDF2 iterations")
    iterations = int.from_bytes(body, "big", signed=True)
    if not 1 <= iterations <= MAX_PBKDF2_ITERATIONS:
        raise KeyTooDear(
            f"the key asks for {iterations} PBKDF2 iterations (at most {MAX_PBKDF2_ITERATIONS})"
        )


def load_der_private_key(data: bytes, passphrase: bytes | None) -> PrivateKeyTypes:
    """A DER private key (PKCS#8, encrypted or not); else UnreadableKey or a subclass."""
    check_key_encryption_cost(data)
    try:
        return serialization.load_der_private_key(data, passphrase)
    except TypeError:
        raise KeyPassphraseMismatch(
            "a passphrase was given for a plain key, or none for an encrypted one"
        ) from None
    except PARSE_ERRORS:
        raise UnreadableKey("wrong passphrase, or not a key bleprov can load") from None


def load_pem_private_key(data: bytes, passphrase: bytes | None) -> PrivateKeyTypes:
    """A PEM private key, as :func:`load_der_private_key` checks it."""
    for block in _ENCRYPTED_PEM.finditer(data):
        try:
            der = binascii.a2b_base64(block.group(1))
        except binascii.Error:
            raise UnreadableKey("the encrypted key's PEM body is not base64") from None
        check_key_encryption_cost(der)
    try:
        return serialization.load_pem_private_key(data, passphrase)
    except TypeError:
        raise KeyPassphraseMismatch(
            "a passphrase was given for a plain key, or none for an encrypted one"
        ) from None
    except PARSE_ERRORS:
        raise UnreadableKey("wrong passphrase, or not a key bleprov can load") from None
