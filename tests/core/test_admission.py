"""The admission rules on their own: one session at a time, and the push-button overlap."""

from __future__ import annotations

import pytest

from bleprov.core.attempts import ButtonNotPressed, ButtonWindow, DeviceBusy, SessionOverlap
from bleprov.core.session.admission import Overlap, busy_refusal, second_host
from bleprov.core.session.messages import Mode, Refused, decode, encode


def test_an_idle_device_lets_the_session_in() -> None:
    assert busy_refusal(0) is None


def test_a_session_under_way_refuses_the_next_with_device_busy() -> None:
    for under_way in (1, 2):
        refusal = busy_refusal(under_way)
        assert refusal == Refused(DeviceBusy.code, 0)
        assert refusal is not None
        assert decode(encode(refusal)) == refusal  # what goes on the wire


def test_a_second_host_outside_the_window_is_no_overlap() -> None:
    button = ButtonWindow(length=120.0)
    assert second_host(button, {"ble": Mode.QR}, now=5.0) is None
    assert second_host(button, {}, now=5.0) is None
    # After the window has run out, too.
    button.press(0.0)
    assert second_host(button, {"ble": None}, now=121.0) is None
    assert button.opened_at == 0.0  # untouched


def test_a_second_host_during_the_window_spoils_it() -> None:
    button = ButtonWindow(length=120.0)
    button.press(10.0)
    button.claim("first", 11.0)
    overlap = second_host(button, {"first": None}, now=12.0)
    assert overlap is not None
    assert isinstance(overlap.error, SessionOverlap)
    assert overlap.abort == ("first",)
    # Closed for everyone, and not "used": a new press is needed, nobody got in.
    assert not button.is_open(12.0)
    assert button.claimed_by is None
    assert not button.used


def test_an_overlap_aborts_button_and_undecided_sessions_only() -> None:
    button = ButtonWindow(length=120.0)
    button.press(0.0)
    modes = {"button": Mode.BUTTON, "hello-not-yet": None, "qr": Mode.QR, "code": Mode.CODE}
    overlap = second_host(button, modes, now=1.0)
    assert isinstance(overlap, Overlap)
    assert overlap.abort == ("button", "hello-not-yet")


def test_a_button_session_keeps_the_overlap_rule_after_the_window_closed() -> None:
    """The window closes when a host claims it and authenticates, or times out; a button
    session still running is aborted by a second host all the same."""
    button = ButtonWindow(length=120.0)
    overlap = second_host(button, {"running": Mode.BUTTON, "other": Mode.PASSKEY}, now=500.0)
    assert overlap is not None
    assert overlap.abort == ("running",)
    assert not button.is_open(500.0)


def test_a_spoiled_window_refuses_the_first_host_too() -> None:
    """After an overlap neither host gets in without a new press."""
    button = ButtonWindow(length=120.0)
    button.press(0.0)
    button.claim("first", 1.0)
    assert second_host(button, {"first": Mode.BUTTON}, now=2.0) is not None
    with pytest.raises(ButtonNotPressed):
        button.claim("first", 3.0)
    button.press(4.0)
    button.claim("first", 5.0)  # a new press: in
