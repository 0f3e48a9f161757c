"""Host side: find a device's announcement and carry one session to it through the broker.

:class:`BrokerHostLink` is a :class:`~bleprov.link.MessageLink` (``connect``, ``info_raw``,
``send``, ``receive``, ``close``), like BLE's ``HostLink``, so ``SecureHostLink`` runs the
same handshake over it. Each
session draws a random topic suffix; the host's last will closes the session on the
device if the host vanishes, so the device's fail-safe rolls back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import aiomqtt

from bleprov.broker.client import BrokerConfig, BrokerError
from bleprov.broker.wire import (
    DOWN_KINDS,
    CloseReason,
    Envelope,
    Kind,
    MalformedEnvelope,
    Topics,
    all_info,
    close,
    device_of_info_topic,
    new_session_id,
)
from bleprov.core.advertising import DeviceInfo, format_discriminator
from bleprov.core.attempts import DeviceBusy
from bleprov.core.errors import BleprovError, ChannelClosed, MalformedData, OversizedMessage
from bleprov.core.frames import DEFAULT_MAX_MESSAGE
from bleprov.core.session.host import DeviceRefused
from bleprov.core.words import words
from bleprov.link.inbox import MessageInbox

logger = logging.getLogger(__name__)

#: Seconds before an unanswered OPEN is sent again.
OPEN_AGAIN: Final = 1.0


class DeviceNotAnnounced(BrokerError):
    """No device matching the label is announced on the broker."""


@dataclass(frozen=True)
class AnnouncedDevice:
    """A device's retained announcement: its ID (from the topic) and info value."""

    device_id: str
    info: DeviceInfo
    info_raw: bytes


async def find_broker_device(
    config: BrokerConfig,
    *,
    device_id: str | None = None,
    discriminator: int | None = None,
    matches: Callable[[DeviceInfo], bool] | None = None,
    timeout: float = 10.0,
) -> AnnouncedDevice:
    """The first announced device with ``device_id`` (if given; read its topic only),
    else the first whose info has ``discriminator`` and satisfies ``matches``.

    Like a BLE scan this trusts nothing: the handshake proves the device holds the label's
    key, and the attestation proves its ID.
    """
    topic = Topics(device_id, config.prefix).info if device_id else all_info(config.prefix)
    try:
        async with config.client() as client, asyncio.timeout(timeout):
            await client.subscribe(topic, qos=1)
            async for message in client.messages:
                found = _announcement(message, config.prefix)
                if found is None:
                    continue
                if discriminator is not None and found.info.discriminator != discriminator:
                    continue
                if matches is not None and not matches(found.info):
                    continue
                return found
    except TimeoutError:
        pass
    except aiomqtt.MqttError as exc:
        raise BrokerError(f"could not read announcements from the broker: {exc}") from None
    which = f" {device_id}" if device_id else ""
    if discriminator is not None:
        which += f" with discriminator {format_discriminator(discriminator)}"
    raise DeviceNotAnnounced(
        f"no bleprov device{which} announced on {config} within {timeout:g} s: is it "
        "powered and online?"
    )


def _announcement(message: aiomqtt.Message, prefix: str) -> AnnouncedDevice | None:
    raw = message.payload
    if not isinstance(raw, bytes | bytearray) or not raw:
        return None  # a cleared announcement: the device is offline
    try:
        device_id = device_of_info_topic(message.topic.value, prefix)
        info = DeviceInfo.decode(bytes(raw))
    except MalformedData as exc:
        logger.debug("ignoring an announcement: %s", exc)
        return None
    return AnnouncedDevice(device_id, info, bytes(raw))


class BrokerHostLink:
    """One session with one device through the broker, as whole messages."""

    def __init__(
        self,
        config: BrokerConfig,
        device_id: str,
        *,
        max_message: int = DEFAULT_MAX_MESSAGE,
        accept_timeout: float = 10.0,
    ) -> None:
        self.config = config
        self.topics = Topics(device_id, config.prefix)
        self.session_id = new_session_id()
        self.max_message = max_message
        self.accept_timeout = accept_timeout
        self.info: DeviceInfo | None = None
        #: The info value exactly as the device sent it in ACCEPT: the handshake binds it.
        self.info_raw = b""
        self.messages_sent = 0
        self.messages_received = 0
        self._client: aiomqtt.Client | None = None
        self._accepted: asyncio.Future[bytes] | None = None
        self._inbox = MessageInbox(
            lambda timeout: BrokerError(f"no message from the device within {timeout:g} s")
        )
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> BrokerHostLink:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> DeviceInfo:
        """Connect to the broker, open a session topic pair, wait for the device's ACCEPT."""
        logger.info(
            "opening a session with device %s through %s", self.topics.device_id, self.config
        )
        loop = asyncio.get_running_loop()
        up = self.topics.up(self.session_id)
        will = aiomqtt.Will(up, close(Kind.CLOSE_UP, CloseReason.ERROR), qos=1)
        client = self.config.client(identifier=f"bleprov-host-{self.session_id[:16]}", will=will)
        self._accepted = loop.create_future()
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"could not connect to the broker: {exc}") from None
        self._client = client
        try:
            await client.subscribe(self.topics.down(self.session_id), qos=1)
            await client.subscribe(self.topics.info, qos=1)
            self._tasks = [
                loop.create_task(self._reader(client)),
                loop.create_task(self._sender(client)),
            ]
            try:
                async with asyncio.timeout(self.accept_timeout):
                    # OPEN again until answered: the device keeps nothing for an OPEN, so
                    # a repeat is harmless, and one lost on the way (a device shedding a
                    # flood) costs a second rather than the whole timeout.
                    while not self._accepted.done():
                        self._outbox.put_nowait(Envelope(Kind.OPEN).encode())
                        await asyncio.wait({self._accepted}, timeout=OPEN_AGAIN)
                    raw = self._accepted.result()
            except TimeoutError:
                raise BrokerError(
                    f"device {self.topics.device_id} did not answer within "
                    f"{self.accept_timeout:g} s: is it online?"
                ) from None
            self.info = DeviceInfo.decode(raw)
            self.info_raw = raw
            return self.info
        except aiomqtt.MqttError as exc:
            await self.close()
            raise BrokerError(f"broker refused the session topics: {exc}") from None
        except BaseException:
            await self.close()
            raise

    def send(self, payload: bytes) -> None:
        """Queue one session message to the device."""
        self._inbox.check()
        bound = self.info.max_message if self.info is not None else self.max_message
        if len(payload) > bound:
            raise OversizedMessage(f"message of {len(payload)} bytes exceeds the device's {bound}")
        self.messages_sent += 1
        self._outbox.put_nowait(Envelope(Kind.DATA_UP, payload).encode())

    async def receive(self, timeout: float | None = None) -> bytes:
        """The next whole message from the device."""
        return await self._inbox.receive(timeout)

    async def close(self) -> None:
        """Flush what is queued, tell the device the session is over, disconnect."""
        client, self._client = self._client, None
        if client is None:
            return
        if self._accepted is not None and not self._accepted.done():
            self._accepted.cancel()
        if self._inbox.error is None:
            self._outbox.put_nowait(close(Kind.CLOSE_UP, CloseReason.NORMAL))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.timeout):
                    await self._outbox.join()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task
        self._tasks = []
        with contextlib.suppress(aiomqtt.MqttError):
            await client.__aexit__(None, None, None)
        self._fail(ChannelClosed("the session is closed"))

    # -------------------------------------------------------------- internals

    def _fail(self, error: BleprovError) -> None:
        if self._accepted is not None and not self._accepted.done():
            self._accepted.set_exception(error)
        self._inbox.fail(error)

    async def _sender(self, client: aiomqtt.Client) -> None:
        up = self.topics.up(self.session_id)
        while True:
            payload = await self._outbox.get()
            try:
                await client.publish(up, payload, qos=1)
            except aiomqtt.MqttError as exc:
                self._fail(BrokerError(f"lost the broker connection: {exc}"))
                return
            finally:
                self._outbox.task_done()

    async def _reader(self, client: aiomqtt.Client) -> None:
        down = self.topics.down(self.session_id)
        try:
            async for message in client.messages:
                topic = message.topic.value
                if topic == self.topics.info:
                    if not message.payload and self.info is not None:
                        self._fail(ChannelClosed("the device went offline"))
                elif topic == down and isinstance(message.payload, bytes | bytearray):
                    self._down(bytes(message.payload))
        except aiomqtt.MqttError as exc:
            self._fail(BrokerError(f"lost the broker connection: {exc}"))

    def _down(self, raw: bytes) -> None:
        try:
            envelope = Envelope.decode(raw, allowed=DOWN_KINDS, max_body=self.max_message)
        except MalformedEnvelope as exc:
            self._fail(exc)
            return
        accepted = self._accepted
        if envelope.kind is Kind.ACCEPT:
            if accepted is not None and not accepted.done():
                accepted.set_result(envelope.body)
        elif envelope.kind is Kind.DATA_DOWN:
            if accepted is not None and accepted.done():
                self.messages_received += 1
                self._inbox.put(envelope.body)
        elif envelope.reason() is CloseReason.BUSY:
            self._fail(
                DeviceRefused(
                    DeviceBusy(
                        "the device is in another session (BLE or the broker); "
                        "try again when it is done"
                    )
                )
            )
        else:
            self._fail(ChannelClosed(f"the device closed the session ({words(envelope.reason())})"))
