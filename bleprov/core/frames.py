"""Framing: whole messages over ATT writes and notifications, sans-IO.

One :class:`FrameChannel` per connection and side. The application hands it messages
(``send_message``) and frames from the radio (``receive_frame``); it hands back frames to
write or notify (``data_to_send``) and :class:`MessageReceived` events. It does no I/O and
reads no clock: every call that needs the time takes ``now`` (seconds, any monotonic
origin), and ``next_deadline``/``handle_timer`` drive the timeouts: per message, and on
the device the open timeout (a central that connects and never sends OPEN would
otherwise hold a device that serves one central at a time forever).

Wire format (docs/protocol.md, "Framing"). Byte 0 is the control byte: bits 7-6 the kind
(DATA 0, CREDIT 1, OPEN 2, RESET 3), bit 5 FIRST on DATA frames, the rest zero.

- ``DATA``: ``ctl, seq u8`` then, on the FIRST frame of a message, ``total_length u24``;
  then payload. ``seq`` counts DATA frames per direction from 0, modulo 256.
- ``CREDIT``: ``ctl, limit u8``: the sender may send DATA frames whose count is below
  ``limit`` (modulo 256; never more than 127 ahead).
- ``OPEN`` (host to device, first frame of a connection): ``ctl, version u8, rx_window u8,
  att_mtu u16, max_message u24``. It grants the device ``rx_window`` frames of credit and
  tells it the ATT MTU where its stack cannot.
- ``RESET``: ``ctl, code u8``: the sender abandoned the exchange for error ``code``.

Flow control is credit-based, as Matter's BTP windows are: a write-with-response per
frame costs two connection events, credits let a whole window go out back to back
(docs/architecture.md, "Flow control", has the measurements).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Final

import construct as cs

from bleprov.core.errors import (
    ChannelClosed,
    CreditViolation,
    FramingError,
    LocalProtocolError,
    MalformedFrame,
    MessageTimeout,
    OpenTimeout,
    OversizedMessage,
    PeerReset,
    SequenceError,
    TruncatedMessage,
    UnsupportedVersion,
)
from bleprov.core.wire_codes import FRAME_FIRST_BIT, FRAME_KIND_SHIFT

FRAMING_VERSION: Final = 1
ATT_MIN_MTU: Final = 23
ATT_MAX_MTU: Final = 517
#: Largest attribute value (Core spec Vol 3 Part F 3.2.9): frames never exceed it.
MAX_ATTRIBUTE_VALUE: Final = 512
DATA_HEADER: Final = 2
FIRST_HEADER: Final = DATA_HEADER + 3
MAX_MESSAGE_LIMIT: Final = (1 << 24) - 1
DEFAULT_MAX_MESSAGE: Final = 64 * 1024
DEFAULT_RX_WINDOW: Final = 16
MAX_WINDOW: Final = 127
DEFAULT_MESSAGE_TIMEOUT: Final = 60.0
#: Device: seconds from the connection to the host's OPEN. A host sends OPEN right after
#: discovery, the info read and the subscription, a few connection events in all.
DEFAULT_OPEN_TIMEOUT: Final = 15.0


class FrameKind(enum.IntEnum):
    DATA = 0
    CREDIT = 1
    OPEN = 2
    RESET = 3


_KIND_SHIFT: Final = FRAME_KIND_SHIFT
_FIRST_BIT: Final = FRAME_FIRST_BIT

_OPEN_BODY: Final = cs.Struct(
    "version" / cs.Int8ub,
    "rx_window" / cs.Int8ub,
    "att_mtu" / cs.Int16ub,
    "max_message" / cs.Int24ub,
    cs.Terminated,
)
_FIRST_BODY: Final = cs.Struct("total_length" / cs.Int24ub, "payload" / cs.GreedyBytes)


class Role(enum.Enum):
    HOST = "host"
    DEVICE = "device"


class ChannelState(enum.Enum):
    #: Device: connected, waiting for the host's OPEN. Host: before ``open``.
    AWAITING_OPEN = "awaiting-open"
    OPEN = "open"
    #: An error ended the exchange; only a RESET frame is left to send.
    RESET = "reset"
    CLOSED = "closed"


#: The most an ATT stack takes of a value for itself. BlueZ (5.62 and later, up to at least
#: 5.66) sends a peripheral's notifications as Multiple Handle Value Notifications (ATT
#: 0x23) to a client that supports them (another BlueZ does), where each value carries a
#: 2-byte length: a value longer than ``MTU - 5`` is cut to that, silently.
MAX_SEND_OVERHEAD: Final = 2


#: The longest value BlueZ 5.66 (Debian 12, Raspberry Pi OS Bookworm) lets a central
#: write: its ATT server checks the PDU's length with the 2-byte handle against the
#: 512-byte limit (src/shared/gatt-server.c, write_cb; fixed in 5.69, commit 8bf3a4a),
#: and a longer Write Command is dropped without a word. Seen in the lab: three 512-byte
#: frames from the host never reached the device.
BLUEZ_MAX_WRITE_VALUE: Final = MAX_ATTRIBUTE_VALUE - 2


def frame_size_for_mtu(mtu: int) -> int:
    """Largest frame for an ATT MTU: one ATT value, ``min(MTU - 3, 512)``."""
    if not ATT_MIN_MTU <= mtu <= ATT_MAX_MTU:
        raise LocalProtocolError(f"ATT MTU {mtu} outside [{ATT_MIN_MTU}, {ATT_MAX_MTU}]")
    return min(mtu - 3, MAX_ATTRIBUTE_VALUE)


@dataclass(frozen=True)
class MessageReceived:
    payload: bytes


@dataclass(frozen=True)
class ChannelOpened:
    """The device received the host's OPEN; both directions may carry data now."""

    att_mtu: int
    peer_rx_window: int
    peer_max_message: int


Event = MessageReceived | ChannelOpened


@dataclass
class ChannelStats:
    """Counters for benchmarks and the demo's summary."""

    frames_sent: int = 0
    frames_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    credits_sent: int = 0


@dataclass
class _Outgoing:
    payload: bytes
    offset: int = 0
    started: bool = False


@dataclass
class _Incoming:
    total: int
    deadline: float
    parts: list[bytes] = field(default_factory=list)
    received: int = 0


def _unwrap(base: int, wire: int) -> int:
    """Absolute counter near ``base`` whose low byte is ``wire``, not more than 127 ahead."""
    delta = (wire - base) & 0xFF
    if delta > MAX_WINDOW:
        raise MalformedFrame("credit limit moves backwards or more than 127 frames ahead")
    return base + delta


class FrameChannel:
    """Splits messages into frames and reassembles them, for one connection."""

    def __init__(
        self,
        role: Role,
        *,
        max_message: int = DEFAULT_MAX_MESSAGE,
        rx_window: int = DEFAULT_RX_WINDOW,
        message_timeout: float = DEFAULT_MESSAGE_TIMEOUT,
        open_timeout: float = DEFAULT_OPEN_TIMEOUT,
        send_overhead: int = 0,
        max_send_frame: int = MAX_ATTRIBUTE_VALUE,
    ) -> None:
        """``send_overhead``: bytes of each ATT value the sender's stack takes for itself
        beyond the ATT header, so frames sent are that much shorter than ``MTU - 3`` (a
        peripheral on BlueZ: 2; see :data:`MAX_SEND_OVERHEAD`). Frames received may still
        be ``MTU - 3`` long. ``max_send_frame``: the longest frame sent, whatever the MTU
        (a host: :data:`BLUEZ_MAX_WRITE_VALUE`)."""
        if not 0 < max_message <= MAX_MESSAGE_LIMIT:
            raise LocalProtocolError(f"max_message must be in [1, {MAX_MESSAGE_LIMIT}]")
        if not 0 < rx_window <= MAX_WINDOW:
            raise LocalProtocolError(f"rx_window must be in [1, {MAX_WINDOW}]")
        if message_timeout <= 0 or open_timeout <= 0:
            raise LocalProtocolError("message_timeout and open_timeout must be positive")
        if not 0 <= send_overhead <= MAX_SEND_OVERHEAD:
            raise LocalProtocolError(f"send_overhead must be in [0, {MAX_SEND_OVERHEAD}]")
        if not ATT_MIN_MTU - 3 <= max_send_frame <= MAX_ATTRIBUTE_VALUE:
            raise LocalProtocolError(
                f"max_send_frame must be in [{ATT_MIN_MTU - 3}, {MAX_ATTRIBUTE_VALUE}]"
            )
        self.role = role
        self.send_overhead = send_overhead
        self.max_send_frame = max_send_frame
        self.max_message = max_message
        self.rx_window = rx_window
        self.message_timeout = message_timeout
        self.open_timeout = open_timeout
        self.stats = ChannelStats()
        self._att_mtu = ATT_MIN_MTU
        self._state = ChannelState.CLOSED
        self._clear()

    # ------------------------------------------------------------------ state

    def _clear(self) -> None:
        """Drop every buffer and counter of the exchange: nothing is left over."""
        self._peer_max_message = 0
        self._outgoing: deque[_Outgoing] = deque()
        self._control: deque[bytes] = deque()
        self._incoming: _Incoming | None = None
        self._tx_count = 0
        self._tx_limit = 0
        self._rx_count = 0
        self._rx_limit = 0
        self._credit_due = False
        self._stalled_since: float | None = None
        self._open_deadline: float | None = None

    @property
    def state(self) -> ChannelState:
        return self._state

    @property
    def att_mtu(self) -> int:
        return self._att_mtu

    @property
    def frame_size(self) -> int:
        """The largest frame the peer may send (and this channel accept)."""
        return frame_size_for_mtu(self._att_mtu)

    @property
    def send_frame_size(self) -> int:
        """The largest frame this channel sends: :attr:`frame_size` less the stack's
        :attr:`send_overhead`."""
        return min(self._att_mtu - 3 - self.send_overhead, self.max_send_frame)

    @property
    def is_idle(self) -> bool:
        """No message half-sent or half-received, no frame waiting."""
        return not (self._outgoing or self._control or self._incoming or self._credit_due)

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for the exchange (queued output and partial input)."""
        out = sum(len(m.payload) - m.offset for m in self._outgoing)
        inc = self._incoming.received if self._incoming else 0
        return out + inc + sum(len(c) for c in self._control)

    # ------------------------------------------------------------- connection

    def connection_made(self, att_mtu: int = ATT_MIN_MTU, *, now: float | None = None) -> None:
        """A link came up. The device then waits for OPEN; the host calls :meth:`open`.

        Device: with ``now``, OPEN is due within :attr:`open_timeout` (see
        :meth:`next_deadline`); a device adapter always passes it."""
        self._clear()
        self._att_mtu = ATT_MIN_MTU
        self.mtu_changed(att_mtu)
        self._state = ChannelState.AWAITING_OPEN
        if self.role is Role.DEVICE and now is not None:
            self._open_deadline = now + self.open_timeout

    def mtu_changed(self, att_mtu: int) -> None:
        """The stack negotiated a new ATT MTU; later frames use it."""
        frame_size_for_mtu(att_mtu)  # validates
        self._att_mtu = att_mtu

    def connection_lost(self) -> None:
        """The link dropped. A half-received message is discarded with everything else.

        Raises :class:`TruncatedMessage` if a message was cut off, so the caller can
        report it; the channel is closed and empty either way.
        """
        cut = self._incoming is not None and self._state is ChannelState.OPEN
        self._clear()
        self._state = ChannelState.CLOSED
        if cut:
            raise TruncatedMessage("connection lost in the middle of a message")

    def open(self, *, peer_rx_window: int, peer_max_message: int, now: float) -> None:
        """Host: start the exchange with what the device's info characteristic announced."""
        if self.role is not Role.HOST:
            raise LocalProtocolError("only the host opens a channel")
        if self._state is not ChannelState.AWAITING_OPEN:
            raise LocalProtocolError(f"cannot open a channel in state {self._state.value}")
        if not 0 < peer_rx_window <= MAX_WINDOW or not 0 < peer_max_message <= MAX_MESSAGE_LIMIT:
            raise LocalProtocolError("device announced an invalid window or message bound")
        self._peer_max_message = peer_max_message
        self._tx_limit = peer_rx_window
        self._rx_limit = self.rx_window
        body = _OPEN_BODY.build(
            {
                "version": FRAMING_VERSION,
                "rx_window": self.rx_window,
                "att_mtu": self._att_mtu,
                "max_message": self.max_message,
            }
        )
        self._control.append(bytes([FrameKind.OPEN << _KIND_SHIFT]) + body)
        self._state = ChannelState.OPEN

    # ------------------------------------------------------------------ send

    def send_message(self, payload: bytes, now: float) -> None:
        """Queue one message; its frames come out of :meth:`data_to_send`."""
        if self._state is not ChannelState.OPEN:
            raise ChannelClosed(f"cannot send in state {self._state.value}")
        if len(payload) > self._peer_max_message:
            raise LocalProtocolError(
                f"message of {len(payload)} bytes exceeds the peer's bound "
                f"of {self._peer_max_message}"
            )
        self._outgoing.append(_Outgoing(bytes(payload)))
        if self._tx_count >= self._tx_limit and self._stalled_since is None:
            self._stalled_since = now

    def data_to_send(self, now: float) -> list[bytes]:
        """Frames to write (host) or notify (device) now, in order, within credit."""
        frames = list(self._control)
        self._control.clear()
        if self._state is not ChannelState.OPEN:
            return self._count_sent(frames)
        if self._credit_due:
            # Credit counts from the moment it leaves: a sender that runs ahead of the
            # CREDIT frames it has seen is caught as a CreditViolation.
            self._credit_due = False
            self._rx_limit = self._rx_count + self.rx_window
            frames.append(bytes([FrameKind.CREDIT << _KIND_SHIFT, self._rx_limit & 0xFF]))
            self.stats.credits_sent += 1
        size = self.send_frame_size
        while self._outgoing and self._tx_count < self._tx_limit:
            msg = self._outgoing[0]
            seq = self._tx_count & 0xFF
            if not msg.started:
                room = size - FIRST_HEADER
                chunk = msg.payload[:room]
                header = bytes([FrameKind.DATA << _KIND_SHIFT | _FIRST_BIT, seq])
                frames.append(header + len(msg.payload).to_bytes(3, "big") + chunk)
                msg.started = True
            else:
                room = size - DATA_HEADER
                chunk = msg.payload[msg.offset : msg.offset + room]
                frames.append(bytes([FrameKind.DATA << _KIND_SHIFT, seq]) + chunk)
            msg.offset += len(chunk)
            self._tx_count += 1
            if msg.offset >= len(msg.payload):
                self._outgoing.popleft()
                self.stats.messages_sent += 1
        self._stalled_since = now if self._outgoing else None
        return self._count_sent(frames)

    def _count_sent(self, frames: list[bytes]) -> list[bytes]:
        self.stats.frames_sent += len(frames)
        self.stats.bytes_sent += sum(len(f) for f in frames)
        return frames

    # --------------------------------------------------------------- receive

    def receive_frame(self, frame: bytes, now: float) -> list[Event]:
        """Process one frame from the peer.

        Raises a :class:`FramingError` subclass on any violation; the channel is then
        reset (buffers dropped) and :meth:`data_to_send` yields one RESET frame.
        """
        if self._state in (ChannelState.CLOSED, ChannelState.RESET):
            raise ChannelClosed(f"frame received in state {self._state.value}")
        self.stats.frames_received += 1
        self.stats.bytes_received += len(frame)
        try:
            return self._receive(bytes(frame), now)
        except PeerReset:
            self._clear()
            self._state = ChannelState.RESET
            raise
        except FramingError as exc:
            self._fail(exc)
            raise
        except cs.ConstructError:
            error = MalformedFrame("frame fields do not decode")
            self._fail(error)
            raise error from None

    def _fail(self, error: FramingError) -> None:
        self._clear()
        self._state = ChannelState.RESET
        self._control.append(bytes([FrameKind.RESET << _KIND_SHIFT, error.code]))

    def _receive(self, frame: bytes, now: float) -> list[Event]:
        if len(frame) < 2:
            raise MalformedFrame(f"frame of {len(frame)} bytes is shorter than a header")
        if len(frame) > self.frame_size:
            raise MalformedFrame(
                f"frame of {len(frame)} bytes exceeds the frame size {self.frame_size}"
            )
        ctl = frame[0]
        kind = FrameKind(ctl >> _KIND_SHIFT)
        flags = ctl & 0x3F
        if kind is FrameKind.RESET:
            if flags or len(frame) != 2:
                raise MalformedFrame("malformed RESET frame")
            raise PeerReset(frame[1])
        if kind is FrameKind.OPEN:
            return self._receive_open(frame, flags)
        if self._state is not ChannelState.OPEN:
            raise MalformedFrame(f"{kind.name} frame before OPEN")
        if kind is FrameKind.CREDIT:
            if flags or len(frame) != 2:
                raise MalformedFrame("malformed CREDIT frame")
            self._tx_limit = max(self._tx_limit, _unwrap(self._tx_limit, frame[1]))
            if self._tx_limit - self._tx_count > MAX_WINDOW:
                raise MalformedFrame("credit limit more than 127 frames ahead")
            return []
        if flags & ~_FIRST_BIT:
            raise MalformedFrame(f"reserved control bits set: 0x{ctl:02x}")
        return self._receive_data(frame, bool(flags & _FIRST_BIT), now)

    def _receive_open(self, frame: bytes, flags: int) -> list[Event]:
        if self.role is not Role.DEVICE or self._state is not ChannelState.AWAITING_OPEN:
            raise MalformedFrame("unexpected OPEN frame")
        if flags:
            raise MalformedFrame("reserved control bits set on OPEN")
        body = _OPEN_BODY.parse(frame[1:])
        if body.version != FRAMING_VERSION:
            raise UnsupportedVersion(f"framing version {body.version} is not supported")
        if not 0 < body.rx_window <= MAX_WINDOW:
            raise MalformedFrame("OPEN announces an invalid window")
        if not ATT_MIN_MTU <= body.att_mtu <= ATT_MAX_MTU or body.max_message == 0:
            raise MalformedFrame("OPEN announces an invalid MTU or message bound")
        # The host knows the negotiated MTU; a stack that did not report it learns it here.
        self._att_mtu = max(self._att_mtu, body.att_mtu)
        self._peer_max_message = body.max_message
        self._tx_limit = body.rx_window
        self._rx_limit = self.rx_window
        self._state = ChannelState.OPEN
        return [ChannelOpened(self._att_mtu, body.rx_window, body.max_message)]

    def _receive_data(self, frame: bytes, first: bool, now: float) -> list[Event]:
        if frame[1] != self._rx_count & 0xFF:
            raise SequenceError(f"DATA frame {frame[1]} arrived, expected {self._rx_count & 0xFF}")
        if self._rx_count >= self._rx_limit:
            raise CreditViolation("DATA frame sent without credit")
        self._rx_count += 1
        events: list[Event] = []
        if first:
            if self._incoming is not None:
                raise TruncatedMessage(
                    f"new message started after {self._incoming.received} of "
                    f"{self._incoming.total} bytes"
                )
            body = _FIRST_BODY.parse(frame[DATA_HEADER:])
            if body.total_length > self.max_message:
                raise OversizedMessage(
                    f"message announces {body.total_length} bytes, the bound is {self.max_message}"
                )
            self._incoming = _Incoming(body.total_length, now + self.message_timeout)
            payload = body.payload
        else:
            if self._incoming is None:
                raise SequenceError("continuation frame without a message in progress")
            payload = frame[DATA_HEADER:]
            if not payload:
                raise MalformedFrame("empty continuation frame")
        incoming = self._incoming
        incoming.received += len(payload)
        if incoming.received > incoming.total:
            raise TruncatedMessage("frames overrun the announced message length")
        if first or payload:
            incoming.parts.append(payload)
        if incoming.received == incoming.total:
            self._incoming = None
            self.stats.messages_received += 1
            events.append(MessageReceived(b"".join(incoming.parts)))
        self._grant_credit()
        return events

    def _grant_credit(self) -> None:
        """Top the peer's credit up (at the next send) once half the window is used."""
        if self._rx_limit - self._rx_count <= self.rx_window // 2:
            self._credit_due = True

    # ----------------------------------------------------------------- timers

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must next be called, or None."""
        if self._state is ChannelState.AWAITING_OPEN:
            return self._open_deadline
        if self._state is not ChannelState.OPEN:
            return None
        deadlines = []
        if self._incoming is not None:
            deadlines.append(self._incoming.deadline)
        if self._stalled_since is not None:
            deadlines.append(self._stalled_since + self.message_timeout)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        """Raise :class:`MessageTimeout` (and reset) if a message overran its time, or
        :class:`OpenTimeout` (device) if OPEN did not come in time."""
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return
        error: FramingError
        if self._state is ChannelState.AWAITING_OPEN:
            error = OpenTimeout(f"no OPEN frame within {self.open_timeout:g} s of the connection")
        else:
            what = "receiving" if self._incoming is not None else "waiting for credit to send"
            error = MessageTimeout(f"message timed out after {self.message_timeout:g} s {what}")
        self._fail(error)
        raise error

    def close(self) -> None:
        """Forget the exchange (the link is going away)."""
        self._clear()
        self._state = ChannelState.CLOSED
