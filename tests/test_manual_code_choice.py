"""A manual code names 6 of the discriminator's 12 bits: which devices a host considers
(docs/protocol.md section 10, "Choosing the device")."""

from __future__ import annotations

import pytest

from bleprov.core.advertising import DeviceState, OobMode, ServiceData
from bleprov.core.onboarding import PayloadError, encode_manual_code
from bleprov.service.host_session import DeviceAuthentication

CODE = encode_manual_code(0xF00, 48613702)  # 6048-6137-020: top bits 60


def _advertised(discriminator: int, modes: OobMode = OobMode.QR | OobMode.CODE) -> ServiceData:
    return ServiceData(2, DeviceState.VIRGIN, modes, discriminator)


def test_only_devices_offering_the_code_mode_with_the_top_bits_match() -> None:
    auth = DeviceAuthentication.from_manual_code(CODE)
    assert auth.matches is not None and auth.discriminator is None
    assert auth.matches(_advertised(0xF00))
    assert auth.matches(_advertised(0xF3F))  # same top 6 bits: 1 in 64 by chance
    assert not auth.matches(_advertised(0xF40))
    assert not auth.matches(_advertised(0xF00, OobMode.QR))  # no code mode: not a candidate


def test_the_full_discriminator_picks_one_device() -> None:
    auth = DeviceAuthentication.from_manual_code(CODE, discriminator=0xF07)
    assert auth.discriminator == 0xF07
    with pytest.raises(PayloadError, match="does not agree"):
        DeviceAuthentication.from_manual_code(CODE, discriminator=0x123)
