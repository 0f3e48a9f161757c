"""The owner's commissioning window: how an owned device lets one more host in (sans-IO).

Modelled on Matter's multi-admin "open commissioning window" (enhanced method). Once a
device has an owner its factory label is dead: no session it authenticates may change
the device's trust or configuration. To add a second admin, or to hand the device over,
the owner (over its validated connection) opens a window:

1. The owner's host draws a fresh one-time :class:`WindowCode` (12 digits, ~40 bits),
   derives a SPAKE2+ verifier ``(w0, L)`` from it with a fresh salt, and sends the device
   a :class:`WindowOffer`: the verifier, the salt and scrypt cost, the purpose and the
   window's length. The code itself never leaves the owner's host.
2. The device keeps the offer in RAM only (a reboot closes the window), advertises
   ``WINDOW_OPEN`` and serves the salt, cost and purpose in its info value.
3. The new host, given the code by a person, runs the code mode with the reserved prover
   identity :data:`WINDOW_USER`. A session authenticated that way may do what the purpose
   allows (:mod:`bleprov.core.enrolment.device`): bind itself as an admin, or take the
   device over as its new owner.
4. The window closes when a session it authenticated commits, when it expires, after
   :data:`MAX_WINDOW_FAILURES` wrong codes, when the owner closes it, or at reboot.

Pure code: bytes in, bytes out, ``now`` (monotonic seconds) passed in.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from bleprov.core.errors import MalformedData, ProtocolError
from bleprov.core.wire_codes import ErrorCode

if TYPE_CHECKING:
    # Imported where used: the advertisement and the enrolment rules need this module's
    # small types, not SPAKE2+'s curve arithmetic (about 0.15 s to import).
    from bleprov.core.crypto.spake2plus import ScryptCost, VerifierRecord

#: SPAKE2+ prover identity of window sessions; reserved (no scratch-card user may be named so).
WINDOW_USER: Final = b"bleprov window"
CODE_DIGITS: Final = 12
MIN_WINDOW_SECONDS: Final = 60
DEFAULT_WINDOW_SECONDS: Final = 600
#: Matter caps a commissioning window at 15 minutes; so do we.
MAX_WINDOW_SECONDS: Final = 900
#: Wrong codes a window absorbs before it closes (5 guesses at 10^-12 each).
MAX_WINDOW_FAILURES: Final = 5
SALT_SIZE: Final = 16


class WindowPurpose(enum.IntEnum):
    """What a session authenticated by the window may do."""

    #: Bind the new host as an additional admin (a pinned peer); nothing else changes.
    ADMIN = 0
    #: Hand the device over: the new host's binding (peer or zone) replaces the owner,
    #: its admins, pins and zone membership in one commit; it may set Wi-Fi too.
    HANDOVER = 1

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> WindowPurpose:
        """``admin`` or ``handover``, as a person types it; WindowError otherwise."""
        for purpose in cls:
            if purpose.label == text.strip().lower():
                return purpose
        raise WindowError("a window's purpose is admin or handover")


class WindowError(ProtocolError):
    """A window offer is malformed, or no window can be opened."""

    code = ErrorCode.BAD_WINDOW


class WindowClosed(ProtocolError):
    """The window code was refused: no window is open (it expired, was used, or closed)."""

    code = ErrorCode.WINDOW_CLOSED


def window_seconds(minutes: float) -> int:
    """A window's length from minutes, as a person gives it; WindowError if out of range."""
    seconds = round(minutes * 60)
    if not MIN_WINDOW_SECONDS <= seconds <= MAX_WINDOW_SECONDS:
        raise WindowError(
            f"a window lasts {MIN_WINDOW_SECONDS // 60} to {MAX_WINDOW_SECONDS // 60} minutes"
        )
    return seconds


# --------------------------------------------------------------------------- the code


@dataclass(frozen=True, repr=False)
class WindowCode:
    """The one-time code a person carries from the owner to the new host."""

    digits: str

    def __post_init__(self) -> None:
        d = self.digits
        if len(d) != CODE_DIGITS or not d.isascii() or not d.isdigit():
            raise MalformedData(f"a window code is {CODE_DIGITS} digits")

    @classmethod
    def generate(cls, rng: Callable[[int], int] = secrets.randbelow) -> WindowCode:
        return cls(f"{rng(10**CODE_DIGITS):0{CODE_DIGITS}d}")

    @classmethod
    def parse(cls, text: str) -> WindowCode:
        """Digits with optional spaces or dashes between them, as people type them."""
        digits = "".join(ch for ch in text.strip() if ch not in " -")
        try:
            return cls(digits)
        except MalformedData:
            raise MalformedData(
                f"a window code is {CODE_DIGITS} digits (dashes and spaces allowed)"
            ) from None

    @property
    def password(self) -> bytes:
        return self.digits.encode("ascii")

    def formatted(self) -> str:
        """``1234-5678-9012``: groups of four are easier to read out and type."""
        d = self.digits
        return "-".join(d[i : i + 4] for i in range(0, CODE_DIGITS, 4))

    def __repr__(self) -> str:
        return "WindowCode(<secret>)"


# -------------------------------------------------------------------------- the offer


def _cost_list(cost: ScryptCost) -> list[int]:
    return [cost.n.bit_length() - 1, cost.r, cost.p]


@dataclass(frozen=True, repr=False)
class WindowOffer:
    """What the owner sends in ``window/open``: never the code, only its verifier."""

    purpose: WindowPurpose
    seconds: int
    salt: bytes
    cost: ScryptCost
    record: VerifierRecord

    @classmethod
    def create(
        cls,
        code: WindowCode,
        *,
        purpose: WindowPurpose,
        seconds: int = DEFAULT_WINDOW_SECONDS,
        cost: ScryptCost | None = None,
        salt: bytes | None = None,
    ) -> WindowOffer:
        """The owner's side: derive the verifier the device will hold (scrypt, once; the
        RFC 9383 cost unless ``cost`` says otherwise)."""
        from bleprov.core.crypto.spake2plus import DEFAULT_COST, derive_verifier
        from bleprov.core.device_secrets import SPAKE_ID_VERIFIER

        cost = DEFAULT_COST if cost is None else cost
        salt = secrets.token_bytes(SALT_SIZE) if salt is None else salt
        secrets_ = derive_verifier(
            code.password,
            salt=salt,
            id_prover=WINDOW_USER,
            id_verifier=SPAKE_ID_VERIFIER,
            cost=cost,
        )
        offer = cls(purpose, seconds, salt, cost, secrets_.verifier_record())
        offer.check()
        return offer

    def check(self) -> None:
        """Bounds, the cost included: a window whose scrypt no host runs
        (:data:`~bleprov.core.crypto.spake2plus.HOST_MAX_COST`) would open for nobody."""
        from bleprov.core.crypto.spake2plus import HOST_MAX_COST

        if not MIN_WINDOW_SECONDS <= self.seconds <= MAX_WINDOW_SECONDS:
            raise WindowError(
                f"a window lasts {MIN_WINDOW_SECONDS} to {MAX_WINDOW_SECONDS} seconds"
            )
        if not 16 <= len(self.salt) <= 32:
            raise WindowError("the window salt must be 16..32 bytes")
        if self.cost.log2_n < 10 or self.cost.exceeds(HOST_MAX_COST):
            raise WindowError(
                "the window's scrypt cost is outside what hosts accept (log2 N 10.."
                f"{HOST_MAX_COST.log2_n}, r up to {HOST_MAX_COST.r}, p up to {HOST_MAX_COST.p})"
            )

    def to_body(self) -> dict[str, Any]:
        """The ``window/open`` request body (docs/protocol.md, "Commissioning window")."""
        return {
            "purpose": self.purpose.label,
            "seconds": self.seconds,
            "salt": self.salt,
            "cost": _cost_list(self.cost),
            "w0": self.record.w0.to_bytes(32, "big"),
            "L": self.record.L,
        }

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> WindowOffer:
        """Bounded parse of a ``window/open`` body; WindowError for anything off."""
        from bleprov.core.crypto.spake2plus import ScryptCost, VerifierRecord

        purpose_text = body.get("purpose")
        purposes = {p.label: p for p in WindowPurpose}
        if not isinstance(purpose_text, str) or purpose_text not in purposes:
            raise WindowError("field 'purpose' must be 'admin' or 'handover'")
        seconds = body.get("seconds", DEFAULT_WINDOW_SECONDS)
        if type(seconds) is not int:
            raise WindowError("field 'seconds' must be an integer")
        salt, w0, point = body.get("salt"), body.get("w0"), body.get("L")
        if not isinstance(salt, bytes) or not isinstance(w0, bytes) or len(w0) != 32:
            raise WindowError("fields 'salt' and 'w0' must be bytes (w0: 32)")
        if not isinstance(point, bytes) or len(point) != 65:
            raise WindowError("field 'L' must be a 65-byte uncompressed point")
        cost = body.get("cost")
        if (
            not isinstance(cost, list)
            or len(cost) != 3
            or not all(type(c) is int for c in cost)
            or not 10 <= cost[0] <= 22
        ):
            raise WindowError("field 'cost' must be [log2 N 10..22, r, p]")
        try:
            scrypt = ScryptCost(n=1 << cost[0], r=cost[1], p=cost[2])
            record = VerifierRecord(int.from_bytes(w0, "big"), point)
        except MalformedData as exc:
            raise WindowError(f"window verifier refused: {exc}") from None
        offer = cls(purposes[purpose_text], seconds, salt, scrypt, record)
        offer.check()
        return offer


# ------------------------------------------------------------------ the device's state


@dataclass(frozen=True)
class WindowInfo:
    """What the info value says of an open window: the host's KDF inputs and purpose."""

    salt: bytes
    cost: tuple[int, int, int]
    purpose: WindowPurpose


class CommissioningWindow:
    """An open window on the device: RAM only, one at a time, closes on first use."""

    def __init__(self, offer: WindowOffer, *, opened_by: bytes, now: float) -> None:
        offer.check()
        self.offer = offer
        #: Fingerprint of the owner who opened it (for the log and the audit).
        self.opened_by = opened_by
        self.opened_at = now
        self.expires_at = now + offer.seconds
        self.failures = 0
        self._closed = False

    @property
    def purpose(self) -> WindowPurpose:
        return self.offer.purpose

    def is_open(self, now: float) -> bool:
        return not self._closed and now < self.expires_at

    def records(self, now: float) -> dict[bytes, VerifierRecord]:
        """The code-mode verifier records this window contributes (none once closed)."""
        return {WINDOW_USER: self.offer.record} if self.is_open(now) else {}

    def info(self) -> WindowInfo:
        cost = self.offer.cost
        return WindowInfo(
            self.offer.salt, (cost.n.bit_length() - 1, cost.r, cost.p), self.offer.purpose
        )

    def failed(self) -> None:
        """A wrong code: count it, close the window at the limit."""
        self.failures += 1
        if self.failures >= MAX_WINDOW_FAILURES:
            self._closed = True

    def close(self) -> None:
        self._closed = True

    def __repr__(self) -> str:
        return f"CommissioningWindow(purpose={self.purpose.label}, failures={self.failures})"


__all__ = [
    "CODE_DIGITS",
    "DEFAULT_WINDOW_SECONDS",
    "MAX_WINDOW_FAILURES",
    "MAX_WINDOW_SECONDS",
    "WINDOW_USER",
    "CommissioningWindow",
    "WindowClosed",
    "WindowCode",
    "WindowError",
    "WindowInfo",
    "WindowOffer",
    "WindowPurpose",
    "window_seconds",
]
