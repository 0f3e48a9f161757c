"""Scratch-card user enumeration: an unknown user name was refused at once (REFUSED 0x43
at HELLO), a known one got a SPAKE2+ reply. Now an unknown user gets a reply from a fake
verifier derived from a device secret, and fails exactly as a wrong password does (the
host finds out when the device's confirmation does not verify), counted the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bleprov.core.errors import BleprovError
from bleprov.core.session import host as hst
from bleprov.core.session.messages import Mode
from tests.attacks.session_rig import Rig

USER, PASSWORD = b"ABCD2345", b"JKMN-PQRS-TVWX"


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[Rig]:
    r = Rig()
    yield r
    await r.close()


async def _failure(rig: Rig, secret: hst.CodeSecret) -> BleprovError:
    device = await rig.device(users={USER: PASSWORD}, max_failures=1)
    with pytest.raises(BleprovError) as failed:
        await rig.session(device, Mode.CODE, secret)
    await device.idle()
    # Counted alike: one failure locks this device (max_failures=1), whatever the user.
    with pytest.raises(hst.DeviceRefused) as locked:
        await rig.session(device, Mode.CODE, hst.CodeSecret(PASSWORD, user=USER))
    assert locked.value.code == 0x41
    return failed.value


async def test_unknown_user_fails_like_a_wrong_password(rig: Rig) -> None:
    wrong_password = await _failure(rig, hst.CodeSecret(b"AAAA-AAAA-AAAA", user=USER))
    unknown_user = await _failure(rig, hst.CodeSecret(PASSWORD, user=b"ABCD2346"))
    assert type(unknown_user) is type(wrong_password), (unknown_user, wrong_password)
    assert str(unknown_user) == str(wrong_password)
