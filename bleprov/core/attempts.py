"""Guards a device keeps across sessions: failed-attempt limits and the button window.

:class:`AttemptLimiter` counts failed authentications persistently, pessimistically: an
attempt counts as failed from the moment it could reveal anything to the peer (the
device's SPAKE2+ confirmation, a Noise reply), and is forgiven only by a successful
handshake. The caller persists the counters *before* it sends the reply, so cutting the
power after seeing a result does not save an attacker a try. After a few failures each
new attempt waits an exponential backoff; after ``max_failures`` the device is locked out
until a physical reset.

Each secret has its own counter (:class:`AttemptLimits`, keyed by :class:`Credential`):
a success with one secret forgives failures with that secret only. A shared counter let
anyone who could complete an easy mode (compare) wipe the count of a guessable one (code).
The counters are persisted together, in one record.

Reservations take the store write off the reply path: when a connection arrives (before
its HELLO can), the device *reserves* an attempt, and the record it stores says so. A
stored reservation counts as one failure of every limited secret when the record is read
back (:meth:`AttemptLimits.from_bytes`), so once it is durable, the HELLO that consumes it
(:meth:`AttemptLimits.begin_attempt`) changes nothing a power cut could lose and needs no
write of its own. :meth:`AttemptLimits.covers` says whether a stored state accounts for
every failure the counters in RAM hold: the adapter sends nothing while it does not.

:class:`ButtonWindow` is the WPS push-button rule: a press opens a window (default
120 s) for one host; a second host trying during the window is a session overlap, and
both are refused until the next press.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from bleprov.core import cbor
from bleprov.core.errors import MalformedData, ProtocolError
from bleprov.core.wire_codes import ErrorCode

DEFAULT_MAX_FAILURES: Final = 20
DEFAULT_FREE_FAILURES: Final = 3
DEFAULT_MAX_BACKOFF: Final = 300.0
DEFAULT_BUTTON_WINDOW: Final = 120.0
#: Version of the persisted :class:`AttemptLimits` record (1 was one shared counter, 2
#: per-secret counters without reservations).
ATTEMPTS_FORMAT: Final = 3
#: More reservations than this in one record is corrupt (one session at a time reserves).
MAX_RESERVED: Final = 255
#: No attempt record is larger (a handful of short names and two small fields each).
MAX_ATTEMPTS_RECORD: Final = 1024


class Credential(enum.Enum):
    """Which secret authenticated a session (and whose failure counter an attempt uses).

    The value is the name the persisted record uses. Adding a secret is one line here;
    every member but BUTTON gets its own counter (:attr:`limited`).
    """

    #: qr mode: the label's (QR code, NFC tag, printed key) secret.
    LABEL = "label"
    #: code mode: the printed passcode or a scratch card (one counter for both).
    CODE = "code"
    #: passkey mode: the one-time number the device's display showed.
    PASSKEY = "passkey"
    #: compare mode: both users accepted the number (host and device).
    COMPARE = "compare"
    #: button mode: a press on the device (guarded by the window, not a counter).
    BUTTON = "button"
    #: code mode with the owner's commissioning window (bleprov.core.window): its wrong
    #: codes are counted by the window itself, in RAM, and close it at its limit.
    WINDOW = "window"
    #: code mode with an enrolment receipt (bleprov.core.receipt): a 256-bit secret from
    #: the enrolment session's keys, not guessable, so not counted.
    RECEIPT = "receipt"

    @property
    def limited(self) -> bool:
        """Whether failures with this secret are counted here (all but the button, the
        owner's window, which guard themselves, and receipts, which need no guard)."""
        return self not in (Credential.BUTTON, Credential.WINDOW, Credential.RECEIPT)


class SessionRefused(ProtocolError):
    """The device refuses to start a handshake; ``code`` says why (docs/protocol.md)."""

    code = ErrorCode.MODE_NOT_ALLOWED


class LockedOut(SessionRefused):
    """Too many failed attempts: only a physical reset on the device lifts this."""

    code = ErrorCode.LOCKED_OUT


class TryLater(SessionRefused):
    """Backoff after failed attempts: retry after ``retry_after`` seconds."""

    code = ErrorCode.TRY_LATER

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed attempts; retry in {retry_after:.0f} s")
        self.retry_after = retry_after


class ButtonNotPressed(SessionRefused):
    """Button mode needs a press on the device first (the window is closed)."""

    code = ErrorCode.BUTTON_NOT_PRESSED


class DeviceBusy(SessionRefused):
    """The device is in a session on another link (BLE or the broker): one at a time."""

    code = ErrorCode.DEVICE_BUSY


class SessionOverlap(SessionRefused):
    """Two hosts tried button mode in one window; press the button again, one host only."""

    code = ErrorCode.SESSION_OVERLAP


class ButtonWindowUsed(SessionRefused):
    """Another host already authenticated in this button window (it is one-shot).

    Its own code, so a host can tell its user what it means: someone else may have set
    the device up first; a new press does not undo that, a reset by hand does.
    """

    code = ErrorCode.BUTTON_WINDOW_USED


@dataclass
class AttemptLimiter:
    """Persistent failure counter with backoff and lockout."""

    failures: int = 0
    locked_out: bool = False
    #: Monotonic time of the last failure in this boot; not persisted (a reboot restarts
    #: the backoff clock, and the counter still grows toward lockout).
    last_failure: float | None = None
    max_failures: int = DEFAULT_MAX_FAILURES
    free_failures: int = DEFAULT_FREE_FAILURES
    max_backoff: float = DEFAULT_MAX_BACKOFF

    def backoff(self) -> float:
        """Seconds to wait after the last failure: 0 for the first few, then doubling."""
        excess = self.failures - self.free_failures
        return 0.0 if excess <= 0 else min(float(2**excess), self.max_backoff)

    def check(self, now: float) -> None:
        """Raise :class:`LockedOut` or :class:`TryLater` if no attempt may start now."""
        if self.locked_out:
            raise LockedOut(
                "the device is locked after too many failed attempts; "
                "reset it with its physical button"
            )
        if self.last_failure is not None:
            wait = self.last_failure + self.backoff() - now
            if wait > 0:
                raise TryLater(wait)

    def begin_attempt(self, now: float) -> None:
        """Count an attempt as failed until it succeeds (persist before replying)."""
        self.check(now)
        self.failures += 1
        self.last_failure = now
        if self.failures >= self.max_failures:
            self.locked_out = True

    def succeeded(self) -> None:
        """The attempt authenticated: forgive it and every failure before it."""
        self.failures = 0
        self.last_failure = None
        # A lockout reached by this very attempt's count stands only if it failed.
        self.locked_out = False

    def physical_reset(self) -> None:
        """Lift a lockout: called only from a physical action on the device."""
        self.failures = 0
        self.locked_out = False
        self.last_failure = None

    def to_bytes(self) -> bytes:
        data = cbor.dumps([1, self.failures, self.locked_out])
        return data

    @classmethod
    def from_bytes(cls, raw: bytes, **limits: int) -> AttemptLimiter:
        try:
            value = cbor.loads(raw, max_size=32)
        except cbor.CborError:
            value = None
        if (
            not isinstance(value, list)
            or len(value) != 3
            or value[0] != 1
            or not isinstance(value[1], int)
            or isinstance(value[1], bool)
            or not 0 <= value[1] < 1 << 32
            or not isinstance(value[2], bool)
        ):
            raise MalformedData("attempt counter record is corrupt")
        return cls(failures=value[1], locked_out=value[2], **limits)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 32


@dataclass
class AttemptLimits:
    """One :class:`AttemptLimiter` per limited :class:`Credential`, stored as one record.

    Record (deterministic CBOR): ``[3, {name: [failures, locked_out], ...}, reserved]``
    with the credential's name as key and ``reserved`` the attempts reserved and not yet
    settled when it was written. Reading folds the reservations in: each is one more
    failure of *every* counter (the HELLO that would have named the secret may have
    come, and nothing says which), which locks a counter that reaches its maximum; the
    result has no reservation. Reading also accepts format 2 (``[2, {...}]``, no
    reservations) and format 1 (``[1, failures, locked_out]``, one counter every mode
    shared): each counter then starts from it, so an upgrade forgives nothing. A name the
    record lacks starts at zero (a secret added since it was written); a name this
    version does not know is ignored. Anything else is corrupt (:class:`MalformedData`):
    the caller must then lock every counter (:meth:`all_locked`), never reset them.
    """

    limiters: dict[Credential, AttemptLimiter] = field(default_factory=dict)
    #: Makes a fresh counter with the device's limits (max failures, backoff).
    template: Callable[[], AttemptLimiter] = AttemptLimiter
    #: Attempts reserved by sessions that have not consumed them (no HELLO yet).
    reserved: int = 0

    def __post_init__(self) -> None:
        for credential in Credential:
            if credential.limited and credential not in self.limiters:
                self.limiters[credential] = self.template()

    def __getitem__(self, credential: Credential) -> AttemptLimiter:
        if not credential.limited:
            raise KeyError(f"the {credential.value} credential has no attempt counter")
        return self.limiters[credential]

    @property
    def locked_out(self) -> bool:
        """Some secret is locked: the device needs its physical reset."""
        return any(limiter.locked_out for limiter in self.limiters.values())

    def physical_reset(self) -> None:
        """Lift every lockout (a physical action on the device only)."""
        for limiter in self.limiters.values():
            limiter.physical_reset()

    def may_count(self, credentials: Iterable[Credential], now: float) -> bool:
        """Whether a HELLO could begin a counted attempt with one of ``credentials`` now
        (its secret neither locked nor backing off): only then is a reservation worth
        its store write. A flood of connections while every secret waits costs none."""
        for credential in credentials:
            if not credential.limited:
                continue
            try:
                self[credential].check(now)
            except SessionRefused:
                continue
            return True
        return False

    def reserve(self) -> bool:
        """A connection arrived: reserve an attempt (store the record before any reply).
        False if the record holds as many as it may (the session then counts its
        attempt at HELLO, with a write of its own)."""
        if self.reserved >= MAX_RESERVED:
            return False
        self.reserved += 1
        return True

    def release(self) -> None:
        """The reservation's session ended before it began an attempt (no HELLO, or a
        HELLO that counts nothing): it is no failure."""
        self.reserved = max(0, self.reserved - 1)

    def begin_attempt(self, credential: Credential, now: float, *, reserved: bool) -> None:
        """Count an attempt with ``credential`` as failed until it succeeds.

        ``reserved``: the session consumes its reservation, which the stored record
        already counts (for every secret), so no store write is needed for it to be
        durable. Raises :class:`LockedOut` or :class:`TryLater` (the reservation is then
        kept, for the caller to release)."""
        limiter = self[credential]
        limiter.check(now)
        if reserved:
            self.release()
        limiter.begin_attempt(now)

    def _effective(self, credential: Credential) -> tuple[int, bool]:
        """(failures, locked) as a reader of this state's record would find them."""
        limiter = self.limiters[credential]
        failures = limiter.failures + self.reserved
        return failures, limiter.locked_out or failures >= limiter.max_failures

    def covers(self, other: AttemptLimits) -> bool:
        """Whether this state, stored, accounts for every failure and lockout ``other``
        holds, reservations counted as the reader counts them. The device may reveal an
        attempt's outcome only while the stored state covers the one in RAM."""
        for credential in other.limiters:
            if credential not in self.limiters:
                return False
            failures, locked = self._effective(credential)
            other_failures, other_locked = other._effective(credential)
            if failures < other_failures or (other_locked and not locked):
                return False
        return True

    def to_bytes(self) -> bytes:
        counters = tuple(
            (credential.value, limiter.failures, limiter.locked_out)
            for credential, limiter in self.limiters.items()
        )
        return _encode_record(counters, self.reserved)

    @classmethod
    def all_locked(cls, template: Callable[[], AttemptLimiter] = AttemptLimiter) -> AttemptLimits:
        """What an unreadable record means: every secret locked until a physical reset."""
        limits = cls(template=template)
        for limiter in limits.limiters.values():
            limiter.locked_out = True
        return limits

    @classmethod
    def from_bytes(
        cls, raw: bytes, template: Callable[[], AttemptLimiter] = AttemptLimiter
    ) -> AttemptLimits:
        shared, counters, reserved = _decode_record(raw)
        limits = cls(template=template)
        if shared is not None:
            for limiter in limits.limiters.values():
                limiter.failures, limiter.locked_out = shared
            return limits
        known = {credential.value: credential for credential in Credential if credential.limited}
        for name, failures, locked_out in counters:
            if name in known:
                limiter = limits.limiters[known[name]]
                limiter.failures, limiter.locked_out = failures, locked_out
        for limiter in limits.limiters.values() if reserved else ():
            # A reservation outstanding when the record was written (a power cut in a
            # session): one failure of every secret, since its HELLO may have come.
            limiter.failures = min(limiter.failures + reserved, (1 << 32) - 1)
            if limiter.failures >= limiter.max_failures:
                limiter.locked_out = True
        return limits


_Counters = tuple[tuple[str, int, bool], ...]


# The record's bytes are a pure function of the counters and back: a device re-encodes
# and re-reads the same few states several times per session (each PersistAttempts
# snapshot, each store write and what it stored), and the generic CBOR coder is most of
# that cost. The caches hold immutable tuples and bytes only.
@functools.lru_cache(maxsize=64)
def _encode_record(counters: _Counters, reserved: int) -> bytes:
    """``[3, {name: [failures, locked_out], ...}, reserved]`` in deterministic CBOR."""
    body = {name: [failures, locked_out] for name, failures, locked_out in counters}
    return cbor.dumps([ATTEMPTS_FORMAT, body, reserved])


@functools.lru_cache(maxsize=64)
def _decode_record(raw: bytes) -> tuple[tuple[int, bool] | None, _Counters, int]:
    """(the one shared counter of format 1, or None; the named counters; the
    reservations) of a record; :class:`MalformedData` if it is corrupt (not cached)."""
    try:
        value = cbor.loads(raw, max_size=MAX_ATTEMPTS_RECORD) if raw else None
    except cbor.CborError:
        value = None
    if isinstance(value, list) and value[:1] == [1]:
        shared = AttemptLimiter.from_bytes(raw)
        return (shared.failures, shared.locked_out), (), 0
    reserved = 0
    if isinstance(value, list) and len(value) == 3 and value[0] == ATTEMPTS_FORMAT:
        reserved = value[2]
        if not _count(reserved) or reserved > MAX_RESERVED:
            raise MalformedData("attempt counter record is corrupt")
    elif not isinstance(value, list) or len(value) != 2 or value[0] != 2:
        raise MalformedData("attempt counter record is corrupt")
    if not isinstance(value[1], dict):
        raise MalformedData("attempt counter record is corrupt")
    counters = []
    for name, counter in value[1].items():
        if (
            not isinstance(name, str)
            or not isinstance(counter, list)
            or len(counter) != 2
            or not _count(counter[0])
            or not isinstance(counter[1], bool)
        ):
            raise MalformedData("attempt counter record is corrupt")
        counters.append((name, counter[0], counter[1]))
    return None, tuple(counters), reserved


@dataclass
class ButtonWindow:
    """The push-button window: one host, within ``length`` seconds of a press."""

    length: float = DEFAULT_BUTTON_WINDOW
    opened_at: float | None = None
    #: The connection that claimed the window, if any.
    claimed_by: str | None = None
    #: A host authenticated in the last window: until the next press, a claim is told so
    #: (:class:`ButtonWindowUsed`) rather than "press the button". RAM only.
    used: bool = False

    def press(self, now: float) -> None:
        """A physical press: a fresh window, unclaimed."""
        self.opened_at = now
        self.claimed_by = None
        self.used = False

    def is_open(self, now: float) -> bool:
        return self.opened_at is not None and now < self.opened_at + self.length

    def claim(self, connection: str, now: float) -> None:
        """Let ``connection`` run button mode, or raise why not.

        A second host in the same window closes it for everyone (session overlap).
        """
        if not self.is_open(now) and self.used:
            raise ButtonWindowUsed(
                "this button window was already used by another host: someone else may "
                "have set the device up; reset it by hand before you provision it"
            )
        if not self.is_open(now):
            raise ButtonNotPressed(
                f"press the device's button, then retry within {self.length:.0f} s"
            )
        if self.claimed_by is not None and self.claimed_by != connection:
            self.spoil()
            raise SessionOverlap(
                "another host tried during the button window; "
                "press the button again and use one host only"
            )
        self.claimed_by = connection

    def overlapped(self, connection: str) -> bool:
        """True if ``connection`` held the window and lost it to an overlap."""
        return self.claimed_by != connection

    def authenticated(self) -> None:
        """The claiming host authenticated: the window is used (see :attr:`used`)."""
        self.used = True

    def spoil(self) -> None:
        """Two hosts tried at once (an overlap): closed, and nobody counts as its user."""
        self.close()
        self.used = False

    def close(self) -> None:
        self.opened_at = None
        self.claimed_by = None
