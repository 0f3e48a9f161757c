"""``bleprov zone``: the hub's zone CA, its registry of devices and users, its audit log.

Passphrases come from the environment or a no-echo prompt, never from argv:
``BLEPROV_ZONE_PASSPHRASE`` (the zone CA's keys; under systemd also the credential
``zone-passphrase``, see contrib/bleprov-hub.service), ``BLEPROV_USER_PASSPHRASE`` (the acting
user's passphrase, or their key file's passphrase with ``--user-key``) and
``BLEPROV_NEW_USER_PASSPHRASE`` (``zone user add``). Read-only commands (list, show, user
list, audit) open only the registry and need no passphrase. Store imports are deferred so
that other ``bleprov`` commands do not pay for SQLAlchemy.

``zone serve`` is the hub as a service: CRLs and certificate renewal for the zone's
members over validated connections, until SIGTERM or SIGINT.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

import bleprov.cli as cli
from bleprov.cli.config import USER_ENV, ZONE_ENV
from bleprov.cli.output import print_table
from bleprov.core.errors import BleprovError

if TYPE_CHECKING:
    from rich.table import Table

    from bleprov.core.window import WindowCode, WindowPurpose
    from bleprov.store.hub_files import Hub
    from bleprov.store.registry import AuditEntry, Device, Registry, User

zone_app = typer.Typer(
    help="The hub's zone: CA, registry of devices and users, audit log.", no_args_is_help=True
)
user_app = typer.Typer(
    help="Hub users: admins enrol and revoke, members own devices.", no_args_is_help=True
)
zone_app.add_typer(user_app, name="user")

ZONE_PASSPHRASE_ENV = "BLEPROV_ZONE_PASSPHRASE"  # noqa: S105 (a variable name)
USER_PASSPHRASE_ENV = "BLEPROV_USER_PASSPHRASE"  # noqa: S105
NEW_USER_PASSPHRASE_ENV = "BLEPROV_NEW_USER_PASSPHRASE"  # noqa: S105
#: The systemd credential (LoadCredential=) holding the zone passphrase (zone serve).
ZONE_PASSPHRASE_CREDENTIAL = "zone-passphrase"  # noqa: S105 (a file name, not a secret)


class RoleChoice(StrEnum):
    """The registry's roles, without importing the registry at CLI start."""

    ADMIN = "admin"
    MEMBER = "member"


HubDir = Annotated[
    Path,
    typer.Option(
        "--dir",
        envvar=["BLEPROV_HUB_DIR", ZONE_ENV],
        help="Hub directory (default: $BLEPROV_HUB_DIR, $BLEPROV_ZONE, zone in the config).",
    ),
]
RegistryUrl = Annotated[
    str | None,
    typer.Option(
        "--registry-url",
        help="Registry database URL, overriding hub.toml, e.g. "
        "postgresql+psycopg://hub@db.example/bleprov (no password: use ~/.pgpass or PGPASSWORD).",
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ActingUser = Annotated[str, typer.Option("--user", envvar=USER_ENV, help="The admin doing this.")]
UserKey = Annotated[
    Path | None,
    typer.Option(
        "--user-key",
        help="Authenticate with a zone-issued credential: a directory holding user.key.pem "
        "and user.cert.pem (its passphrase: BLEPROV_USER_PASSPHRASE).",
    ),
]


# ------------------------------------------------------------------------ helpers


@contextmanager
def _errors() -> Iterator[None]:
    """bleprov errors become one red line (what went wrong, what to do) and exit code 1."""
    try:
        yield
    except BleprovError as exc:
        cli.err_console.print(f"[bold red]error:[/] {escape(str(exc))}{_hint(exc)}")
        raise typer.Exit(cli.EXIT_ERROR) from None


def _hint(exc: BleprovError) -> str:
    """What to do next, for the registry's errors whose text says only what went wrong."""
    from bleprov.store.registry import (
        AuthenticationFailed,
        DuplicateUser,
        NotAuthorized,
        UnknownDevice,
        UnknownUser,
    )

    hints: list[tuple[type[BleprovError], str]] = [
        (AuthenticationFailed, "check --user and BLEPROV_USER_PASSPHRASE (or --user-key)"),
        (NotAuthorized, "ask an admin to do this"),
        (UnknownDevice, "`bleprov zone list` shows the enrolled devices"),
        (UnknownUser, "`bleprov zone user list` shows the users"),
        (DuplicateUser, "choose another name"),
    ]
    for kind, hint in hints:
        if isinstance(exc, kind):
            return f": {hint}"
    return ""


@contextmanager
def _step(text: str) -> Iterator[None]:
    """A spinner on stderr while a slow step (scrypt) runs."""
    with cli.err_console.status(text):
        yield


def _zone_passphrase() -> bytes:
    """BLEPROV_ZONE_PASSPHRASE, else systemd's credential ``zone-passphrase``
    (``$CREDENTIALS_DIRECTORY``, a private in-memory file), else a no-echo prompt."""
    from bleprov.store.hub_files import HubError

    return cli.service_secret(
        ZONE_PASSPHRASE_ENV, ZONE_PASSPHRASE_CREDENTIAL, "Zone passphrase", error=HubError
    )


def open_hub(directory: Path, registry_url: str | None) -> Hub:
    from bleprov import Hub

    passphrase = _zone_passphrase()
    with _step("opening the zone (scrypt)"):
        return Hub.open(directory, passphrase, registry_url=registry_url)


def _open_registry(directory: Path, registry_url: str | None) -> Registry:
    from bleprov.store.hub_files import open_registry

    return open_registry(directory, registry_url=registry_url)


def authenticate_user(
    hub: Hub | None, registry: Registry, name: str, user_key: Path | None
) -> User:
    """The acting user, by passphrase or by zone-issued key (which needs the opened hub)."""
    from bleprov.store.hub_files import USER_CERT_FILE, USER_KEY_FILE, HubError

    if user_key is None:
        passphrase = cli.secret_input(USER_PASSPHRASE_ENV, f"Passphrase of {name}").decode()
        with _step(f"checking {name}'s passphrase (scrypt)"):
            return registry.authenticate(name, passphrase)
    assert hub is not None
    try:
        key_pem = (user_key / USER_KEY_FILE).read_bytes()
        cert_pem = (user_key / USER_CERT_FILE).read_bytes()
    except OSError as exc:
        raise HubError(
            f"cannot read {exc.filename}: --user-key names a directory holding "
            f"{USER_KEY_FILE} and {USER_CERT_FILE}"
        ) from None
    key_passphrase = cli.secret_input(USER_PASSPHRASE_ENV, f"Key passphrase of {name}")
    with _step(f"checking {name}'s key and certificate"):
        return hub.authenticate_key(name, key_pem, key_passphrase, cert_pem)


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _device_json(device: Device) -> dict[str, Any]:
    return {
        "device_id": device.device_id,
        "owner": device.owner,
        "enrolled_by": device.enrolled_by,
        "enrolled_at": _time(device.enrolled_at),
        "status": str(device.status),
        "certificate_serial": format(device.certificate_serial, "x"),
        "certificate_not_after": _time(device.certificate_not_after),
        "manufacturer_root": device.manufacturer_root,
    }


def _audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": _time(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "subject": entry.subject,
        "detail": entry.detail,
    }


def _table(*columns: str) -> Table:
    """A plain table that folds long values (serials) instead of cutting them short."""
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _print_audit(entries: list[AuditEntry]) -> None:
    table = _table("at", "actor", "action", "subject", "detail")
    for entry in entries:
        table.add_row(
            _time(entry.at),
            escape(entry.actor or "(hub)"),
            entry.action,
            escape(entry.subject),
            escape(entry.detail),
        )
    print_table(cli.console, table)


# ----------------------------------------------------------------------- commands


@zone_app.command("init")
def zone_init(
    directory: HubDir,
    name: Annotated[str, typer.Option(help="Zone name in its certificates (1-32 ASCII).")],
    admin: Annotated[str, typer.Option("--admin", help="Name of the first admin user.")],
    registry_url: RegistryUrl = None,
) -> None:
    """Create a hub: zone root and issuing CA, registry, first admin.

    Passphrases: BLEPROV_ZONE_PASSPHRASE (the zone's keys) and BLEPROV_USER_PASSPHRASE (the
    admin's), or prompts.
    """
    from bleprov.core.crypto import pki
    from bleprov.store.hub_files import Hub

    zone_passphrase = cli.secret_input(ZONE_PASSPHRASE_ENV, "Zone passphrase", confirm=True)
    admin_passphrase = cli.secret_input(
        USER_PASSPHRASE_ENV, f"Passphrase of {admin}", confirm=True
    ).decode()
    with _errors():
        with _step("creating the zone and its registry (scrypt)"):
            hub = Hub.init(
                directory,
                name=name,
                zone_passphrase=zone_passphrase,
                admin=admin,
                admin_passphrase=admin_passphrase,
                now=datetime.now(UTC),
                registry_url=registry_url,
            )
        with hub:
            fingerprint = pki.fingerprint(hub.zone.root_certificate).hex()
            cli.console.print(f"zone {escape(name)!r} ({hub.ca.zone_id}) created in {directory}")
            cli.console.print(f"root certificate: {directory / 'root.pem'} (SHA-256 {fingerprint})")
            cli.console.print(f"first admin: {escape(admin)}")


@zone_app.command("list")
def zone_list(
    directory: HubDir, registry_url: RegistryUrl = None, as_json: JsonFlag = False
) -> None:
    """List enrolled and revoked devices."""
    with _errors(), _open_registry(directory, registry_url) as registry:
        devices = registry.devices()
    if as_json:
        _echo_json([_device_json(d) for d in devices])
        return
    if not devices:
        cli.console.print("no devices enrolled yet")
        return
    table = _table("device", "owner", "enrolled by", "enrolled at", "status", "serial", "expires")
    for device in devices:
        row = _device_json(device)
        table.add_row(
            *(
                escape(row[k])
                for k in (
                    "device_id",
                    "owner",
                    "enrolled_by",
                    "enrolled_at",
                    "status",
                    "certificate_serial",
                    "certificate_not_after",
                )
            )
        )
    print_table(cli.console, table)


@zone_app.command("show")
def zone_show(
    device_id: Annotated[str, typer.Argument(metavar="DEVICE", help="Device ID.")],
    directory: HubDir,
    registry_url: RegistryUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Show one device's record and its audit entries."""
    with _errors(), _open_registry(directory, registry_url) as registry:
        device = registry.device(device_id)
        entries = registry.audit(subject=device_id)
    if as_json:
        _echo_json({**_device_json(device), "audit": [_audit_json(e) for e in entries]})
        return
    for key, value in _device_json(device).items():
        shown = "not recorded" if value is None else escape(value)
        cli.console.print(f"{key.replace('_', ' ')}: {shown}")
    _print_audit(entries)


@zone_app.command("revoke")
def zone_revoke(
    device_id: Annotated[str, typer.Argument(metavar="DEVICE", help="Device ID.")],
    directory: HubDir,
    user: ActingUser,
    user_key: UserKey = None,
    registry_url: RegistryUrl = None,
) -> None:
    """Revoke a device's certificates and publish a new CRL (admins only)."""
    with _errors(), open_hub(directory, registry_url) as hub:
        actor = authenticate_user(hub, hub.registry, user, user_key)
        serials = hub.revoke(device_id, actor=actor, now=datetime.now(UTC))
        if serials:
            listed = ", ".join(format(s, "x") for s in serials)
            cli.console.print(f"revoked {escape(device_id)}: serial(s) {listed}")
        else:
            cli.console.print(
                f"{escape(device_id)} had no valid certificate left (already revoked)"
            )
        cli.console.print(
            f"CRL {hub.ca.crl_number} written to {hub.directory / 'crl.pem'}: "
            "give it to the zone's members"
        )


@zone_app.command("open-window")
def zone_open_window(
    device_id: Annotated[str, typer.Argument(metavar="DEVICE", help="Device ID (a member).")],
    directory: HubDir,
    user: ActingUser,
    address: Annotated[str, typer.Option(help="The device's validated-connection HOST:PORT.")],
    purpose: Annotated[
        str,
        typer.Option(
            help="admin: one more host may bind to the device as an admin; handover: the "
            "device leaves the zone for whoever has the code."
        ),
    ] = "admin",
    minutes: Annotated[float, typer.Option(help="How long the window stays open.")] = 10,
    user_key: UserKey = None,
    registry_url: RegistryUrl = None,
) -> None:
    """As the zone (the owner of its members): let one more host in, with a one-time code
    (admins only). The hub connects to the device with its hub certificate."""
    from bleprov.core.window import WindowError, WindowPurpose, window_seconds
    from bleprov.service.device_daemon import DaemonConfigError, parse_endpoint

    try:
        host, port = parse_endpoint(address)
        chosen, seconds = WindowPurpose.parse(purpose), window_seconds(minutes)
    except (DaemonConfigError, WindowError) as exc:
        cli.err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    with _errors(), open_hub(directory, registry_url) as hub:
        actor = authenticate_user(hub, hub.registry, user, user_key)
        hub.registry.require_admin(actor)
        import asyncio

        code = asyncio.run(_open_member_window(hub, device_id, host, port, chosen, seconds))
        cli.console.print(
            f"window open for {seconds // 60} min on {escape(device_id)} ({purpose}).\n"
            f"  code: [bold]{code.formatted()}[/]\n"
            "Give it only to the person setting up the new host; it works once, closes "
            "after 5 wrong codes, and closes when it expires."
        )


async def _open_member_window(
    hub: Hub, device_id: str, host: str, port: int, purpose: WindowPurpose, seconds: int
) -> WindowCode:
    from bleprov.service.trust import open_window
    from bleprov.service.zone_hub import hub_server_credentials
    from bleprov.tls.connection import open_member_connection

    now = datetime.now(UTC)
    credentials = hub_server_credentials(hub, now=now)
    async with await open_member_connection(
        host, port, credentials, crl_der=hub.crl(now=now), expect_device=device_id
    ) as connection:
        return await open_window(connection, purpose=purpose, seconds=seconds)


@zone_app.command("serve")
def zone_serve(
    directory: HubDir,
    listen: Annotated[
        str,
        typer.Option(help="HOST:PORT to serve the zone's members on (port 0: any free port)."),
    ] = "0.0.0.0:8444",
    registry_url: RegistryUrl = None,
) -> None:
    """Run the hub: CRLs and certificate renewal for the zone's members (bleprov device
    serve --hub HOST:8444), until SIGTERM or SIGINT.

    TLS identity: a hub certificate for a key made at start and kept in memory only,
    re-issued every 12 h. Zone passphrase: BLEPROV_ZONE_PASSPHRASE, systemd's credential
    zone-passphrase, or a prompt. Prints one `ready: ...` line ending with the address it
    listens on, and tells systemd READY=1 (Type=notify; WATCHDOG=1 pings when WatchdogSec=
    is set).
    """
    from bleprov.service.device_daemon import DaemonConfigError, parse_endpoint

    try:
        host, port = parse_endpoint(listen)
    except DaemonConfigError as exc:
        cli.err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    import asyncio

    with _errors(), open_hub(directory, registry_url) as hub:
        try:
            asyncio.run(_serve_hub(hub, host, port))
        except OSError as exc:
            from bleprov.store.hub_files import HubError

            raise HubError(
                f"cannot listen on {listen} ({exc.strerror or exc}): is another hub running "
                "there? choose another --listen"
            ) from None


def _emit(line: str) -> None:
    """Event lines on stdout, whole and at once (tests and the journal read them)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _serve_hub(hub: Hub, host: str, port: int) -> None:
    import asyncio
    import signal

    from bleprov import run_hub
    from bleprov.service.systemd import notify, watchdog

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with watchdog():  # systemd's WatchdogSec=: pinged from this loop
        await run_hub(hub, host, port, stop=stop, emit=_emit, notify=notify)


@zone_app.command("export")
def zone_export(
    directory: HubDir,
    out: Annotated[Path, typer.Option(help="Directory for root.pem and a fresh crl.pem.")],
    registry_url: RegistryUrl = None,
) -> None:
    """Export the zone root and a freshly signed CRL (passphrase: BLEPROV_ZONE_PASSPHRASE)."""
    from bleprov.store.files import write_atomic
    from bleprov.store.hub_files import CRL_FILE, ROOT_FILE

    with _errors(), open_hub(directory, registry_url) as hub:
        hub.crl(now=datetime.now(UTC))
        for name in (ROOT_FILE, CRL_FILE):
            write_atomic(out / name, (hub.directory / name).read_bytes(), mode=0o644)
        cli.console.print(f"{out / ROOT_FILE}: zone root ({hub.ca.zone_id})")
        cli.console.print(f"{out / CRL_FILE}: CRL {hub.ca.crl_number}")


@zone_app.command("audit")
def zone_audit(
    directory: HubDir,
    device: Annotated[str | None, typer.Option(help="Only this device's entries.")] = None,
    registry_url: RegistryUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Print the audit log, oldest first."""
    with _errors(), _open_registry(directory, registry_url) as registry:
        entries = registry.audit(subject=device)
    if as_json:
        _echo_json([_audit_json(e) for e in entries])
    else:
        _print_audit(entries)


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The new user's name.")],
    directory: HubDir,
    role: Annotated[RoleChoice, typer.Option(help="admin or member.")],
    user: ActingUser,
    user_key: UserKey = None,
    key_out: Annotated[
        Path | None,
        typer.Option(
            "--key-out",
            help="Issue a zone credential instead of a passphrase: writes user.key.pem "
            "(encrypted with the new passphrase) and user.cert.pem here.",
        ),
    ] = None,
    registry_url: RegistryUrl = None,
) -> None:
    """Add a user (admins only). New passphrase: BLEPROV_NEW_USER_PASSPHRASE or a prompt."""
    from bleprov.store.files import write_atomic
    from bleprov.store.hub_files import USER_CERT_FILE, USER_KEY_FILE, HubError
    from bleprov.store.registry import Role

    with _errors():
        if key_out is not None:
            for file in (USER_KEY_FILE, USER_CERT_FILE):
                if (key_out / file).exists():
                    raise HubError(f"{key_out / file} exists; choose another --key-out directory")
        needs_zone = key_out is not None or user_key is not None
        hub = open_hub(directory, registry_url) if needs_zone else None
        registry = hub.registry if hub is not None else _open_registry(directory, registry_url)
        try:
            actor = authenticate_user(hub, registry, user, user_key)
            registry.require_admin(actor)
            new_passphrase = cli.secret_input(
                NEW_USER_PASSPHRASE_ENV, f"New passphrase of {name}", confirm=True
            )
            if hub is None or key_out is None:
                with _step(f"adding {name} (scrypt)"):
                    registry.add_user(
                        name, Role(role.value), passphrase=new_passphrase.decode(), actor=actor
                    )
                cli.console.print(f"user {escape(name)} added ({role.value}, passphrase)")
                return
            with _step(f"issuing {name}'s key and certificate"):
                key_pem, cert_pem = hub.issue_user_credential(
                    name,
                    Role(role.value),
                    actor=actor,
                    key_passphrase=new_passphrase,
                    now=datetime.now(UTC),
                )
            write_atomic(key_out / USER_KEY_FILE, key_pem, mode=0o600)
            write_atomic(key_out / USER_CERT_FILE, cert_pem, mode=0o644)
            cli.console.print(f"user {escape(name)} added ({role.value}, zone credential)")
            cli.console.print(
                f"{key_out / USER_KEY_FILE} (encrypted) and {key_out / USER_CERT_FILE}: "
                f"give them to {escape(name)}; they sign in with --user-key {key_out}"
            )
        finally:
            registry.close()


@user_app.command("list")
def user_list(
    directory: HubDir, registry_url: RegistryUrl = None, as_json: JsonFlag = False
) -> None:
    """List the hub's users."""
    with _errors(), _open_registry(directory, registry_url) as registry:
        users = registry.users()
    rows = [
        {
            "name": u.name,
            "role": str(u.role),
            "credential": str(u.credential_kind),
            "created_at": _time(u.created_at),
            "disabled": u.disabled,
        }
        for u in users
    ]
    if as_json:
        _echo_json(rows)
        return
    table = _table("name", "role", "credential", "created at", "status")
    for row in rows:
        table.add_row(
            escape(str(row["name"])),
            str(row["role"]),
            str(row["credential"]),
            str(row["created_at"]),
            "disabled" if row["disabled"] else "enabled",
        )
    print_table(cli.console, table)
