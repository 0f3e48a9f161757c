"""L3: a central that connects and never sends OPEN held the device forever.

The framing channel had no deadline before OPEN, so the device link never timed out
and, serving one central at a time, stayed busy for everyone else.
"""

from __future__ import annotations

import asyncio

from bleprov.radio.virtual import make_virtual_device
from tests.conftest import VirtualRadio, next_address


async def test_a_silent_central_is_dropped_and_the_device_advertises_again(
    radio: VirtualRadio,
) -> None:
    dev = await radio.make_device()
    dev.link.open_timeout = 0.3  # the default is seconds; the test has no time for that
    squatter = make_virtual_device(radio.link, name="squatter", address=next_address("C2:B1"))
    await squatter.power_on()
    connection = await squatter.connect(dev.bumble.random_address)
    for _ in range(200):  # the device hears of the connection; no OPEN will ever come
        if dev.link.session is not None:
            break
        await asyncio.sleep(0.01)
    assert dev.link.session is not None
    assert not dev.link.advertising.is_set()
    await asyncio.wait_for(dev.link.advertising.wait(), 3)  # dropped, advertising again
    assert dev.link.session is None
    assert type(dev.link.counters.errors[-1]).__name__ == "OpenTimeout"
    assert dev.link.counters.errors[-1].code == 0x1A
    del connection
