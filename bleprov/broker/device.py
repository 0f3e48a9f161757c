"""Device side: connect out to the broker, announce, and serve one session at a time.

:class:`BrokerDeviceTransport` is to the broker what ``DeviceLink`` is to the radio: it
hands each host's session to the same application (``SecureDeviceServer``), so the same
handshake, session and enrolment code runs. It keeps a connection up with exponential
backoff and jitter; it announces the device's info value, retained, under
``<prefix>/dev/<device-id>/info``, with a last will that clears it. If the broker goes
away mid-session, the session ends with an error, so the enrolment fail-safe rolls back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import aiomqtt

from bleprov.broker.client import BrokerConfig
from bleprov.broker.wire import (
    UP_KINDS,
    CloseReason,
    Envelope,
    Kind,
    MalformedEnvelope,
    Topics,
    close,
)
from bleprov.core.advertising import DeviceInfo, OobMode
from bleprov.core.errors import BleprovError, ChannelClosed
from bleprov.core.frames import DEFAULT_MAX_MESSAGE

logger = logging.getLogger(__name__)

#: The label's modes only. Compare and button mode prove presence near the device, not
#: possession of its label; through a broker anyone who may publish to the device's topics
#: could answer a button press or a displayed number (docs/cloud-binding.md).
DEFAULT_BROKER_MODES = OobMode.QR | OobMode.CODE


class BrokerApplication(Protocol):
    """What runs above the transport (``SecureDeviceServer``)."""

    @property
    def busy(self) -> bool: ...

    def session_opened(self, session: BrokerSession) -> None: ...

    def message_received(self, session: BrokerSession, payload: bytes) -> None: ...

    def session_closed(self, session: BrokerSession, error: BleprovError | None) -> None: ...


class BrokerSession:
    """One host's session through the broker (a per-session topic pair)."""

    #: Its failed attempts count on the server's remote counter, not BLE's.
    remote = True

    def __init__(self, transport: BrokerDeviceTransport, session_id: str) -> None:
        self.link = transport
        self.session_id = session_id
        self.connection = f"mqtt:{session_id[:8]}"
        self.allowed_modes = transport.allowed_modes

    def send(self, payload: bytes) -> None:
        """Queue one session message to the host."""
        self.link._publish_down(self, Envelope(Kind.DATA_DOWN, payload).encode())

    async def disconnect(self) -> None:
        """End the session: tell the host, then forget it."""
        self.link._end(self, CloseReason.NORMAL, None)


@dataclass
class TransportCounters:
    connects: int = 0
    sessions: int = 0
    refused_busy: int = 0
    messages_in: int = 0
    messages_out: int = 0
    errors: list[BleprovError] = field(default_factory=list)


class BrokerDeviceTransport:
    """Serves sessions from the broker to ``application``; see the module docstring."""

    def __init__(
        self,
        config: BrokerConfig,
        application: BrokerApplication,
        info: Callable[[], DeviceInfo],
        device_id: str,
        *,
        max_message: int = DEFAULT_MAX_MESSAGE,
        backoff_initial: float = 0.5,
        backoff_max: float = 60.0,
        allowed_modes: OobMode = DEFAULT_BROKER_MODES,
    ) -> None:
        self.config = config
        self.application = application
        self.info = info
        self.topics = Topics(device_id, config.prefix)
        self.max_message = max_message
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.allowed_modes = int(allowed_modes)
        self.session: BrokerSession | None = None
        #: Set while connected and announced; cleared when the broker goes away.
        self.connected = asyncio.Event()
        self.counters = TransportCounters()
        self._outbox: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._client: aiomqtt.Client | None = None
        self._closing = False

    def current_info(self) -> DeviceInfo:
        """The application's info with this transport's message bound filled in."""
        return dataclasses.replace(self.info(), max_message=self.max_message)

    async def start(self) -> None:
        """Start connecting (in the background; ``connected`` says when it is up)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def reannounce(self) -> None:
        """Publish the current info again (after a state change: enrolled, reset)."""
        if self.connected.is_set():
            self._outbox.put_nowait((self.topics.info, self.current_info().encode(), True))

    async def close(self) -> None:
        """End any session, clear the announcement, disconnect."""
        self._closing = True
        session = self.session
        if session is not None:
            self._end(session, CloseReason.OFFLINE, ChannelClosed("the device is going offline"))
        client = self._client
        if client is not None and self.connected.is_set():
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(self.config.timeout):
                    await self._outbox.join()
                    await client.publish(self.topics.info, b"", qos=1, retain=True)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.connected.clear()

    # ------------------------------------------------------------ connection

    async def _run(self) -> None:
        delay = self.backoff_initial
        while not self._closing:
            try:
                await self._serve()
            except aiomqtt.MqttError as exc:
                # aiomqtt's texts carry broker reason codes, never our payloads.
                logger.warning("broker connection failed or lost: %s", exc)
            finally:
                was_connected = self.connected.is_set()
                self.connected.clear()
                self._client = None
                self._lost()
            if was_connected:
                delay = self.backoff_initial
            # Full jitter: a fleet coming back after a broker restart does not reconnect
            # in lock step.
            await asyncio.sleep(random.uniform(delay / 2, delay))  # noqa: S311
            delay = min(delay * 2, self.backoff_max)

    async def _serve(self) -> None:
        will = aiomqtt.Will(self.topics.info, b"", qos=1, retain=True)
        client = self.config.client(identifier=f"bleprov-dev-{self.topics.device_id}", will=will)
        async with client:
            self._client = client
            while not self._outbox.empty():  # what was queued for a dead connection
                self._outbox.get_nowait()
                self._outbox.task_done()
            await client.subscribe(self.topics.all_up, qos=1)
            await client.publish(self.topics.info, self.current_info().encode(), qos=1, retain=True)
            self.counters.connects += 1
            self.connected.set()
            sender = asyncio.get_running_loop().create_task(self._sender(client))
            try:
                async for message in client.messages:
                    self._on_message(message)
                    if sender.done():
                        sender.result()  # re-raise its MqttError
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await sender

    async def _sender(self, client: aiomqtt.Client) -> None:
        while True:
            topic, payload, retain = await self._outbox.get()
            try:
                await client.publish(topic, payload, qos=1, retain=retain)
            finally:
                self._outbox.task_done()

    def _lost(self) -> None:
        session = self.session
        if session is not None:
            self._end(session, None, ChannelClosed("the broker connection was lost mid-session"))

    # --------------------------------------------------------------- sessions

    def _publish_down(self, session: BrokerSession, payload: bytes) -> None:
        if self.session is session and self.connected.is_set():
            self.counters.messages_out += 1
            self._outbox.put_nowait((self.topics.down(session.session_id), payload, False))

    def _on_message(self, message: aiomqtt.Message) -> None:
        payload = message.payload
        if message.retain or not isinstance(payload, bytes | bytearray):
            return  # a retained "session" message would replay at every reconnect
        try:
            session_id = self.topics.session_of(message.topic.value)
        except MalformedEnvelope:
            return
        current = self.session
        try:
            envelope = Envelope.decode(bytes(payload), allowed=UP_KINDS, max_body=self.max_message)
        except MalformedEnvelope as exc:
            self.counters.errors.append(exc)
            if current is not None and current.session_id == session_id:
                self._end(current, CloseReason.ERROR, exc)
            return
        if envelope.kind is Kind.OPEN:
            if current is not None and current.session_id == session_id:
                return  # a duplicate OPEN
            if current is not None or self.application.busy:
                self.counters.refused_busy += 1
                logger.info("broker session refused: the device is busy")
                if self.connected.is_set():
                    self._outbox.put_nowait(
                        (
                            self.topics.down(session_id),
                            close(Kind.CLOSE_DOWN, CloseReason.BUSY),
                            False,
                        )
                    )
                return
            self._open(session_id)
        elif current is None or current.session_id != session_id:
            return  # a stale or foreign session's message: nothing to do with ours
        elif envelope.kind is Kind.DATA_UP:
            self.counters.messages_in += 1
            self.application.message_received(current, envelope.body)
        else:  # CLOSE_UP (or the host's last will)
            reason = envelope.reason()
            error = None if reason is CloseReason.NORMAL else ChannelClosed("the host went away")
            self._end(current, None, error)

    def _open(self, session_id: str) -> None:
        session = BrokerSession(self, session_id)
        self.session = session
        self.counters.sessions += 1
        # The bytes the session binds are the bytes the host gets in ACCEPT.
        self._publish_down(session, Envelope(Kind.ACCEPT, self.current_info().encode()).encode())
        self.application.session_opened(session)

    def _end(
        self, session: BrokerSession, reason: CloseReason | None, error: BleprovError | None
    ) -> None:
        """Forget ``session``; tell the host ``reason`` unless None; tell the application."""
        if self.session is not session:
            return
        if reason is not None:
            self._publish_down(session, close(Kind.CLOSE_DOWN, reason))
        self.session = None
        if error is not None:
            self.counters.errors.append(error)
        self.application.session_closed(session, error)
        self.reannounce()
