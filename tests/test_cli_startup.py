"""What a ``bleprov`` command imports before it does anything (issue 13: start-up time).

Not timed (benchmarks/startup.py measures): these tests read which modules a fresh
process imported (``python -X importtime``, or ``sys.modules``) and fail when a heavy
library comes back on a path that does not use it. ``--help`` of any command, and the
command line's parsing, load no radio stack, no cryptography and no database; ``device
serve`` (a Raspberry Pi's daemon) never loads the hub's database stack.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bleprov.core.advertising import OobMode
from bleprov.core.factory import provision_device
from bleprov.store.device_store import DeviceStore
from bleprov.store.keys import make_key_provider
from tests.processes import EXAMPLE_NETWORK, child_env, read_until, start, stop
from tests.rig import CHEAP, MANUFACTURER, NOW

#: Libraries no ``--help`` needs: the radio stacks, cryptography, the hub's database, the
#: broker client, label rendering, the protocol's parsers. Each costs 10 ms to 0.3 s.
HEAVY = (
    "sqlalchemy",
    "alembic",
    "Crypto",
    "cryptography",
    "bumble",
    "bleak",
    "bless",
    "dbus_fast",
    "aiomqtt",
    "paho",
    "segno",
    "PIL",
    "zxingcpp",
    "construct",
)
#: What the hub alone uses: a device never loads it.
DATABASE = ("sqlalchemy", "alembic")

#: Every group's ``--help`` (bleprov, zone, zone user, device, peer...), rendered in one
#: process, then the modules it holds.
_EVERY_HELP = """
import contextlib, io, sys
from typer.main import get_command
import bleprov.cli as cli

def paths(command, prefix):
    if hasattr(command, "commands"):
        yield prefix
        for name, sub in sorted(command.commands.items()):
            yield from paths(sub, [*prefix, name])

helped = 0
for path in paths(get_command(cli.app), []):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            cli.app([*path, "--help"], standalone_mode=False)
        except SystemExit:
            pass
    assert "Usage" in out.getvalue(), (path, out.getvalue())
    helped += 1
print(helped)
print(" ".join(sorted(sys.modules)))
"""


def imported(stderr: str) -> set[str]:
    """The modules ``-X importtime`` reported."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }


def loaded(modules: set[str], libraries: tuple[str, ...]) -> list[str]:
    """Which of ``libraries`` (top-level names) ``modules`` holds."""
    return sorted({m.split(".")[0] for m in modules} & set(libraries))


@pytest.mark.parametrize(
    "args", [["--help"], ["--version"], ["scan", "--help"], ["provision", "-h"]], ids=" ".join
)
def test_help_and_version_import_no_heavy_library(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bleprov", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    modules = imported(done.stderr)
    assert "bleprov.cli" in modules  # the report is read right
    assert loaded(modules, HEAVY) == []


def test_every_groups_help_imports_no_heavy_library() -> None:
    """typer builds every sub-app (zone, device, factory, label, peer...) for any help:
    their modules stay cheap."""
    done = subprocess.run(
        [sys.executable, "-c", _EVERY_HELP],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    count, modules = done.stdout.splitlines()
    assert int(count) >= 9  # every group of the tree was asked
    assert loaded(set(modules.split()), HEAVY) == []


def test_a_bad_radio_is_refused_without_loading_a_radio_stack() -> None:
    """``--radio`` is checked as the options are parsed (exit 2) by a parser that needs
    no bumble."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bleprov", "scan", "--radio", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert "unknown radio 'nope'" in done.stderr
    assert loaded(imported(done.stderr), ("bumble", "bleak")) == []


@pytest.mark.multiprocess
def test_device_serve_never_loads_the_hub_database(tmp_path: Path) -> None:
    """The daemon up to ``ready:`` (validated connections on, a hub named) imports no
    SQLAlchemy or Alembic: those are the hub's."""
    record, _ = provision_device(MANUFACTURER.issue_device(now=NOW), modes=OobMode.QR, cost=CHEAP)
    store = tmp_path / "store"
    DeviceStore(store, make_key_provider("file", directory=store)).put_provisioning(record)
    hub = start("radio", "hub", "--ports", "0")
    daemon = None
    try:
        [transport] = [
            line.split()[2]
            for line in read_until(hub, "ready", 30)
            if line.startswith("controller ")
        ]
        daemon = subprocess.Popen(
            [
                sys.executable, "-X", "importtime", "-m", "bleprov", "device", "serve",
                "--store", str(store), "--radio", f"bumble:{transport}",
                "--network", f"simulated:{EXAMPLE_NETWORK}",
                "--tls", "127.0.0.1:0", "--hub", "127.0.0.1:9",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE,
            text=True,
            env=child_env(),
        )  # fmt: skip
        lines = read_until(daemon, "ready:", 60)
    finally:
        stop(daemon)
        stop(hub)
    modules = imported("\n".join(lines))
    assert "bleprov.service.device_daemon" in modules  # the daemon's path was taken
    assert loaded(modules, DATABASE) == []
