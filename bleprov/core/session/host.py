"""Host side of a session: pick a mode the device offers, run its handshake, check the
device's attestation against trusted manufacturer roots, then exchange application data.
Sans-IO: messages and ``now`` in, events out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from bleprov.core.advertising import PROTOCOL_VERSION, DeviceInfo, OobMode, ServiceData
from bleprov.core.attempts import (
    ButtonNotPressed,
    ButtonWindowUsed,
    DeviceBusy,
    LockedOut,
    SessionOverlap,
    SessionRefused,
    TryLater,
)
from bleprov.core.channel import ChannelClosedError
from bleprov.core.errors import (
    BleprovError,
    LocalProtocolError,
    ProtocolError,
    UnsupportedVersion,
    code_words,
)
from bleprov.core.identity import (
    AttestationError,
    AttestationRecord,
    AttestationResult,
    ChainRequest,
    IntermediateCache,
    TrustPolicy,
    UnknownManufacturer,
    decode_chain,
    verify_attestation,
)
from bleprov.core.receipt import EnrolmentReceipt
from bleprov.core.session import modes
from bleprov.core.session.common import (
    ATTESTATION_CONTEXT,
    ApplicationData,
    ChannelHolder,
    DeviceOwned,
    HandshakeTimeout,
    ModeNotAllowed,
    SendMessage,
    SessionEnded,
)
from bleprov.core.session.messages import (
    Handshake,
    Hello,
    Inner,
    InnerKind,
    Mode,
    Refused,
    Secure,
    decode,
    decode_inner,
    encode,
)
from bleprov.core.session.modes import registry
from bleprov.core.session.modes.base import Downgrade, HostHandshake, NumberEntry, Prompt
from bleprov.core.session.modes.code import (
    MAX_SCRYPT_LOG2_N,
    MAX_SCRYPT_P,
    MAX_SCRYPT_R,
    CodeSecret,
    ExcessiveCost,
    WindowSecret,
    bounded_cost,
)
from bleprov.core.session.modes.qr import QrSecret
from bleprov.core.window import WindowClosed


class DeviceRefused(ProtocolError):
    """The device refused the session; ``reason`` is the typed cause when known."""

    def __init__(self, reason: ProtocolError) -> None:
        super().__init__(f"the device refused: {reason}")
        self.reason = reason
        self.code = reason.code


_REFUSALS: dict[int, type[ProtocolError]] = {
    ModeNotAllowed.code: ModeNotAllowed,
    LockedOut.code: LockedOut,
    ButtonNotPressed.code: ButtonNotPressed,
    ButtonWindowUsed.code: ButtonWindowUsed,
    SessionOverlap.code: SessionOverlap,
    DeviceBusy.code: DeviceBusy,
    modes.AuthenticationFailed.code: modes.AuthenticationFailed,
    modes.UserRejected.code: modes.UserRejected,
    modes.UnexpectedMessage.code: modes.UnexpectedMessage,
    HandshakeTimeout.code: HandshakeTimeout,
    DeviceOwned.code: DeviceOwned,
    WindowClosed.code: WindowClosed,
}


def refusal(code: int, retry_after: int) -> ProtocolError:
    """The typed error a REFUSED (or CLOSE) code stands for, its message in words: what
    happened and what to do (:data:`~bleprov.core.errors.CODE_WORDS`), never a bare code."""
    if code == TryLater.code:
        return TryLater(float(retry_after))
    cls = _REFUSALS.get(code, SessionRefused)
    return cls(code_words(code))


# ------------------------------------------------------------ what the host knows


#: What the host proves: a label's secret, a code, the owner's window code, an enrolment
#: receipt (asking a device what became of an enrolment), or nothing the user holds
#: (compare, passkey and button modes).
OutOfBand = QrSecret | CodeSecret | WindowSecret | EnrolmentReceipt | None


@dataclass(frozen=True)
class Trust:
    roots: tuple[bytes, ...]  # manufacturer root certificates, DER
    policy: TrustPolicy
    #: Intermediates validated against ``roots`` before (shared by this host's sessions):
    #: a hit saves the fetch; each use validates again against ``roots``.
    intermediates: IntermediateCache = field(default_factory=IntermediateCache)


# ------------------------------------------------------------------------ events


@dataclass(frozen=True)
class CompareNumber:
    """compare mode: show this number; call :meth:`HostSession.confirm_number`."""

    number: int


@dataclass(frozen=True)
class PasskeyRequested:
    """passkey mode: the device shows a number now; ask the user to type it and call
    :meth:`HostSession.enter_passkey`."""


@dataclass(frozen=True)
class Established:
    """Handshake done and attestation checked; application data may flow."""

    mode: Mode
    attestation: AttestationResult


HostEvent = (
    SendMessage | CompareNumber | PasskeyRequested | Established | ApplicationData | SessionEnded
)


#: APPLICATION records a host holds while it fetches the attestation's intermediate.
MAX_HELD_RECORDS: Final = 8


class _State(enum.Enum):
    IDLE = "idle"
    HANDSHAKE = "handshake"
    WAIT_USER = "wait-user"
    WAIT_ATTESTATION = "wait-attestation"
    #: The attestation named an intermediate this host does not hold: fetching it.
    WAIT_CHAIN = "wait-chain"
    OPEN = "open"
    ENDED = "ended"


def check_protocol_version(info: DeviceInfo) -> None:
    """Refuse a device of another protocol version: v2 changed the wire throughout."""
    if info.protocol_version != PROTOCOL_VERSION:
        raise UnsupportedVersion(
            f"the device speaks bleprov protocol {info.protocol_version} and this host "
            f"protocol {PROTOCOL_VERSION}: update the older of the two"
        )


def check_advertisement(advertised: ServiceData, info: DeviceInfo) -> None:
    """Refuse a device whose advertisement and info disagree (one of them was altered)."""
    if (
        advertised.protocol_version != info.protocol_version
        or advertised.state != info.state
        or advertised.modes != info.modes
        or advertised.discriminator != info.discriminator
    ):
        raise Downgrade("the device's advertisement and its info characteristic disagree")


class HostSession(ChannelHolder):
    """One session with one device, driven by the host."""

    def __init__(
        self,
        *,
        mode: Mode,
        secret: OutOfBand,
        device_info: bytes,
        trust: Trust,
        wall_clock: datetime,
        now: float,
        handshake_timeout: float = 60.0,
        idle_timeout: float = 120.0,
    ) -> None:
        super().__init__(is_host=True, idle_timeout=idle_timeout)
        info = DeviceInfo.decode(device_info)
        check_protocol_version(info)
        # A receipt is answered whatever the device offers (it asks what became of an
        # enrolment, and an owned device offers nothing): the device decides.
        receipt = isinstance(secret, EnrolmentReceipt)
        if info.service_data().owned and not isinstance(secret, WindowSecret) and not receipt:
            raise refusal(DeviceOwned.code, 0)  # its label opens nothing: say what does
        if not info.modes & OobMode(int(mode)) and not receipt:
            raise ModeNotAllowed(f"the device does not offer the {mode.label} mode")
        self._mode = mode
        self._info_raw = device_info
        self._trust = trust
        self._wall_clock = wall_clock
        self._handshake_deadline = now + handshake_timeout
        self._state = _State.IDLE
        self.attestation: AttestationResult | None = None
        self._pending: AttestationRecord | None = None
        self._wanted = ChainRequest.INTERMEDIATE
        #: Whether this session fetched the intermediate (its cache missed).
        self.fetched_chain = False
        #: APPLICATION records the device sent behind its ATTESTATION while this host
        #: fetches the intermediate: delivered, in order, once the attestation verifies.
        self._held: list[bytes] = []
        self.number: int | None = None
        self._prompt = registry.engine(mode).prompt
        self._engine = self._engine_for(mode, secret, info)

    def _engine_for(self, mode: Mode, secret: OutOfBand, info: DeviceInfo) -> HostHandshake:
        return registry.engine(mode).host(secret, info, self._info_raw)

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def is_open(self) -> bool:
        return self._state is _State.OPEN

    def start(self, now: float) -> list[HostEvent]:
        if self._state is not _State.IDLE:
            raise LocalProtocolError("the session has started already")
        self._state = _State.HANDSHAKE
        return [SendMessage(encode(Hello(self._mode, self._engine.hello())))]

    def receive(self, raw: bytes, now: float) -> list[HostEvent]:
        if self._state is _State.ENDED:
            return []
        try:
            return self._receive(raw, now)
        except ProtocolError as error:
            return self._fail(error, now)

    def confirm_number(self, accepted: bool, now: float) -> list[HostEvent]:
        """compare mode: the user says whether both screens show the same number."""
        if self._state is not _State.WAIT_USER or self._prompt is not Prompt.CONFIRM_NUMBER:
            raise LocalProtocolError("no number is waiting for confirmation")
        if not accepted:
            return self._fail(modes.UserRejected("the numbers differ"), now)
        self._state = _State.WAIT_ATTESTATION
        return [self._seal(Inner(InnerKind.CONFIRMED, b""), now)]

    def enter_passkey(self, number: int | str, now: float) -> list[HostEvent]:
        """passkey mode: the number the user typed (text is checked: six digits).

        Raises :class:`LocalProtocolError` for text that is not six digits (ask again); a
        wrong number is found out by the handshake, as a failed attempt."""
        if self._state is not _State.WAIT_USER or not isinstance(self._engine, NumberEntry):
            raise LocalProtocolError("no passkey is being asked for")
        value = modes.parse_passkey(number) if isinstance(number, str) else number
        share_p = self._engine.enter(value)
        self._state = _State.HANDSHAKE
        return [SendMessage(encode(Handshake(share_p)))]

    def send(self, data: bytes, now: float) -> list[HostEvent]:
        if self._state is not _State.OPEN:
            raise ChannelClosedError("the session is not open")
        return [self._seal(Inner(InnerKind.APPLICATION, data), now)]

    def close(self, now: float) -> list[HostEvent]:
        if self._state is _State.ENDED:
            return []
        return [*self._close_records(0, now), *self._end(None)]

    def next_deadline(self) -> float | None:
        if self._state in (_State.HANDSHAKE, _State.WAIT_ATTESTATION, _State.WAIT_CHAIN):
            return self._handshake_deadline
        if self._state is _State.OPEN and self._channel is not None:
            return self._channel.next_deadline()
        return None

    def handle_timer(self, now: float) -> list[HostEvent]:
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return []
        if self._state is _State.OPEN and self._channel is not None:
            try:
                self._channel.handle_timer(now)
            except ProtocolError as error:
                return self._end(error)
            return []
        return self._fail(HandshakeTimeout("the device did not complete the handshake"), now)

    # ------------------------------------------------------------- internals

    def _receive(self, raw: bytes, now: float) -> list[HostEvent]:
        message = decode(raw)
        if isinstance(message, Refused):
            return self._end(DeviceRefused(refusal(message.code, message.retry_after)))
        if isinstance(message, Handshake):
            if self._state is not _State.HANDSHAKE:
                raise modes.UnexpectedMessage("handshake message out of place")
            return self._step(self._engine.receive(message.body), now)
        if isinstance(message, Secure):
            return self._secure(message.ciphertext, now)
        raise modes.UnexpectedMessage("devices do not send HELLO")

    def _step(self, step: modes.Step, now: float) -> list[HostEvent]:
        events: list[HostEvent] = []
        if step.reply is not None:
            events.append(SendMessage(encode(Handshake(step.reply))))
        if step.keys is not None:
            self._install(step.keys, now)
        if step.number is not None:
            self.number = step.number
            self._state = _State.WAIT_USER
            events.append(CompareNumber(step.number))
        elif step.needs_passkey:
            self._state = _State.WAIT_USER
            events.append(PasskeyRequested())
        elif step.done:
            self._state = _State.WAIT_ATTESTATION
        return events

    def _secure(self, ciphertext: bytes, now: float) -> list[HostEvent]:
        if self._channel is None:
            # code mode: the attestation may arrive in the same flight as the reply the
            # keys come from; the framing layer keeps order, so keys exist by now.
            raise modes.UnexpectedMessage("encrypted message before keys exist")
        inner = decode_inner(self._channel.open(ciphertext, now))
        if inner.kind is InnerKind.CLOSE:
            assert isinstance(inner.body, int)
            return self._end(None if inner.body == 0 else DeviceRefused(refusal(inner.body, 0)))
        if inner.kind is InnerKind.ATTESTATION:
            if self._state is not _State.WAIT_ATTESTATION or not isinstance(inner.body, bytes):
                raise modes.UnexpectedMessage("attestation out of place")
            record = AttestationRecord.decode(inner.body)
            cached = self._trust.intermediates.get(record.intermediate_hash)
            if cached is None:
                # Fetch it, inside this session: the record stays bound to it.
                self._pending = record
                self._state = _State.WAIT_CHAIN
                self.fetched_chain = True
                self._wanted = (
                    ChainRequest.INTERMEDIATE_AND_ROOT
                    if self._trust.policy is TrustPolicy.WARN
                    else ChainRequest.INTERMEDIATE
                )
                return [self._seal(Inner(InnerKind.CHAIN_REQUEST, int(self._wanted)), now)]
            try:
                return self._verified(record, (cached,))
            except UnknownManufacturer:
                # Its root is no longer trusted: the entry goes, the device is refused.
                self._trust.intermediates.discard(record.intermediate_hash)
                raise
        if inner.kind is InnerKind.CHAIN:
            if self._state is not _State.WAIT_CHAIN or not isinstance(inner.body, bytes):
                raise modes.UnexpectedMessage("chain out of place")
            assert self._pending is not None
            chain = decode_chain(inner.body)
            if len(chain) > int(self._wanted):
                raise AttestationError("the device sent more certificates than were asked for")
            established = self._verified(self._pending, chain)
            if self.attestation is not None and self.attestation.trusted:
                self._trust.intermediates.add(chain[0])
            held, self._held = self._held, []
            return [*established, *(ApplicationData(body) for body in held)]
        if (
            self._state is _State.WAIT_CHAIN
            and inner.kind is InnerKind.APPLICATION
            and isinstance(inner.body, bytes)
        ):
            # The device speaks right behind its attestation (the `session` notice); the
            # host holds it until it knows whom it is talking to, never acting on it first.
            if len(self._held) >= MAX_HELD_RECORDS:
                raise modes.UnexpectedMessage("too much application data before attestation")
            self._held.append(inner.body)
            return []
        if self._state is not _State.OPEN:
            raise modes.UnexpectedMessage("application data before attestation")
        if inner.kind is not InnerKind.APPLICATION or not isinstance(inner.body, bytes):
            raise modes.UnexpectedMessage("unexpected record from the device")
        return [ApplicationData(inner.body)]

    def _verified(self, record: AttestationRecord, chain: tuple[bytes, ...]) -> list[HostEvent]:
        """Check the attestation with ``chain`` above the device certificate; open."""
        assert self._keys is not None
        self.attestation = verify_attestation(
            record.resolve(chain),
            self._keys.handshake_hash,
            context=ATTESTATION_CONTEXT,
            trusted_roots=self._trust.roots,
            now=self._wall_clock,
            policy=self._trust.policy,
        )
        self._pending = None
        self._state = _State.OPEN
        return [Established(self._mode, self.attestation)]

    def _fail(self, error: ProtocolError, now: float) -> list[HostEvent]:
        return [*self._close_records(error.code, now), *self._end(error)]

    def _end(self, error: BleprovError | None) -> list[HostEvent]:
        self._state = _State.ENDED
        self._erase()
        return [SessionEnded(error)]


__all__ = [
    "MAX_SCRYPT_LOG2_N",
    "MAX_SCRYPT_P",
    "MAX_SCRYPT_R",
    "ApplicationData",
    "CodeSecret",
    "CompareNumber",
    "DeviceRefused",
    "Downgrade",
    "Established",
    "ExcessiveCost",
    "HostEvent",
    "HostSession",
    "OutOfBand",
    "PasskeyRequested",
    "QrSecret",
    "SendMessage",
    "SessionEnded",
    "Trust",
    "WindowSecret",
    "bounded_cost",
    "check_advertisement",
    "refusal",
]
