"""The symmetric primitives and raw key agreement bleprov uses, as narrow typed functions.

One of the few modules allowed to import ``cryptography.hazmat`` (issue 16: the rest of
bleprov calls these, so a change of library or of parameters has one room; ruff's TID251
enforces it). Every function here is a thin, byte-exact wrapper: the callers keep their
own formats, labels and cost bounds, and turn :class:`AuthenticationFailed` into their own
typed error.
"""

from __future__ import annotations

from hmac import compare_digest
from typing import Final, Literal, TypeAlias

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import cmac, hashes, hmac, padding
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "AuthenticationFailed",
    "ChaCha20Poly1305Key",
    "P256PrivateKey",
    "P256PublicKey",
    "X25519PrivateKey",
    "X25519PublicKey",
    "aes_cbc_pkcs7_encrypt",
    "aes_cmac",
    "generate_p256_key",
    "generate_x25519_key",
    "hkdf_sha256",
    "hmac_sha256",
    "p256_ecdh",
    "p256_point",
    "p256_private_key",
    "p256_public_key",
    "p256_public_point",
    "pbkdf2_hmac",
    "scrypt",
    "x25519_private_key",
    "x25519_public_key",
    "x25519_shared_secret",
]

#: A P-256 key pair or public key (ECDH here; ECDSA keys are the same type, see pki).
P256PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey
P256PublicKey: TypeAlias = ec.EllipticCurvePublicKey

AES_BLOCK_BITS: Final = 128
X25519_LEN: Final = 32


class AuthenticationFailed(Exception):
    """An AEAD ciphertext did not authenticate: wrong key, nonce or data, or tampering.

    Callers map it to their own typed error (with ``from None``), so the library's
    exception type never leaves bleprov."""


# ------------------------------------------------------------------------------ KDFs


def hkdf_sha256(key_material: bytes, length: int, *, salt: bytes | None, info: bytes) -> bytes:
    """HKDF-SHA256 (RFC 5869); ``salt=None`` is the RFC's all-zero salt."""
    derived: bytes = HKDF(hashes.SHA256(), length, salt=salt, info=info).derive(key_material)
    return derived


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104): Noise's HKDF is built from it (Noise section 4.3)."""
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(message)
    return mac.finalize()


def scrypt(secret: bytes, *, salt: bytes, length: int, n: int, r: int, p: int) -> bytes:
    """scrypt (RFC 7914). The caller bounds ``n``, ``r`` and ``p``: a cost read from a file
    or the wire must be checked before it gets here."""
    derived: bytes = Scrypt(salt=salt, length=length, n=n, r=r, p=p).derive(secret)
    return derived


def pbkdf2_hmac(
    secret: bytes,
    *,
    salt: bytes,
    iterations: int,
    length: int,
    hash_name: Literal["sha1", "sha256"] = "sha256",
) -> bytes:
    """PBKDF2 (RFC 8018) over HMAC-SHA256, or HMAC-SHA1 where a standard fixes it (WPA's
    PSK). The caller bounds ``iterations``."""
    algorithm: hashes.HashAlgorithm = (
        hashes.SHA1()  # noqa: S303 - only where a standard defines the KDF over SHA-1
        if hash_name == "sha1"
        else hashes.SHA256()
    )
    kdf = PBKDF2HMAC(algorithm=algorithm, length=length, salt=salt, iterations=iterations)
    return kdf.derive(secret)


# ----------------------------------------------------------------------------- ciphers


class ChaCha20Poly1305Key:
    """ChaCha20-Poly1305 (RFC 8439) under one 32-byte key: 12-byte nonces, 16-byte tags."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)

    def seal(self, nonce: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
        """Ciphertext then tag."""
        return self._aead.encrypt(nonce, plaintext, associated_data)

    def open(self, nonce: bytes, ciphertext: bytes, associated_data: bytes) -> bytes:
        """The plaintext, or :class:`AuthenticationFailed`."""
        try:
            return self._aead.decrypt(nonce, ciphertext, associated_data)
        except InvalidTag:
            raise AuthenticationFailed("the ciphertext did not authenticate") from None


def aes_cmac(key: bytes, message: bytes) -> bytes:
    """AES-CMAC (RFC 4493); the caller checks the key length it needs."""
    mac = cmac.CMAC(algorithms.AES(key))
    mac.update(message)
    return mac.finalize()


def aes_cbc_pkcs7_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """AES-CBC with PKCS#7 padding (what PBES2 PKCS#8 files use)."""
    padder = padding.PKCS7(AES_BLOCK_BITS).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


# ----------------------------------------------------------------------- key agreement


def generate_x25519_key() -> X25519PrivateKey:
    """A fresh X25519 private key."""
    return X25519PrivateKey.generate()


def x25519_private_key(raw: bytes) -> X25519PrivateKey:
    """An X25519 private key from its 32 raw bytes (ValueError for another length)."""
    return X25519PrivateKey.from_private_bytes(raw)


def x25519_public_key(raw: bytes) -> X25519PublicKey:
    """An X25519 public key from its 32 raw bytes (ValueError for another length)."""
    return X25519PublicKey.from_public_bytes(raw)


def x25519_shared_secret(private_key: X25519PrivateKey, peer_public: bytes) -> bytes:
    """Raw X25519 (RFC 7748): 32 bytes. ValueError for a peer key that is not 32 bytes or
    is a low-order point, whose all-zero result RFC 7748 section 6.1 lets a party refuse
    (Noise section 4.1 allows it too); the zero check runs in constant time."""
    shared = private_key.exchange(x25519_public_key(peer_public))  # raises on all zeros
    if compare_digest(shared, bytes(X25519_LEN)):  # whatever the library version does
        raise ValueError("X25519 with a low-order point")
    return shared


def generate_p256_key() -> P256PrivateKey:
    """A fresh P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def p256_private_key(scalar: int) -> P256PrivateKey:
    """The P-256 private key with this scalar (ValueError when out of range)."""
    return ec.derive_private_key(scalar, ec.SECP256R1())


def p256_public_key(encoded: bytes) -> P256PublicKey:
    """A P-256 public key from its SEC1 encoding (compressed or uncompressed); ValueError
    for a point that is not on the curve."""
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), encoded)


def p256_point(encoded: bytes) -> tuple[int, int]:
    """The affine (x, y) of a SEC1-encoded P-256 point (ValueError when not on the curve)."""
    numbers = p256_public_key(encoded).public_numbers()
    return numbers.x, numbers.y


def p256_public_point(key: P256PrivateKey | P256PublicKey) -> bytes:
    """The uncompressed SEC1 point (``04 || X || Y``) of a key."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def p256_ecdh(private_key: P256PrivateKey, peer_public_key: P256PublicKey) -> bytes:
    """The raw ECDH shared secret: the 32-byte big-endian X of ``private * peer``."""
    return private_key.exchange(ec.ECDH(), peer_public_key)
