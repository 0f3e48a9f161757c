"""Device side of the secure session: :class:`SecureDeviceServer` over every link at once.

It is the :class:`~bleprov.link.LinkApplication` of each of the device's links (BLE's
``DeviceLink``, the broker's transport): it runs a
:class:`~bleprov.core.session.device.DeviceSession` per host's connection, applies the
admission rules (:mod:`bleprov.core.session.admission`: one session at a time across
links, the push-button overlap), arms the machines' deadlines, and hands only
authenticated application data to the product's :class:`SecureApplication`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final, Protocol

from bleprov.core.attempts import AttemptLimiter, AttemptLimits, ButtonWindow, Credential
from bleprov.core.crypto.spake2plus import VerifierRecord
from bleprov.core.enrolment.device import Authority
from bleprov.core.errors import BleprovError, MalformedData, keep_recent
from bleprov.core.session import admission
from bleprov.core.session import device as dev
from bleprov.core.session.messages import Mode, encode
from bleprov.core.window import CommissioningWindow
from bleprov.link.protocols import LinkSession

#: The name it had in radio/ (bleprov.radio.secure_link): log lines stay as they were.
logger = logging.getLogger("bleprov.radio.secure_link")

#: Seconds between two log lines about sessions that failed before authentication.
FAILED_SESSION_LOG_INTERVAL: Final = 10.0
#: The handshake deadline of a remote session. It starts with the host's HELLO (a broker
#: session starts there), and through a broker only the label's modes run, with nobody to
#: wait for after HELLO: a round trip or two. The 60 s a person may need on BLE (a number
#: to compare or type) would let anyone with publish rights hold the device, BLE
#: included, a minute per attempt.
REMOTE_HANDSHAKE_TIMEOUT: Final = 10.0


# ------------------------------------------------------------------ device side


class AttemptStore(Protocol):
    """Where the device keeps its failed-attempt counters (survives power cuts): the
    bytes of :meth:`AttemptLimits.to_bytes`, one record for every secret."""

    def load(self) -> bytes | None: ...

    def save(self, state: bytes) -> None: ...


class MemoryAttemptStore:
    """For tests and demos: keeps the counter in memory."""

    def __init__(self) -> None:
        self.state: bytes | None = None
        self.saves = 0

    def load(self) -> bytes | None:
        return self.state

    def save(self, state: bytes) -> None:
        self.state = state
        self.saves += 1


class DeviceUi(Protocol):
    """The device's small user interface."""

    def show_number(self, number: int) -> None: ...

    def clear(self) -> None: ...


class SilentUi:
    def __init__(self) -> None:
        self.numbers: list[int] = []

    def show_number(self, number: int) -> None:
        self.numbers.append(number)

    def clear(self) -> None:
        pass


class SecureApplication(Protocol):
    """What a product runs once a host is authenticated (enrolment, later)."""

    def opened(self, channel: SecureDeviceChannel) -> None: ...

    def received(self, channel: SecureDeviceChannel, data: bytes) -> None: ...

    def closed(self, channel: SecureDeviceChannel, error: BleprovError | None) -> None: ...


class SecureDeviceChannel:
    """One authenticated session, as the product application sees it."""

    def __init__(
        self,
        server: SecureDeviceServer,
        link: LinkSession,
        machine: dev.DeviceSession,
        attempts: AttemptStore | None = None,
    ):
        self._server = server
        self.link = link
        self.machine = machine
        #: Where this session's failed attempts are counted (its link's counter).
        self.attempts = attempts if attempts is not None else server.attempts
        #: The host authenticated in this session.
        self.authenticated = False
        #: This session authenticated or counted an attempt: the only ways a session
        #: changes what the device announces (its state, a lockout).
        self.changed_state = False
        #: A number was shown for this session (compare, passkey).
        self.showed_number = False

    @property
    def mode(self) -> Mode | None:
        return self.machine.mode

    @property
    def authority(self) -> Authority:
        """What this session may change: from its credential and the device's ownership."""
        return Authority.of(
            owned=self.machine.owned,
            window=self.machine.window_purpose,
            receipt=self.machine.credential is Credential.RECEIPT,
        )

    def send(self, data: bytes) -> None:
        self._server._dispatch(self, self.machine.send(data, self._server.now()))

    def channel_binding(self, label: bytes) -> bytes:
        """This session's channel binding for ``label`` (CSRs are bound to it)."""
        return self.machine.channel_binding(label)

    def exporter(self, label: bytes) -> bytes:
        """This session's secret export for ``label`` (enrolment receipts)."""
        return self.machine.exporter(label)

    def confirm_number(self, accepted: bool) -> None:
        """The device's own button, in compare mode."""
        self._server._dispatch(self, self.machine.confirm_number(accepted, self._server.now()))

    @property
    def awaiting_confirmation(self) -> bool:
        return self.machine.awaiting_confirmation


class SecureDeviceServer:
    """Runs the session layer for every connection the device link accepts."""

    def __init__(
        self,
        *,
        secrets: dev.DeviceSecrets,
        policy: int,
        application: SecureApplication,
        attempts: AttemptStore,
        ui: DeviceUi | None = None,
        button: ButtonWindow | None = None,
        device_confirms: bool = False,
        handshake_timeout: float = 60.0,
        idle_timeout: float = 120.0,
        limiter_factory: Callable[[], AttemptLimiter] = AttemptLimiter,
        remote_attempts: AttemptStore | None = None,
        remote_handshake_timeout: float = REMOTE_HANDSHAKE_TIMEOUT,
        hello_timeout: float = dev.DEFAULT_HELLO_TIMEOUT,
    ) -> None:
        """``device_confirms``: the device has a display *and* a button its user presses
        to accept a compared number; without it the device does not offer compare
        (:func:`~bleprov.core.session.device.offered_modes`). ``limiter_factory`` gives
        each secret's counter its limits."""
        self.secrets = secrets
        self.policy = policy
        self.application = application
        self.attempts = attempts
        self.ui = ui or SilentUi()
        self.button = button or ButtonWindow()
        self.device_confirms = device_confirms
        self.handshake_timeout = handshake_timeout
        #: The handshake deadline of a remote session (the broker; see
        #: REMOTE_HANDSHAKE_TIMEOUT).
        self.remote_handshake_timeout = remote_handshake_timeout
        #: How soon after a session opened its HELLO is due.
        self.hello_timeout = hello_timeout
        self.idle_timeout = idle_timeout
        self.limits = self._load_limits(limiter_factory, attempts)
        #: Remote links (the broker: sessions whose ``remote`` is true) count failures
        #: apart, so that whoever may publish to the device's topics can lock the remote
        #: path only, never BLE, where the label's holder stands next to the device.
        self.remote_attempts = remote_attempts
        self.remote_limits = (
            self._load_limits(limiter_factory, remote_attempts)
            if remote_attempts is not None
            else None
        )
        self.channels: dict[LinkSession, SecureDeviceChannel] = {}
        #: How the latest sessions ended (None: normally), the most recent last.
        self.ended: list[BleprovError | None] = []
        #: Whether the device has an owner (its factory credentials then open nothing).
        self.owned: Callable[[], bool] = lambda: False
        #: The owner's commissioning window, while one is open (RAM only).
        self.window: CommissioningWindow | None = None
        #: The enrolment receipts a host may ask with (bleprov.core.receipt), by prover
        #: identity: the committed and rolled-back enrolments of the application (the
        #: enrolment service's), if it keeps any.
        self.receipts: Callable[[], dict[bytes, VerifierRecord]] = getattr(
            application, "receipt_records", dict
        )
        #: Sessions refused because another one (on any link) was under way.
        self.refused_busy = 0
        #: Called after a session on any link closed (the device's state may have
        #: changed: the other links re-publish it).
        self.after_session: Callable[[LinkSession], None] = lambda session: None
        self._timers: dict[LinkSession, asyncio.TimerHandle] = {}
        self._loop = asyncio.get_running_loop()
        #: Failures before authentication are logged at most every
        #: FAILED_SESSION_LOG_INTERVAL, with a count of those not logged.
        self._quiet_until = float("-inf")
        self._unlogged_failures = 0

    @staticmethod
    def _load_limits(
        factory: Callable[[], AttemptLimiter], attempts: AttemptStore
    ) -> AttemptLimits:
        raw = attempts.load()
        if raw is None:
            return AttemptLimits(template=factory)
        try:
            return AttemptLimits.from_bytes(raw, factory)
        except MalformedData:
            # A corrupt record must not reset the counters to zero: lock every secret.
            logger.error("attempt counters unreadable: locking until a physical reset")
            return AttemptLimits.all_locked(factory)

    @property
    def offered_modes(self) -> int:
        """The modes this device offers: its policy, less compare if it cannot confirm.
        What it advertises and serves in its info should say exactly this."""
        return dev.offered_modes(self.policy, device_confirms=self.device_confirms)

    def now(self) -> float:
        return self._loop.time()

    def physical_reset(self) -> None:
        """Called from the device's reset button: lift every secret's lockout, on
        every link."""
        self.limits.physical_reset()
        self.attempts.save(self.limits.to_bytes())
        if self.remote_limits is not None and self.remote_attempts is not None:
            self.remote_limits.physical_reset()
            self.remote_attempts.save(self.remote_limits.to_bytes())

    @property
    def awaiting_confirmation(self) -> bool:
        """compare mode: a number is shown and waits for the device's user."""
        return any(channel.awaiting_confirmation for channel in self.channels.values())

    def confirm_number(self, accepted: bool) -> bool:
        """The device's user answers the number it shows (its button: accept). Returns
        whether a number was waiting."""
        waiting = [c for c in self.channels.values() if c.awaiting_confirmation]
        for channel in waiting:
            channel.confirm_number(accepted)
        return bool(waiting)

    def press_button(self) -> None:
        self.button.press(self.now())

    def button_window_open(self) -> bool:
        """Wire to ``DeviceLink.keep_advertising``: stay visible during the window so a
        second host's attempt is seen (and treated as an overlap)."""
        return self.button.is_open(self.now())

    @property
    def busy(self) -> bool:
        """A session is under way on some link: the device serves one at a time."""
        return bool(self.channels)

    # ------------------------------------------ LinkApplication (every device link)

    def session_opened(self, session: LinkSession) -> None:
        refusal = admission.busy_refusal(len(self.channels))
        if refusal is not None:
            # Where the BLE link and the broker meet: a device being enrolled on one
            # refuses the other, so two hosts never drive one enrolment.
            self.refused_busy += 1
            logger.info("session on %s refused: the device is busy", session.connection)
            session.send(encode(refusal))
            self._loop.create_task(session.disconnect())
            return
        is_remote = bool(getattr(session, "remote", False))
        remote = is_remote and self.remote_limits is not None
        machine = dev.DeviceSession(
            secrets=self.secrets,
            policy=self.policy & session.allowed_modes,
            # Exactly the bytes the info characteristic serves: the session binds them.
            device_info=session.link.current_info().encode(),
            limits=self.remote_limits if remote and self.remote_limits else self.limits,
            button=self.button,
            connection=session.connection,
            now=self.now(),
            device_confirms=self.device_confirms,
            handshake_timeout=(
                self.remote_handshake_timeout if is_remote else self.handshake_timeout
            ),
            idle_timeout=self.idle_timeout,
            hello_timeout=self.hello_timeout,
            owned=self.owned(),
            window=self.window,
            receipts=self.receipts(),
        )
        attempts = self.remote_attempts if remote else self.attempts
        self.channels[session] = SecureDeviceChannel(self, session, machine, attempts)
        self._arm(session)

    def message_received(self, session: LinkSession, payload: bytes) -> None:
        channel = self.channels.get(session)
        if channel is not None:
            self._dispatch(channel, channel.machine.receive(payload, self.now()))

    def session_closed(self, session: LinkSession, error: BleprovError | None) -> None:
        channel = self.channels.pop(session, None)
        timer = self._timers.pop(session, None)
        if timer is not None:
            timer.cancel()
        if channel is not None:
            events = channel.machine.close(self.now())
            self._dispatch(channel, [e for e in events if isinstance(e, dev.SessionEnded)])
            if channel.changed_state:
                self.after_session(session)

    def central_turned_away(self, connection: str) -> None:
        """A second host tried to connect. During a push-button window that is a
        session overlap (WPS PBC): the window closes and a button session in progress
        is aborted, so neither host gets in without a new press."""
        modes = {session: channel.mode for session, channel in self.channels.items()}
        overlap = admission.second_host(self.button, modes, self.now())
        if overlap is None:
            return
        for session in overlap.abort:
            channel = self.channels.get(session)
            if channel is not None:
                self._dispatch(channel, channel.machine.abort(overlap.error, self.now()))

    # ------------------------------------------------------------- internals

    def _arm(self, session: LinkSession) -> None:
        old = self._timers.pop(session, None)
        if old is not None:
            old.cancel()
        channel = self.channels.get(session)
        if channel is None:
            return
        deadline = channel.machine.next_deadline()
        if deadline is not None:
            self._timers[session] = self._loop.call_at(deadline, self._expire, session)

    def _expire(self, session: LinkSession) -> None:
        channel = self.channels.get(session)
        if channel is not None:
            self._dispatch(channel, channel.machine.handle_timer(self.now()))

    def _log_ended(self, channel: SecureDeviceChannel, error: BleprovError) -> None:
        """One line per failed session, except before authentication: those are logged
        at most every FAILED_SESSION_LOG_INTERVAL, so that a flood of hostile
        connections cannot flood the journal (the count says how many there were)."""
        connection = channel.link.connection
        if channel.authenticated:
            logger.warning("session with %s ended: %s", connection, error)
            return
        now = self.now()
        if now < self._quiet_until:
            self._unlogged_failures += 1
            return
        more = self._unlogged_failures
        logger.warning(
            "session with %s ended before authentication: %s%s",
            connection,
            error,
            f" ({more} more since the last such line)" if more else "",
        )
        self._unlogged_failures = 0
        self._quiet_until = now + FAILED_SESSION_LOG_INTERVAL

    def _dispatch(self, channel: SecureDeviceChannel, events: list[dev.DeviceEvent]) -> None:
        for event in events:
            if isinstance(event, dev.PersistAttempts):
                # Synchronous on purpose: stored before any later message leaves.
                channel.attempts.save(event.state)
                channel.changed_state = True
            elif isinstance(event, dev.SendMessage):
                channel.link.send(event.data)
            elif isinstance(event, dev.ShowNumber):
                channel.showed_number = True
                self.ui.show_number(event.number)
            elif isinstance(event, dev.Authenticated):
                channel.authenticated = channel.changed_state = True
                self.application.opened(channel)
            elif isinstance(event, dev.ApplicationData):
                self.application.received(channel, event.data)
            elif isinstance(event, dev.SessionEnded):
                if channel.showed_number:
                    self.ui.clear()
                keep_recent(self.ended, event.error)
                if event.error is not None:
                    self._log_ended(channel, event.error)
                self.application.closed(channel, event.error)
                self._loop.create_task(channel.link.disconnect())
        self._arm(channel.link)
