"""L2: a failure refused at HELLO (a wrong label secret) was counted in RAM only.

The device built its "persist the counter" event and then the handshake raised, so the
event was lost: a power cut after each wrong guess gave the attacker its tries back.
Here a reboot is a new session server loaded from the same attempt store.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bleprov.core.session import host as hst
from bleprov.core.session.messages import Mode
from bleprov.session import MemoryAttemptStore
from tests.attacks.session_rig import Rig, qr_secret


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[Rig]:
    r = Rig()
    yield r
    await r.close()


async def test_a_wrong_label_secret_is_stored_before_the_refusal(rig: Rig) -> None:
    attempts = MemoryAttemptStore()
    device = await rig.device(attempts=attempts, max_failures=1)
    with pytest.raises(hst.DeviceRefused) as refused:
        await rig.session(device, Mode.QR, qr_secret(device, os.urandom(16)))
    assert refused.value.code == 0x43
    assert attempts.saves >= 1, "the failed attempt never reached the store"
    # Power cut, reboot: the same identity and label, the counter from the store.
    await device.link.close()
    rebooted = await rig.device(
        attempts=attempts,
        max_failures=1,
        identity=device.identity,
        label_secret=device.label_secret,
    )
    with pytest.raises(hst.DeviceRefused) as again:
        await rig.session(rebooted, Mode.QR, qr_secret(rebooted))
    assert again.value.code == 0x41
