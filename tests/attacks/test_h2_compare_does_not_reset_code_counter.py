"""H2: a compare success used to reset the counter the code mode relies on.

Interleaving wrong codes with successful compare sessions kept the code counter at 1
forever (120 wrong codes with the count never above 3 in the review). Now every secret
has its own counter: compare successes forgive compare failures only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bleprov.core.session import host as hst
from bleprov.core.session.messages import Mode
from bleprov.core.session.modes import AuthenticationFailed
from tests.attacks.session_rig import CODE, WRONG_CODE, Rig, user_compares


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[Rig]:
    r = Rig()
    yield r
    await r.close()


async def test_wrong_codes_between_compare_successes_reach_the_lockout(rig: Rig) -> None:
    device = await rig.device(device_confirms=True, max_failures=4, free_failures=50)
    for _ in range(4):
        with pytest.raises(AuthenticationFailed):
            await rig.session(device, Mode.CODE, hst.CodeSecret(WRONG_CODE))
        await device.idle()
        # Someone with legitimate access to the display and button runs compare.
        session = await rig.session(device, Mode.COMPARE, confirm=user_compares(device))
        await session.close()
        await device.idle()
    with pytest.raises(hst.DeviceRefused) as refused:
        await rig.session(device, Mode.CODE, hst.CodeSecret(CODE))  # right code, too late
    assert refused.value.code == 0x41  # locked out: only a physical reset lifts it
