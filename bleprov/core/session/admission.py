"""Which host sessions a device lets in, across all its links: the rules, without the I/O.

A device serves one session at a time, whichever link it arrives on (BLE, the broker):
two hosts must never drive one enrolment. A session that opens while another is under
way is refused with a REFUSED message carrying :class:`DeviceBusy`'s code
(:func:`busy_refusal`).

The push-button window (WPS PBC's session overlap): a second host that tries to connect
while the window is open, or while a button-mode session runs, spoils the window (a new
press is needed) and aborts the sessions that are, or may still become, button sessions
(:func:`second_host`). Sessions in other modes keep going.

The session layer (:mod:`bleprov.session`) calls these; they keep no state of their own
beyond the :class:`ButtonWindow` they are given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from bleprov.core.attempts import ButtonWindow, DeviceBusy, SessionOverlap
from bleprov.core.session.messages import Mode, Refused
from bleprov.core.session.modes import registry

#: Whatever the caller names its sessions by (a link's session object).
SessionKey = TypeVar("SessionKey")


def busy_refusal(sessions_under_way: int) -> Refused | None:
    """The REFUSED to send a host whose session opens now, or None to let it in: one
    session at a time, on every link together."""
    if sessions_under_way:
        return Refused(DeviceBusy.code, 0)
    return None


@dataclass(frozen=True)
class Overlap(Generic[SessionKey]):
    """A second host came during the button window: abort ``abort`` with ``error``."""

    error: SessionOverlap
    #: The sessions in button mode, or not yet in any mode (they could still claim the
    #: window); the others are left alone.
    abort: tuple[SessionKey, ...]


def second_host(
    button: ButtonWindow, modes: Mapping[SessionKey, Mode | None], now: float
) -> Overlap[SessionKey] | None:
    """A second host tried to connect while ``modes`` (each session's mode, None before its
    HELLO) were under way. Outside the button window, and with no button session running,
    that is nothing (None). Otherwise it is an overlap: ``button`` is spoiled (nobody keeps
    the window; a new press is needed, not "window used") and the overlap says which
    sessions to abort."""
    if not button.is_open(now) and not any(_in_window(mode) for mode in modes.values()):
        return None
    button.spoil()
    return Overlap(
        SessionOverlap("a second host tried during the button window"),
        tuple(key for key, mode in modes.items() if mode is None or _in_window(mode)),
    )


def _in_window(mode: Mode | None) -> bool:
    """A session in a mode that runs on the button window (the registry says which)."""
    return mode is not None and registry.engine(mode).button_window
