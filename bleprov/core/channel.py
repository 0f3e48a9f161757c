"""The secure channel every out-of-band mode ends in: AEAD with per-direction counters.

Each direction has its own 32-byte key and a 64-bit message counter that both sides keep;
the counter is the nonce (4 zero bytes then the counter, little-endian, exactly as a Noise
CipherState) and is never sent. So a replayed, reordered, dropped or truncated message
fails authentication, and the first failure closes the channel for good: there is no
resynchronisation to abuse. A message reflected back to its sender fails too, because the
two directions use different keys. Keys live in bytearrays that ``close`` overwrites;
Python may still hold copies it made internally (documented in docs/security.md).
"""

from __future__ import annotations

import enum
from typing import Final

from bleprov.core.crypto.primitives import AuthenticationFailed, ChaCha20Poly1305Key
from bleprov.core.errors import LocalProtocolError, ProtocolError
from bleprov.core.wire_codes import ErrorCode

KEY_SIZE: Final = 32
TAG_SIZE: Final = 16
#: Noise reserves 2^64 - 1; we stop well before so a counter never wraps.
MAX_MESSAGES: Final = (1 << 64) - 2
DEFAULT_IDLE_TIMEOUT: Final = 120.0


class ChannelError(ProtocolError):
    """A message failed authentication (tampered, replayed, reordered or truncated)."""

    code = ErrorCode.CHANNEL


class ChannelClosedError(ProtocolError):
    """The secure channel is closed: after an error, on request, or when idle too long."""

    code = ErrorCode.SECURE_CHANNEL_CLOSED


class IdleTimeout(ChannelClosedError):
    """No message in either direction for the idle timeout."""

    code = ErrorCode.IDLE_TIMEOUT


class Direction(enum.Enum):
    HOST_TO_DEVICE = "host->device"
    DEVICE_TO_HOST = "device->host"


def _nonce(counter: int) -> bytes:
    return b"\x00\x00\x00\x00" + counter.to_bytes(8, "little")


class _CipherState:
    """One direction: a key and the next counter (a Noise CipherState, minus rekey)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise LocalProtocolError("channel keys are 32 bytes")
        self._key = bytearray(key)
        self._aead: ChaCha20Poly1305Key | None = ChaCha20Poly1305Key(bytes(self._key))
        self.counter = 0

    def encrypt(self, plaintext: bytes, ad: bytes) -> bytes:
        if self._aead is None:
            raise ChannelClosedError("the channel is closed")
        if self.counter > MAX_MESSAGES:
            raise ChannelClosedError("message counter exhausted; open a new session")
        out = self._aead.seal(_nonce(self.counter), plaintext, ad)
        self.counter += 1
        return out

    def decrypt(self, ciphertext: bytes, ad: bytes) -> bytes:
        if self._aead is None:
            raise ChannelClosedError("the channel is closed")
        if len(ciphertext) < TAG_SIZE:
            raise ChannelError("message shorter than an authentication tag")
        try:
            out = self._aead.open(_nonce(self.counter), ciphertext, ad)
        except AuthenticationFailed:
            raise ChannelError(
                "message failed authentication (tampered, replayed, reordered or truncated)"
            ) from None
        self.counter += 1
        return out

    def erase(self) -> None:
        for i in range(len(self._key)):
            self._key[i] = 0
        self._aead = None


class SecureChannel:
    """Both directions of one session, from one side's point of view."""

    def __init__(
        self,
        *,
        send_key: bytes,
        receive_key: bytes,
        associated_data: bytes = b"",
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        now: float,
    ) -> None:
        if send_key == receive_key:
            raise LocalProtocolError("the two directions must use different keys")
        self._send = _CipherState(send_key)
        self._receive = _CipherState(receive_key)
        self._ad = associated_data
        self.idle_timeout = idle_timeout
        self._last_activity = now
        self._closed = False

    @classmethod
    def for_role(
        cls,
        *,
        is_host: bool,
        host_to_device_key: bytes,
        device_to_host_key: bytes,
        associated_data: bytes = b"",
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        now: float,
    ) -> SecureChannel:
        send, receive = (
            (host_to_device_key, device_to_host_key)
            if is_host
            else (device_to_host_key, host_to_device_key)
        )
        return cls(
            send_key=send,
            receive_key=receive,
            associated_data=associated_data,
            idle_timeout=idle_timeout,
            now=now,
        )

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def messages_sent(self) -> int:
        return self._send.counter

    @property
    def messages_received(self) -> int:
        return self._receive.counter

    def seal(self, plaintext: bytes, now: float) -> bytes:
        self._check_open(now)
        out = self._send.encrypt(plaintext, self._ad)
        self._last_activity = now
        return out

    def open(self, ciphertext: bytes, now: float) -> bytes:
        """Decrypt the next message; any failure closes the channel."""
        self._check_open(now)
        try:
            out = self._receive.decrypt(ciphertext, self._ad)
        except ProtocolError:
            self.close()
            raise
        self._last_activity = now
        return out

    def next_deadline(self) -> float | None:
        return None if self._closed else self._last_activity + self.idle_timeout

    def handle_timer(self, now: float) -> None:
        """Close the channel (and raise :class:`IdleTimeout`) once idle for too long."""
        if not self._closed and now >= self._last_activity + self.idle_timeout:
            self.close()
            raise IdleTimeout(f"no message for {self.idle_timeout:g} s")

    def _check_open(self, now: float) -> None:
        if self._closed:
            raise ChannelClosedError("the channel is closed")
        self.handle_timer(now)

    def close(self) -> None:
        """Erase both keys; every later call raises :class:`ChannelClosedError`."""
        self._closed = True
        self._send.erase()
        self._receive.erase()
