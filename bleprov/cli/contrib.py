"""``bleprov contrib``: the files an installed bleprov ships beside its code.

A wheel has no ``contrib/`` or ``docs/`` folder a person can find, so the build puts them
inside the package (``bleprov/_contrib``, ``bleprov/_docs``: pyproject.toml's
force-include) and these commands get them out: ``list`` names them, ``show`` prints one,
``path`` says where it is, and ``install-systemd`` writes a service's unit, sysusers.d and
tmpfiles.d files where systemd reads them, its ExecStart= pointing at this installation's
``bleprov``. Run from a checkout (an editable install) they use its ``contrib/`` and
``docs/``.
"""

from __future__ import annotations

import os
import re
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Final

import typer
from rich.markup import escape

import bleprov
from bleprov.cli import EXIT_ERROR, err_console
from bleprov.core.errors import BleprovError

contrib_app = typer.Typer(
    help="Files shipped with bleprov: systemd units, sysusers.d and tmpfiles.d files, the "
    "Mosquitto example, the simulated Wi-Fi example, the docs.",
    no_args_is_help=True,
)

PACKAGE: Final = Path(bleprov.__file__).resolve().parent
#: The files of contrib/ a wheel ships (in bleprov/_contrib); tests/test_packaging.py
#: checks that the wheel holds each.
CONTRIB_FILES: Final = (
    "bleprov-device.service",
    "bleprov-device.sysusers",
    "bleprov-device.tmpfiles",
    "bleprov-hub.service",
    "bleprov-hub.sysusers",
    "bleprov-hub.tmpfiles",
    "mosquitto/mosquitto.conf",
    "mosquitto/acl.conf",
)
SIMULATED_EXAMPLE: Final = "simulated_example.toml"
#: The bleprov command as contrib/*.service spell it; install-systemd puts this
#: installation's there.
UNIT_COMMAND: Final = "/opt/bleprov/venv/bin/bleprov"
#: The guide the units' Documentation= points at.
UNIT_GUIDE: Final = "raspberry-pi.md"


class Service(StrEnum):
    """A service whose unit ``install-systemd`` writes."""

    device = "device"
    hub = "hub"


class ContribError(BleprovError):
    """A shipped file cannot be found or installed."""


def shipped_dirs() -> tuple[Path, Path]:
    """(contrib, docs): inside the installed package, else the checkout's."""
    if (PACKAGE / "_contrib").is_dir():
        return PACKAGE / "_contrib", PACKAGE / "_docs"
    checkout = PACKAGE.parent
    if (checkout / "contrib" / CONTRIB_FILES[0]).is_file():
        return checkout / "contrib", checkout / "docs"
    raise ContribError(
        f"this bleprov ({PACKAGE}) was installed without its contrib files: reinstall it "
        "from a wheel or a checkout"
    )


def shipped_files() -> dict[str, Path]:
    """Every shipped file, by the name ``show`` takes."""
    contrib, docs = shipped_dirs()
    files = {name: contrib / name for name in CONTRIB_FILES}
    files[SIMULATED_EXAMPLE] = PACKAGE / "network" / SIMULATED_EXAMPLE
    files.update({f"docs/{path.name}": path for path in sorted(docs.glob("*.md"))})
    return files


def shipped_file(name: str) -> Path:
    """One shipped file; an unknown name is bad usage."""
    files = shipped_files()
    if name not in files:
        raise typer.BadParameter(
            f"no shipped file {name!r}: `bleprov contrib list` names them", param_hint="NAME"
        )
    return files[name]


def this_bleprov() -> Path:
    """The ``bleprov`` command of this installation (a venv's bin/, or the scripts
    directory of the interpreter that runs this)."""
    import sysconfig

    candidates = (
        Path(sys.executable).absolute().parent / "bleprov",
        Path(sysconfig.get_path("scripts")) / "bleprov",
    )
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ContribError(
        "cannot find this installation's bleprov command: give its path with --command"
    )


def adapt_unit(text: str, command: Path, guide: Path | None) -> str:
    """A unit as contrib/ has it, running ``command`` and pointing at the installed guide
    first (the web page stays as the second Documentation= entry)."""
    text = text.replace(UNIT_COMMAND, str(command))
    if guide is not None:
        text = re.sub(
            r"^Documentation=", f"Documentation={guide.as_uri()} ", text, count=1, flags=re.M
        )
    return text


def _fail(exc: BleprovError) -> typer.Exit:
    """The one-line message of a bleprov error; the exit to raise."""
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
    return typer.Exit(EXIT_ERROR)


@contrib_app.command("list")
def contrib_list() -> None:
    """Name every shipped file and where it is (`bleprov contrib show NAME` prints one)."""
    try:
        files = shipped_files()
    except ContribError as exc:
        raise _fail(exc) from None
    width = max(len(name) for name in files)
    for name, path in files.items():
        typer.echo(f"{name:<{width}}  {path}")


@contrib_app.command("show")
def contrib_show(
    name: Annotated[str, typer.Argument(help="A name from `bleprov contrib list`.")],
) -> None:
    """Print a shipped file as it is, e.g. `bleprov contrib show docs/raspberry-pi.md`."""
    try:
        data = shipped_file(name).read_bytes()
    except ContribError as exc:
        raise _fail(exc) from None
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


@contrib_app.command("path")
def contrib_path(
    name: Annotated[
        str | None, typer.Argument(help="A name from `bleprov contrib list` (none: contrib/).")
    ] = None,
) -> None:
    """Print where a shipped file is (no NAME: the directory of the contrib files)."""
    try:
        path = shipped_dirs()[0] if name is None else shipped_file(name)
    except ContribError as exc:
        raise _fail(exc) from None
    typer.echo(str(path))


@contrib_app.command("install-systemd")
def contrib_install_systemd(
    services: Annotated[list[Service], typer.Argument(help="device, hub, or both.")],
    root: Annotated[
        Path, typer.Option(help="Install below this directory instead of / (an image).")
    ] = Path("/"),
    command: Annotated[
        Path | None,
        typer.Option(help="The bleprov the units run (default: this installation's)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace installed files that differ.")
    ] = False,
) -> None:
    """Install a service's unit, its user (sysusers.d) and directories (tmpfiles.d).

    Writes /etc/systemd/system/bleprov-SERVICE.service (running this installation's
    bleprov), /etc/sysusers.d/bleprov-SERVICE.conf and /etc/tmpfiles.d/bleprov-SERVICE.conf.
    Files already there and different are left alone unless --force: site changes belong
    in `systemctl edit`. Then: systemd-sysusers, systemd-tmpfiles --create and
    systemctl daemon-reload (printed at the end).
    """
    if command is not None and not command.is_absolute():
        raise typer.BadParameter("give an absolute path", param_hint="--command")
    try:
        run = command or this_bleprov()
        if any(c.isspace() for c in str(run)):
            raise ContribError(f"{run} has a space in its path: give another with --command")
        writes = _planned_writes(sorted(set(services), key=list(Service).index), root, run)
        differing = [
            target
            for target, data in writes
            if target.exists() and target.read_bytes() != data and not force
        ]
        if differing:
            raise ContribError(
                f"{differing[0]} is installed and differs: --force replaces it (site "
                "changes belong in `systemctl edit`)"
            )
    except ContribError as exc:
        raise _fail(exc) from None
    from bleprov.store.files import write_atomic

    for target, data in writes:
        if target.exists() and target.read_bytes() == data:
            typer.echo(f"unchanged {target}")
            continue
        write_atomic(target, data, mode=0o644)
        typer.echo(f"wrote {target}")
    typer.echo(f"the units run {run}; next, create the users and directories, load the units:")
    if root == Path("/"):
        typer.echo(
            "  sudo systemd-sysusers && sudo systemd-tmpfiles --create && "
            "sudo systemctl daemon-reload"
        )
    else:
        typer.echo(f"  systemd-sysusers --root {root} && systemd-tmpfiles --root {root} --create")


def _planned_writes(services: list[Service], root: Path, run: Path) -> list[tuple[Path, bytes]]:
    contrib, docs = shipped_dirs()
    guide = docs / UNIT_GUIDE
    writes: list[tuple[Path, bytes]] = []
    for service in services:
        stem = f"bleprov-{service.value}"
        unit = (contrib / f"{stem}.service").read_text(encoding="utf-8")
        unit = adapt_unit(unit, run, guide if guide.is_file() else None)
        writes += [
            (root / "etc/systemd/system" / f"{stem}.service", unit.encode()),
            (root / "etc/sysusers.d" / f"{stem}.conf", (contrib / f"{stem}.sysusers").read_bytes()),
            (root / "etc/tmpfiles.d" / f"{stem}.conf", (contrib / f"{stem}.tmpfiles").read_bytes()),
        ]
    return writes
