"""The pairing-mode registry: mode bit -> engine.

The session machines (:mod:`~bleprov.core.session.host`,
:mod:`~bleprov.core.session.device`) ask it which engine runs a HELLO's mode, which
secret's counter the mode uses and whether the device must confirm; the advertisement,
labels and the CLI read the modes' words from the bit table it fills
(:mod:`bleprov.core.mode_bits`). A new mode is one module with a
:class:`~bleprov.core.session.modes.base.ModeEngine` and one :func:`register` call.
"""

from __future__ import annotations

from bleprov.core.errors import LocalProtocolError
from bleprov.core.mode_bits import Mode, register_bit, unregister_bit
from bleprov.core.session.modes import button, code, compare, passkey, qr
from bleprov.core.session.modes.base import ModeEngine

_ENGINES: dict[int, ModeEngine] = {}


def register(engine: ModeEngine) -> None:
    """Make ``engine``'s mode known: HELLO, advertisement, info value and policy accept
    its bit, and the session machines run it."""
    if int(engine.mode) in _ENGINES and _ENGINES[int(engine.mode)] is not engine:
        raise ValueError(f"mode {engine.name!r} (0x{int(engine.mode):02x}) is registered")
    register_bit(int(engine.mode), engine.name)
    _ENGINES[int(engine.mode)] = engine


def unregister(mode: Mode) -> None:
    """Forget a registered mode (tests); the built-in modes cannot be removed."""
    if mode in BUILT_IN:
        raise ValueError("the built-in modes stay")
    _ENGINES.pop(int(mode), None)
    unregister_bit(int(mode))


def engine(mode: Mode) -> ModeEngine:
    """The engine that runs ``mode``."""
    try:
        return _ENGINES[int(mode)]
    except KeyError:
        raise LocalProtocolError(f"no engine runs mode 0x{int(mode):02x}") from None


def engines() -> list[ModeEngine]:
    """Every registered engine, in the order they were registered (the CLI's order)."""
    return list(_ENGINES.values())


for _engine in (qr.ENGINE, code.ENGINE, compare.ENGINE, passkey.ENGINE, button.ENGINE):
    register(_engine)

#: The modes this version ships.
BUILT_IN: frozenset[Mode] = frozenset(e.mode for e in engines())

__all__ = ["BUILT_IN", "engine", "engines", "register", "unregister"]
