"""Session-layer messages: what one framing message carries before and after the handshake.

Every message is a deterministic CBOR array whose first element is its type
(docs/protocol.md, "Session messages"):

- ``[1, mode, body]`` HELLO, host to device: the chosen out-of-band mode and its first
  handshake message.
- ``[2, body]`` HANDSHAKE: the next handshake message, either way.
- ``[3, code, retry_after]`` REFUSED: plaintext, before any key exists; the session ends.
- ``[4, ciphertext]`` SECURE: a sealed :class:`Inner` record.

Inside SECURE, the plaintext is ``[kind, body]``: 1 ATTESTATION (device to host), 2
CONFIRMED (compare mode: the user accepted the number on the host), 3 APPLICATION, 4
CLOSE (``body`` is an error code, 0 for a normal close), 5 CHAIN_REQUEST (host to device,
``body`` 1 or 2: the attestation's intermediate, or it and the root), 6 CHAIN (device to
host, the certificates asked for).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from bleprov.core import cbor
from bleprov.core.errors import MalformedData
from bleprov.core.mode_bits import Mode as Mode
from bleprov.core.mode_bits import mode_from_wire

#: Handshake messages are small (the largest is an attestation-free SPAKE2+ share);
#: anything bigger before the channel exists is refused.
MAX_HANDSHAKE_MESSAGE: Final = 4096
MAX_SECURE_MESSAGE: Final = (1 << 24) - 1


class MessageType(enum.IntEnum):
    HELLO = 1
    HANDSHAKE = 2
    REFUSED = 3
    SECURE = 4


class InnerKind(enum.IntEnum):
    ATTESTATION = 1
    CONFIRMED = 2
    APPLICATION = 3
    CLOSE = 4
    CHAIN_REQUEST = 5
    CHAIN = 6


@dataclass(frozen=True)
class Hello:
    mode: Mode
    body: bytes


@dataclass(frozen=True)
class Handshake:
    body: bytes


@dataclass(frozen=True)
class Refused:
    code: int
    retry_after: int = 0


@dataclass(frozen=True)
class Secure:
    ciphertext: bytes


SessionMessage = Hello | Handshake | Refused | Secure


@dataclass(frozen=True)
class Inner:
    kind: InnerKind
    body: bytes | int


def encode(message: SessionMessage) -> bytes:
    if isinstance(message, Hello):
        return cbor.dumps([MessageType.HELLO, int(message.mode), message.body])
    if isinstance(message, Handshake):
        return cbor.dumps([MessageType.HANDSHAKE, message.body])
    if isinstance(message, Refused):
        return cbor.dumps([MessageType.REFUSED, message.code, message.retry_after])
    return cbor.dumps([MessageType.SECURE, message.ciphertext])


def _loads(raw: bytes, limit: int) -> list[object]:
    if len(raw) > limit:
        raise MalformedData(f"message of {len(raw)} bytes exceeds {limit}")
    value = cbor.loads(raw, max_size=limit)
    if not isinstance(value, list) or not value:
        raise MalformedData("message must be a non-empty CBOR array")
    return list(value)


def _bytes(value: object, what: str, limit: int) -> bytes:
    if not isinstance(value, bytes) or len(value) > limit:
        raise MalformedData(f"{what} must be a byte string of at most {limit} bytes")
    return value


def _uint(value: object, what: str, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= hi:
        raise MalformedData(f"{what} must be an integer in [0, {hi}]")
    return value


def decode(raw: bytes) -> SessionMessage:
    """Parse one session message; anything malformed raises :class:`MalformedData`."""
    value = _loads(raw, MAX_SECURE_MESSAGE + 16)
    kind = _uint(value[0], "message type", 255)
    if kind == MessageType.SECURE and len(value) == 2:
        return Secure(_bytes(value[1], "ciphertext", MAX_SECURE_MESSAGE))
    if len(raw) > MAX_HANDSHAKE_MESSAGE:
        raise MalformedData("handshake message too large")
    if kind == MessageType.HELLO and len(value) == 3:
        try:
            mode = mode_from_wire(_uint(value[1], "mode", 255))
        except ValueError:
            raise MalformedData("unknown mode") from None
        return Hello(mode, _bytes(value[2], "hello body", MAX_HANDSHAKE_MESSAGE))
    if kind == MessageType.HANDSHAKE and len(value) == 2:
        return Handshake(_bytes(value[1], "handshake body", MAX_HANDSHAKE_MESSAGE))
    if kind == MessageType.REFUSED and len(value) == 3:
        return Refused(_uint(value[1], "error code", 255), _uint(value[2], "retry", 86400))
    raise MalformedData(f"unknown message type {kind} or wrong field count")


def encode_inner(inner: Inner) -> bytes:
    return cbor.dumps([int(inner.kind), inner.body])


def decode_inner(raw: bytes) -> Inner:
    value = _loads(raw, MAX_SECURE_MESSAGE)
    if len(value) != 2:
        raise MalformedData("inner record must have two fields")
    try:
        kind = InnerKind(_uint(value[0], "inner kind", 255))
    except ValueError:
        raise MalformedData("unknown inner record kind") from None
    if kind is InnerKind.CLOSE:
        return Inner(kind, _uint(value[1], "close code", 255))
    if kind is InnerKind.CHAIN_REQUEST:
        wanted = _uint(value[1], "chain request", 2)
        if wanted == 0:
            raise MalformedData("a chain request asks for 1 or 2 certificates")
        return Inner(kind, wanted)
    return Inner(kind, _bytes(value[1], "inner body", MAX_SECURE_MESSAGE))


def split_fields(body: bytes, count: int, what: str, limit: int = 512) -> list[bytes]:
    """Decode a handshake body that is a CBOR array of ``count`` byte strings."""
    value = _loads(body, MAX_HANDSHAKE_MESSAGE)
    if len(value) != count:
        raise MalformedData(f"{what} must have {count} fields")
    return [_bytes(v, what, limit) for v in value]


def join_fields(*fields: bytes) -> bytes:
    return cbor.dumps(list(fields))
