"""Typed errors of the protocol core.

Every decoder in :mod:`bleprov.core` raises a subclass of :class:`ProtocolError` on bad
input, so adapters can reset an exchange on one ``except`` clause and still tell the user
what went wrong. Messages never contain secret material: at most lengths, counters and
field names.
"""

from __future__ import annotations

from typing import Final, TypeVar

T = TypeVar("T")

#: How many of the latest errors a link or server keeps for inspection (tests, counters).
RECENT_ERRORS: Final = 64


def keep_recent(history: list[T], item: T, limit: int = RECENT_ERRORS) -> None:
    """Append ``item``, keeping only about the latest ``limit``: a flood of failed
    connections must cost bounded memory (an exception holds its traceback's frames)."""
    history.append(item)
    if len(history) > 2 * limit:
        del history[:-limit]


class BleprovError(Exception):
    """Base class of every error bleprov raises on purpose."""


class ProfileError(BleprovError):
    """The GATT profile file is missing, malformed or inconsistent."""


class ProtocolError(BleprovError):
    """Input from the peer broke the protocol; the exchange must be reset."""

    #: Wire error code sent to the peer in a RESET frame (docs/protocol.md, "Error codes").
    code: int = 0x01


class MalformedData(ProtocolError):
    """A structure could not be decoded (bad length, bad field value)."""

    code = 0x02


class FramingError(ProtocolError):
    """Base class of the framing layer's errors."""

    code = 0x10


class MalformedFrame(FramingError):
    """A frame is too short, has unknown bits set or is larger than the frame size."""

    code = 0x11


class OversizedMessage(FramingError):
    """A message announces a total length above the receiver's bound."""

    code = 0x12


class SequenceError(FramingError):
    """A frame arrived out of order (lost, duplicated or reordered)."""

    code = 0x13


class TruncatedMessage(FramingError):
    """A message ended before its announced length, or overran it."""

    code = 0x14


class MessageTimeout(FramingError):
    """A message did not complete within the per-message timeout."""

    code = 0x15


class CreditViolation(FramingError):
    """The peer sent more frames than it had credit for."""

    code = 0x16


class PeerReset(FramingError):
    """The peer reset the exchange; ``peer_code`` carries its reason code."""

    code = 0x17

    def __init__(self, peer_code: int) -> None:
        super().__init__(f"the other side reset the exchange: {code_words(peer_code)}")
        self.peer_code = peer_code


class ChannelClosed(FramingError):
    """The channel is closed or reset; open a new exchange."""

    code = 0x18


class UnsupportedVersion(FramingError):
    """The peer speaks a framing or protocol version this side does not."""

    code = 0x19


class OpenTimeout(FramingError):
    """Device: a central connected and sent no OPEN within the open timeout."""

    code = 0x1A


class LocalProtocolError(BleprovError):
    """This side tried something the protocol forbids (a bug in the caller, not the peer)."""


#: What each wire error code (docs/protocol.md, section 5) means to a person, and what to
#: do about it: the host shows these instead of a bare ``0x44``.
_AGAIN = "try again; if it keeps happening, update bleprov or the device's firmware"
_CLOSER = "move closer to the device and try again"
CODE_WORDS: dict[int, str] = {
    0x01: f"the device saw a protocol error: {_AGAIN}",
    0x02: f"the device could not decode a message from this host: {_AGAIN}",
    0x10: f"the radio link garbled a message: {_CLOSER}",
    0x11: f"the radio link garbled a frame: {_CLOSER}",
    0x12: f"a message was larger than the device accepts: {_AGAIN}",
    0x13: f"a frame was lost or reordered on the radio link: {_CLOSER}",
    0x14: f"a message was cut short on the radio link: {_CLOSER}",
    0x15: f"a message did not arrive in time: {_CLOSER}",
    0x16: f"this host sent faster than the device allowed: {_AGAIN}",
    0x17: "the other side reset the exchange: try again",
    0x18: "the link was closed: try again",
    0x19: "the device speaks another protocol version: update bleprov or the device's firmware",
    0x1A: "the device waited too long for this host to start: try again",
    0x30: "an encrypted message failed its check (radio noise, or someone tampering): "
    "try again, and stop if it keeps happening",
    0x31: "the secure session is closed: run the command again",
    0x32: "the session was idle too long and the device closed it: run the command again",
    0x40: "the device does not offer this mode: `bleprov scan` lists the modes it offers; "
    "use one of those",
    0x41: "the device is locked after too many failed attempts: reset it with its physical button",
    0x42: "too many failed attempts: wait a little, then try again",
    0x43: "authentication failed: wrong label, code or number (the device counted the "
    "attempt); check it and try again",
    0x44: "the device's button window is not open: press its button first, then run the "
    "command again within the window",
    0x45: "another host tried to connect during the button window: make sure nobody else "
    "is setting the device up, then press its button again and retry",
    0x46: "the numbers on the two screens did not match: someone may be in between; try "
    "again, and stop if they differ again",
    0x47: f"the device got a message it did not expect at this point: {_AGAIN}",
    0x48: "the handshake took too long (a number not confirmed or typed in time?): run the "
    "command again and answer promptly",
    0x49: "the device's advertisement and its info disagree (someone may have altered one): "
    "move away from other radios and try again; do not use the device if it persists",
    0x4A: "the device is in a session with another host (over Bluetooth or the broker): "
    "try again in a minute",
    0x4B: "this button window was already used by another host: someone else may have set "
    "the device up; reset it by hand before you provision it",
    0x4C: "the device has an owner: its label no longer sets it up; ask the owner to open "
    "a window (bleprov peer open-window / zone open-window), or reset it by hand",
    0x4D: "the window request is out of bounds: a window lasts 1 to 15 minutes",
    0x4E: "no commissioning window is open on the device (it expired, was used, or had too "
    "many wrong codes): ask the owner to open a new one",
    0x50: "the device's attestation is invalid (certificate chain or signature): it may not "
    "be genuine; do not use it",
    0x51: "the device's manufacturer is not trusted here: give its root certificate with --trust",
    0x52: "the device's attestation could not be read: it may not be genuine; do not use it",
}


def code_words(code: int) -> str:
    """A person's sentence for a wire error code, with what to do; an unknown code is
    named (it may come from a newer device) with the generic advice."""
    return CODE_WORDS.get(
        code, f"the device refused with an unknown reason (code {code:#04x}): {_AGAIN}"
    )
