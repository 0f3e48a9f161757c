"""Attempt limits and the push-button window."""

from __future__ import annotations

import cbor2
import pytest

from bleprov.core.attempts import (
    AttemptLimiter,
    AttemptLimits,
    ButtonNotPressed,
    ButtonWindow,
    ButtonWindowUsed,
    Credential,
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


# ------------------------------------------------------- one counter per secret


def test_each_secret_has_its_own_counter_and_they_persist_together() -> None:
    limits = AttemptLimits(template=lambda: AttemptLimiter(max_failures=3, free_failures=10))
    assert {c for c in Credential if c.limited} == set(limits.limiters)
    with pytest.raises(KeyError):
        limits[Credential.BUTTON]  # the window guards button mode, not a counter
    for _ in range(3):
        limits[Credential.CODE].begin_attempt(0.0)
    limits[Credential.COMPARE].begin_attempt(0.0)
    limits[Credential.COMPARE].succeeded()
    assert limits[Credential.CODE].failures == 3 and limits[Credential.CODE].locked_out
    assert limits.locked_out
    raw = limits.to_bytes()
    assert cbor2.loads(raw)[0] == 3  # the format's version (3: with reservations)
    again = AttemptLimits.from_bytes(raw, lambda: AttemptLimiter(max_failures=3))
    assert again[Credential.CODE].locked_out and again[Credential.CODE].failures == 3
    assert again[Credential.COMPARE].failures == 0 and not again[Credential.LABEL].locked_out
    assert again[Credential.CODE].max_failures == 3  # limits come from the template
    again.physical_reset()
    assert not again.locked_out


def test_a_shared_counter_of_format_1_carries_over_to_every_secret() -> None:
    old = AttemptLimiter(failures=7, locked_out=True).to_bytes()
    limits = AttemptLimits.from_bytes(old)
    assert all(limiter.failures == 7 and limiter.locked_out for limiter in limits.limiters.values())


def test_unknown_names_are_ignored_missing_ones_start_at_zero() -> None:
    raw = cbor2.dumps([2, {"code": [4, False], "window-from-the-future": [1, True]}])
    limits = AttemptLimits.from_bytes(raw)
    assert limits[Credential.CODE].failures == 4
    assert limits[Credential.PASSKEY].failures == 0 and not limits.locked_out


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff",
        cbor2.dumps([3, {}]),
        cbor2.dumps([2, {"code": [1]}]),
        cbor2.dumps([2, {"code": [-1, False]}]),
        cbor2.dumps([2, {"code": [1, 0]}]),
        cbor2.dumps([2, {1: [1, False]}]),
        cbor2.dumps([2, []]),
        cbor2.dumps([1, 1]),
        b"\x82" * 600,
    ],
)
def test_a_corrupt_record_is_malformed_and_locks_everything(raw: bytes) -> None:
    with pytest.raises(MalformedData):
        AttemptLimits.from_bytes(raw)
    locked = AttemptLimits.all_locked()
    assert all(limiter.locked_out for limiter in locked.limiters.values())


def test_a_used_window_says_so_until_the_next_press() -> None:
    window = ButtonWindow()
    window.press(0.0)
    window.claim("attacker", 1.0)
    window.authenticated()
    window.close()  # its session ended
    with pytest.raises(ButtonWindowUsed) as used:
        window.claim("owner", 2.0)
    assert used.value.code == 0x4B
    with pytest.raises(ButtonWindowUsed):
        window.claim("owner", 500.0)  # still, until someone presses
    window.press(600.0)
    window.claim("owner", 601.0)


def test_an_overlap_leaves_the_window_unused() -> None:
    window = ButtonWindow()
    window.press(0.0)
    window.claim("a", 1.0)
    window.authenticated()
    with pytest.raises(SessionOverlap):
        window.claim("b", 2.0)
    with pytest.raises(ButtonNotPressed):  # nobody kept it: press again
        window.claim("b", 3.0)


def test_a_stored_reservation_reads_back_as_one_failure_of_every_secret() -> None:
    """A power cut with a reservation outstanding: the HELLO may have come and named any
    secret, so each counts one failure; a reservation at the limit locks."""
    limits = AttemptLimits(template=lambda: AttemptLimiter(max_failures=3))
    limits[Credential.CODE].failures = 2
    assert limits.reserve()
    raw = limits.to_bytes()
    assert cbor2.loads(raw) == [
        3,
        {c.value: [2 if c is Credential.CODE else 0, False] for c in limits.limiters},
        1,
    ]
    again = AttemptLimits.from_bytes(raw, lambda: AttemptLimiter(max_failures=3))
    assert again.reserved == 0
    assert again[Credential.LABEL].failures == 1 and not again[Credential.LABEL].locked_out
    assert again[Credential.CODE].failures == 3 and again[Credential.CODE].locked_out


def test_a_consumed_reservation_is_covered_by_the_stored_one_and_a_release_is_not_a_failure() -> (
    None
):
    stored = AttemptLimits()
    assert stored.reserve()
    durable = AttemptLimits.from_bytes(stored.to_bytes())
    ram = AttemptLimits.from_bytes(AttemptLimits().to_bytes())
    assert ram.reserve()
    assert durable.covers(ram)  # the reservation itself
    ram.begin_attempt(Credential.LABEL, 0.0, reserved=True)
    assert ram.reserved == 0 and ram[Credential.LABEL].failures == 1
    assert durable.covers(ram)  # HELLO's count needs no write of its own
    ram.begin_attempt(Credential.CODE, 1.0, reserved=False)
    assert durable.covers(ram)  # the stored reservation counted for every secret...
    ram.begin_attempt(Credential.LABEL, 1.0, reserved=False)
    assert not durable.covers(ram)  # ... once: a second attempt needs its own write
    released = AttemptLimits()
    assert released.reserve()
    released.release()
    assert AttemptLimits.from_bytes(released.to_bytes())[Credential.LABEL].failures == 0


def test_a_lockout_in_ram_is_covered_only_by_a_stored_lockout() -> None:
    ram = AttemptLimits(template=lambda: AttemptLimiter(max_failures=2))
    ram[Credential.CODE].begin_attempt(0.0)
    ram[Credential.CODE].begin_attempt(0.0)
    assert ram[Credential.CODE].locked_out
    stored = AttemptLimits(template=lambda: AttemptLimiter(max_failures=20))
    stored[Credential.CODE].failures = 2
    assert not stored.covers(ram)
    assert AttemptLimits.from_bytes(ram.to_bytes()).covers(ram)


@pytest.mark.parametrize(
    "record",
    [
        [3, {}, -1],
        [3, {}, 256],
        [3, {}, True],
        [3, {}],
        [2, {}, 0],
    ],
)
def test_a_malformed_reservation_is_corrupt(record: object) -> None:
    with pytest.raises(MalformedData):
        AttemptLimits.from_bytes(cbor2.dumps(record))


def test_a_format_2_record_reads_with_no_reservation() -> None:
    raw = cbor2.dumps([2, {"code": [4, False]}])
    limits = AttemptLimits.from_bytes(raw)
    assert limits[Credential.CODE].failures == 4 and limits[Credential.LABEL].failures == 0


def test_records_are_encoded_and_read_afresh_for_every_state() -> None:
    """The record's coding is memoised (a session re-encodes the same few states): a
    changed counter must still give new bytes, and two reads of the same bytes must give
    two states, so that changing one (the counters in RAM) leaves the other alone."""
    limits = AttemptLimits()
    zero = limits.to_bytes()
    limits[Credential.LABEL].begin_attempt(0.0)
    once = limits.to_bytes()
    assert once != zero
    assert limits.reserve()
    assert limits.to_bytes() not in (zero, once)
    first, second = AttemptLimits.from_bytes(once), AttemptLimits.from_bytes(once)
    assert first is not second
    first[Credential.LABEL].begin_attempt(0.0)
    assert second[Credential.LABEL].failures == 1
    assert AttemptLimits.from_bytes(once)[Credential.LABEL].failures == 1
    assert first.to_bytes() != once
