"""L1: in button mode the first host to finish wins, silently.

An attacker in range during the owner's button window finishes first; the owner's retry
was told only "press the button" and, after a new press, "succeeded" while the attacker
stayed the owner. Now the used window has its own refusal (0x4B) with a message that says
what happened, and the host refuses to provision a device that says it is not virgin.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bleprov.core.advertising import DeviceState
from bleprov.core.errors import BleprovError
from bleprov.core.session import host as hst
from bleprov.core.session.messages import Mode
from bleprov.service.provisioning import provision
from tests.attacks.session_rig import Rig, qr_secret


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[Rig]:
    r = Rig()
    yield r
    await r.close()


async def test_the_owner_is_told_the_window_was_used_by_another_host(rig: Rig) -> None:
    device = await rig.device()
    device.server.press_button()  # the owner presses...
    attacker = await rig.session(device, Mode.BUTTON)  # ...the attacker is faster
    assert await attacker.request(b"attacker's wifi", timeout=5) == b"attacker's wifi"
    await attacker.close()
    await device.idle()
    with pytest.raises(hst.DeviceRefused) as refused:
        await rig.session(device, Mode.BUTTON)  # the owner, a moment later
    assert refused.value.code == 0x4B
    assert "already used by another host" in str(refused.value.reason)
    assert "reset it by hand" in str(refused.value.reason)


@pytest.mark.parametrize("state", [DeviceState.ENROLLED, DeviceState.PEER_BOUND])
async def test_the_host_refuses_to_provision_a_device_that_is_not_virgin(
    rig: Rig, state: DeviceState
) -> None:
    device = await rig.device(state=state)
    session = await rig.session(device, Mode.QR, qr_secret(device))
    try:
        with pytest.raises(BleprovError) as refused:
            await provision(session)
        assert "already" in str(refused.value) and state.name.lower().replace("_", "-") in str(
            refused.value
        ), refused.value
        assert device.app.messages == []  # nothing was sent to it
    finally:
        await session.close()
