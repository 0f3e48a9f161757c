"""Device side of the link: a :class:`Peripheral` plus one :class:`FrameChannel` per connection.

It serves one central at a time. It advertises while idle, stops when a central connects,
and on any framing error sends RESET, drops the link and advertises again with nothing of
the failed exchange left (the channel is cleared and the session object discarded). The
application above it sees whole messages only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from bleprov.core.advertising import AdvertisedFlags, DeviceInfo, encode_service_data
from bleprov.core.errors import BleprovError, FramingError, keep_recent
from bleprov.core.frames import (
    DEFAULT_MAX_MESSAGE,
    DEFAULT_MESSAGE_TIMEOUT,
    DEFAULT_OPEN_TIMEOUT,
    DEFAULT_RX_WINDOW,
    ChannelOpened,
    ChannelState,
    FrameChannel,
    MessageReceived,
    Role,
)
from bleprov.core.profile import GattProfile, default_profile
from bleprov.link.protocols import LinkApplication
from bleprov.radio.peripheral import (
    CentralConnected,
    CentralDisconnected,
    ConnectionId,
    FrameReceived,
    MtuChanged,
    Peripheral,
    PeripheralEvent,
    SubscriptionChanged,
)

logger = logging.getLogger(__name__)


class DeviceSession:
    """One central's connection, from OPEN to disconnection."""

    #: Every mode the device's policy enables is fine within radio range.
    allowed_modes = 0xFF

    def __init__(self, link: DeviceLink, connection: ConnectionId, channel: FrameChannel) -> None:
        self.link = link
        self.connection = connection
        self.channel = channel
        self.opened = False
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def send(self, payload: bytes) -> None:
        """Queue a message to the host."""
        self.channel.send_message(payload, self.link.now())
        self._wakeup.set()

    def wake(self) -> None:
        self._wakeup.set()

    async def disconnect(self) -> None:
        """Flush what is queued (a RESET frame included), then drop the link."""
        self._closing = True
        self._wakeup.set()

    async def run(self) -> None:
        """Send frames as credit allows and enforce the per-message timeout."""
        link = self.link
        while True:
            # asyncio.timeout_at, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation, and close() would then wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(self.channel.next_deadline()):
                    await self._wakeup.wait()
            self._wakeup.clear()
            if self.channel.state is ChannelState.CLOSED:
                return
            try:
                self.channel.handle_timer(link.now())
            except FramingError as exc:
                link.record_error(self, exc)
            for frame in self.channel.data_to_send(link.now()):
                await link.peripheral.send(self.connection, frame)
            if self._closing or self.channel.state is ChannelState.RESET:
                await link.peripheral.disconnect(self.connection)
                return


#: What runs above the link (sees sessions open, messages arrive, sessions close); it may
#: also have ``central_turned_away(connection)``, told of a second central while one is
#: connected (a push-button overlap, to the session layer).
DeviceApplication = LinkApplication[DeviceSession]


@dataclass
class LinkCounters:
    sessions: int = 0
    errors: list[BleprovError] = field(default_factory=list)


class DeviceLink:
    """Runs a peripheral for one profile and hands whole messages to the application."""

    def __init__(
        self,
        peripheral: Peripheral,
        application: DeviceApplication,
        info: Callable[[], DeviceInfo],
        *,
        local_name: str = "bleprov",
        profile: GattProfile | None = None,
        max_message: int = DEFAULT_MAX_MESSAGE,
        rx_window: int = DEFAULT_RX_WINDOW,
        message_timeout: float = DEFAULT_MESSAGE_TIMEOUT,
        open_timeout: float = DEFAULT_OPEN_TIMEOUT,
    ) -> None:
        self.peripheral = peripheral
        self.application = application
        self.info = info
        self.local_name = local_name
        self.profile = profile or default_profile()
        self.max_message = max_message
        self.rx_window = rx_window
        self.message_timeout = message_timeout
        #: A central must send OPEN this soon after connecting, or it is dropped.
        self.open_timeout = open_timeout
        #: While true, the device keeps advertising (flagged busy) during a session, so
        #: that a second host trying to connect is seen (push-button overlap detection).
        self.keep_advertising: Callable[[], bool] = lambda: False
        self.counters = LinkCounters()
        self.session: DeviceSession | None = None
        self.advertising = asyncio.Event()
        #: What the last idle advertisement carried (info, service data, name).
        self._on_air: tuple[bytes, bytes, str] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        #: Set by close(): from then on the link starts nothing on the radio.
        self._closed = False

    def now(self) -> float:
        return self._loop.time()

    def current_info(self) -> DeviceInfo:
        """The application's info with this link's framing parameters filled in."""
        return dataclasses.replace(
            self.info(), max_message=self.max_message, rx_window=self.rx_window
        )

    async def start(self) -> None:
        await self.peripheral.start(self.profile, self._on_event)
        await self.readvertise()

    async def readvertise(self) -> None:
        """Publish the current info and advertise it (after start, state changes, errors).

        A no-op while idle and advertising exactly this already: sessions on the other
        link (the broker) ask after each one, and a flood of failed ones must not become
        a flood of radio commands. A no-op once closed."""
        if self._closed:
            return
        info = self.current_info()
        encoded = info.encode()
        flags = AdvertisedFlags.BUSY if self.session else AdvertisedFlags.NONE
        window_open = self.keep_advertising()
        if window_open:
            # Scanners see the button window: a host in button mode picks this device, and
            # anyone can tell that a device near them is open to whoever connects first.
            flags |= AdvertisedFlags.BUTTON_WINDOW_OPEN
        advertisement = encode_service_data(info.service_data(flags), self.profile)
        on_air = (encoded, advertisement, self.local_name)
        if self.session is None and self.advertising.is_set() and on_air == self._on_air:
            return
        self.peripheral.set_info(encoded)
        if self.session is None or window_open:
            await self.peripheral.start_advertising(advertisement, self.local_name)
            if self.session is None:
                self._on_air = on_air
                self.advertising.set()

    async def close(self) -> None:
        """Stop the link's tasks, then the peripheral. The disconnection that closing the
        peripheral causes is still handed to the application, but the link answers it
        with nothing on the radio: a command in flight while the caller closes the radio's
        transport races its loss (bumble on Python 3.11 then errs after the daemon
        stopped)."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.peripheral.close()
        self.advertising.clear()

    def record_error(self, session: DeviceSession, error: BleprovError) -> None:
        # Error texts carry no secrets (core.errors); they are safe to log.
        logger.warning("exchange with %s reset: %s", session.connection, error)
        keep_recent(self.counters.errors, error)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._closed:
            coro.close()
            return
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("device link task failed: %r", task.exception())

    # ------------------------------------------------------------------ events

    def _on_event(self, event: PeripheralEvent) -> None:
        if isinstance(event, CentralConnected):
            self._connected(event)
        elif isinstance(event, CentralDisconnected):
            self._disconnected(event)
        elif self.session is None or event.connection != self.session.connection:
            return
        elif isinstance(event, MtuChanged):
            self.session.channel.mtu_changed(event.mtu)
        elif isinstance(event, FrameReceived):
            self._frame(self.session, event.data)
        elif isinstance(event, SubscriptionChanged):
            self.session.wake()

    def _connected(self, event: CentralConnected) -> None:
        self.advertising.clear()
        if not self.keep_advertising():
            self._spawn(self.peripheral.stop_advertising())
        if self.session is not None:
            # One central at a time: a second one is turned away, and the application
            # hears of it (a second host during a push-button window is an overlap).
            self._spawn(self.peripheral.disconnect(event.connection))
            turned_away = getattr(self.application, "central_turned_away", None)
            if turned_away is not None:
                turned_away(event.connection)
            return
        channel = FrameChannel(
            Role.DEVICE,
            max_message=self.max_message,
            rx_window=self.rx_window,
            message_timeout=self.message_timeout,
            open_timeout=self.open_timeout,
            send_overhead=self.peripheral.capabilities.notification_overhead,
        )
        # With the time: the channel's deadline for OPEN, which run() below honours.
        channel.connection_made(event.mtu, now=self.now())
        session = DeviceSession(self, event.connection, channel)
        self.session = session
        self.counters.sessions += 1
        self._spawn(session.run())
        if self.keep_advertising():
            self._spawn(self.readvertise())

    def _disconnected(self, event: CentralDisconnected) -> None:
        session = self.session
        if session is None or session.connection != event.connection:
            return
        self.session = None
        error: BleprovError | None = None
        try:
            session.channel.connection_lost()
        except FramingError as exc:
            error = exc
            self.record_error(session, exc)
        session.wake()
        if session.opened:
            self.application.session_closed(session, error)
        self._spawn(self.readvertise())

    def _frame(self, session: DeviceSession, data: bytes) -> None:
        if session.channel.state in (ChannelState.RESET, ChannelState.CLOSED):
            return  # already failed: the link is going down
        try:
            events = session.channel.receive_frame(data, self.now())
        except FramingError as exc:
            self.record_error(session, exc)
            if session.opened:
                self.application.session_closed(session, exc)
                session.opened = False
            session.wake()
            return
        for ev in events:
            if isinstance(ev, ChannelOpened):
                session.opened = True
                self.application.session_opened(session)
            elif isinstance(ev, MessageReceived):
                self.application.message_received(session, ev.payload)
        session.wake()
