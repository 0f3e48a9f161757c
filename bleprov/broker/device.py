"""Device side: connect out to the broker, announce, and serve one session at a time.

:class:`BrokerDeviceTransport` is to the broker what ``DeviceLink`` is to the radio: it
hands each host's session (a :class:`~bleprov.link.LinkSession`) to the same application
(``bleprov.session.SecureDeviceServer``), so the same handshake, session and enrolment
code runs. It keeps a connection up with exponential backoff and jitter; it announces
the device's info value, retained, under ``<prefix>/dev/<device-id>/info``, with a last
will that clears it. If the broker goes away mid-session, the session ends with an error,
so the enrolment fail-safe rolls back.

Anyone allowed to publish to the device's up topics can send OPENs as fast as the broker
carries them, so an OPEN holds nothing: the device answers it (ACCEPT with its info, or
CLOSE busy) and forgets it. A session starts with the host's first message (its HELLO,
where the device counts an attempt): a host that opens and goes quiet, or a flood of
them, keeps no one else out. Answers to hosts without a session wait in a short queue of
their own (the oldest dropped first), so a flood neither grows the device's memory nor
delays the session's messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

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
from bleprov.core.errors import BleprovError, ChannelClosed, keep_recent
from bleprov.core.frames import DEFAULT_MAX_MESSAGE
from bleprov.link.protocols import LinkApplication

logger = logging.getLogger(__name__)

#: Answers to hosts without a session (ACCEPT, CLOSE busy) waiting to be sent at most;
#: beyond it the oldest is dropped (its host retries, or was a flood).
MAX_PENDING_ANSWERS: Final = 64
#: Sessions remembered after they ended, so that their late messages start nothing.
RECENTLY_ENDED: Final = 16
#: Seconds between two log lines about incoming messages shed under a flood.
SHED_LOG_INTERVAL: Final = 10.0

#: The label's modes only. Compare and button mode prove presence near the device, not
#: possession of its label; through a broker anyone who may publish to the device's topics
#: could answer a button press or a displayed number (docs/cloud-binding.md).
DEFAULT_BROKER_MODES = OobMode.QR | OobMode.CODE


class Inbox(asyncio.Queue[aiomqtt.Message]):
    """The device's incoming messages (aiomqtt's queue): bounded, the session first.

    Anyone allowed to publish to the device's up topics can send faster than the device
    reads. The messages of the session under way are read first, and when the queue is
    full they displace others; among the others an OPEN goes first (its host sends it
    again within a second, while a lost HELLO costs its host the handshake timeout).
    So a flood is delayed and shed, not the session the device serves, nor, as far as
    can be, the next host's HELLO. ``shed`` counts what was dropped (aiomqtt would log a
    line for each).
    """

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        #: The up topic of the session under way (see :meth:`serve_first`).
        self.first_topic: str | None = None
        self.shed = 0

    def _init(self, maxsize: int) -> None:
        self._first: deque[aiomqtt.Message] = deque()
        self._data: deque[aiomqtt.Message] = deque()  # anything but an OPEN
        self._opens: deque[aiomqtt.Message] = deque()

    @staticmethod
    def _is_open(item: aiomqtt.Message) -> bool:
        payload = item.payload
        return isinstance(payload, bytes | bytearray) and payload[:1] == bytes([Kind.OPEN])

    def _put(self, item: aiomqtt.Message) -> None:
        if item.topic.value == self.first_topic:
            self._first.append(item)
        elif self._is_open(item):
            self._opens.append(item)
        else:
            self._data.append(item)

    def _get(self) -> aiomqtt.Message:
        for queue in (self._first, self._data, self._opens):
            if queue:
                return queue.popleft()
        raise asyncio.QueueEmpty  # (get and get_nowait check empty() first)

    def qsize(self) -> int:
        return len(self._first) + len(self._data) + len(self._opens)

    def empty(self) -> bool:
        return not (self._first or self._data or self._opens)

    def put_nowait(self, item: aiomqtt.Message) -> None:
        if self.full():
            self.shed += 1
            victims: tuple[deque[aiomqtt.Message], ...]
            if item.topic.value == self.first_topic:
                victims = (self._opens, self._data)
            elif self._is_open(item):
                victims = ()
            else:
                victims = (self._opens,)
            victim = next((queue for queue in victims if queue), None)
            if victim is None:
                return  # this one is shed
            victim.popleft()  # (nobody joins this queue: no task_done to balance)
        super().put_nowait(item)

    def serve_first(self, topic: str | None) -> None:
        """Read the messages on ``topic`` (the session's up topic) before any other,
        those already queued included, in their order."""
        self.first_topic = topic
        if topic is not None:
            mine = [m for m in self._data if m.topic.value == topic]
            if mine:
                self._data = deque(m for m in self._data if m.topic.value != topic)
                self._first.extend(mine)


class BrokerApplication(LinkApplication["BrokerSession"], Protocol):
    """What runs above the transport (``SecureDeviceServer``): a device's link
    application that also says whether a session is under way on another link (an OPEN
    is then answered busy, without starting anything)."""

    @property
    def busy(self) -> bool: ...


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
    #: Incoming messages dropped because the device could not keep up (see Inbox).
    shed: int = 0
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
        #: Answers to hosts that hold no session: bounded, and sent apart from the
        #: session's messages (see the module docstring).
        self._answers: deque[tuple[str, bytes]] = deque(maxlen=MAX_PENDING_ANSWERS)
        self._answer_ready = asyncio.Event()
        self._ended: deque[str] = deque(maxlen=RECENTLY_ENDED)
        self._inbox: Inbox | None = None
        self._shed_quiet_until = float("-inf")
        #: The info value last announced on this connection (announced again only when
        #: it changes).
        self._announced: bytes | None = None
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
        """Publish the current info again if it changed (a state change: enrolled,
        reset, a window opened); after a failed session nothing changed, and a flood of
        them must not become a flood of retained publications."""
        info = self.current_info().encode()
        if self.connected.is_set() and info != self._announced:
            self._announced = info
            self._outbox.put_nowait((self.topics.info, info, True))

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
            except Exception:
                # A bug reached by some message (issue 15's F1 was one) must not leave the
                # device offline until someone restarts it: say where, and connect again.
                logger.exception("broker connection ended by an unexpected error; reconnecting")
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
        transport = self

        class TransportInbox(Inbox):
            def __init__(self, maxsize: int = 0) -> None:
                super().__init__(maxsize)
                transport._inbox = self

        client = self.config.client(
            identifier=f"bleprov-dev-{self.topics.device_id}",
            will=will,
            queue_type=TransportInbox,
        )
        async with client:
            self._client = client
            while not self._outbox.empty():  # what was queued for a dead connection
                self._outbox.get_nowait()
                self._outbox.task_done()
            self._answers.clear()
            await client.subscribe(self.topics.all_up, qos=1)
            self._announced = self.current_info().encode()
            await client.publish(self.topics.info, self._announced, qos=1, retain=True)
            self.counters.connects += 1
            self.connected.set()
            loop = asyncio.get_running_loop()
            senders = [
                loop.create_task(self._sender(client)),
                loop.create_task(self._answerer(client)),
            ]
            try:
                async for message in client.messages:
                    self._on_message(message)
                    for sender in senders:
                        if sender.done():
                            sender.result()  # re-raise its MqttError
            finally:
                for sender in senders:
                    sender.cancel()
                for sender in senders:
                    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                        await sender

    async def _sender(self, client: aiomqtt.Client) -> None:
        while True:
            topic, payload, retain = await self._outbox.get()
            try:
                await client.publish(topic, payload, qos=1, retain=retain)
            finally:
                self._outbox.task_done()

    async def _answerer(self, client: aiomqtt.Client) -> None:
        """Sends the answers to hosts without a session, beside the session's sender."""
        while True:
            await self._answer_ready.wait()
            self._answer_ready.clear()
            while self._answers:
                topic, payload = self._answers.popleft()
                # QoS 0: a lost answer costs its host a retry, while QoS 1 answers to a
                # flood would fill the client's in-flight window ahead of the session's.
                await client.publish(topic, payload, qos=0)

    def _answer(self, session_id: str, payload: bytes) -> None:
        """Queue an answer to a host that holds no session (see MAX_PENDING_ANSWERS)."""
        if self.connected.is_set():
            self._answers.append((self.topics.down(session_id), payload))
            self._answer_ready.set()

    def _refuse_busy(self, session_id: str) -> None:
        self.counters.refused_busy += 1
        logger.debug("broker session refused: the device is busy")
        self._answer(session_id, close(Kind.CLOSE_DOWN, CloseReason.BUSY))

    def _lost(self) -> None:
        session = self.session
        if session is not None:
            self._end(session, None, ChannelClosed("the broker connection was lost mid-session"))

    # --------------------------------------------------------------- sessions

    def _publish_down(self, session: BrokerSession, payload: bytes) -> None:
        if self.session is session and self.connected.is_set():
            self.counters.messages_out += 1
            self._outbox.put_nowait((self.topics.down(session.session_id), payload, False))

    def _count_shed(self) -> None:
        """Take the inbox's count of shed messages; say so at most every
        SHED_LOG_INTERVAL (a flood would otherwise write a line per message)."""
        inbox = self._inbox
        if inbox is None or inbox.shed == 0:
            return
        now = asyncio.get_running_loop().time()
        if now < self._shed_quiet_until:
            return
        self.counters.shed += inbox.shed
        logger.warning(
            "the device could not keep up with its broker topics (a flood?): %d message(s) "
            "of no session shed since the last such line",
            inbox.shed,
        )
        inbox.shed = 0
        self._shed_quiet_until = now + SHED_LOG_INTERVAL

    def _on_message(self, message: aiomqtt.Message) -> None:
        self._count_shed()
        payload = message.payload
        if message.retain or not isinstance(payload, bytes | bytearray):
            return  # a retained "session" message would replay at every reconnect
        try:
            session_id = self.topics.session_of(message.topic.value)
        except MalformedEnvelope:
            return
        current = self.session
        ours = current is not None and current.session_id == session_id
        try:
            envelope = Envelope.decode(bytes(payload), allowed=UP_KINDS, max_body=self.max_message)
        except MalformedEnvelope as exc:
            if ours:
                assert current is not None
                keep_recent(self.counters.errors, exc)
                self._end(current, CloseReason.ERROR, exc)
            return  # no session to end: nothing of it is kept
        if ours:
            assert current is not None
            if envelope.kind is Kind.DATA_UP:
                self.counters.messages_in += 1
                self.application.message_received(current, envelope.body)
            elif envelope.kind is Kind.CLOSE_UP:  # (or the host's last will)
                reason = envelope.reason()
                error = (
                    None if reason is CloseReason.NORMAL else ChannelClosed("the host went away")
                )
                self._end(current, None, error)
            return  # a duplicate OPEN: nothing to do
        busy = current is not None or self.application.busy
        if envelope.kind is Kind.OPEN:
            if busy:
                self._refuse_busy(session_id)
            else:
                # The info as announced (reading it afresh would cost every OPEN of a
                # flood a store read): the session binds the current info, which is the
                # same unless the state changed unannounced, when the handshake fails and
                # the session's end announces it. Nothing is kept until the first message.
                assert self._announced is not None
                self._answer(session_id, Envelope(Kind.ACCEPT, self._announced).encode())
        elif envelope.kind is Kind.DATA_UP and session_id not in self._ended:
            if busy:
                self._refuse_busy(session_id)
            else:
                session = self._open(session_id)
                self.counters.messages_in += 1
                self.application.message_received(session, envelope.body)
        # else: the CLOSE of a session that never started, or a late message of one
        # that ended: nothing to do.

    def _open(self, session_id: str) -> BrokerSession:
        session = BrokerSession(self, session_id)
        self.session = session
        if self._inbox is not None:
            self._inbox.serve_first(self.topics.up(session_id))
        self.counters.sessions += 1
        self.application.session_opened(session)
        return session

    def _end(
        self, session: BrokerSession, reason: CloseReason | None, error: BleprovError | None
    ) -> None:
        """Forget ``session``; tell the host ``reason`` unless None; tell the application."""
        if self.session is not session:
            return
        if reason is not None:
            self._publish_down(session, close(Kind.CLOSE_DOWN, reason))
        self.session = None
        if self._inbox is not None:
            self._inbox.serve_first(None)
        self._ended.append(session.session_id)
        if error is not None:
            keep_recent(self.counters.errors, error)
        # A session that changed the device's state is announced by the application's
        # hook (DeviceRuntime), not after every session: a flood of failed ones changes
        # nothing and must cost nothing more.
        self.application.session_closed(session, error)
