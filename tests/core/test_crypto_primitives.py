"""bleprov.core.crypto.primitives gives the same bytes as independent implementations
(the standard library's), so moving callers onto it changed no format or wire byte."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from bleprov.core.crypto import primitives


def _hkdf_reference(ikm: bytes, length: int, salt: bytes | None, info: bytes) -> bytes:
    """RFC 5869 over the standard library's HMAC."""
    prk = hmac.digest(salt or bytes(32), ikm, "sha256")
    out, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.digest(prk, block + info + bytes([counter]), "sha256")
        out += block
    return out[:length]


@pytest.mark.parametrize(
    ("length", "salt"), [(32, None), (64, b"handshake hash" * 2), (80, None), (8, b"s")]
)
def test_hkdf_sha256_matches_rfc_5869(length: int, salt: bytes | None) -> None:
    ikm, info = b"input keying material", b"bleprov/1 test info"
    expected = _hkdf_reference(ikm, length, salt, info)
    assert primitives.hkdf_sha256(ikm, length, salt=salt, info=info) == expected


def test_hkdf_sha256_rfc_5869_case_3() -> None:
    """RFC 5869 appendix A.3: zero-length salt and info."""
    okm = primitives.hkdf_sha256(bytes([0x0B] * 22), 42, salt=None, info=b"")
    assert okm.hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )


def test_scrypt_matches_hashlib() -> None:
    salt = b"sixteen byte salt"
    derived = primitives.scrypt(b"passphrase", salt=salt, length=80, n=1 << 10, r=8, p=1)
    assert derived == hashlib.scrypt(b"passphrase", salt=salt, n=1 << 10, r=8, p=1, dklen=80)


@pytest.mark.parametrize("hash_name", ["sha1", "sha256"])
def test_pbkdf2_matches_hashlib(hash_name: str) -> None:
    derived = primitives.pbkdf2_hmac(
        b"password",
        salt=b"IEEE",
        iterations=4096,
        length=32,
        hash_name="sha1" if hash_name == "sha1" else "sha256",
    )
    assert derived == hashlib.pbkdf2_hmac(hash_name, b"password", b"IEEE", 4096, 32)


def test_wpa_psk_ieee_802_11i_vector() -> None:
    """IEEE 802.11i-2004 H.4.1: passphrase "password", SSID "IEEE"."""
    psk = primitives.pbkdf2_hmac(
        b"password", salt=b"IEEE", iterations=4096, length=32, hash_name="sha1"
    )
    assert psk.hex() == "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"


def test_chacha20_poly1305_rfc_8439_vector_and_typed_failure() -> None:
    """RFC 8439 section 2.8.2, then a flipped bit raises AuthenticationFailed only."""
    key = bytes(range(0x80, 0xA0))
    nonce = bytes.fromhex("070000004041424344454647")
    aad = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
    plaintext = (
        b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for "
        b"the future, sunscreen would be it."
    )
    sealed = primitives.ChaCha20Poly1305Key(key).seal(nonce, plaintext, aad)
    assert sealed[-16:].hex() == "1ae10b594f09e26a7e902ecbd0600691"
    assert sealed[:16].hex() == "d31a8d34648e60db7b86afbc53ef7ec2"
    assert primitives.ChaCha20Poly1305Key(key).open(nonce, sealed, aad) == plaintext
    tampered = bytes([sealed[0] ^ 1]) + sealed[1:]
    with pytest.raises(primitives.AuthenticationFailed):
        primitives.ChaCha20Poly1305Key(key).open(nonce, tampered, aad)


def test_aes_cmac_rfc_4493_vector() -> None:
    """RFC 4493 section 4, example 2 (16-byte message)."""
    key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    message = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
    assert primitives.aes_cmac(key, message).hex() == "070a16b46b4d4144f79bdd9dd04a287c"


def test_x25519_and_p256_keys_round_trip() -> None:
    x = primitives.generate_x25519_key()
    raw = x.public_key().public_bytes_raw()
    assert primitives.x25519_public_key(raw).public_bytes_raw() == raw
    assert primitives.x25519_private_key(x.private_bytes_raw()).private_bytes_raw() == (
        x.private_bytes_raw()
    )
    a, b = primitives.generate_p256_key(), primitives.generate_p256_key()
    point = primitives.p256_public_point(a)
    assert len(point) == 65 and point[0] == 4
    assert primitives.p256_point(point) == (
        a.public_key().public_numbers().x,
        a.public_key().public_numbers().y,
    )
    assert primitives.p256_ecdh(a, b.public_key()) == primitives.p256_ecdh(
        b, primitives.p256_public_key(point)
    )
    with pytest.raises(ValueError, match=r".+"):
        primitives.p256_public_key(b"\x04" + bytes(64))


def test_hmac_sha256_rfc_4231_case_2() -> None:
    mac = primitives.hmac_sha256(b"Jefe", b"what do ya want for nothing?")
    assert mac.hex() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert mac == hmac.digest(b"Jefe", b"what do ya want for nothing?", "sha256")


def test_x25519_shared_secret_rfc_7748_and_low_order_points() -> None:
    """RFC 7748 section 6.1; a low-order peer key (all-zero result) and a key of the wrong
    length are refused with ValueError, which Noise turns into a failed handshake."""
    alice = primitives.x25519_private_key(
        bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    )
    bob_public = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    assert primitives.x25519_shared_secret(alice, bob_public).hex() == (
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    )
    order_8 = bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")
    for low_order in (bytes(32), (1).to_bytes(32, "little"), order_8):
        with pytest.raises(ValueError, match=r".+"):
            primitives.x25519_shared_secret(alice, low_order)
    with pytest.raises(ValueError, match=r".+"):
        primitives.x25519_shared_secret(alice, bob_public[:31])
