"""Typed errors of the protocol core.

Every decoder in :mod:`bleprov.core` raises a subclass of :class:`ProtocolError` on bad
input, so adapters can reset an exchange on one ``except`` clause and still tell the user
what went wrong. Messages never contain secret material: at most lengths, counters and
field names.
"""

from __future__ import annotations


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
        super().__init__(f"peer reset the exchange (reason code 0x{peer_code:02x})")
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
