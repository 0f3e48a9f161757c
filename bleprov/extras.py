"""Which optional extra brings which third-party package, and the error that says so.

``pip install bleprov`` installs the core and the host side (scan, provision, peer, the
virtual radio); the device daemon, the hub, label rendering and the MQTT broker client
come with the ``device``, ``hub``, ``labels`` and ``broker`` extras (``all``: every one).
A command or a :mod:`bleprov` name whose extra is missing fails with
:class:`MissingExtra`, one line naming the ``pip install`` that brings it, not a
traceback from deep inside an import.
"""

from __future__ import annotations

from typing import Final

from bleprov.core.errors import BleprovError

#: The top-level module each extra's packages are imported as, with the extra's name.
#: pyproject.toml's [project.optional-dependencies] lists the same packages.
EXTRA_OF_MODULE: Final[dict[str, str]] = {
    "bless": "device",
    "dbus_next": "device",
    "sqlalchemy": "hub",
    "alembic": "hub",
    "mako": "hub",
    "segno": "labels",
    "aiomqtt": "broker",
    "paho": "broker",
    "zxingcpp": "photo",
    "PIL": "photo",
    "gpiozero": "gpio",
    "keyring": "keyring",
    "psycopg": "postgresql",
}


class MissingExtra(BleprovError, ImportError):
    """A feature needs an optional extra that is not installed.

    An :class:`ImportError` too, so ``try: import ... except ImportError`` code sees it
    as the missing import it is."""

    def __init__(self, extra: str, module: str) -> None:
        # The same words from a command and from a library call: CLI code that prints a
        # BleprovError it caught prints this as it is.
        super().__init__(
            f"the {extra} extra is not installed ({module} is missing): "
            f"pip install 'bleprov[{extra}]'"
        )
        self.extra = extra
        self.module = module


def missing_extra(exc: ImportError) -> MissingExtra | None:
    """``exc`` as the extra it means, or None if it is no extra's package (a bug, or a
    broken install, which keeps its traceback)."""
    if isinstance(exc, MissingExtra):
        return exc
    name = getattr(exc, "name", None) or ""
    top = name.partition(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    return None if extra is None else MissingExtra(extra, top)
