"""The pairing modes' bits: the one enum for a mode on the wire, in the advertisement,
the info value, the label and the device's policy, and the table of modes this process
knows.

A mode is one bit. HELLO names one; the advertisement, the info value and a device's
policy carry a set (the same enum, as flags). The five built-in modes are the members;
:func:`register_bit` adds another (the mode registry,
:mod:`bleprov.core.session.modes.registry`, calls it), so every receiver's check of
"a bit this version knows" follows the registry instead of a list. This module sits
below everything that speaks of modes and imports nothing of bleprov.
"""

from __future__ import annotations

import enum


class Mode(enum.IntFlag):
    """Out-of-band modes; the values are the advertised mode bits."""

    QR = 0x01
    CODE = 0x02
    COMPARE = 0x04
    BUTTON = 0x08
    #: A display (no button): the host types the one-time number the device shows.
    PASSKEY = 0x10

    @property
    def label(self) -> str:
        """The mode's word (CLI, labels, messages): ``qr``, ``code``..."""
        return _NAMES.get(int(self)) or "|".join(mode_names(self)) or "none"


#: Known modes, bit -> word, in the order the CLI lists them: the built-ins as it always
#: has, then registered ones as they come. A set of modes reads in bit order instead
#: (:func:`mode_names`), as advertisements and labels always have.
_NAMES: dict[int, str] = {
    int(m): (m.name or "").lower()
    for m in (Mode.QR, Mode.CODE, Mode.COMPARE, Mode.PASSKEY, Mode.BUTTON)
}


def register_bit(bit: int, name: str) -> Mode:
    """Make ``bit`` a known mode called ``name``; the same pair again is a no-op."""
    if bit <= 0 or bit & (bit - 1) or bit > 0x80:
        raise ValueError("a mode is one bit of the mode byte (0x01..0x80)")
    if _NAMES.get(bit, name) != name or (name in _NAMES.values() and _NAMES.get(bit) != name):
        raise ValueError(f"mode bit 0x{bit:02x} or name {name!r} is taken")
    _NAMES[bit] = name
    return Mode(bit)


def unregister_bit(bit: int) -> None:
    """Forget a registered mode (tests); the built-ins stay."""
    if bit not in {int(m) for m in Mode}:
        _NAMES.pop(bit, None)


def known_modes() -> Mode:
    """Every mode bit this process knows; a receiver refuses others."""
    known = Mode(0)
    for bit in _NAMES:
        known |= Mode(bit)
    return known


def mode_from_wire(value: int) -> Mode:
    """The one known mode ``value`` names (HELLO); ``ValueError`` for anything else."""
    if value not in _NAMES:
        raise ValueError(f"unknown mode {value}")
    return Mode(value)


def each_mode(modes: Mode | int) -> list[Mode]:
    """The known modes in ``modes``, in bit order."""
    return [Mode(bit) for bit in sorted(_NAMES) if int(modes) & bit]


def mode_names(modes: Mode | int) -> list[str]:
    """The words of the known modes in ``modes``, in bit order (advertisement, labels)."""
    return [_NAMES[bit] for bit in sorted(_NAMES) if int(modes) & bit]


def listed_names() -> list[str]:
    """Every known mode's word, in the order the CLI lists them."""
    return list(_NAMES.values())


def mode_by_name(name: str) -> Mode:
    """The known mode called ``name`` (case-insensitive); ``KeyError`` for others."""
    word = name.strip().lower()
    for bit, known in _NAMES.items():
        if known == word:
            return Mode(bit)
    raise KeyError(name)


__all__ = [
    "Mode",
    "each_mode",
    "known_modes",
    "listed_names",
    "mode_by_name",
    "mode_from_wire",
    "mode_names",
    "register_bit",
    "unregister_bit",
]
