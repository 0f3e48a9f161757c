"""Host side of the secure session: :class:`SecureHostLink` over any message link.

It runs a :class:`~bleprov.core.session.host.HostSession` with the chosen mode over a
:class:`~bleprov.link.MessageLink` (BLE's ``HostLink``, the broker's ``BrokerHostLink``),
asks the user to compare numbers, or to type the device's number, where the mode needs
it, and then carries application messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from bleprov.core.advertising import DeviceInfo, ServiceData
from bleprov.core.channel import ChannelClosedError
from bleprov.core.errors import BleprovError, MalformedData
from bleprov.core.identity import AttestationResult
from bleprov.core.session import device as dev
from bleprov.core.session import host as hst
from bleprov.core.session.messages import Handshake, Hello, Mode, Refused, Secure, decode
from bleprov.core.session.modes import registry
from bleprov.link.protocols import MessageLink

#: The name it had in radio/ (bleprov.radio.secure_link): log lines stay as they were.
logger = logging.getLogger("bleprov.radio.secure_link")


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


class SecureHostLink:
    """A secure session with one device over ``link``: BLE's ``HostLink``, the broker's
    ``BrokerHostLink``, or any other :class:`~bleprov.link.MessageLink`."""

    def __init__(
        self,
        link: MessageLink,
        *,
        mode: Mode,
        secret: hst.OutOfBand,
        trust: hst.Trust,
        advertised: ServiceData | None = None,
        confirm_number: NumberConfirmer = _always_reject,
        handshake_timeout: float = 60.0,
        enter_passkey: PasskeyReader = _no_passkey,
    ) -> None:
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
        if registry.engine(self.mode).button_window:
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
