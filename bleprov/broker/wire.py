"""Topics and the envelope around session messages on the broker (pure: no I/O).

Topics, under a prefix (``bleprov/v1`` unless configured)::

    <prefix>/dev/<device-id>/info              retained: the device's info value; empty
                                               (the last will) when it is offline
    <prefix>/dev/<device-id>/s/<sid>/up        host -> device, one session
    <prefix>/dev/<device-id>/s/<sid>/down      device -> host, the same session

``sid`` is 128 random bits the host draws per session (32 lowercase hex digits), so two
sessions never share a topic. Each payload is one kind byte and a body; a DATA body is
one secure-session message, opaque to the broker. Every decoder bounds the length and
raises :class:`MalformedEnvelope` on anything else.
"""

from __future__ import annotations

import enum
import re
import secrets
from dataclasses import dataclass
from typing import Final

from bleprov.core.errors import MalformedData
from bleprov.core.identity import DEVICE_ID_PATTERN, validate_device_id

DEFAULT_PREFIX: Final = "bleprov/v1"
SESSION_ID_HEX: Final = 32
_SESSION_ID = re.compile(r"[0-9a-f]{32}", re.ASCII)
_PREFIX = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*", re.ASCII)
#: A CLOSE body is one reason byte.
CLOSE_BODY: Final = 1


class MalformedEnvelope(MalformedData):
    """A broker payload or topic is not a bleprov envelope (bad kind, length or name)."""


class Kind(enum.IntEnum):
    """The envelope's first byte. Up (host to device) and down kinds never overlap."""

    OPEN = 0x01
    DATA_UP = 0x02
    CLOSE_UP = 0x03
    ACCEPT = 0x11
    DATA_DOWN = 0x12
    CLOSE_DOWN = 0x13


UP_KINDS: Final = frozenset({Kind.OPEN, Kind.DATA_UP, Kind.CLOSE_UP})
DOWN_KINDS: Final = frozenset({Kind.ACCEPT, Kind.DATA_DOWN, Kind.CLOSE_DOWN})


class CloseReason(enum.IntEnum):
    """Why a side closed a session (sent in the clear: carries nothing secret)."""

    NORMAL = 0
    BUSY = 1  # the device is in another session (on BLE or the broker)
    ERROR = 2  # a malformed or oversized envelope, or the session failed
    OFFLINE = 3  # the device is leaving the broker


@dataclass(frozen=True)
class Envelope:
    kind: Kind
    body: bytes = b""

    def encode(self) -> bytes:
        return bytes([self.kind]) + self.body

    @classmethod
    def decode(cls, raw: bytes, *, allowed: frozenset[Kind], max_body: int) -> Envelope:
        """Parse one payload; ``allowed`` is the direction's kinds, ``max_body`` its bound."""
        if not 1 <= len(raw) <= 1 + max_body:
            raise MalformedEnvelope(f"envelope is {len(raw)} bytes, expected 1..{1 + max_body}")
        try:
            kind = Kind(raw[0])
        except ValueError:
            raise MalformedEnvelope(f"unknown envelope kind 0x{raw[0]:02x}") from None
        if kind not in allowed:
            raise MalformedEnvelope(f"envelope kind {kind.name} not allowed in this direction")
        body = raw[1:]
        if kind in (Kind.OPEN,) and body:
            raise MalformedEnvelope("OPEN carries no body")
        if kind in (Kind.CLOSE_UP, Kind.CLOSE_DOWN) and len(body) != CLOSE_BODY:
            raise MalformedEnvelope("CLOSE carries exactly one reason byte")
        if kind in (Kind.DATA_UP, Kind.DATA_DOWN, Kind.ACCEPT) and not body:
            raise MalformedEnvelope(f"{kind.name} needs a body")
        return cls(kind, bytes(body))

    def reason(self) -> CloseReason:
        """The reason of a CLOSE envelope (unknown values read as ERROR)."""
        try:
            return CloseReason(self.body[0])
        except (IndexError, ValueError):
            return CloseReason.ERROR


def close(kind: Kind, reason: CloseReason) -> bytes:
    return Envelope(kind, bytes([reason])).encode()


def new_session_id() -> str:
    """128 random bits: unguessable, so sessions neither mix nor collide."""
    return secrets.token_hex(SESSION_ID_HEX // 2)


@dataclass(frozen=True)
class Topics:
    """The topic names of one device under one prefix."""

    device_id: str
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        validate_device_id(self.device_id)
        if len(self.prefix) > 128 or _PREFIX.fullmatch(self.prefix) is None:
            raise MalformedEnvelope("topic prefix must be 1..128 of A-Z a-z 0-9 _ . - and /")

    @property
    def base(self) -> str:
        return f"{self.prefix}/dev/{self.device_id}"

    @property
    def info(self) -> str:
        return f"{self.base}/info"

    @property
    def all_up(self) -> str:
        """What the device subscribes to: every session's host-to-device topic."""
        return f"{self.base}/s/+/up"

    def up(self, session_id: str) -> str:
        return f"{self.base}/s/{check_session_id(session_id)}/up"

    def down(self, session_id: str) -> str:
        return f"{self.base}/s/{check_session_id(session_id)}/down"

    def session_of(self, topic: str) -> str:
        """The session ID of an up topic of this device, else :class:`MalformedEnvelope`."""
        head, tail = f"{self.base}/s/", "/up"
        if not (topic.startswith(head) and topic.endswith(tail)):
            raise MalformedEnvelope("not a session topic of this device")
        return check_session_id(topic[len(head) : -len(tail)])


def all_info(prefix: str = DEFAULT_PREFIX) -> str:
    """The wildcard a host subscribes to to see every announced device (like a scan)."""
    return f"{prefix}/dev/+/info"


def device_of_info_topic(topic: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The device ID in an info topic, else :class:`MalformedEnvelope`."""
    head, tail = f"{prefix}/dev/", "/info"
    if not (topic.startswith(head) and topic.endswith(tail)):
        raise MalformedEnvelope("not an info topic")
    device_id = topic[len(head) : -len(tail)]
    if DEVICE_ID_PATTERN.fullmatch(device_id) is None:
        raise MalformedEnvelope("info topic with a malformed device ID")
    return device_id


def check_session_id(session_id: str) -> str:
    if _SESSION_ID.fullmatch(session_id) is None:
        raise MalformedEnvelope("session ID must be 32 lowercase hex digits")
    return session_id
