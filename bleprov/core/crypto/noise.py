"""The Noise handshakes of the ``qr`` and ``button`` modes, over the ``noiseprotocol`` package.

``qr`` mode runs ``Noise_NKpsk0_25519_ChaChaPoly_SHA256``: the host (initiator) learns the
device's static X25519 key and a 32-byte PSK from the QR label, so the first message is
already authenticated to the device and only the holder of the label can complete the
handshake. ``button`` mode runs ``Noise_NN_25519_ChaChaPoly_SHA256``: unauthenticated
ephemeral-ephemeral key agreement, which the session layer confirms out of band.

:class:`NoiseHandshake` wraps ``noise.connection.NoiseConnection`` so that misuse is hard:
the keys each pattern needs are checked at construction, turns are enforced, a failed
handshake cannot be continued, every failure caused by the peer's bytes becomes
:class:`HandshakeFailed` (never one of ``noiseprotocol``'s or ``cryptography``'s
exceptions), and the transport keys can be taken exactly once, so two transports can
never encrypt under the same key and nonce.

The transport itself is left to the session layer: ChaCha20-Poly1305 under the keys of
:meth:`NoiseHandshake.split_keys`, nonce :func:`transport_nonce` (counter from 0 per
direction), empty associated data, as Noise's CipherState does.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidTag
from noise.connection import Keypair, NoiseConnection
from noise.exceptions import (
    NoiseInvalidMessage,
    NoiseValueError,
)

from bleprov.core.crypto.primitives import X25519PrivateKey
from bleprov.core.errors import LocalProtocolError, ProtocolError

NoisePattern = Literal["NKpsk0", "NN"]

#: X25519 public and private keys, and Noise's DHLEN.
X25519_KEY_LEN: Final = 32
PSK_LEN: Final = 32
#: Length of each transport key returned by :meth:`NoiseHandshake.split_keys`.
TRANSPORT_KEY_LEN: Final = 32
#: Poly1305 tag appended to every encrypted payload.
AEAD_TAG_LEN: Final = 16
#: Noise's limit on any handshake or transport message (specification, section 3).
MAX_NOISE_MESSAGE_LEN: Final = 65535
#: Nonce 2**64 - 1 is reserved by Noise (section 5.1); a transport must rekey or stop before.
MAX_TRANSPORT_NONCE: Final = 2**64 - 2


@dataclass(frozen=True)
class _PatternSpec:
    protocol_name: str
    #: Bytes each handshake message adds to its payload, in order (first from the initiator).
    message_overheads: tuple[int, ...]


_PATTERNS: Final[dict[str, _PatternSpec]] = {
    # -> psk, e, es (payload encrypted: key set by psk)   <- e, ee (payload encrypted)
    "NKpsk0": _PatternSpec(
        "Noise_NKpsk0_25519_ChaChaPoly_SHA256",
        (X25519_KEY_LEN + AEAD_TAG_LEN, X25519_KEY_LEN + AEAD_TAG_LEN),
    ),
    # -> e (payload in clear: no key yet)                <- e, ee (payload encrypted)
    "NN": _PatternSpec(
        "Noise_NN_25519_ChaChaPoly_SHA256",
        (X25519_KEY_LEN, X25519_KEY_LEN + AEAD_TAG_LEN),
    ),
}


class HandshakeFailed(ProtocolError):
    """The peer's handshake message was malformed or failed authentication.

    The handshake is dead: start a new one with fresh ephemeral keys.
    """


class HandshakeUsageError(LocalProtocolError):
    """This side misused the handshake: wrong turn, wrong keys, or keys before completion."""


def transport_nonce(counter: int) -> bytes:
    """Noise's ChaChaPoly nonce: 4 zero bytes then the 64-bit counter, little-endian."""
    if not 0 <= counter <= MAX_TRANSPORT_NONCE:
        raise ValueError("a Noise transport counter is 0..2**64-2")
    return bytes(4) + counter.to_bytes(8, "little")


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
    """One side of one Noise handshake (NKpsk0 or NN), driven message by message.

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
        self._overheads = spec.message_overheads
        self._next_message = 0
        self._failed = False
        self._keys_taken = False
        self._handshake_hash: bytes | None = None

        connection: Any = NoiseConnection.from_name(spec.protocol_name.encode("ascii"))
        if pattern == "NKpsk0":
            connection.set_psks(psk=_require_length("psk", psk, PSK_LEN))
            if initiator:
                _refuse("local_static", local_static)
                connection.set_keypair_from_public_bytes(
                    Keypair.REMOTE_STATIC,
                    _require_length("remote_static", remote_static, X25519_KEY_LEN),
                )
            else:
                _refuse("remote_static", remote_static)
                if local_static is None:
                    raise HandshakeUsageError("local_static is required for this pattern and role")
                connection.set_keypair_from_private_bytes(
                    Keypair.STATIC, local_static.private_bytes_raw()
                )
        else:
            _refuse("psk", psk)
            _refuse("local_static", local_static)
            _refuse("remote_static", remote_static)
        connection.set_prologue(bytes(prologue))
        if initiator:
            connection.set_as_initiator()
        else:
            connection.set_as_responder()
        if ephemeral_for_tests is not None:
            connection.set_keypair_from_private_bytes(
                Keypair.EPHEMERAL,
                _require_length("ephemeral_for_tests", ephemeral_for_tests, X25519_KEY_LEN),
            )
        with warnings.catch_warnings():
            # noiseprotocol warns whenever an ephemeral key is preset; only vectors do that.
            warnings.filterwarnings("ignore", "One of ephemeral keypairs", UserWarning)
            connection.start_handshake()
        self._connection = connection

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

    def _check_turn(self, writing: bool) -> None:
        if self._failed:
            raise HandshakeUsageError("the handshake failed; start a new one")
        if self.is_complete:
            raise HandshakeUsageError("the handshake is complete; use the transport keys")
        if writing != self.should_write:
            expected = "write_message" if self.should_write else "read_message"
            raise HandshakeUsageError(f"out of turn: {expected} is due")

    def write_message(self, payload: bytes = b"") -> bytes:
        """The next handshake message to send, carrying ``payload``.

        Raises :class:`HandshakeFailed` when a peer key (the ephemeral in the peer's earlier
        message, or the configured ``remote_static``) is a low-order point that yields no
        shared secret; in NN this only shows here, not in :meth:`read_message`.
        """
        self._check_turn(writing=True)
        overhead = self._overheads[self._next_message]
        if len(payload) + overhead > MAX_NOISE_MESSAGE_LEN:
            raise HandshakeUsageError(
                f"payload of {len(payload)} bytes exceeds the Noise message limit"
            )
        try:
            message = self._connection.write_message(bytes(payload))
        except ValueError:
            # cryptography refuses an X25519 exchange whose result is all zeros.
            self._failed = True
            raise HandshakeFailed("a peer key gives no shared secret") from None
        except Exception:
            self._failed = True
            raise
        self._advance()
        return bytes(message)

    def read_message(self, message: bytes) -> bytes:
        """Process the peer's next handshake message and return its payload."""
        self._check_turn(writing=False)
        overhead = self._overheads[self._next_message]
        if not overhead <= len(message) <= MAX_NOISE_MESSAGE_LEN:
            self._failed = True
            raise HandshakeFailed(
                f"handshake message of {len(message)} bytes, expected {overhead} to "
                f"{MAX_NOISE_MESSAGE_LEN}"
            )
        try:
            payload = self._connection.read_message(bytes(message))
        except InvalidTag:
            self._failed = True
            raise HandshakeFailed("handshake message failed authentication") from None
        except (ValueError, NoiseValueError, NoiseInvalidMessage):
            self._failed = True
            raise HandshakeFailed("handshake message holds an unusable key") from None
        except Exception:
            self._failed = True
            raise
        self._advance()
        return bytes(payload)

    def _advance(self) -> None:
        self._next_message += 1
        if self._next_message == len(self._overheads):
            assert self._connection.handshake_finished, "noiseprotocol disagrees on the end"
            self._handshake_hash = bytes(self._connection.get_handshake_hash())

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
        if self._keys_taken:
            raise HandshakeUsageError("transport keys were already taken")
        protocol = self._connection.noise_protocol
        # noiseprotocol exposes Split()'s output only as CipherState objects; their ``k``
        # attribute holds the raw key (noise/state.py, CipherState.initialize_key).
        sending = bytes(protocol.cipher_state_encrypt.k)
        receiving = bytes(protocol.cipher_state_decrypt.k)
        assert len(sending) == len(receiving) == TRANSPORT_KEY_LEN
        self._keys_taken = True
        # Drop noiseprotocol's copies: from here on only the caller's transport holds them.
        self._connection = None
        return (sending, receiving) if self._initiator else (receiving, sending)
