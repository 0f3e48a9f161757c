"""Device side of a session: policy, attempt limits, the mode's handshake, attestation,
then application data over the secure channel. Sans-IO: messages and ``now`` in, events out.

Order of events matters: a :class:`PersistAttempts` event comes before the
:class:`SendMessage` that could reveal the attempt's outcome, and the adapter must have
stored a state that covers it (:meth:`~bleprov.core.attempts.AttemptLimits.covers`)
before it sends anything after it. That holds for refusals too (a wrong label secret is
refused at HELLO, after the count was raised). A session made with ``reserve=True``
reserves an attempt when it starts (the adapter stores the reservation while the host
sets the link up); its HELLO consumes it, and the state that follows is then covered by
the stored reservation, so the reply waits for no write. A reservation no HELLO consumed
is released when the session ends.

Each secret has its own attempt counter (:class:`~bleprov.core.attempts.AttemptLimits`,
keyed by :class:`~bleprov.core.attempts.Credential`), and :class:`Authenticated` says
which secret authenticated the session. Compare mode needs the device's own confirmation:
a device that cannot give it neither offers the mode (:func:`offered_modes`) nor runs it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from bleprov.core.attempts import (
    AttemptLimits,
    ButtonWindow,
    Credential,
    SessionOverlap,
)
from bleprov.core.channel import ChannelClosedError
from bleprov.core.crypto.spake2plus import VerifierRecord
from bleprov.core.device_secrets import DeviceSecrets
from bleprov.core.errors import BleprovError, LocalProtocolError, MalformedData, ProtocolError
from bleprov.core.identity import ChainRequest
from bleprov.core.receipt import is_receipt_user
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
    split_fields,
)
from bleprov.core.session.modes import registry
from bleprov.core.session.modes.base import DeviceHandshake
from bleprov.core.window import WINDOW_USER, CommissioningWindow, WindowClosed, WindowPurpose

DEFAULT_HANDSHAKE_TIMEOUT: Final = 60.0
#: HELLO is due this soon after the session opened. A host sends it at once (a person
#: acts only after it: a number to compare or type), so waiting the whole handshake
#: timeout for it let a host that opened and said nothing hold the device a minute at no
#: cost (no attempt is counted before HELLO).
DEFAULT_HELLO_TIMEOUT: Final = 15.0

#: The secret each built-in mode proves (and whose attempt counter it uses); the
#: registry's engines say it (:attr:`~bleprov.core.session.modes.base.ModeEngine.credential`).
CREDENTIALS: Final[dict[Mode, Credential]] = {e.mode: e.credential for e in registry.engines()}


def offered_modes(policy: Mode | int, *, device_confirms: bool) -> int:
    """The modes a device may offer and run: its policy, less compare unless the device
    confirms the number itself (display *and* button). Compare on the host's word alone
    authenticates nobody: whoever plays the host sends CONFIRMED. The advertisement and
    the info value derive their mode bits from this."""
    modes = int(policy)
    if not device_confirms:
        for engine in registry.engines():
            if engine.device_confirms:
                modes &= ~int(engine.mode)
    return modes


@dataclass(frozen=True)
class PersistAttempts:
    """Store this attempt-counter state (or have stored one that covers it, such as the
    session's reservation) before sending anything that follows."""

    state: bytes


@dataclass(frozen=True)
class ShowNumber:
    """compare or passkey mode: display this six-digit value until the session ends."""

    number: int


@dataclass(frozen=True)
class Authenticated:
    """The host proved the out-of-band secret; application data may flow.

    ``credential`` is the secret it proved (several can share a mode)."""

    mode: Mode
    credential: Credential


DeviceEvent = (
    SendMessage | PersistAttempts | ShowNumber | Authenticated | ApplicationData | SessionEnded
)


class _State(enum.Enum):
    WAIT_HELLO = "wait-hello"
    HANDSHAKE = "handshake"
    WAIT_CONFIRMATION = "wait-confirmation"
    OPEN = "open"
    ENDED = "ended"


class DeviceSession(ChannelHolder):
    """One host's session with this device."""

    def __init__(
        self,
        *,
        secrets: DeviceSecrets,
        policy: Mode | int,
        device_info: bytes,
        limits: AttemptLimits,
        button: ButtonWindow,
        connection: str,
        now: float,
        device_confirms: bool = False,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        idle_timeout: float = 120.0,
        hello_timeout: float = DEFAULT_HELLO_TIMEOUT,
        owned: bool = False,
        window: CommissioningWindow | None = None,
        receipts: Mapping[bytes, VerifierRecord] | None = None,
        reserve: bool = False,
    ) -> None:
        """``receipts``: the code-mode verifiers of the enrolment receipts this device
        answers for (:mod:`bleprov.core.receipt`), by prover identity. ``reserve``:
        reserve an attempt now, if a HELLO could begin a counted one
        (:attr:`holds_reservation`; the adapter stores it before any reply)."""
        super().__init__(is_host=False, idle_timeout=idle_timeout)
        self._secrets = secrets
        self._policy = offered_modes(policy, device_confirms=device_confirms)
        self._info = device_info
        self._limits = limits
        self._button = button
        self._connection = connection
        self._device_confirms = device_confirms
        self._handshake_deadline = now + handshake_timeout
        self._hello_deadline = now + min(hello_timeout, handshake_timeout)
        self._state = _State.WAIT_HELLO
        self._mode: Mode | None = None
        self._credential: Credential | None = None
        self._engine: DeviceHandshake | None = None
        self._host_confirmed = False
        self._chain_sent = False
        self._device_confirmed = False
        self.number: int | None = None
        #: An owned device accepts only its owner's commissioning window.
        self._owned = owned
        self._window = window
        self._window_session: WindowPurpose | None = None
        self._receipts = dict(receipts or {})
        #: Set once a session authenticated by the window: what it was opened for.
        self.window_purpose: WindowPurpose | None = None
        self._reserved = reserve and self._may_count(now) and limits.reserve()

    def _may_count(self, now: float) -> bool:
        """Whether a HELLO could begin a counted attempt: an owned device counts none
        (its window and receipts guard themselves), nor does a mode without a counter."""
        if self._owned:
            return False
        credentials = [
            engine.credential for engine in registry.engines() if self._policy & int(engine.mode)
        ]
        return self._limits.may_count(credentials, now)

    @property
    def holds_reservation(self) -> bool:
        """The session reserved an attempt that no HELLO has consumed yet."""
        return self._reserved

    @property
    def mode(self) -> Mode | None:
        return self._mode

    @property
    def _in_button_window(self) -> bool:
        """The session runs on the button window (button mode): another host's try ends
        it, and its end spends the window."""
        if self._mode is None:
            return False
        try:
            return registry.engine(self._mode).button_window
        except LocalProtocolError:
            return False

    @property
    def credential(self) -> Credential | None:
        """The secret this session runs on, once HELLO named the mode."""
        return self._credential

    @property
    def is_open(self) -> bool:
        return self._state is _State.OPEN

    @property
    def owned(self) -> bool:
        """Whether the device had an owner when this session began."""
        return self._owned

    @property
    def awaiting_confirmation(self) -> bool:
        """compare mode: the number is shown and the device's user has not answered."""
        return self._state is _State.WAIT_CONFIRMATION and not self._device_confirmed

    # ---------------------------------------------------------------- inputs

    def receive(self, raw: bytes, now: float) -> list[DeviceEvent]:
        if self._state is _State.ENDED:
            return []
        try:
            return self._receive(raw, now)
        except ProtocolError as error:
            return self._fail(error, now)

    def confirm_number(self, accepted: bool, now: float) -> list[DeviceEvent]:
        """compare mode, device with a button: the user's verdict on the device."""
        if self._state is not _State.WAIT_CONFIRMATION or not self._device_confirms:
            return []
        if not accepted:
            return self._fail(modes.UserRejected("the user rejected the number on the device"), now)
        self._device_confirmed = True
        return self._maybe_open(now)

    def send(self, data: bytes, now: float) -> list[DeviceEvent]:
        """Seal application data for the host."""
        if self._state is not _State.OPEN or self._channel is None:
            raise ChannelClosedError("the session is not open")
        return [self._seal(Inner(InnerKind.APPLICATION, data), now)]

    def abort(self, error: ProtocolError, now: float) -> list[DeviceEvent]:
        """End the session for a reason found outside it (e.g. a button overlap)."""
        if self._state is _State.ENDED:
            return []
        return self._fail(error, now)

    def close(self, now: float) -> list[DeviceEvent]:
        if self._state is _State.ENDED:
            return []
        return [*self._close_records(0, now), *self._end(None)]

    def next_deadline(self) -> float | None:
        if self._state is _State.WAIT_HELLO:
            return self._hello_deadline
        if self._state in (_State.HANDSHAKE, _State.WAIT_CONFIRMATION):
            return self._handshake_deadline
        if self._state is _State.OPEN and self._channel is not None:
            return self._channel.next_deadline()
        return None

    def handle_timer(self, now: float) -> list[DeviceEvent]:
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return []
        if self._state is _State.OPEN:
            try:
                assert self._channel is not None
                self._channel.handle_timer(now)
            except ProtocolError as error:
                return self._end(error)
            return []
        if self._state is _State.WAIT_HELLO:
            return self._fail(HandshakeTimeout("no HELLO arrived in time"), now)
        return self._fail(HandshakeTimeout("the handshake did not complete in time"), now)

    # -------------------------------------------------------------- internals

    def _receive(self, raw: bytes, now: float) -> list[DeviceEvent]:
        message = decode(raw)
        if isinstance(message, Hello):
            if self._state is not _State.WAIT_HELLO:
                raise modes.UnexpectedMessage("HELLO after the session started")
            return self._hello(message, now)
        if isinstance(message, Handshake):
            if self._state is not _State.HANDSHAKE or self._engine is None:
                raise modes.UnexpectedMessage("handshake message out of place")
            return self._handshake(message.body, now)
        if isinstance(message, Secure):
            return self._secure(message.ciphertext, now)
        raise modes.UnexpectedMessage("hosts do not send REFUSED")

    def _hello(self, hello: Hello, now: float) -> list[DeviceEvent]:
        mode = hello.mode
        self._mode = mode
        if self._is_receipt_hello(mode, hello.body):
            return self._receipt_hello(hello.body, now)
        if self._owned or self._is_window_hello(mode, hello.body):
            # The owner's window is its own policy: the factory's modes no longer count.
            return self._window_hello(mode, hello.body, now)
        if not self._policy & int(mode):
            raise ModeNotAllowed(f"the device's policy disables the {mode.label} mode")
        credential = self._credential = self._credential_for(hello)
        engine = self._engine_for(mode)
        events: list[DeviceEvent] = []
        if credential.limited:
            self._limits.begin_attempt(credential, now, reserved=self._reserved)
            self._reserved = False
            events.append(PersistAttempts(self._limits.to_bytes()))
        else:
            self._button.claim(self._connection, now)
        self._engine = engine
        self._state = _State.HANDSHAKE
        try:
            step = engine.hello(hello.body)
        except ProtocolError as error:
            # Refused at HELLO (a wrong label secret): the count above must still be
            # stored before the refusal leaves.
            return events + self._fail(error, now)
        return events + self._after_step(step, now)

    @staticmethod
    def _is_window_hello(mode: Mode, body: bytes) -> bool:
        if mode is not Mode.CODE:
            return False
        user, _ = split_fields(body, 2, "code hello", limit=128)
        return user == WINDOW_USER

    @staticmethod
    def _is_receipt_hello(mode: Mode, body: bytes) -> bool:
        if mode is not Mode.CODE:
            return False
        user, _ = split_fields(body, 2, "code hello", limit=128)
        return is_receipt_user(user)

    def _receipt_hello(self, body: bytes, now: float) -> list[DeviceEvent]:
        """An enrolment's host asking what became of it: accepted whatever the owner and
        the policy, for a receipt this device holds (unknown ones fail like a wrong code,
        from the same fake verifiers as unknown users). Not counted: the secret is 256
        bits from the enrolment session's keys."""
        self._credential = Credential.RECEIPT
        engine = modes.CodeDevice(
            records=self._receipts,
            device_info=self._info,
            unknown_user_key=self._secrets.unknown_user_key,
        )
        self._engine = engine
        self._state = _State.HANDSHAKE
        return self._after_step(engine.hello(body), now)

    def _window_hello(self, mode: Mode, body: bytes, now: float) -> list[DeviceEvent]:
        """Owned device, or the window's prover identity: only an open window will do.

        Its wrong codes are counted by the window (which closes at its limit), never by
        the factory limiter, and a window success forgives no factory failure."""
        if not self._is_window_hello(mode, body):
            raise DeviceOwned(
                "this device has an owner; its label no longer opens a session: ask the "
                "owner to open a window, or reset the device by hand"
            )
        window = self._window
        if window is None or not window.is_open(now):
            raise WindowClosed("no commissioning window is open on this device")
        window.failed()  # pessimistic, as the factory limiter: forgiven by nothing
        self._credential = Credential.WINDOW
        engine = modes.CodeDevice(records=window.records(now), device_info=self._info)
        self._engine = engine
        self._state = _State.HANDSHAKE
        self._window_session = window.purpose
        return self._after_step(engine.hello(body), now)

    def _credential_for(self, hello: Hello) -> Credential:
        """The secret this HELLO will prove, whose counter the attempt uses."""
        return registry.engine(hello.mode).credential

    def _engine_for(self, mode: Mode) -> DeviceHandshake:
        return registry.engine(mode).device(self._secrets, self._info)

    def _handshake(self, body: bytes, now: float) -> list[DeviceEvent]:
        assert self._engine is not None
        return self._after_step(self._engine.receive(body), now)

    def _after_step(self, step: modes.Step, now: float) -> list[DeviceEvent]:
        events: list[DeviceEvent] = []
        if step.reply is not None:
            events.append(SendMessage(encode(Handshake(step.reply))))
        if step.keys is not None:
            self._install(step.keys, now)
        if step.number is not None:
            self.number = step.number
            events.append(ShowNumber(step.number))
        if step.done and self._mode is not None and registry.engine(self._mode).device_confirms:
            self._state = _State.WAIT_CONFIRMATION
        elif step.done:
            # The host proved its secret (qr, code, passkey) or holds the button window.
            events.append(self._attestation(now))
            return events + self._open(now)
        return events

    def _secure(self, ciphertext: bytes, now: float) -> list[DeviceEvent]:
        if self._channel is None:
            raise modes.UnexpectedMessage("encrypted message before keys exist")
        inner = decode_inner(self._channel.open(ciphertext, now))
        if inner.kind is InnerKind.CLOSE:
            assert isinstance(inner.body, int)
            return self._end(None if inner.body == 0 else ClosedByPeer(inner.body))
        if self._state is _State.WAIT_CONFIRMATION and inner.kind is InnerKind.CONFIRMED:
            self._host_confirmed = True
            return self._maybe_open(now)
        if self._state is not _State.OPEN:
            raise modes.UnexpectedMessage("application data before the host was authenticated")
        if inner.kind is InnerKind.CHAIN_REQUEST:
            return [self._chain(inner.body, now)]
        if inner.kind is not InnerKind.APPLICATION or not isinstance(inner.body, bytes):
            raise modes.UnexpectedMessage("only application data is expected now")
        if self._in_button_window and self._button.overlapped(self._connection):
            raise SessionOverlap("another host tried during the button window")
        return [ApplicationData(inner.body)]

    def _maybe_open(self, now: float) -> list[DeviceEvent]:
        # Both users: compare runs only on a device that confirms (offered_modes).
        if not (self._host_confirmed and self._device_confirmed):
            return []
        return [self._attestation(now), *self._open(now)]

    def _open(self, now: float) -> list[DeviceEvent]:
        assert self._mode is not None
        assert self._credential is not None
        self._state = _State.OPEN
        events: list[DeviceEvent] = []
        if self._window_session is not None:
            # The window counted this attempt itself; no factory counter is forgiven.
            self.window_purpose = self._window_session
        elif self._credential is Credential.RECEIPT:
            pass  # nothing counted, nothing forgiven
        elif self._credential.limited:
            # Forgives this secret's failures only: another secret's count stands.
            self._limits[self._credential].succeeded()
            events.append(PersistAttempts(self._limits.to_bytes()))
        else:
            self._button.authenticated()
        return [*events, Authenticated(self._mode, self._credential)]

    def _chain(self, wanted: bytes | int, now: float) -> SendMessage:
        """The attestation's intermediate (and the root if asked), once per session: the
        host fetches what its cache lacks, then verifies (docs/protocol.md section 9)."""
        if self._chain_sent or not isinstance(wanted, int):
            raise modes.UnexpectedMessage("a second chain request")
        self._chain_sent = True
        body = self._secrets.identity.chain_for(ChainRequest(wanted))
        return self._seal(Inner(InnerKind.CHAIN, body), now)

    def _attestation(self, now: float) -> SendMessage:
        assert self._keys is not None
        attestation = self._secrets.identity.attest(
            self._keys.handshake_hash, context=ATTESTATION_CONTEXT
        )
        return self._seal(Inner(InnerKind.ATTESTATION, attestation), now)

    def _fail(self, error: ProtocolError, now: float) -> list[DeviceEvent]:
        events: list[DeviceEvent] = [*self._close_records(error.code, now)]
        if not events:
            retry = int(getattr(error, "retry_after", 0) + 0.999)
            events.append(SendMessage(encode(Refused(error.code, min(retry, 86400)))))
        return events + self._end(error)

    def _end(self, error: BleprovError | None) -> list[DeviceEvent]:
        self._state = _State.ENDED
        self._erase()
        if self._reserved:
            self._reserved = False
            self._limits.release()
        if self._in_button_window:
            self._button.close()  # one-shot: the window is spent, whatever the outcome
        return [SessionEnded(error)]


class ClosedByPeer(ProtocolError):
    """The host closed the session for a reason (``code``), e.g. the user rejected."""

    def __init__(self, code: int) -> None:
        super().__init__(f"the host closed the session (error 0x{code:02x})")
        self.code = code


__all__ = [
    "ApplicationData",
    "Authenticated",
    "ClosedByPeer",
    "Credential",
    "DeviceEvent",
    "DeviceOwned",
    "DeviceSecrets",
    "DeviceSession",
    "HandshakeTimeout",
    "MalformedData",
    "ModeNotAllowed",
    "PersistAttempts",
    "SendMessage",
    "SessionEnded",
    "ShowNumber",
    "offered_modes",
]
