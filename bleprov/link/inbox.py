"""The receive side every host-side link shares: messages in order, then the link's end.

Each link (BLE's ``HostLink``, the broker's ``BrokerHostLink``) puts the messages it
receives here and fails the inbox once, with the error that ended it; a reader gets the
messages that arrived before the failure, then the error, on every later call too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bleprov.core.errors import BleprovError


class MessageInbox:
    """Whole messages from the peer, then the error that ended the link."""

    def __init__(self, timed_out: Callable[[float | None], BleprovError]) -> None:
        """``timed_out`` makes the link's own error for a receive that waited too long."""
        self._timed_out = timed_out
        self._items: asyncio.Queue[bytes | BleprovError] = asyncio.Queue()
        #: What ended the link, once it ended.
        self.error: BleprovError | None = None

    def put(self, message: bytes) -> None:
        self._items.put_nowait(message)

    def fail(self, error: BleprovError) -> None:
        """The link ended with ``error`` (only the first one counts)."""
        if self.error is None:
            self.error = error
            self._items.put_nowait(error)

    def check(self) -> None:
        """Raise the link's error if it ended (before sending on it)."""
        if self.error is not None:
            raise self.error

    async def receive(self, timeout: float | None = None) -> bytes:
        """The next message; the link's error once it ended and nothing is left."""
        if self.error is not None and self._items.empty():
            raise self.error
        try:
            async with asyncio.timeout(timeout):
                item = await self._items.get()
        except TimeoutError:
            raise self._timed_out(timeout) from None
        if isinstance(item, BleprovError):
            raise item
        return item
