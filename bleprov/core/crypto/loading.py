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
"""

from __future__ import annotations

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


class UnreadableCertificate(ValueError):
    """Bytes that are not a certificate this code can use (its key and dates included)."""


class UnreadableKey(ValueError):
    """Bytes that are not a private key this code can load (or a wrong passphrase)."""


class KeyPassphraseMismatch(UnreadableKey):
    """A passphrase was given for a plain key, or none for an encrypted one."""


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


def load_der_private_key(data: bytes, passphrase: bytes | None) -> PrivateKeyTypes:
    """A DER private key (PKCS#8, encrypted or not); else UnreadableKey or a subclass."""
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
    try:
        return serialization.load_pem_private_key(data, passphrase)
    except TypeError:
        raise KeyPassphraseMismatch(
            "a passphrase was given for a plain key, or none for an encrypted one"
        ) from None
    except PARSE_ERRORS:
        raise UnreadableKey("wrong passphrase, or not a key bleprov can load") from None
