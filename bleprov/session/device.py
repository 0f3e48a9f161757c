"""Secure sessions over the link: the core session machines driven on both sides.

Device side: :class:`SecureDeviceServer` is a :class:`~bleprov.radio.device_link.DeviceApplication`
that runs a :class:`~bleprov.core.session.device.DeviceSession` per connection and hands
only authenticated application data to the product's :class:`SecureApplication`.

Host side: :class:`SecureHostLink` opens a :class:`~bleprov.radio.host_link.HostLink`,
runs a :class:`~bleprov.core.session.host.HostSession` with the chosen mode, asks the user
to compare numbers, or to type the device's number, where the mode needs it, and then
carries application messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

from bleak.backends.device import BLEDevice

from bleprov.core.advertising import DeviceInfo, ServiceData
from bleprov.core.attempts import (
    AttemptLimiter,
    AttemptLimits,
    ButtonWindow,
    Credential,
    DeviceBusy,
    SessionOverlap,
)
from bleprov.core.channel import ChannelClosedError
from bleprov.core.crypto.spake2plus import VerifierRecord
from bleprov.core.enrolment.device import Authority
from bleprov.core.errors import BleprovError, MalformedData, keep_recent
from bleprov.core.identity import AttestationResult
from bleprov.core.session import device as dev
from bleprov.core.session import host as hst
from bleprov.core.session.messages import Handshake, Hello, Mode, Refused, Secure, decode, encode
from bleprov.core.window import CommissioningWindow
from bleprov.radio.host_link import CentralRadio, HostLink

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


class InfoSource(Protocol):
    def current_info(self) -> DeviceInfo: ...


class LinkSession(Protocol):
    """One host's connection on any link (BLE's ``DeviceSession``, the broker's
    ``BrokerSession``): what the session server needs of it."""

    @property
    def link(self) -> InfoSource: ...

    @property
    def connection(self) -> str: ...

    @property
    def allowed_modes(self) -> int:
        """Modes this link permits (ANDed with the device's policy)."""
        ...

    def send(self, payload: bytes) -> None: ...

    async def disconnect(self) -> None: ...


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

    # ----------------------------------------------- DeviceApplication (link layer)

    def session_opened(self, session: LinkSession) -> None:
        if self.channels:
            # Where the BLE link and the broker meet: a device being enrolled on one
            # refuses the other, so two hosts never drive one enrolment.
            self.refused_busy += 1
            logger.info("session on %s refused: the device is busy", session.connection)
            session.send(encode(Refused(DeviceBusy.code, 0)))
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
        if not self.button.is_open(self.now()) and not any(
            c.mode is Mode.BUTTON for c in self.channels.values()
        ):
            return
        self.button.spoil()  # nobody keeps it: a new press is needed, not "window used"
        overlap = SessionOverlap("a second host tried during the button window")
        for channel in list(self.channels.values()):
            if channel.mode is Mode.BUTTON or channel.mode is None:
                self._dispatch(channel, channel.machine.abort(overlap, self.now()))

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


# -------------------------------------------------------------------- host side


@dataclass(frozen=True)
class SessionInfo:
    mode: Mode
    attestation: AttestationResult
    device_info: DeviceInfo


NumberConfirmer = Callable[[int], Awaitable[bool]]
#: passkey mode: asks the user for the number the device shows (the text typed).
PasskeyReader = Callable[[], Awaitable[str]]


def _message_kind(raw: bytes) -> str:
    """A session message's type for a debug line: never its body (a handshake share, a
    ciphertext), only what it is."""
    try:
        message = decode(raw)
    except MalformedData:
        return "unreadable"
    if isinstance(message, Hello):
        return f"HELLO ({message.mode.label} mode)"
    if isinstance(message, Refused):
        return f"REFUSED (code {message.code})"
    if isinstance(message, Handshake):
        return "HANDSHAKE"
    assert isinstance(message, Secure)
    return "SECURE"


def _log_message(direction: str, raw: bytes) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("session %s: %s, %d bytes", direction, _message_kind(raw), len(raw))


async def _always_reject(number: int) -> bool:
    return False


async def _no_passkey() -> str:
    raise ChannelClosedError("nobody can type the device's number here")


class MessageLink(Protocol):
    """Whole messages to and from one device: :class:`HostLink` over BLE, or the broker's
    ``BrokerHostLink``. ``info_raw`` is the device's info value as received (bound by the
    handshake)."""

    @property
    def info_raw(self) -> bytes: ...

    async def connect(self) -> DeviceInfo: ...

    def send(self, payload: bytes) -> None: ...

    async def receive(self, timeout: float | None = None) -> bytes: ...

    async def close(self) -> None: ...


class SecureHostLink:
    """A secure session with one device over a :class:`HostLink` (BLE: ``target`` on
    ``radio``) or over any other :class:`MessageLink` given as ``link``."""

    def __init__(
        self,
        target: BLEDevice | str | None,
        radio: CentralRadio | None,
        *,
        link: MessageLink | None = None,
        mode: Mode,
        secret: hst.OutOfBand,
        trust: hst.Trust,
        advertised: ServiceData | None = None,
        confirm_number: NumberConfirmer = _always_reject,
        handshake_timeout: float = 60.0,
        enter_passkey: PasskeyReader = _no_passkey,
    ) -> None:
        if link is None:
            if target is None or radio is None:
                raise TypeError("SecureHostLink needs a target and a radio, or a link")
            link = HostLink(target, radio)
        self.link: MessageLink = link
        self.mode = mode
        self._secret = secret
        self._trust = trust
        self._advertised = advertised
        self._confirm = confirm_number
        self._passkey = enter_passkey
        self._handshake_timeout = handshake_timeout
        self.machine: hst.HostSession | None = None
        self.info: SessionInfo | None = None
        self._inbox: asyncio.Queue[bytes | BleprovError] = asyncio.Queue()
        #: Session messages of the handshake (attestation included), each way.
        self.handshake_sent = 0
        self.handshake_received = 0

    async def __aenter__(self) -> SecureHostLink:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> SessionInfo:
        """Connect, run the handshake, verify the attestation."""
        loop = asyncio.get_running_loop()
        if self.mode is Mode.BUTTON:
            logger.warning(
                "button mode does not authenticate this host to the device: anyone in "
                "radio range during the button window could have enrolled it instead; "
                "use it only where nobody else can be in range (docs/security.md)"
            )
        info = await self.link.connect()
        logger.info("authenticating in %s mode", self.mode.label)
        try:
            if self._advertised is not None:
                hst.check_advertisement(self._advertised, info)
            raw_info = self.link.info_raw
            self.machine = hst.HostSession(
                mode=self.mode,
                secret=self._secret,
                device_info=raw_info,
                trust=self._trust,
                wall_clock=datetime.now(UTC),
                now=loop.time(),
                handshake_timeout=self._handshake_timeout,
            )
            events = self.machine.start(loop.time())
            try:
                async with asyncio.timeout(self._handshake_timeout):
                    while True:
                        established = await self._handle(events)
                        if established is not None:
                            self.info = SessionInfo(self.mode, established.attestation, info)
                            self._log_established()
                            return self.info
                        raw = await self.link.receive()
                        _log_message("in", raw)
                        events = self.machine.receive(raw, loop.time())
                        self.handshake_received += 1
            except TimeoutError:
                raise dev.HandshakeTimeout(
                    f"the handshake did not complete within {self._handshake_timeout:g} s"
                ) from None
        except BaseException:
            await self.link.close()
            raise

    def _log_established(self) -> None:
        assert self.info is not None
        attestation = self.info.attestation
        logger.info(
            "secure session established with device %s made by %s (manufacturer %s)",
            attestation.device_id,
            attestation.manufacturer,
            "trusted" if attestation.trusted else "not trusted",
        )
        logger.debug(
            "handshake: %d message(s) sent, %d received",
            self.handshake_sent,
            self.handshake_received,
        )

    async def _handle(self, events: list[hst.HostEvent]) -> hst.Established | None:
        assert self.machine is not None
        established = None
        pending = list(events)
        while pending:
            event = pending.pop(0)
            if isinstance(event, hst.SendMessage):
                _log_message("out", event.data)
                self.link.send(event.data)
                if self.info is None:
                    self.handshake_sent += 1
            elif isinstance(event, hst.CompareNumber):
                logger.debug("compare mode: asking the user to compare the number")
                accepted = await self._confirm(event.number)
                loop = asyncio.get_running_loop()
                pending.extend(self.machine.confirm_number(accepted, loop.time()))
            elif isinstance(event, hst.PasskeyRequested):
                logger.debug("passkey mode: asking the user for the device's number")
                typed = await self._passkey()
                loop = asyncio.get_running_loop()
                pending.extend(self.machine.enter_passkey(typed, loop.time()))
            elif isinstance(event, hst.Established):
                established = event
            elif isinstance(event, hst.ApplicationData):
                self._inbox.put_nowait(event.data)
            elif isinstance(event, hst.SessionEnded):
                if event.error is not None:
                    raise event.error
                raise ChannelClosedError("the device closed the session")
        return established

    @property
    def through_window(self) -> bool:
        """Authenticated with the code of a window the device's owner opened."""
        return isinstance(self._secret, hst.WindowSecret)

    def channel_binding(self, label: bytes) -> bytes:
        """This session's channel binding for ``label``, the same the device computes."""
        if self.machine is None:
            raise ChannelClosedError("the session is not open")
        return self.machine.channel_binding(label)

    def exporter(self, label: bytes) -> bytes:
        """This session's secret export for ``label``, the same the device derives."""
        if self.machine is None:
            raise ChannelClosedError("the session is not open")
        return self.machine.exporter(label)

    def send(self, data: bytes) -> None:
        assert self.machine is not None
        loop = asyncio.get_running_loop()
        for event in self.machine.send(data, loop.time()):
            if isinstance(event, hst.SendMessage):
                _log_message("out", event.data)
                self.link.send(event.data)

    async def receive(self, timeout: float | None = None) -> bytes:
        assert self.machine is not None
        loop = asyncio.get_running_loop()
        while self._inbox.empty():
            raw = await self.link.receive(timeout)
            _log_message("in", raw)
            events = self.machine.receive(raw, loop.time())
            await self._handle(events)
        item = self._inbox.get_nowait()
        if isinstance(item, BleprovError):
            raise item
        return item

    async def request(self, data: bytes, timeout: float | None = None) -> bytes:
        self.send(data)
        return await self.receive(timeout)

    async def close(self) -> None:
        logger.debug("closing the session")
        if self.machine is not None:
            with contextlib.suppress(BleprovError):
                for event in self.machine.close(asyncio.get_running_loop().time()):
                    if isinstance(event, hst.SendMessage):
                        self.link.send(event.data)
                # Give the CLOSE record a chance to leave before the link drops.
                await asyncio.sleep(0)
        await self.link.close()
