"""What both session roles share: the events they emit and their hold on the channel."""

from __future__ import annotations

from dataclasses import dataclass

from bleprov.core.channel import SecureChannel
from bleprov.core.errors import BleprovError
from bleprov.core.session.messages import Inner, InnerKind, Secure, encode, encode_inner
from bleprov.core.session.modes import SessionKeys


@dataclass(frozen=True)
class SendMessage:
    """Give ``data`` to the framing layer, in order."""

    data: bytes


@dataclass(frozen=True)
class ApplicationData:
    data: bytes


@dataclass(frozen=True)
class SessionEnded:
    """The session is over; ``error`` is None for a normal close."""

    error: BleprovError | None


class ChannelHolder:
    """The secure channel of one session, from the moment a mode produces keys."""

    def __init__(self, *, is_host: bool, idle_timeout: float) -> None:
        self._is_host = is_host
        self._idle_timeout = idle_timeout
        self._channel: SecureChannel | None = None
        self._keys: SessionKeys | None = None

    def _install(self, keys: SessionKeys, now: float) -> None:
        if self._channel is not None:
            return
        self._keys = keys
        self._channel = SecureChannel.for_role(
            is_host=self._is_host,
            host_to_device_key=keys.host_to_device,
            device_to_host_key=keys.device_to_host,
            idle_timeout=self._idle_timeout,
            now=now,
        )

    def _seal(self, inner: Inner, now: float) -> SendMessage:
        assert self._channel is not None
        return SendMessage(encode(Secure(self._channel.seal(encode_inner(inner), now))))

    def _close_records(self, code: int, now: float) -> list[SendMessage]:
        """A CLOSE record for the peer, if the channel is still usable."""
        if self._channel is None or self._channel.closed:
            return []
        return [self._seal(Inner(InnerKind.CLOSE, code), now)]

    def _erase(self) -> None:
        if self._channel is not None:
            self._channel.close()
