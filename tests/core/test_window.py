"""The owner's commissioning window: code, offer, and the session rules (sans-IO)."""

from __future__ import annotations

import dataclasses

import pytest

from bleprov.core.advertising import DeviceInfo, DeviceState, OobMode
from bleprov.core.attempts import AttemptLimiter, AttemptLimits, ButtonWindow, Credential
from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.errors import MalformedData
from bleprov.core.session import device as dev
from bleprov.core.session import host as hst
from bleprov.core.session.messages import Mode
from bleprov.core.window import (
    MAX_WINDOW_FAILURES,
    CommissioningWindow,
    WindowClosed,
    WindowCode,
    WindowError,
    WindowOffer,
    WindowPurpose,
)
from tests.core.test_session import NOW, TRUST, ended, established, pump, qr_secret, secrets_

CHEAP = ScryptCost(n=1 << 10, r=1, p=1)


def _offer(code: WindowCode, purpose: WindowPurpose = WindowPurpose.ADMIN) -> WindowOffer:
    return WindowOffer.create(code, purpose=purpose, seconds=120, cost=CHEAP)


def _info(window: CommissioningWindow | None, modes: OobMode = OobMode.CODE) -> bytes:
    return DeviceInfo(
        protocol_version=2,
        state=DeviceState.PEER_BOUND,
        modes=modes,
        discriminator=0x123,
        max_message=65536,
        rx_window=16,
        profile_version=1,
        window=None if window is None else window.info(),
    ).encode()


def _device(
    window: CommissioningWindow | None, limits: AttemptLimits, *, owned: bool = True
) -> dev.DeviceSession:
    return dev.DeviceSession(
        secrets=secrets_(),
        policy=OobMode.QR,  # the factory policy: the window is its own
        device_info=_info(window),
        limits=limits,
        button=ButtonWindow(),
        connection="new-host",
        now=0.0,
        owned=owned,
        window=window,
    )


def _host(code: WindowCode, window: CommissioningWindow) -> hst.HostSession:
    return hst.HostSession(
        mode=Mode.CODE,
        secret=hst.WindowSecret(code),
        device_info=_info(window),
        trust=TRUST,
        wall_clock=NOW,
        now=0.0,
    )


def test_codes_are_twelve_digits_typed_with_dashes_or_spaces() -> None:
    code = WindowCode.generate()
    assert len(code.digits) == 12 and code.digits.isdigit()
    assert WindowCode.parse(code.formatted()) == code
    assert WindowCode.parse(" ".join(code.digits)) == code
    assert "secret" in repr(code) and code.digits not in repr(code)
    for bad in ("12345", "1234-5678-901x", "١٢٣٤٥٦٧٨٩٠١٢"):
        with pytest.raises(MalformedData):
            WindowCode.parse(bad)


def test_offers_round_trip_and_are_bounded() -> None:
    offer = _offer(WindowCode.generate())
    again = WindowOffer.from_body(offer.to_body())
    assert again.record == offer.record and again.purpose is offer.purpose
    body = offer.to_body()
    for field, value in [
        ("seconds", 86400),
        ("seconds", 10),
        ("purpose", "owner"),
        ("cost", [30, 8, 1]),
        ("cost", [10, 1, 1, 1]),
        ("L", b"\x04" + bytes(64)),
        ("w0", b"\x00" * 31),
        ("salt", b"short"),
    ]:
        with pytest.raises(WindowError):
            WindowOffer.from_body({**body, field: value})


def test_an_owned_device_refuses_its_factory_label() -> None:
    limits = AttemptLimits()
    device = _device(None, limits)
    # A host that does not look at the advertised state (a hostile one): the device itself
    # refuses, before any handshake and without spending an attempt.
    virgin_looking = DeviceInfo.decode(_info(None, OobMode.QR))
    host = hst.HostSession(
        mode=Mode.QR,
        secret=qr_secret(),
        device_info=dataclasses.replace(virgin_looking, state=DeviceState.VIRGIN).encode(),
        trust=TRUST,
        wall_clock=NOW,
        now=0.0,
    )
    run = pump(host, device, host.start(0.0))
    assert isinstance(ended(run.device_events), dev.DeviceOwned)
    assert established(run) is None
    assert all(limits[c].failures == 0 for c in Credential if c.limited)


def test_the_window_code_opens_a_session_with_the_windows_purpose() -> None:
    code = WindowCode.generate()
    window = CommissioningWindow(_offer(code, WindowPurpose.HANDOVER), opened_by=b"o" * 32, now=0)
    limits = AttemptLimits({Credential.CODE: AttemptLimiter(failures=2)})
    device = _device(window, limits)
    host = _host(code, window)
    run = pump(host, device, host.start(0.0))
    assert established(run) is not None
    assert device.window_purpose is WindowPurpose.HANDOVER
    assert limits[Credential.CODE].failures == 2  # a window success forgives no factory failure


def test_wrong_window_codes_close_the_window_not_the_factory_limiter() -> None:
    code = WindowCode.generate()
    window = CommissioningWindow(_offer(code), opened_by=b"o" * 32, now=0)
    limits = AttemptLimits()
    wrong = WindowCode(f"{(int(code.digits) + 1) % 10**12:012d}")
    for _ in range(MAX_WINDOW_FAILURES):
        device = _device(window, limits)
        host = _host(wrong, window)
        run = pump(host, device, host.start(0.0))
        assert established(run) is None
    assert not window.is_open(1.0)
    assert all(limits[c].failures == 0 for c in Credential if c.limited)
    device = _device(window, limits)
    host = _host(code, window)
    run = pump(host, device, host.start(0.0))
    assert isinstance(ended(run.device_events), WindowClosed)


def test_an_expired_window_and_an_unowned_device_refuse_the_window_user() -> None:
    code = WindowCode.generate()
    window = CommissioningWindow(_offer(code), opened_by=b"o" * 32, now=-500.0)
    for device in (_device(window, AttemptLimits()), _device(None, AttemptLimits(), owned=False)):
        host = _host(code, window)
        run = pump(host, device, host.start(0.0))
        assert isinstance(ended(run.device_events), WindowClosed)
