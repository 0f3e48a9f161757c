"""Errors every radio adapter shares, so the CLI and the daemon catch one type."""

from __future__ import annotations

import os

from bleprov.core.errors import BleprovError

#: What to check when the system's Bluetooth cannot be reached (one line, for people).
SYSTEM_RADIO_HINT = (
    "check that bluetoothd is running (systemctl status bluetooth) and an adapter is "
    "present (bluetoothctl show), or use --radio bumble:<transport>"
)
#: What to check when a bumble transport cannot be opened.
BUMBLE_RADIO_HINT = (
    "for a virtual radio start `bleprov radio hub` first; for a dongle check that it is "
    "plugged in and not claimed by BlueZ"
)


class RadioUnavailable(BleprovError):
    """The radio cannot be reached: no system D-Bus, no BlueZ, no adapter, or nothing
    answers at a bumble transport. A setup problem, not a bug: the message says what to
    check."""


class RadioLost(RadioUnavailable):
    """The radio went away while the daemon ran (the hub or bluetoothd stopped, the dongle
    was pulled): the daemon exits non-zero so that its service manager starts it again."""


def system_radio_unavailable(cause: BaseException) -> RadioUnavailable:
    """The typed error for the system stack failing with ``cause`` (bleak, D-Bus, OS)."""
    why = reason(cause)
    if isinstance(cause, OSError):
        why = f"cannot reach the system D-Bus: {why}"
    elif getattr(cause, "dbus_error", "") == "org.freedesktop.DBus.Error.ServiceUnknown":
        why = "BlueZ is not on the system D-Bus"
    return RadioUnavailable(f"the system Bluetooth is unavailable ({why}): {SYSTEM_RADIO_HINT}")


def bumble_radio_unavailable(transport: str, cause: BaseException) -> RadioUnavailable:
    """The typed error for a bumble transport that could not be opened."""
    return RadioUnavailable(
        f"cannot open the radio bumble:{transport} ({reason(cause)}): {BUMBLE_RADIO_HINT}"
    )


def reason(cause: BaseException) -> str:
    """A short cause for a message: the OS error's text, else the exception's first line."""
    if isinstance(cause, OSError) and cause.errno:
        return os.strerror(cause.errno).lower()
    text = str(cause).strip().splitlines()
    return text[0] if text else "no reason given"
