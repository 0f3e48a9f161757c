"""Protocol v2: the version a device speaks, and the refusal of any other."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bleprov.core.advertising import PROTOCOL_VERSION, DeviceInfo, DeviceState, OobMode
from bleprov.core.errors import UnsupportedVersion
from bleprov.core.identity import TrustPolicy
from bleprov.core.profile import default_profile
from bleprov.core.session import host as hst
from bleprov.core.session.common import ATTESTATION_CONTEXT
from bleprov.core.session.messages import Mode
from bleprov.core.session.modes import prologue
from bleprov.core.session.modes.qr import QrSecret

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def _info(version: int) -> bytes:
    return DeviceInfo(
        protocol_version=version,
        state=DeviceState.VIRGIN,
        modes=OobMode.QR,
        discriminator=0x123,
        max_message=65536,
        rx_window=16,
        profile_version=1,
    ).encode()


def test_v2_is_what_the_device_says_and_binds() -> None:
    assert PROTOCOL_VERSION == 2
    assert default_profile().protocol_version == PROTOCOL_VERSION
    assert prologue(Mode.QR, b"").startswith(b"bleprov/2")
    assert ATTESTATION_CONTEXT == b"bleprov/2 session"


@pytest.mark.parametrize("version", [1, 3])
def test_a_host_refuses_a_device_of_another_version(version: int) -> None:
    with pytest.raises(UnsupportedVersion) as info:
        hst.HostSession(
            mode=Mode.QR,
            secret=QrSecret(bytes(32), bytes(16)),
            device_info=_info(version),
            trust=hst.Trust((), TrustPolicy.WARN),
            wall_clock=NOW,
            now=0.0,
        )
    message = str(info.value)
    assert "\n" not in message
    assert f"protocol {version}" in message
    assert "update" in message
