"""The message-link protocols: the seam between the session layer and the transports.

Structural (``typing.Protocol``): a transport satisfies them by shape, so that a link's
own module needs nothing from the session layer above it.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from bleprov.core.advertising import DeviceInfo
from bleprov.core.errors import BleprovError

# ------------------------------------------------------------------ host side


class MessageLink(Protocol):
    """Whole messages to and from one device: BLE's ``HostLink``, the broker's
    ``BrokerHostLink``. ``info_raw`` is the device's info value exactly as received (the
    handshake binds these bytes)."""

    @property
    def info_raw(self) -> bytes: ...

    async def connect(self) -> DeviceInfo:
        """Reach the device and read its info value."""
        ...

    def send(self, payload: bytes) -> None:
        """Queue one message to the device (raises the link's error once it failed)."""
        ...

    async def receive(self, timeout: float | None = None) -> bytes:
        """The next whole message from the device (raises the link's error once it
        failed, and once ``timeout`` passed)."""
        ...

    async def close(self) -> None: ...


# ---------------------------------------------------------------- device side


class InfoSource(Protocol):
    """A device's link: serves the info value a session binds."""

    def current_info(self) -> DeviceInfo: ...


class LinkSession(Protocol):
    """One host's connection on a device's link (BLE's ``DeviceSession``, the broker's
    ``BrokerSession``). A link whose sessions have a true ``remote`` attribute (the
    broker) gets the remote handshake deadline and failure counter."""

    @property
    def link(self) -> InfoSource: ...

    @property
    def connection(self) -> str:
        """Names the host's connection in log lines (never a secret)."""
        ...

    @property
    def allowed_modes(self) -> int:
        """Modes this link permits (ANDed with the device's policy)."""
        ...

    def send(self, payload: bytes) -> None: ...

    async def disconnect(self) -> None: ...


Session = TypeVar("Session", contravariant=True)


class LinkApplication(Protocol[Session]):
    """What runs above a device's link (``SecureDeviceServer``): it hears each host's
    session open, its messages arrive, and it close (``error`` None: normally)."""

    def session_opened(self, session: Session) -> None: ...

    def message_received(self, session: Session, payload: bytes) -> None: ...

    def session_closed(self, session: Session, error: BleprovError | None) -> None: ...
