"""Typed errors of the protocol core.

Every decoder in :mod:`bleprov.core` raises a subclass of :class:`ProtocolError` on bad
input, so adapters can reset an exchange on one ``except`` clause and still tell the user
what went wrong. Messages never contain secret material: at most lengths, counters and
field names.
"""

from __future__ import annotations

from typing import Final, TypeVar

from bleprov.core.wire_codes import ErrorCode

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
    code: int = ErrorCode.PROTOCOL


class MalformedData(ProtocolError):
    """A structure could not be decoded (bad length, bad field value)."""

    code = ErrorCode.MALFORMED_DATA


class FramingError(ProtocolError):
    """Base class of the framing layer's errors."""

    code = ErrorCode.FRAMING


class MalformedFrame(FramingError):
    """A frame is too short, has unknown bits set or is larger than the frame size."""

    code = ErrorCode.MALFORMED_FRAME


class OversizedMessage(FramingError):
    """A message announces a total length above the receiver's bound."""

    code = ErrorCode.OVERSIZED_MESSAGE


class SequenceError(FramingError):
    """A frame arrived out of order (lost, duplicated or reordered)."""

    code = ErrorCode.SEQUENCE


class TruncatedMessage(FramingError):
    """A message ended before its announced length, or overran it."""

    code = ErrorCode.TRUNCATED_MESSAGE


class MessageTimeout(FramingError):
    """A message did not complete within the per-message timeout."""

    code = ErrorCode.MESSAGE_TIMEOUT


class CreditViolation(FramingError):
    """The peer sent more frames than it had credit for."""

    code = ErrorCode.CREDIT_VIOLATION


class PeerReset(FramingError):
    """The peer reset the exchange; ``peer_code`` carries its reason code."""

    code = ErrorCode.PEER_RESET

    def __init__(self, peer_code: int) -> None:
        super().__init__(f"the other side reset the exchange: {code_words(peer_code)}")
        self.peer_code = peer_code


class ChannelClosed(FramingError):
    """The channel is closed or reset; open a new exchange."""

    code = ErrorCode.CHANNEL_CLOSED


class UnsupportedVersion(FramingError):
    """The peer speaks a framing or protocol version this side does not."""

    code = ErrorCode.UNSUPPORTED_VERSION


class OpenTimeout(FramingError):
    """Device: a central connected and sent no OPEN within the open timeout."""

    code = ErrorCode.OPEN_TIMEOUT


class LocalProtocolError(BleprovError):
    """This side tried something the protocol forbids (a bug in the caller, not the peer)."""


#: What each wire error code (docs/protocol.md, section 5) means to a person, and what to
#: do about it: the host shows these instead of a bare ``0x44``.
_AGAIN = "try again; if it keeps happening, update bleprov or the device's firmware"
_CLOSER = "move closer to the device and try again"
CODE_WORDS: dict[int, str] = {
    ErrorCode.PROTOCOL: f"the device saw a protocol error: {_AGAIN}",
    ErrorCode.MALFORMED_DATA: f"the device could not decode a message from this host: {_AGAIN}",
    ErrorCode.FRAMING: f"the radio link garbled a message: {_CLOSER}",
    ErrorCode.MALFORMED_FRAME: f"the radio link garbled a frame: {_CLOSER}",
    ErrorCode.OVERSIZED_MESSAGE: f"a message was larger than the device accepts: {_AGAIN}",
    ErrorCode.SEQUENCE: f"a frame was lost or reordered on the radio link: {_CLOSER}",
    ErrorCode.TRUNCATED_MESSAGE: f"a message was cut short on the radio link: {_CLOSER}",
    ErrorCode.MESSAGE_TIMEOUT: f"a message did not arrive in time: {_CLOSER}",
    ErrorCode.CREDIT_VIOLATION: f"this host sent faster than the device allowed: {_AGAIN}",
    ErrorCode.PEER_RESET: "the other side reset the exchange: try again",
    ErrorCode.CHANNEL_CLOSED: "the link was closed: try again",
    ErrorCode.UNSUPPORTED_VERSION: (
        "the device speaks another protocol version: update bleprov or the device's firmware"
    ),
    ErrorCode.OPEN_TIMEOUT: "the device waited too long for this host to start: try again",
    ErrorCode.CHANNEL: (
        "an encrypted message failed its check (radio noise, or someone tampering): "
        "try again, and stop if it keeps happening"
    ),
    ErrorCode.SECURE_CHANNEL_CLOSED: "the secure session is closed: run the command again",
    ErrorCode.IDLE_TIMEOUT: (
        "the session was idle too long and the device closed it: run the command again"
    ),
    ErrorCode.MODE_NOT_ALLOWED: (
        "the device does not offer this mode: `bleprov scan` lists the modes it offers; "
        "use one of those"
    ),
    ErrorCode.LOCKED_OUT: (
        "the device is locked after too many failed attempts: reset it with its physical button"
    ),
    ErrorCode.TRY_LATER: "too many failed attempts: wait a little, then try again",
    ErrorCode.AUTHENTICATION_FAILED: (
        "authentication failed: wrong label, code or number (the device counted the "
        "attempt); check it and try again"
    ),
    ErrorCode.BUTTON_NOT_PRESSED: (
        "the device's button window is not open: press its button first, then run the "
        "command again within the window"
    ),
    ErrorCode.SESSION_OVERLAP: (
        "another host tried to connect during the button window: make sure nobody else "
        "is setting the device up, then press its button again and retry"
    ),
    ErrorCode.USER_REJECTED: (
        "the numbers on the two screens did not match: someone may be in between; try "
        "again, and stop if they differ again"
    ),
    ErrorCode.UNEXPECTED_MESSAGE: (
        f"the device got a message it did not expect at this point: {_AGAIN}"
    ),
    ErrorCode.HANDSHAKE_TIMEOUT: (
        "the handshake took too long (a number not confirmed or typed in time?): run the "
        "command again and answer promptly"
    ),
    ErrorCode.DOWNGRADE: (
        "the device's advertisement and its info disagree (someone may have altered one): "
        "move away from other radios and try again; do not use the device if it persists"
    ),
    ErrorCode.DEVICE_BUSY: (
        "the device is in a session with another host (over Bluetooth or the broker): "
        "try again in a minute"
    ),
    ErrorCode.BUTTON_WINDOW_USED: (
        "this button window was already used by another host: someone else may have set "
        "the device up; reset it by hand before you provision it"
    ),
    ErrorCode.DEVICE_OWNED: (
        "the device has an owner: its label no longer sets it up; ask the owner to open "
        "a window (bleprov peer open-window / zone open-window), or reset it by hand"
    ),
    ErrorCode.BAD_WINDOW: "the window request is out of bounds: a window lasts 1 to 15 minutes",
    ErrorCode.WINDOW_CLOSED: (
        "no commissioning window is open on the device (it expired, was used, or had too "
        "many wrong codes): ask the owner to open a new one"
    ),
    ErrorCode.ATTESTATION: (
        "the device's attestation is invalid (certificate chain or signature): it may not "
        "be genuine; do not use it"
    ),
    ErrorCode.UNKNOWN_MANUFACTURER: (
        "the device's manufacturer is not trusted here: give its root certificate with --trust"
    ),
    ErrorCode.MALFORMED_ATTESTATION: (
        "the device's attestation could not be read: it may not be genuine; do not use it"
    ),
}


def code_words(code: int) -> str:
    """A person's sentence for a wire error code, with what to do; an unknown code is
    named (it may come from a newer device) with the generic advice."""
    return CODE_WORDS.get(
        code, f"the device refused with an unknown reason (code {code:#04x}): {_AGAIN}"
    )
