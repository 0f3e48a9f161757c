"""What both session roles share: the events they emit, their hold on the channel, the
refusals and timeouts the host must recognise, and the attestation context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bleprov.core.attempts import SessionRefused
from bleprov.core.channel import SecureChannel
from bleprov.core.errors import BleprovError, ProtocolError
from bleprov.core.session.messages import Inner, InnerKind, Secure, encode, encode_inner
from bleprov.core.session.modes import SessionKeys, channel_binding, exporter
from bleprov.core.session.modes.base import ModeNotAllowed as ModeNotAllowed
from bleprov.core.wire_codes import ErrorCode

#: What the device's attestation signs over (with the handshake hash).
ATTESTATION_CONTEXT: Final = b"bleprov/2 session"


class DeviceOwned(SessionRefused):
    """The device has an owner: its factory label, code and button no longer open a
    session; only a commissioning window the owner opened does."""

    code = ErrorCode.DEVICE_OWNED


class HandshakeTimeout(ProtocolError):
    """The handshake did not complete within its time."""

    code = ErrorCode.HANDSHAKE_TIMEOUT


class SessionNotOpen(ProtocolError):
    """Asked for something only an established session has."""


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

    def channel_binding(self, label: bytes) -> bytes:
        """This session's binding for ``label`` (see :func:`modes.channel_binding`).

        Available once the handshake has produced keys; raises SessionNotOpen before.
        """
        if self._keys is None:
            raise SessionNotOpen("the session has no keys yet: no channel binding")
        return channel_binding(self._keys.handshake_hash, label)

    def exporter(self, label: bytes) -> bytes:
        """This session's secret export for ``label`` (see :func:`modes.exporter`).

        Available while the session has keys (not before the handshake, not after it ended)."""
        if self._keys is None:
            raise SessionNotOpen("the session has no keys: nothing to export")
        return exporter(self._keys, label)

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
