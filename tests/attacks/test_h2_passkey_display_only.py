"""H2, the replacement: a device with a display and no button offers passkey instead of
compare. It shows a fresh number per attempt; the user types it on the host; SPAKE2+
makes that one online guess per attempt for anyone else (10^-6), and nothing to test
offline from a recording. Over the virtual radio, end to end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bleprov.core.advertising import OobMode
from bleprov.core.attempts import Credential
from bleprov.core.session import host as hst
from bleprov.core.session.messages import Mode
from bleprov.core.session.modes import AuthenticationFailed
from tests.attacks.session_rig import Device, Rig

DISPLAY_ONLY = OobMode.QR | OobMode.CODE | OobMode.COMPARE | OobMode.PASSKEY


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[Rig]:
    r = Rig()
    yield r
    await r.close()


def reads_the_display(device: Device) -> object:
    async def typed() -> str:
        for _ in range(200):
            if device.ui.numbers:
                break
            await asyncio.sleep(0.01)
        return f"{device.ui.numbers[-1]:06d}"

    return typed


async def test_the_user_types_the_number_and_the_device_is_provisioned(rig: Rig) -> None:
    device = await rig.device(modes=DISPLAY_ONLY, device_confirms=False)
    session = await rig.session(device, Mode.PASSKEY, enter_passkey=reads_the_display(device))
    try:
        assert session.info is not None
        assert session.info.attestation.device_id == device.identity.device_id
        assert await session.request(b"wifi: home", timeout=5) == b"wifi: home"
    finally:
        await session.close()
    assert device.app.opened_modes == [Mode.PASSKEY]
    # Compare is what it cannot do: refused, whatever the host says.
    with pytest.raises(hst.DeviceRefused) as refused:
        await rig.session(device, Mode.COMPARE)
    assert refused.value.code == 0x40


async def test_an_attacker_gets_one_guess_per_attempt_each_counted(rig: Rig) -> None:
    device = await rig.device(modes=DISPLAY_ONLY, max_failures=3)
    guesses: list[str] = []

    async def attacker_guesses() -> str:
        # It cannot see the display; even a number it saw before is stale: each attempt
        # draws a new one.
        stale = device.ui.numbers[:-1]  # shown to earlier attempts, not this one
        guess = f"{stale[0]:06d}" if stale else "000000"
        guesses.append(guess)
        return guess

    for _ in range(3):
        with pytest.raises(AuthenticationFailed):
            await rig.session(device, Mode.PASSKEY, enter_passkey=attacker_guesses)
        await device.idle()
    assert len(set(device.ui.numbers)) >= 2  # fresh numbers (equal draws: p = 1e-6)
    assert device.server.limits[Credential.PASSKEY].locked_out
    with pytest.raises(hst.DeviceRefused) as locked:
        await rig.session(device, Mode.PASSKEY, enter_passkey=reads_the_display(device))
    assert locked.value.code == 0x41
    # Its own counter: the code mode is not locked by passkey failures.
    assert device.server.limits[Credential.CODE].failures == 0
