"""A fake device could make the host run scrypt at any cost its info claimed (up to 1 GiB
and 16 lanes): the host took the code mode's cost from the device. Now the host refuses a
cost above its own bound before deriving anything.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bleprov.core.advertising import DeviceInfo, DeviceState, OobMode
from bleprov.core.errors import ProtocolError
from bleprov.core.session import host as hst
from bleprov.core.session.messages import Mode
from bleprov.core.session.modes import code as code_mode
from tests.attacks.session_rig import TRUST


def info_with_cost(log2_n: int, r: int, p: int) -> bytes:
    return DeviceInfo(
        protocol_version=2,
        state=DeviceState.VIRGIN,
        modes=OobMode.QR | OobMode.CODE,
        discriminator=0x123,
        max_message=65536,
        rx_window=16,
        profile_version=1,
        pbkdf_salt=bytes(16),
        pbkdf_cost=(log2_n, r, p),
    ).encode()


@pytest.mark.parametrize(("log2_n", "r", "p"), [(20, 8, 16), (18, 8, 1), (15, 16, 1), (15, 8, 3)])
def test_the_host_refuses_a_huge_scrypt_cost(
    monkeypatch: pytest.MonkeyPatch, log2_n: int, r: int, p: int
) -> None:
    def no_scrypt(*args: object, **kwargs: object) -> object:
        raise AssertionError(f"the host ran scrypt at {kwargs.get('cost')}")

    monkeypatch.setattr(code_mode, "derive_verifier", no_scrypt)
    with pytest.raises(ProtocolError, match="scrypt cost"):
        hst.HostSession(
            mode=Mode.CODE,
            secret=hst.CodeSecret(b"48613702"),
            device_info=info_with_cost(log2_n, r, p),
            trust=TRUST,
            wall_clock=datetime.now(UTC),
            now=0.0,
        )


def test_the_default_cost_is_accepted() -> None:
    host = hst.HostSession(
        mode=Mode.CODE,
        secret=hst.CodeSecret(b"48613702"),
        device_info=info_with_cost(15, 8, 1),
        trust=TRUST,
        wall_clock=datetime.now(UTC),
        now=0.0,
    )
    assert host.mode is Mode.CODE
