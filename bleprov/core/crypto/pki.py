"""P-256 ECDSA keys and X.509 for bleprov's three PKIs (manufacturer attestation, zones,
peers): the one module where certificates, CSRs and CRLs are signed and serialised.

One of the few modules allowed to import ``cryptography.hazmat`` (issue 16; ruff's TID251
enforces it). Callers still build names and extensions with ``cryptography.x509`` (not
hazmat); every signature, key encoding and fingerprint goes through a function here, and
:class:`~bleprov.core.identity.Manufacturer` and :class:`~bleprov.core.zone.Zone` make
their CA certificates with the same :func:`ca_certificate`. Parsing bytes from outside
stays in :mod:`bleprov.core.crypto.loading`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, TypeAlias, TypeGuard, overload

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

__all__ = [
    "SigningKey",
    "VerifyingKey",
    "authority_key_id",
    "ca_certificate",
    "certificate_pem",
    "der",
    "ecdsa_sign",
    "ecdsa_verify",
    "fingerprint",
    "generate_signing_key",
    "is_ec_private_key",
    "is_ec_public_key",
    "is_p256_private_key",
    "is_p256_public_key",
    "key_usage",
    "pkcs8_der",
    "pkcs8_pem",
    "sign",
    "spki_der",
]

#: A P-256 ECDSA key pair (attestation, CA, member and peer keys) and its public half.
SigningKey: TypeAlias = ec.EllipticCurvePrivateKey
VerifyingKey: TypeAlias = ec.EllipticCurvePublicKey

_SIGNATURE: Final = ec.ECDSA(hashes.SHA256())


# ------------------------------------------------------------------------------ keys


def generate_signing_key() -> SigningKey:
    """A fresh P-256 key."""
    return ec.generate_private_key(ec.SECP256R1())


def is_ec_private_key(key: object) -> TypeGuard[SigningKey]:
    """An elliptic-curve private key, of any curve."""
    return isinstance(key, ec.EllipticCurvePrivateKey)


def is_ec_public_key(key: object) -> TypeGuard[VerifyingKey]:
    """An elliptic-curve public key, of any curve."""
    return isinstance(key, ec.EllipticCurvePublicKey)


def is_p256_private_key(key: object) -> TypeGuard[SigningKey]:
    """A P-256 private key (the only curve bleprov signs with)."""
    return isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)


def is_p256_public_key(key: object) -> TypeGuard[VerifyingKey]:
    """A P-256 public key (the only curve bleprov accepts a signature from)."""
    return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)


def ecdsa_sign(key: SigningKey, message: bytes) -> bytes:
    """A DER ECDSA-SHA256 signature over ``message``."""
    return key.sign(message, _SIGNATURE)


def ecdsa_verify(key: VerifyingKey, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is ``key``'s ECDSA-SHA256 signature over ``message``."""
    try:
        key.verify(signature, message, _SIGNATURE)
    except InvalidSignature:
        return False
    return True


def spki_der(key: CertificatePublicKeyTypes) -> bytes:
    """The SubjectPublicKeyInfo DER of a certificate's public key (what SPKI pins hash)."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def pkcs8_der(key: SigningKey | X25519PrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 DER: plain, or under ``cryptography``'s BestAvailableEncryption (PBES2)."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if passphrase is None
        else serialization.BestAvailableEncryption(passphrase)
    )
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, encryption
    )


def pkcs8_pem(key: SigningKey, passphrase: bytes) -> bytes:
    """PKCS#8 PEM under BestAvailableEncryption (PBES2, AES-256-CBC): what ``ssl`` loads."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )


# -------------------------------------------------------------------------- X.509


@overload
def sign(builder: x509.CertificateBuilder, key: SigningKey) -> x509.Certificate: ...
@overload
def sign(
    builder: x509.CertificateSigningRequestBuilder, key: SigningKey
) -> x509.CertificateSigningRequest: ...
@overload
def sign(
    builder: x509.CertificateRevocationListBuilder, key: SigningKey
) -> x509.CertificateRevocationList: ...
def sign(
    builder: x509.CertificateBuilder
    | x509.CertificateSigningRequestBuilder
    | x509.CertificateRevocationListBuilder,
    key: SigningKey,
) -> x509.Certificate | x509.CertificateSigningRequest | x509.CertificateRevocationList:
    """Sign a certificate, CSR or CRL with ECDSA-SHA256 (every signature bleprov makes)."""
    return builder.sign(key, hashes.SHA256())


def der(
    item: x509.Certificate | x509.CertificateSigningRequest | x509.CertificateRevocationList,
) -> bytes:
    """The DER of a certificate, CSR or CRL."""
    return item.public_bytes(serialization.Encoding.DER)


def certificate_pem(certificate: x509.Certificate) -> bytes:
    """One PEM ``CERTIFICATE`` block."""
    return certificate.public_bytes(serialization.Encoding.PEM)


def fingerprint(certificate: x509.Certificate) -> bytes:
    """SHA-256 of the certificate's DER (how bleprov names a root or a user certificate)."""
    return certificate.fingerprint(hashes.SHA256())


def key_usage(*, digital_signature: bool = False, cert_sign: bool = False) -> x509.KeyUsage:
    """keyUsage: digitalSignature for leaves; keyCertSign and cRLSign for CAs."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The authorityKeyIdentifier naming ``issuer``'s subjectKeyIdentifier."""
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def ca_certificate(
    *,
    subject: x509.Name,
    key: SigningKey,
    issuer: x509.Certificate | None,
    issuer_key: SigningKey,
    path_length: int,
    not_before: datetime,
    not_after: datetime,
    alt_name: x509.SubjectAlternativeName | None = None,
) -> x509.Certificate:
    """A CA certificate (self-signed when ``issuer`` is None); zone roots add a SAN.

    The one code path for manufacturer roots and intermediates and zone roots and
    issuers."""
    public_key = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(authority_key_id(issuer), critical=False)
    if alt_name is not None:
        builder = builder.add_extension(alt_name, critical=False)
    return sign(builder, issuer_key)


#: A raw ECDSA P-256 signature: r then s, 32 bytes each, big-endian (no DER).
RAW_SIGNATURE_SIZE: Final = 64


def ecdsa_sign_raw(key: SigningKey, message: bytes) -> bytes:
    """An ECDSA-SHA256 signature over ``message`` as ``r || s`` (64 bytes): 6-8 bytes
    fewer than DER, and one fixed size to specify."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(key.sign(message, _SIGNATURE))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def ecdsa_verify_raw(key: VerifyingKey, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` (``r || s``, 64 bytes) is ``key``'s ECDSA-SHA256 signature
    over ``message``."""
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    if len(signature) != RAW_SIGNATURE_SIZE:
        return False
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    return ecdsa_verify(key, encode_dss_signature(r, s), message)
