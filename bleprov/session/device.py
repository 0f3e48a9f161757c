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
import functools
import logging
from collections.abc import Callable
from typing import Final, Protocol

from bleprov.core.attempts import AttemptLimiter, ButtonWindow, Credential
from bleprov.core.crypto.spake2plus import VerifierRecord
from bleprov.core.enrolment.device import Authority
from bleprov.core.errors import BleprovError, keep_recent
from bleprov.core.session import admission
from bleprov.core.session import device as dev
from bleprov.core.session.messages import Mode, encode
from bleprov.core.window import CommissioningWindow
from bleprov.link.protocols import LinkSession
from bleprov.session.attempts import DEFAULT_SETTLE_DELAY, AttemptLedger, AttemptStore

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
        ledger: AttemptLedger | None = None,
    ):
        self._server = server
        self.link = link
        self.machine = machine
        #: Where this session's failed attempts are counted (its link's counter).
        self.ledger = ledger if ledger is not None else server.ledger
        self.attempts = self.ledger.store
        #: What waits for the stored counters to cover those in RAM, in order (sends,
        #: the disconnect), and the write it waits for.
        self._outbox: list[tuple[Callable[[], object], bytes | None]] = []
        self._gate: asyncio.Future[None] | None = None
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

    async def settle_attempts_in(
        self, store: object
    ) -> tuple[dict[str, bytes], Callable[[], None] | None]:
        """The attempt record for a commit into ``store`` (the session's success reset
        its counter: that joins the commit's one atomic write), and what to call once it
        is written; nothing if the counters live elsewhere or are stored already."""
        target = self.ledger.store
        record = getattr(target, "record", None)
        if getattr(target, "store", None) is not store or not isinstance(record, str):
            return {}, None
        await self.ledger.idle()
        state = self.ledger.commit_record()
        if state is None:
            return {}, None
        return {record: state}, lambda: self.ledger.committed(state)

    def deliver(self, action: Callable[[], object], state: bytes | None = None) -> None:
        """Run ``action`` (a send, the disconnect) once the store covers ``state`` (a
        counter snapshot) or, by default, the counters in RAM: nothing about an attempt
        leaves before it is durably counted. Actions run in the order given."""
        if self._gate is None and not self._outbox:
            gate = self.ledger.cover(state)
            if gate is not None:
                self._gate = gate
                gate.add_done_callback(self._gate_done)
        if self._gate is not None or self._outbox:
            self._outbox.append((action, state))
            return
        action()

    def _gate_done(self, future: asyncio.Future[None]) -> None:
        self._gate = None
        actions, self._outbox = self._outbox, []
        if future.cancelled() or future.exception() is not None:
            error = None if future.cancelled() else future.exception()
            logger.error("attempt counters not stored (%s): ending the session unanswered", error)
            self._server._loop.create_task(self.link.disconnect())
            return
        for action, state in actions:
            try:
                self.deliver(action, state)
            except BleprovError as exc:  # the link went down while the write ran
                logger.info("session with %s: not sent: %s", self.link.connection, exc)


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
        settle_delay: float = DEFAULT_SETTLE_DELAY,
    ) -> None:
        """``device_confirms``: the device has a display *and* a button its user presses
        to accept a compared number; without it the device does not offer compare
        (:func:`~bleprov.core.session.device.offered_modes`). ``limiter_factory`` gives
        each secret's counter its limits. ``settle_delay``: see
        :class:`~bleprov.session.attempts.AttemptLedger`."""
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
        #: Every connection that could begin a counted attempt reserves one as it
        #: opens, written while the host sets the link up (AttemptLedger).
        self.ledger = AttemptLedger(attempts, limiter_factory, settle_delay=settle_delay)
        self.limits = self.ledger.limits
        #: Remote links (the broker: sessions whose ``remote`` is true) count failures
        #: apart, so that whoever may publish to the device's topics can lock the remote
        #: path only, never BLE, where the label's holder stands next to the device.
        self.remote_attempts = remote_attempts
        self.remote_ledger = (
            AttemptLedger(remote_attempts, limiter_factory, settle_delay=settle_delay)
            if remote_attempts is not None
            else None
        )
        self.remote_limits = self.remote_ledger.limits if self.remote_ledger else None
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
        for ledger in (self.ledger, self.remote_ledger):
            if ledger is not None:
                ledger.limits.physical_reset()
                ledger.write_soon().add_done_callback(lambda future: future.exception())

    async def settle(self) -> None:
        """Store the counters now and wait for it (shutdown: nothing left to settle)."""
        for ledger in (self.ledger, self.remote_ledger):
            if ledger is not None:
                await ledger.flush()

    def forget_durable(self) -> None:
        """The store's attempt records were removed (a factory reset)."""
        for ledger in (self.ledger, self.remote_ledger):
            if ledger is not None:
                ledger.forget_durable()

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
        remote = is_remote and self.remote_ledger is not None
        ledger = self.remote_ledger if remote and self.remote_ledger else self.ledger
        machine = dev.DeviceSession(
            secrets=self.secrets,
            policy=self.policy & session.allowed_modes,
            # Exactly the bytes the info characteristic serves: the session binds them.
            device_info=session.link.current_info().encode(),
            limits=ledger.limits,
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
            # Before its HELLO can come: the write runs while the host sets the link up.
            reserve=True,
        )
        channel = SecureDeviceChannel(self, session, machine, ledger)
        self.channels[session] = channel
        if machine.holds_reservation:
            pending = ledger.cover()
            if pending is not None:
                pending.add_done_callback(_ignore_result)
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

    def _disconnect(self, link: LinkSession) -> None:
        self._loop.create_task(link.disconnect())

    def _dispatch(self, channel: SecureDeviceChannel, events: list[dev.DeviceEvent]) -> None:
        for event in events:
            if isinstance(event, dev.PersistAttempts):
                # What follows is delivered once the store covers this state (at once
                # after a durable reservation; else after a write started here).
                channel.changed_state = True
                channel.deliver(_nothing, event.state)
            elif isinstance(event, dev.SendMessage):
                channel.deliver(functools.partial(channel.link.send, event.data))
            elif isinstance(event, dev.ShowNumber):
                # A number shown tells its watcher something too: counted first.
                channel.showed_number = True
                channel.deliver(functools.partial(self.ui.show_number, event.number))
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
                channel.ledger.settle_soon()
                channel.deliver(functools.partial(self._disconnect, channel.link))
        self._arm(channel.link)


def _nothing() -> None:
    """A place in a channel's outbox: what follows waits for the counters' write."""


def _ignore_result(future: asyncio.Future[None]) -> None:
    """A reservation's write: a failure is logged by whoever waits on it (the gate)."""
    if not future.cancelled():
        future.exception()
