"""The receive queue every host-side link shares (BLE's HostLink, the broker's)."""

from __future__ import annotations

import pytest

from bleprov.core.errors import BleprovError, ChannelClosed
from bleprov.link import MessageInbox


class Waited(BleprovError):
    """The link's own error for a receive that waited too long."""


def inbox() -> MessageInbox:
    return MessageInbox(lambda timeout: Waited(f"nothing within {timeout:g} s"))


async def test_messages_come_in_order_then_the_error_that_ended_the_link() -> None:
    box = inbox()
    box.put(b"one")
    box.put(b"two")
    box.fail(ChannelClosed("the device disconnected"))
    assert await box.receive() == b"one"
    assert await box.receive() == b"two"
    with pytest.raises(ChannelClosed, match="disconnected"):
        await box.receive()
    # Every later call, too: a link that ended stays ended.
    with pytest.raises(ChannelClosed, match="disconnected"):
        await box.receive(timeout=0.01)


async def test_only_the_first_error_counts() -> None:
    box = inbox()
    box.fail(ChannelClosed("first"))
    box.fail(ChannelClosed("second"))
    with pytest.raises(ChannelClosed, match="first"):
        await box.receive()
    with pytest.raises(ChannelClosed, match="first"):
        box.check()


async def test_sending_on_a_live_link_is_fine_and_on_an_ended_one_raises() -> None:
    box = inbox()
    box.check()
    box.fail(ChannelClosed("gone"))
    with pytest.raises(ChannelClosed, match="gone"):
        box.check()


async def test_a_receive_that_waits_too_long_raises_the_links_own_error() -> None:
    box = inbox()
    with pytest.raises(Waited, match=r"nothing within 0\.01 s"):
        await box.receive(timeout=0.01)
    box.put(b"late")  # the wait ended, the message is kept for the next receive
    assert await box.receive(timeout=0.01) == b"late"
