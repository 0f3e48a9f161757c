"""The Noise handshakes of the ``qr`` and ``button`` modes: our own implementation of the
Noise Protocol Framework, revision 34 (2018-07-11), for exactly these two protocols.

``qr`` mode runs ``Noise_NKpsk0_25519_ChaChaPoly_SHA256``: the host (initiator) learns the
device's static X25519 key and a 32-byte PSK from the QR label, so the first message is
already authenticated to the device and only the holder of the label can complete the
handshake. ``button`` mode runs ``Noise_NN_25519_ChaChaPoly_SHA256``: unauthenticated
ephemeral-ephemeral key agreement, which the session layer confirms out of band.

Why our own (issue 17): ``noiseprotocol``, which this module used to wrap, has had no
release since 2020, and taking the transport keys meant reading its private state. Two
fixed patterns are about a hundred lines of the specification's own pseudo-code
(:class:`_CipherState` section 5.1, :class:`_SymmetricState` 5.2, :class:`NoiseHandshake`
5.3 with the psk rules of section 9), over the primitives of
:mod:`bleprov.core.crypto.primitives` (X25519, ChaCha20-Poly1305, HMAC-SHA256); SHA-256 is
:mod:`hashlib`. The cacophony and snow vectors (``tests/core/test_noise_vectors.py``) and
transcripts pinned from ``noiseprotocol`` (``tests/core/test_noise_transcript.py``) hold it
to the same bytes.

:class:`NoiseHandshake` makes misuse hard: the keys each pattern needs are checked at
construction, turns are enforced, a failed handshake cannot be continued, every failure
caused by the peer's bytes becomes :class:`HandshakeFailed` (never an exception of
``cryptography``), and the transport keys can be taken exactly once, so two transports can
never encrypt under the same key and nonce.

The transport itself is left to the session layer (:mod:`bleprov.core.channel`):
ChaCha20-Poly1305 under the keys of :meth:`NoiseHandshake.split_keys`, nonce
:func:`transport_nonce` (counter from 0 per direction), empty associated data, as Noise's
CipherState does. Rekey (section 11.3) is not used: a session never comes near 2**64
messages, and the channel refuses to go past the last nonce.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Final, Literal

from bleprov.core.crypto.primitives import (
    AuthenticationFailed,
    ChaCha20Poly1305Key,
    X25519PrivateKey,
    generate_x25519_key,
    hmac_sha256,
    x25519_private_key,
    x25519_shared_secret,
)
from bleprov.core.errors import LocalProtocolError, ProtocolError

NoisePattern = Literal["NKpsk0", "NN"]

#: X25519 public and private keys, and Noise's DHLEN.
X25519_KEY_LEN: Final = 32
PSK_LEN: Final = 32
#: SHA-256: Noise's HASHLEN, also the length of ``ck``, ``h`` and every cipher key.
HASH_LEN: Final = 32
#: Length of each transport key returned by :meth:`NoiseHandshake.split_keys`.
TRANSPORT_KEY_LEN: Final = 32
#: Poly1305 tag appended to every encrypted payload.
AEAD_TAG_LEN: Final = 16
#: Noise's limit on any handshake or transport message (specification, section 3).
MAX_NOISE_MESSAGE_LEN: Final = 65535
#: Nonce 2**64 - 1 is reserved by Noise (section 5.1); a transport must rekey or stop before.
MAX_TRANSPORT_NONCE: Final = 2**64 - 2


class _Token(enum.Enum):
    """The tokens of our two patterns (section 7.1); ``psk`` as the psk modifier adds it
    (section 9.1)."""

    E = "e"
    EE = "ee"
    ES = "es"
    PSK = "psk"


@dataclass(frozen=True)
class _PatternSpec:
    protocol_name: bytes
    #: The pre-message ``<- s``: both sides hash the responder's static key first (7.1).
    responder_static_premessage: bool
    #: Each handshake message's tokens, in order (first from the initiator).
    messages: tuple[tuple[_Token, ...], ...]

    @property
    def has_psk(self) -> bool:
        """A psk pattern: every ``e`` token also runs MixKey (section 9.2)."""
        return any(_Token.PSK in tokens for tokens in self.messages)

    @property
    def message_overheads(self) -> tuple[int, ...]:
        """Bytes each message adds to its payload: a key per ``e``, and a tag once a key
        is set (a DH token or ``psk`` sets one; it stays set for the rest)."""
        overheads: list[int] = []
        keyed = False
        for tokens in self.messages:
            keyed = keyed or any(token is not _Token.E for token in tokens)
            length = X25519_KEY_LEN * tokens.count(_Token.E)
            overheads.append(length + (AEAD_TAG_LEN if keyed else 0))
        return tuple(overheads)


_PATTERNS: Final[dict[str, _PatternSpec]] = {
    # <- s  ...  -> psk, e, es (payload encrypted: key set by psk)   <- e, ee
    "NKpsk0": _PatternSpec(
        b"Noise_NKpsk0_25519_ChaChaPoly_SHA256",
        True,
        ((_Token.PSK, _Token.E, _Token.ES), (_Token.E, _Token.EE)),
    ),
    # -> e (payload in clear: no key yet)   <- e, ee (payload encrypted)
    "NN": _PatternSpec(
        b"Noise_NN_25519_ChaChaPoly_SHA256", False, ((_Token.E,), (_Token.E, _Token.EE))
    ),
}


class HandshakeFailed(ProtocolError):
    """The peer's handshake message was malformed or failed authentication.

    The handshake is dead: start a new one with fresh ephemeral keys.
    """


class HandshakeUsageError(LocalProtocolError):
    """This side misused the handshake: wrong turn, wrong keys, or keys before completion."""


class _NoSharedSecret(Exception):
    """A DH with a low-order peer key: the caller words the failure for its direction."""


def transport_nonce(counter: int) -> bytes:
    """Noise's ChaChaPoly nonce: 4 zero bytes then the 64-bit counter, little-endian."""
    if not 0 <= counter <= MAX_TRANSPORT_NONCE:
        raise ValueError("a Noise transport counter is 0..2**64-2")
    return bytes(4) + counter.to_bytes(8, "little")


def _hkdf(chaining_key: bytes, input_key_material: bytes, outputs: Literal[2, 3]) -> list[bytes]:
    """Noise's HKDF (section 4.3): HMAC-SHA256 with ``ck`` as the key, 2 or 3 outputs."""
    temp_key = hmac_sha256(chaining_key, input_key_material)
    out = [hmac_sha256(temp_key, b"\x01")]
    for index in range(2, outputs + 1):
        out.append(hmac_sha256(temp_key, out[-1] + bytes([index])))
    return out


def _dh(private_key: X25519PrivateKey, public_key: bytes) -> bytes:
    try:
        return x25519_shared_secret(private_key, public_key)
    except ValueError:
        raise _NoSharedSecret from None


class _CipherState:
    """Section 5.1: a key (or none yet) and a nonce. Used for the handshake's payloads;
    the transport's CipherStates are :class:`bleprov.core.channel.SecureChannel`'s."""

    __slots__ = ("_aead", "_nonce")

    def __init__(self) -> None:
        self._aead: ChaCha20Poly1305Key | None = None
        self._nonce = 0

    def initialize_key(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305Key(key)
        self._nonce = 0

    def _next_nonce(self) -> bytes:
        if self._nonce > MAX_TRANSPORT_NONCE:  # 2**64 - 1 is reserved: signal an error
            raise HandshakeUsageError("Noise nonce exhausted")
        return transport_nonce(self._nonce)

    def encrypt_with_ad(self, associated_data: bytes, plaintext: bytes) -> bytes:
        if self._aead is None:
            return plaintext
        ciphertext = self._aead.seal(self._next_nonce(), plaintext, associated_data)
        self._nonce += 1
        return ciphertext

    def decrypt_with_ad(self, associated_data: bytes, ciphertext: bytes) -> bytes:
        """The plaintext, or :class:`AuthenticationFailed` (the nonce then stays put)."""
        if self._aead is None:
            return ciphertext
        plaintext = self._aead.open(self._next_nonce(), ciphertext, associated_data)
        self._nonce += 1
        return plaintext


class _SymmetricState:
    """Section 5.2: the chaining key ``ck``, the handshake hash ``h`` and a CipherState."""

    __slots__ = ("_cipher", "chaining_key", "handshake_hash")

    def __init__(self, protocol_name: bytes) -> None:
        # InitializeSymmetric: a name of at most HASHLEN bytes is zero-padded, else hashed.
        if len(protocol_name) <= HASH_LEN:
            self.handshake_hash = protocol_name.ljust(HASH_LEN, b"\x00")
        else:
            self.handshake_hash = hashlib.sha256(protocol_name).digest()
        self.chaining_key = self.handshake_hash
        self._cipher = _CipherState()

    def mix_key(self, input_key_material: bytes) -> None:
        self.chaining_key, temp_key = _hkdf(self.chaining_key, input_key_material, 2)
        self._cipher.initialize_key(temp_key)

    def mix_hash(self, data: bytes) -> None:
        self.handshake_hash = hashlib.sha256(self.handshake_hash + data).digest()

    def mix_key_and_hash(self, input_key_material: bytes) -> None:
        self.chaining_key, temp_hash, temp_key = _hkdf(self.chaining_key, input_key_material, 3)
        self.mix_hash(temp_hash)
        self._cipher.initialize_key(temp_key)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self._cipher.encrypt_with_ad(self.handshake_hash, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self._cipher.decrypt_with_ad(self.handshake_hash, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[bytes, bytes]:
        """The two CipherStates' keys: (initiator->responder, responder->initiator)."""
        first, second = _hkdf(self.chaining_key, b"", 2)
        return first, second


def _require_length(name: str, value: bytes | None, length: int) -> bytes:
    if value is None:
        raise HandshakeUsageError(f"{name} is required for this pattern and role")
    if len(value) != length:
        raise HandshakeUsageError(f"{name} must be {length} bytes, got {len(value)}")
    return bytes(value)


def _refuse(name: str, value: object) -> None:
    if value is not None:
        raise HandshakeUsageError(f"{name} is not used by this pattern and role")


class NoiseHandshake:
    """One side of one Noise handshake (NKpsk0 or NN), driven message by message: the
    HandshakeState of section 5.3.

    For NKpsk0 the initiator passes the responder's static public key as ``remote_static``
    and the responder its static private key as ``local_static``; both pass the 32-byte
    ``psk``. NN takes neither. ``prologue`` binds context both sides must agree on (for
    instance the advertised device info); a mismatch fails the handshake.
    ``ephemeral_for_tests`` fixes the ephemeral private key to replay published vectors;
    production code never passes it.
    """

    def __init__(
        self,
        pattern: NoisePattern,
        *,
        initiator: bool,
        local_static: X25519PrivateKey | None,
        remote_static: bytes | None,
        psk: bytes | None,
        prologue: bytes,
        ephemeral_for_tests: bytes | None = None,
    ) -> None:
        spec = _PATTERNS.get(pattern)
        if spec is None:
            raise HandshakeUsageError(f"unsupported Noise pattern {pattern!r}")
        self._pattern: NoisePattern = pattern
        self._initiator = initiator
        self._spec = spec
        self._overheads = spec.message_overheads
        self._psk_modifier = spec.has_psk
        self._next_message = 0
        self._failed = False
        self._handshake_hash: bytes | None = None
        self._transport_keys: tuple[bytes, bytes] | None = None

        self._psk: bytes | None = None
        self._local_static: X25519PrivateKey | None = None
        self._remote_static: bytes | None = None
        if pattern == "NKpsk0":
            self._psk = _require_length("psk", psk, PSK_LEN)
            if initiator:
                _refuse("local_static", local_static)
                self._remote_static = _require_length(
                    "remote_static", remote_static, X25519_KEY_LEN
                )
            else:
                _refuse("remote_static", remote_static)
                if local_static is None:
                    raise HandshakeUsageError("local_static is required for this pattern and role")
                self._local_static = local_static
        else:
            _refuse("psk", psk)
            _refuse("local_static", local_static)
            _refuse("remote_static", remote_static)
        self._ephemeral: X25519PrivateKey | None = None
        if ephemeral_for_tests is not None:
            self._ephemeral = x25519_private_key(
                _require_length("ephemeral_for_tests", ephemeral_for_tests, X25519_KEY_LEN)
            )
        self._remote_ephemeral: bytes | None = None

        # Initialize(): protocol name, prologue, then the pre-message's static key.
        self._symmetric: _SymmetricState | None = _SymmetricState(spec.protocol_name)
        self._symmetric.mix_hash(bytes(prologue))
        if spec.responder_static_premessage:
            if self._local_static is not None:
                self._symmetric.mix_hash(self._local_static.public_key().public_bytes_raw())
            else:
                assert self._remote_static is not None
                self._symmetric.mix_hash(self._remote_static)

    def __repr__(self) -> str:
        role = "initiator" if self._initiator else "responder"
        return f"NoiseHandshake({self._pattern}, {role}, state={self._state_name()})"

    def _state_name(self) -> str:
        if self._failed:
            return "failed"
        if self.is_complete:
            return "complete"
        return "write" if self.should_write else "read"

    @property
    def pattern(self) -> NoisePattern:
        return self._pattern

    @property
    def initiator(self) -> bool:
        return self._initiator

    @property
    def is_complete(self) -> bool:
        """Both handshake messages went through; the transport keys are ready."""
        return not self._failed and self._next_message == len(self._overheads)

    @property
    def should_write(self) -> bool:
        """It is this side's turn to call :meth:`write_message`."""
        if self._failed or self.is_complete:
            return False
        return (self._next_message % 2 == 0) == self._initiator

    def _check_turn(self, writing: bool) -> _SymmetricState:
        if self._failed:
            raise HandshakeUsageError("the handshake failed; start a new one")
        if self.is_complete:
            raise HandshakeUsageError("the handshake is complete; use the transport keys")
        if writing != self.should_write:
            expected = "write_message" if self.should_write else "read_message"
            raise HandshakeUsageError(f"out of turn: {expected} is due")
        assert self._symmetric is not None
        return self._symmetric

    def _mix_dh(self, symmetric: _SymmetricState, token: _Token) -> None:
        """``ee`` and ``es`` (section 5.3): MixKey(DH(...)) from this side's keys."""
        if token is _Token.EE:
            private, public = self._ephemeral, self._remote_ephemeral
        elif self._initiator:  # es: the initiator's e with the responder's s
            private, public = self._ephemeral, self._remote_static
        else:
            private, public = self._local_static, self._remote_ephemeral
        assert private is not None, f"{token} before this side's key"
        assert public is not None, f"{token} before the peer's key"
        symmetric.mix_key(_dh(private, public))

    def write_message(self, payload: bytes = b"") -> bytes:
        """The next handshake message to send, carrying ``payload``.

        Raises :class:`HandshakeFailed` when a peer key (the ephemeral in the peer's earlier
        message, or the configured ``remote_static``) is a low-order point that yields no
        shared secret; in NN this only shows here, not in :meth:`read_message`.
        """
        symmetric = self._check_turn(writing=True)
        overhead = self._overheads[self._next_message]
        if len(payload) + overhead > MAX_NOISE_MESSAGE_LEN:
            raise HandshakeUsageError(
                f"payload of {len(payload)} bytes exceeds the Noise message limit"
            )
        message = bytearray()
        try:
            for token in self._spec.messages[self._next_message]:
                if token is _Token.E:
                    if self._ephemeral is None:
                        self._ephemeral = generate_x25519_key()
                    public = self._ephemeral.public_key().public_bytes_raw()
                    message += public
                    symmetric.mix_hash(public)
                    if self._psk_modifier:
                        symmetric.mix_key(public)
                elif token is _Token.PSK:
                    assert self._psk is not None
                    symmetric.mix_key_and_hash(self._psk)
                else:
                    self._mix_dh(symmetric, token)
            message += symmetric.encrypt_and_hash(bytes(payload))
        except _NoSharedSecret:
            self._fail()
            raise HandshakeFailed("a peer key gives no shared secret") from None
        except Exception:
            self._fail()
            raise
        self._advance(symmetric)
        return bytes(message)

    def read_message(self, message: bytes) -> bytes:
        """Process the peer's next handshake message and return its payload."""
        symmetric = self._check_turn(writing=False)
        overhead = self._overheads[self._next_message]
        if not overhead <= len(message) <= MAX_NOISE_MESSAGE_LEN:
            self._fail()
            raise HandshakeFailed(
                f"handshake message of {len(message)} bytes, expected {overhead} to "
                f"{MAX_NOISE_MESSAGE_LEN}"
            )
        message = bytes(message)
        offset = 0
        try:
            for token in self._spec.messages[self._next_message]:
                if token is _Token.E:
                    public = message[offset : offset + X25519_KEY_LEN]
                    offset += X25519_KEY_LEN
                    self._remote_ephemeral = public
                    symmetric.mix_hash(public)
                    if self._psk_modifier:
                        symmetric.mix_key(public)
                elif token is _Token.PSK:
                    assert self._psk is not None
                    symmetric.mix_key_and_hash(self._psk)
                else:
                    self._mix_dh(symmetric, token)
            payload = symmetric.decrypt_and_hash(message[offset:])
        except AuthenticationFailed:
            self._fail()
            raise HandshakeFailed("handshake message failed authentication") from None
        except _NoSharedSecret:
            self._fail()
            raise HandshakeFailed("handshake message holds an unusable key") from None
        except Exception:
            self._fail()
            raise
        self._advance(symmetric)
        return payload

    def _fail(self) -> None:
        self._failed = True
        self._forget()

    def _forget(self) -> None:
        """Drop every secret but the transport keys (Python cannot wipe ``bytes``)."""
        self._symmetric = None
        self._ephemeral = None
        self._local_static = None
        self._psk = None

    def _advance(self, symmetric: _SymmetricState) -> None:
        self._next_message += 1
        if self._next_message == len(self._overheads):
            self._handshake_hash = symmetric.handshake_hash
            self._transport_keys = symmetric.split()
            self._forget()

    @property
    def handshake_hash(self) -> bytes:
        """Noise's ``h`` after the last message: 32 bytes identifying this session."""
        if self._handshake_hash is None or self._failed:
            raise HandshakeUsageError("the handshake hash exists only after completion")
        return self._handshake_hash

    def split_keys(self) -> tuple[bytes, bytes]:
        """The (initiator->responder, responder->initiator) transport keys, once.

        A second call raises: two transports under one key would reuse nonces.
        """
        if not self.is_complete:
            raise HandshakeUsageError("transport keys exist only after completion")
        if self._transport_keys is None:
            raise HandshakeUsageError("transport keys were already taken")
        keys, self._transport_keys = self._transport_keys, None
        return keys
