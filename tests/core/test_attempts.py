"""Attempt limits and the push-button window."""

from __future__ import annotations

import pytest

from bleprov.core.attempts import (
    AttemptLimiter,
    ButtonNotPressed,
    ButtonWindow,
    LockedOut,
    SessionOverlap,
    TryLater,
)
from bleprov.core.errors import MalformedData


def test_first_failures_are_free_then_backoff_doubles() -> None:
    limiter = AttemptLimiter(max_failures=20, free_failures=3)
    now = 0.0
    for _ in range(3):
        limiter.begin_attempt(now)  # pessimistic: counted before the outcome
    limiter.check(now)  # three failures: still no wait
    limiter.begin_attempt(now)
    assert limiter.backoff() == 2.0
    with pytest.raises(TryLater) as info:
        limiter.check(now + 1.0)
    assert info.value.retry_after == pytest.approx(1.0)
    limiter.check(now + 2.0)
    limiter.begin_attempt(now + 2.0)
    assert limiter.backoff() == 4.0


def test_lockout_after_max_failures_survives_a_reload() -> None:
    limiter = AttemptLimiter(max_failures=5, free_failures=10)
    for _ in range(5):
        limiter.begin_attempt(0.0)
    with pytest.raises(LockedOut):
        limiter.check(1e9)
    reloaded = AttemptLimiter.from_bytes(limiter.to_bytes(), max_failures=5)
    with pytest.raises(LockedOut):
        reloaded.check(0.0)
    reloaded.physical_reset()
    reloaded.check(0.0)


def test_success_forgives() -> None:
    limiter = AttemptLimiter()
    for t in range(5):
        limiter.begin_attempt(t * 1000.0)
    limiter.succeeded()
    assert limiter.failures == 0
    limiter.check(0.0)


def test_counter_persists_the_pessimistic_count() -> None:
    """Power cut after the attempt began: the reloaded counter still has it."""
    limiter = AttemptLimiter()
    limiter.begin_attempt(0.0)
    assert AttemptLimiter.from_bytes(limiter.to_bytes()).failures == 1


@pytest.mark.parametrize("raw", [b"", b"\xff", b"\x83\x02\x00\xf4", b"\x83\x01\x20\xf4", b"x" * 40])
def test_corrupt_counter_record(raw: bytes) -> None:
    with pytest.raises(MalformedData):
        AttemptLimiter.from_bytes(raw)


def test_button_window() -> None:
    window = ButtonWindow(length=120.0)
    with pytest.raises(ButtonNotPressed):
        window.claim("a", 0.0)
    window.press(10.0)
    window.claim("a", 20.0)
    window.claim("a", 30.0)  # the same host again is fine
    with pytest.raises(ButtonNotPressed):
        ButtonWindow(opened_at=0.0).claim("a", 121.0)


def test_button_overlap_closes_the_window_for_everyone() -> None:
    window = ButtonWindow()
    window.press(0.0)
    window.claim("host-a", 1.0)
    with pytest.raises(SessionOverlap):
        window.claim("host-b", 2.0)
    assert window.overlapped("host-a")
    with pytest.raises(ButtonNotPressed):
        window.claim("host-a", 3.0)
    window.press(4.0)
    window.claim("host-b", 5.0)
