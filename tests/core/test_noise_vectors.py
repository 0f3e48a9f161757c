"""Our Noise implementation against published vectors, the specification, and misuse.

Vectors, embedded as data:

- ``Noise_NN_25519_ChaChaPoly_SHA256`` and ``Noise_NKpsk0_25519_ChaChaPoly_SHA256`` from
  haskell-cryptography/cacophony ``vectors/cacophony.txt`` (commit 8ee9d41e34a1), with
  their handshake hashes;
- ``Noise_NN_25519_ChaChaPoly_SHA256`` from mcginty/snow ``tests/vectors/snow.txt``
  (commit 8ac60f51cfe3), a second NN entry with other keys and a longer prologue (snow's
  file holds no NKpsk0 entry and no handshake hash).

These are every entry the two suites hold for our two protocol names (checked against the
files at those commits for issue 17: cacophony has one of each, psk included, snow one NN);
``tests/core/test_noise_transcript.py`` adds transcripts pinned from ``noiseprotocol``.

In these files messages 0 and 1 are the handshake; after it, even-numbered messages go
from initiator to responder and odd-numbered ones back, each direction counting its
nonces from 0.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from bleprov.core.crypto import noise
from bleprov.core.crypto.noise import (
    HandshakeFailed,
    HandshakeUsageError,
    NoiseHandshake,
    NoisePattern,
    transport_nonce,
)
from bleprov.core.crypto.primitives import AuthenticationFailed, hkdf_sha256
from bleprov.core.errors import LocalProtocolError, ProtocolError


@dataclass(frozen=True)
class Vector:
    source: str
    pattern: NoisePattern
    prologue: str
    init_ephemeral: str
    resp_ephemeral: str
    messages: tuple[tuple[str, str], ...]  # (payload, ciphertext)
    handshake_hash: str | None = None
    resp_static: str | None = None
    init_remote_static: str | None = None
    psk: str | None = None


CACOPHONY_NN = Vector(
    source="cacophony.txt Noise_NN_25519_ChaChaPoly_SHA256",
    pattern="NN",
    prologue="4a6f686e2047616c74",
    init_ephemeral="893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
    resp_ephemeral="bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
    handshake_hash="9223fec1b892ec9d0dc2fb3bbeb261f170d1ea679f9c44ccf34aa131b4f5d97e",
    messages=(
        (
            "4c756477696720766f6e204d69736573",
            "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944"
            "4c756477696720766f6e204d69736573",
        ),
        (
            "4d757272617920526f746862617264",
            "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843"
            "a0ff96bdf86b579ef7dbf94e812a7470b903c20a85a87e3a1fe863264ae547",
        ),
        ("462e20412e20486179656b", "eb1a3e3d80c1792b1bb9cb0e1382f8d8322bfb1ca7c4c8517bb686"),
        ("4361726c204d656e676572", "c781b198d2a974eb1da2c7d518c000cf6396de87ca540963c03713"),
        (
            "4a65616e2d426170746973746520536179",
            "c77048eb6919fdfe8fe45842bfc5b8d1ff50d1e20c717453ccdfe6176d805b996d",
        ),
        (
            "457567656e2042f6686d20766f6e2042617765726b",
            "61834d7069dcfb7a1adf8d5ac910f83fa04c73a67789895c6f5f995c5db2ce88e49b124178",
        ),
    ),
)

CACOPHONY_NKPSK0 = Vector(
    source="cacophony.txt Noise_NKpsk0_25519_ChaChaPoly_SHA256",
    pattern="NKpsk0",
    prologue="4a6f686e2047616c74",
    psk="54686973206973206d7920417573747269616e20706572737065637469766521",
    init_ephemeral="893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
    init_remote_static="31e0303fd6418d2f8c0e78b91f22e8caed0fbe48656dcf4767e4834f701b8f62",
    resp_static="4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
    resp_ephemeral="bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
    handshake_hash="1609ef057bdd62c752b5960546a255a78aebff08c5f07ef2adaa1db8350e7077",
    messages=(
        (
            "4c756477696720766f6e204d69736573",
            "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944"
            "190fec41487219f2069c3ba7b7f9521437045935231f0ed399dfd4baf6bd825b",
        ),
        (
            "4d757272617920526f746862617264",
            "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843"
            "85010e0c56e886e6da0c69aee7388bcf4000cc357af5ebd11a46a169a3712c",
        ),
        ("462e20412e20486179656b", "4beed26535f1a387c950fab9a162dc613cc5bf84e8a62653130b83"),
        ("4361726c204d656e676572", "ceaffe71ce7f1bf7b080736d62e0579ce5dc1530a36e7df795a4cc"),
        (
            "4a65616e2d426170746973746520536179",
            "da927a272831394122d0f2fef3e16ddf0814c4878401135b44b1e23873b45b2929",
        ),
        (
            "457567656e2042f6686d20766f6e2042617765726b",
            "4fed2b394fb4dbdc9cf863bc99ebb3397651d27bdd32e40d8f7fed109e46445c0fd66fc3f3",
        ),
    ),
)

SNOW_NN = Vector(
    source="snow.txt Noise_NN_25519_ChaChaPoly_SHA256",
    pattern="NN",
    prologue="5468657265206973206e6f20726967687420616e642077726f6e672e2054686572652773206f"
    "6e6c792066756e20616e6420626f72696e672e",
    init_ephemeral="ba743ce40b65ad7ec0700dc2e57de4791022a8f42cd46517c6689c5c812b3b36",
    resp_ephemeral="d5cb9c3d9df2b6263f292f59099680ab2b523cf02b43a4c534b1fa94f9a80ed8",
    messages=(
        (
            "d369dc8436b80ad2936b4179ef262a0d174c06e3d452de5f22a7ca0326baaac7",
            "479a148ee78e18278f7716338574086a12bf8d90cc54c6c88ae6a4275dbd1478"
            "d369dc8436b80ad2936b4179ef262a0d174c06e3d452de5f22a7ca0326baaac7",
        ),
        (
            "87f4ce9acdcfe73e88f0d2b7e8b6009f07c5a42b3412909c1b7ce407a763ebd1",
            "5f1bc611a449717c2fc7c33a0f3976beae914c336d2a761c2f6e1ee2ab721f7c"
            "166608582f25b34bf5ebe478049971b64e5982d8b546b1cfa58fae828b7c8137"
            "562fdec5808f41fadeeee43013019277",
        ),
        (
            "bdc326451b8af9b6b82a2054643878d9eeaea4845c6b1e9ba616b2723c2ef272",
            "15f337bd32ddb96a17765a9499a4eb24b757d59c78d5366fdd56a2eab7eed11a"
            "0b6d4ed2947c0bf83d9d625ab90ee60b",
        ),
        (
            "a783aa12cefa403d1dff9d6ac924f860a15d1ba21c2c4976f8fa88d76e590fef",
            "6b676682c308c230a602d1997ff9e94b815dbc497346a4144fc4290021a2dbfc"
            "bee618798a8eb5042562a637927d4e98",
        ),
    ),
)

VECTORS = [CACOPHONY_NN, CACOPHONY_NKPSK0, SNOW_NN]


def _opt(hex_value: str | None) -> bytes | None:
    return None if hex_value is None else bytes.fromhex(hex_value)


def make_pair(vector: Vector) -> tuple[NoiseHandshake, NoiseHandshake]:
    resp_static = _opt(vector.resp_static)
    initiator = NoiseHandshake(
        vector.pattern,
        initiator=True,
        local_static=None,
        remote_static=_opt(vector.init_remote_static),
        psk=_opt(vector.psk),
        prologue=bytes.fromhex(vector.prologue),
        ephemeral_for_tests=bytes.fromhex(vector.init_ephemeral),
    )
    responder = NoiseHandshake(
        vector.pattern,
        initiator=False,
        local_static=None
        if resp_static is None
        else X25519PrivateKey.from_private_bytes(resp_static),
        remote_static=None,
        psk=_opt(vector.psk),
        prologue=bytes.fromhex(vector.prologue),
        ephemeral_for_tests=bytes.fromhex(vector.resp_ephemeral),
    )
    return initiator, responder


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.source)
def test_published_vector(vector: Vector) -> None:
    initiator, responder = make_pair(vector)
    # The NK vector's initiator knows the responder's static key: it must match the private one.
    if vector.resp_static is not None:
        static = X25519PrivateKey.from_private_bytes(bytes.fromhex(vector.resp_static))
        assert static.public_key().public_bytes_raw().hex() == vector.init_remote_static

    for index, (payload_hex, ciphertext_hex) in enumerate(vector.messages[:2]):
        sender, receiver = (initiator, responder) if index == 0 else (responder, initiator)
        assert sender.should_write and not receiver.should_write
        message = sender.write_message(bytes.fromhex(payload_hex))
        assert message.hex() == ciphertext_hex
        assert receiver.read_message(message).hex() == payload_hex

    assert initiator.is_complete and responder.is_complete
    assert not initiator.should_write and not responder.should_write
    assert initiator.handshake_hash == responder.handshake_hash
    if vector.handshake_hash is not None:
        assert initiator.handshake_hash.hex() == vector.handshake_hash

    i_to_r, r_to_i = initiator.split_keys()
    assert responder.split_keys() == (i_to_r, r_to_i)
    assert len(i_to_r) == len(r_to_i) == 32 and i_to_r != r_to_i

    counters = {0: 0, 1: 0}
    for index, (payload_hex, ciphertext_hex) in enumerate(vector.messages[2:], start=2):
        direction = index % 2
        aead = ChaCha20Poly1305(i_to_r if direction == 0 else r_to_i)
        nonce = transport_nonce(counters[direction])
        counters[direction] += 1
        payload, ciphertext = bytes.fromhex(payload_hex), bytes.fromhex(ciphertext_hex)
        assert aead.encrypt(nonce, payload, b"") == ciphertext
        assert aead.decrypt(nonce, ciphertext, b"") == payload


# --- the specification's building blocks ------------------------------------------------


def test_noise_hkdf_is_rfc_5869_with_ck_as_salt_and_no_info() -> None:
    """Noise's HKDF (section 4.3) equals RFC 5869's with ``salt = ck`` and empty info: an
    independent implementation (``primitives.hkdf_sha256``) gives the same outputs."""
    chaining_key, ikm = bytes(range(32)), bytes(range(32, 64))
    expected = hkdf_sha256(ikm, 96, salt=chaining_key, info=b"")
    assert b"".join(noise._hkdf(chaining_key, ikm, 3)) == expected
    assert b"".join(noise._hkdf(chaining_key, b"", 2)) == hkdf_sha256(
        b"", 64, salt=chaining_key, info=b""
    )


def test_initialize_symmetric_pads_a_short_name_and_hashes_a_long_one() -> None:
    """Section 5.2: NN's name is exactly HASHLEN (32) bytes and is used as is; NKpsk0's is
    longer and is hashed. Both start with ``ck = h``."""
    nn = noise._SymmetricState(b"Noise_NN_25519_ChaChaPoly_SHA256")
    assert nn.handshake_hash == b"Noise_NN_25519_ChaChaPoly_SHA256" == nn.chaining_key
    name = b"Noise_NKpsk0_25519_ChaChaPoly_SHA256"
    nk = noise._SymmetricState(name)
    assert nk.handshake_hash == hashlib.sha256(name).digest() == nk.chaining_key
    assert noise._SymmetricState(b"short").handshake_hash == b"short" + bytes(27)


def test_cipher_state_without_a_key_passes_data_through_and_stops_at_the_last_nonce() -> None:
    """Section 5.1: no key means no encryption; nonce 2**64-1 is reserved, so using it is
    an error, and a failed decryption leaves the nonce where it was."""
    cipher = noise._CipherState()
    assert cipher.encrypt_with_ad(b"ad", b"clear") == b"clear"
    assert cipher.decrypt_with_ad(b"ad", b"clear") == b"clear"
    cipher.initialize_key(bytes(32))
    sealed = cipher.encrypt_with_ad(b"ad", b"one")
    assert ChaCha20Poly1305(bytes(32)).decrypt(transport_nonce(0), sealed, b"ad") == b"one"
    receiver = noise._CipherState()
    receiver.initialize_key(bytes(32))
    with pytest.raises(AuthenticationFailed):
        receiver.decrypt_with_ad(b"other ad", sealed)
    assert receiver.decrypt_with_ad(b"ad", sealed) == b"one"  # nonce 0 still
    cipher._nonce = 2**64 - 2
    cipher.encrypt_with_ad(b"", b"last")
    with pytest.raises(HandshakeUsageError, match="nonce exhausted"):
        cipher.encrypt_with_ad(b"", b"one too many")
    with pytest.raises(HandshakeUsageError, match="nonce exhausted"):
        cipher.decrypt_with_ad(b"", sealed)


@pytest.mark.parametrize(("pattern", "overheads"), [("NKpsk0", (48, 48)), ("NN", (32, 48))])
def test_message_overheads_follow_the_tokens(
    pattern: NoisePattern, overheads: tuple[int, int]
) -> None:
    assert noise._PATTERNS[pattern].message_overheads == overheads


def test_a_finished_handshake_holds_no_secret_state() -> None:
    """After Split only the transport keys remain, until they are taken."""
    initiator, responder = fresh_pair("NKpsk0")
    responder.read_message(initiator.write_message(b""))
    initiator.read_message(responder.write_message(b""))
    for side in (initiator, responder):
        assert side._symmetric is None
        assert side._ephemeral is None and side._local_static is None and side._psk is None
        side.split_keys()
        assert side._transport_keys is None


def test_transport_nonce_layout() -> None:
    assert transport_nonce(0) == bytes(12)
    assert transport_nonce(0x0102) == bytes(4) + b"\x02\x01" + bytes(6)
    assert transport_nonce(2**64 - 2) == bytes(4) + b"\xfe" + b"\xff" * 7
    for bad in (-1, 2**64 - 1):
        with pytest.raises(ValueError, match="counter"):
            transport_nonce(bad)


# --- fresh keys, random payloads -----------------------------------------------------------

DEVICE_STATIC = X25519PrivateKey.from_private_bytes(bytes(range(32)))
PSK = bytes(range(100, 132))
PROLOGUE = b"bleprov test prologue"


def fresh_pair(
    pattern: NoisePattern,
    *,
    initiator_psk: bytes = PSK,
    responder_psk: bytes = PSK,
    remote_static: bytes | None = None,
    initiator_prologue: bytes = PROLOGUE,
) -> tuple[NoiseHandshake, NoiseHandshake]:
    if pattern == "NN":
        return (
            NoiseHandshake(
                "NN",
                initiator=True,
                local_static=None,
                remote_static=None,
                psk=None,
                prologue=initiator_prologue,
            ),
            NoiseHandshake(
                "NN",
                initiator=False,
                local_static=None,
                remote_static=None,
                psk=None,
                prologue=PROLOGUE,
            ),
        )
    if remote_static is None:
        remote_static = DEVICE_STATIC.public_key().public_bytes_raw()
    return (
        NoiseHandshake(
            "NKpsk0",
            initiator=True,
            local_static=None,
            remote_static=remote_static,
            psk=initiator_psk,
            prologue=initiator_prologue,
        ),
        NoiseHandshake(
            "NKpsk0",
            initiator=False,
            local_static=DEVICE_STATIC,
            remote_static=None,
            psk=responder_psk,
            prologue=PROLOGUE,
        ),
    )


@settings(max_examples=25, deadline=None)
@given(
    pattern=st.sampled_from(["NKpsk0", "NN"]),
    first=st.binary(max_size=300),
    second=st.binary(max_size=300),
)
def test_fresh_handshakes_agree(pattern: NoisePattern, first: bytes, second: bytes) -> None:
    initiator, responder = fresh_pair(pattern)
    assert responder.read_message(initiator.write_message(first)) == first
    assert initiator.read_message(responder.write_message(second)) == second
    assert initiator.handshake_hash == responder.handshake_hash
    assert initiator.split_keys() == responder.split_keys()


# --- negative tests ---------------------------------------------------------------------


def test_wrong_psk_fails_at_the_responder() -> None:
    initiator, responder = fresh_pair("NKpsk0", initiator_psk=bytes(32))
    message = initiator.write_message(b"hello")
    with pytest.raises(HandshakeFailed, match="authentication") as excinfo:
        responder.read_message(message)
    assert isinstance(excinfo.value, ProtocolError)
    assert PSK.hex() not in str(excinfo.value)


def test_wrong_responder_static_key_fails() -> None:
    other = X25519PrivateKey.from_private_bytes(bytes(range(1, 33))).public_key()
    initiator, responder = fresh_pair("NKpsk0", remote_static=other.public_bytes_raw())
    with pytest.raises(HandshakeFailed):
        responder.read_message(initiator.write_message(b""))


@pytest.mark.parametrize("pattern", ["NKpsk0", "NN"])
def test_prologue_mismatch_fails(pattern: NoisePattern) -> None:
    initiator, responder = fresh_pair(pattern, initiator_prologue=b"another device")
    first = initiator.write_message(b"")
    if pattern == "NKpsk0":
        with pytest.raises(HandshakeFailed):
            responder.read_message(first)
        return
    responder.read_message(first)  # NN's first message is not authenticated
    with pytest.raises(HandshakeFailed):
        initiator.read_message(responder.write_message(b""))


FIRST_MESSAGE_OVERHEAD = {"NKpsk0": 48, "NN": 32}


def deliver_then_reply(initiator: NoiseHandshake, responder: NoiseHandshake, first: bytes) -> None:
    responder.read_message(first)
    initiator.read_message(responder.write_message(b""))


@pytest.mark.parametrize("pattern", ["NKpsk0", "NN"])
def test_every_tampered_byte_is_caught(pattern: NoisePattern) -> None:
    payload = b"payload one"
    for index in range(FIRST_MESSAGE_OVERHEAD[pattern] + len(payload)):
        initiator, responder = fresh_pair(pattern)
        message = bytearray(initiator.write_message(payload))
        message[index] ^= 0x40
        with pytest.raises(HandshakeFailed):
            deliver_then_reply(initiator, responder, bytes(message))
        # NKpsk0 authenticates its first message: the responder refuses it at once. NN cannot;
        # its initiator notices at the reply.
        assert responder.is_complete == (pattern == "NN")

    for index in range(48 + 3):
        initiator, responder = fresh_pair(pattern)
        responder.read_message(initiator.write_message(payload))
        message = bytearray(responder.write_message(b"two"))
        message[index] ^= 0x01
        with pytest.raises(HandshakeFailed):
            initiator.read_message(bytes(message))
        assert not initiator.is_complete


@pytest.mark.parametrize("pattern", ["NKpsk0", "NN"])
def test_truncated_and_oversized_messages_fail(pattern: NoisePattern) -> None:
    shortest = FIRST_MESSAGE_OVERHEAD[pattern]
    for length in (0, 1, shortest - 1):
        _, responder = fresh_pair(pattern)
        with pytest.raises(HandshakeFailed, match=f"of {length} bytes, expected {shortest}"):
            responder.read_message(bytes(length))
    _, responder = fresh_pair(pattern)
    with pytest.raises(HandshakeFailed, match="65536 bytes"):
        responder.read_message(bytes(65536))
    initiator, responder = fresh_pair(pattern)
    responder.read_message(initiator.write_message(b""))
    second = responder.write_message(b"")
    with pytest.raises(HandshakeFailed, match="of 47 bytes, expected 48"):
        initiator.read_message(second[:47])


def test_low_order_ephemeral_fails_typed() -> None:
    """An all-zero X25519 key gives an all-zero secret: refused, as a HandshakeFailed."""
    _, responder = fresh_pair("NN")
    responder.read_message(bytes(32))  # NN: the first message is just e, unauthenticated
    with pytest.raises(HandshakeFailed, match="no shared secret"):
        responder.write_message(b"")
    with pytest.raises(HandshakeUsageError, match="failed"):
        responder.write_message(b"")

    _, responder = fresh_pair("NKpsk0")
    with pytest.raises(HandshakeFailed):
        responder.read_message(bytes(48))  # es with a low-order e

    initiator, _ = fresh_pair("NKpsk0", remote_static=bytes(32))  # a low-order static key
    with pytest.raises(HandshakeFailed, match="no shared secret"):
        initiator.write_message(b"")


@pytest.mark.parametrize("pattern", ["NKpsk0", "NN"])
def test_messages_out_of_order(pattern: NoisePattern) -> None:
    initiator, responder = fresh_pair(pattern)
    with pytest.raises(HandshakeUsageError, match="write_message is due"):
        initiator.read_message(bytes(48))
    with pytest.raises(HandshakeUsageError, match="read_message is due"):
        responder.write_message(b"")
    first = initiator.write_message(b"")
    with pytest.raises(HandshakeUsageError, match="read_message is due"):
        initiator.write_message(b"")
    responder.read_message(first)
    with pytest.raises(HandshakeUsageError, match="write_message is due"):
        responder.read_message(first)  # a replayed first message
    second = responder.write_message(b"")
    initiator.read_message(second)
    for side in (initiator, responder):
        assert side.is_complete
        with pytest.raises(HandshakeUsageError, match="complete"):
            side.write_message(b"")
        with pytest.raises(HandshakeUsageError, match="complete"):
            side.read_message(second)
    assert isinstance(HandshakeUsageError("x"), LocalProtocolError)


def test_peer_message_in_the_wrong_slot_fails() -> None:
    """An initiator fed another initiator's first message in place of the reply."""
    initiator, responder = fresh_pair("NKpsk0")
    other_initiator, _ = fresh_pair("NKpsk0")
    responder.read_message(initiator.write_message(b""))
    with pytest.raises(HandshakeFailed):
        initiator.read_message(other_initiator.write_message(b""))


def test_keys_and_hash_only_after_completion_and_keys_once() -> None:
    initiator, responder = fresh_pair("NKpsk0")
    for side in (initiator, responder):
        with pytest.raises(HandshakeUsageError, match="only after completion"):
            side.split_keys()
        with pytest.raises(HandshakeUsageError, match="only after completion"):
            _ = side.handshake_hash
    responder.read_message(initiator.write_message(b""))
    with pytest.raises(HandshakeUsageError, match="only after completion"):
        responder.split_keys()
    initiator.read_message(responder.write_message(b""))
    keys = initiator.split_keys()
    with pytest.raises(HandshakeUsageError, match="already taken"):
        initiator.split_keys()
    assert responder.split_keys() == keys
    assert len(initiator.handshake_hash) == 32  # the hash stays available


def test_a_failed_handshake_cannot_continue() -> None:
    initiator, responder = fresh_pair("NKpsk0", initiator_psk=bytes(32))
    first = initiator.write_message(b"")
    with pytest.raises(HandshakeFailed):
        responder.read_message(first)
    assert not responder.is_complete and not responder.should_write
    with pytest.raises(HandshakeUsageError, match="failed"):
        responder.write_message(b"")
    with pytest.raises(HandshakeUsageError, match="failed"):
        responder.read_message(first)
    with pytest.raises(HandshakeUsageError):
        responder.split_keys()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pattern": "NN", "initiator": True, "psk": PSK}, "psk is not used"),
        (
            {"pattern": "NN", "initiator": False, "local_static": DEVICE_STATIC},
            "local_static is not used",
        ),
        ({"pattern": "NKpsk0", "initiator": True, "remote_static": bytes(32)}, "psk is required"),
        ({"pattern": "NKpsk0", "initiator": True, "psk": PSK}, "remote_static is required"),
        (
            {"pattern": "NKpsk0", "initiator": True, "psk": PSK[:16], "remote_static": bytes(32)},
            "psk must be 32 bytes, got 16",
        ),
        (
            {"pattern": "NKpsk0", "initiator": True, "psk": PSK, "remote_static": bytes(31)},
            "remote_static must be 32 bytes",
        ),
        (
            {
                "pattern": "NKpsk0",
                "initiator": True,
                "psk": PSK,
                "remote_static": bytes(32),
                "local_static": DEVICE_STATIC,
            },
            "local_static is not used",
        ),
        ({"pattern": "NKpsk0", "initiator": False, "psk": PSK}, "local_static is required"),
        (
            {
                "pattern": "NKpsk0",
                "initiator": False,
                "psk": PSK,
                "local_static": DEVICE_STATIC,
                "remote_static": bytes(32),
            },
            "remote_static is not used",
        ),
        ({"pattern": "XX", "initiator": True}, "unsupported Noise pattern"),
        (
            {"pattern": "NN", "initiator": True, "ephemeral_for_tests": bytes(16)},
            "ephemeral_for_tests must be 32 bytes",
        ),
    ],
)
def test_misconfiguration_is_refused(kwargs: dict[str, object], match: str) -> None:
    arguments: dict[str, object] = {
        "local_static": None,
        "remote_static": None,
        "psk": None,
        "prologue": b"",
    }
    arguments.update(kwargs)
    with pytest.raises(HandshakeUsageError, match=match) as excinfo:
        NoiseHandshake(**arguments)  # type: ignore[arg-type]
    assert PSK.hex() not in str(excinfo.value)


def test_oversized_payload_is_refused_before_anything_is_sent() -> None:
    initiator, responder = fresh_pair("NKpsk0")
    with pytest.raises(HandshakeUsageError, match="exceeds"):
        initiator.write_message(bytes(65535 - 48 + 1))
    largest = initiator.write_message(bytes(65535 - 48))
    assert len(largest) == 65535
    assert responder.read_message(largest) == bytes(65535 - 48)


def test_repr_shows_no_secrets() -> None:
    initiator, responder = fresh_pair("NKpsk0")
    responder.read_message(initiator.write_message(b""))
    initiator.read_message(responder.write_message(b""))
    i_to_r, r_to_i = initiator.split_keys()
    text = repr(initiator) + repr(responder)
    assert "NoiseHandshake(NKpsk0, initiator, state=complete)" in text
    for secret in (PSK, i_to_r, r_to_i, DEVICE_STATIC.private_bytes_raw()):
        assert secret.hex() not in text
        assert repr(secret) not in text
