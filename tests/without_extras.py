"""Run Python as if some packages were not installed: ``python tests/without_extras.py
MOD[,MOD...] -m bleprov ARGS...`` or ``... MOD[,MOD...] -c CODE``.

A finder first on ``sys.meta_path`` refuses each named top-level module (and its
submodules) with the ModuleNotFoundError a missing package raises, so a test sees what a
user of a smaller install sees, without making another venv.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path

#: Every package the base install does not bring (bleprov.extras.EXTRA_OF_MODULE's keys):
#: what ``pip install bleprov`` without extras lacks.
NON_BASE = (
    "bless,dbus_next,sqlalchemy,alembic,mako,segno,aiomqtt,paho,zxingcpp,PIL,gpiozero,"
    "keyring,psycopg"
)


class Blocked(importlib.abc.MetaPathFinder):
    """Refuses the ``names`` as if they were not installed."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def main() -> None:
    # Not tests/ on the path (a script's directory is): as `python -m bleprov` would run.
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]
    names, how, *rest = sys.argv[1:]
    sys.meta_path.insert(0, Blocked(set(names.split(","))))
    if how == "-m":
        sys.argv = [rest[0], *rest[1:]]
        runpy.run_module(rest[0], run_name="__main__", alter_sys=True)
    elif how == "-c":
        sys.argv = ["-c"]
        exec(compile(rest[0], "<string>", "exec"), {"__name__": "__main__"})
    else:
        raise SystemExit(f"usage: {sys.argv[0]} MODULES -m MODULE ARGS... | -c CODE")


if __name__ == "__main__":
    main()
