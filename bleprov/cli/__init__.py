"""The ``bleprov`` command line (typer + rich).

Exit codes: 0 success, 1 a bleprov error (the message says what to do), 2 bad usage,
130 interrupted.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from bleprov import __version__
from bleprov.cli.config import RADIO_ENV
from bleprov.cli.zone import zone_app
from bleprov.core.errors import BleprovError

if TYPE_CHECKING:
    import logging

    from bleprov.core.advertising import OobMode
    from bleprov.store.factory_files import IssuedDevice

T = TypeVar("T")

app = typer.Typer(
    name="bleprov",
    help="Bind a virgin IoT device to its owner over Bluetooth LE.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
linktest_app = typer.Typer(help="Check a radio path by echoing messages (no session, no secrets).")
radio_app = typer.Typer(help="Virtual radio tools for tests and demos without hardware.")
factory_app = typer.Typer(help="Factory tool: manufacturer CA, device identities, labels.")
device_app = typer.Typer(help="Commands run on the device itself.")
app.add_typer(linktest_app, name="linktest")
app.add_typer(radio_app, name="radio")
app.add_typer(factory_app, name="factory")
app.add_typer(device_app, name="device")
app.add_typer(zone_app, name="zone")

console = Console()
# Messages are lines a person copies (paths, commands): rich does not fold them at 80
# columns when stderr is no terminal; the terminal wraps them where it must.
err_console = Console(stderr=True, soft_wrap=True)

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
#: Whether this process has said why it ends with exit 130 (see :func:`main`).
_interrupt_reported = False


def report_interrupted(message: str = "interrupted") -> typer.Exit:
    """Ctrl-C: say so in one line (what it means, if anything) and exit 130."""
    global _interrupt_reported
    err_console.print(message)
    _interrupt_reported = True
    return typer.Exit(EXIT_INTERRUPTED)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; turn bleprov errors into a message and exit code 1."""
    import asyncio

    try:
        return asyncio.run(coro)
    except BleprovError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_ERROR) from None
    except KeyboardInterrupt:
        raise report_interrupted() from None


def check_radio(ctx: typer.Context, param: typer.CallbackParam, text: str | None) -> str | None:
    """``--radio`` checked as the options are parsed, before anything opens: a typo is
    bad usage (exit 2), not a failure after a scan. One from the config file names the
    file (click names the environment variable)."""
    from bleprov.cli.config import ConfigError, config_path, from_config_file
    from bleprov.radio.spec import RadioSpec, RadioSpecError

    if text is not None:
        try:
            RadioSpec.parse(text)
        except RadioSpecError as exc:
            if from_config_file(ctx, param.name or "radio"):
                raise ConfigError(f"{config_path()}: radio: {exc}") from None
            raise typer.BadParameter(str(exc)) from None
    return text


def parse_discriminator_option(text: str) -> int:
    """``--discriminator`` as typed: ``0x874`` (hex, as on the label) or decimal; anything
    else is bad usage (exit 2)."""
    from bleprov.core.advertising import parse_discriminator

    try:
        return parse_discriminator(text)
    except BleprovError as exc:
        raise typer.BadParameter(str(exc)) from None


#: How ``--discriminator`` reads in help texts.
DISCRIMINATOR_METAVAR = "0xNNN"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"bleprov {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    ctx: typer.Context,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            help="Log to stderr: -v what bleprov does (scanning, connecting, each step), "
            "-vv protocol events too (messages by type and size; never their contents), "
            "-vvv bleak's and bumble's own debug as well.",
        ),
    ] = 0,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    from bleprov.cli.config import default_map

    # The config file's defaults (bleprov help config), before any subcommand parses.
    ctx.default_map = ctx.default_map or default_map(ctx.command)
    configure_logging(verbose)


def configure_logging(verbosity: int) -> None:
    """Logging to stderr for ``verbosity`` times -v.

    bleprov's loggers log what it does at INFO and protocol events at DEBUG, never a
    secret. Libraries (bleak, bumble, aiomqtt) stay at WARNING below -vvv: their debug
    is radio traffic in bulk. Without -vv a record is one line (no traceback): a
    library logging a lost radio with its stack (bumble) reads as one line."""
    import logging

    logging.basicConfig(
        level=logging.DEBUG if verbosity >= 3 else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    # Without -v bleprov's loggers follow the root (WARNING), as a library's would.
    own = {0: logging.NOTSET, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    logging.getLogger("bleprov").setLevel(own)
    for handler in logging.getLogger().handlers:
        handler.removeFilter(_one_line)
        if verbosity < 2:
            handler.addFilter(_one_line)


def _one_line(record: logging.LogRecord) -> bool:
    """Log records without their traceback (a library logging a lost radio with its
    stack, e.g. bumble): one line a person reads; ``-vv`` keeps the stack."""
    record.exc_info = None
    record.exc_text = None
    record.stack_info = None
    return True


@app.command()
def version() -> None:
    """Print the bleprov version."""
    console.print(__version__)


def _mode_words() -> str:
    """The known pairing modes as the CLI lists them: "qr, code, ... or button"."""
    from bleprov.core.mode_bits import listed_names

    *first, last = listed_names()
    return f"{', '.join(first)} or {last}"


@app.command()
def demo(
    mode: Annotated[str, typer.Option(help=f"Out-of-band mode: {_mode_words()}.")] = "qr",
    mtu: Annotated[
        int, typer.Option(min=23, max=517, help="ATT MTU the host asks for (23..517).")
    ] = 247,
    interval_ms: Annotated[
        float, typer.Option(help="Model a connection interval (ms); 0 = no latency.")
    ] = 0.0,
    peer: Annotated[
        bool, typer.Option("--peer", help="Bind the device as a peer instead of a zone member.")
    ] = False,
) -> None:
    """Run bleprov end to end over the virtual radio, no hardware needed."""
    from bleprov.extras import MissingExtra, missing_extra

    try:
        from bleprov.cli.demo import run_demo
    except ImportError as exc:
        # The device, the host and the hub in one process: every extra, not just the
        # first one found missing.
        missing = missing_extra(exc)
        if missing is None:
            raise
        raise MissingExtra("all", missing.module) from None
    from bleprov.core.session.modes import registry

    if mode not in [engine.name for engine in registry.engines()]:
        err_console.print(f"[bold red]error:[/] unknown mode {mode!r}: use {_mode_words()}")
        raise typer.Exit(2)
    run(run_demo(console, mode=mode, mtu=mtu, interval_ms=interval_ms, peer=peer))


@linktest_app.command("serve")
def linktest_serve(
    radio: Annotated[
        str, typer.Option(help="Radio: bluez, or bumble:<transport>.", callback=check_radio)
    ],
    discriminator: Annotated[
        int | None,
        typer.Option(
            parser=parse_discriminator_option,
            metavar=DISCRIMINATOR_METAVAR,
            help="12-bit discriminator to advertise, 0x874 or decimal (random if omitted).",
        ),
    ] = None,
    name: Annotated[str, typer.Option(help="Local name in the scan response.")] = "bleprov",
) -> None:
    """Device side: advertise and echo every message until interrupted."""
    import secrets

    from bleprov.cli.linktest import serve

    disc = secrets.randbelow(4096) if discriminator is None else discriminator
    run(serve(console, radio, disc, name))


@linktest_app.command("run")
def linktest_run(
    radio: Annotated[
        str,
        typer.Option(
            envvar=RADIO_ENV,
            help="Radio: system, or bumble:<transport>.",
            callback=check_radio,
        ),
    ],
    discriminator: Annotated[
        int | None,
        typer.Option(
            parser=parse_discriminator_option,
            metavar=DISCRIMINATOR_METAVAR,
            help="Only a device with this discriminator (0x874, as on the label, or decimal).",
        ),
    ] = None,
    size: Annotated[list[int] | None, typer.Option(help="Message size (repeatable).")] = None,
    mtu: Annotated[
        int, typer.Option(min=23, max=517, help="ATT MTU to ask for (bumble radios).")
    ] = 517,
    timeout: Annotated[float, typer.Option(help="Seconds to find the device.")] = 10.0,
) -> None:
    """Host side: find a link-test device, echo messages, report time and frames."""
    from bleprov.cli.linktest import run_host

    run(run_host(console, radio, discriminator, size or [65536], mtu, timeout))


def _check_ports(text: str) -> str:
    """``radio hub --ports`` checked here, so a typo reads as this command's usage error."""
    import argparse

    from bleprov.radio.virtual import parse_ports

    try:
        parse_ports(text)
    except argparse.ArgumentTypeError as exc:
        raise typer.BadParameter(str(exc)) from None
    return text


@radio_app.command("hub")
def radio_hub(
    ports: Annotated[
        str,
        typer.Option(help="Comma-separated TCP ports, 0 = any free.", callback=_check_ports),
    ] = "0,0",
    interval_ms: Annotated[float, typer.Option(help="Model a connection interval (ms).")] = 0.0,
) -> None:
    """Serve virtual controllers over loopback TCP (one per port) until interrupted."""
    from bleprov.radio import virtual

    argv = ["hub", "--ports", ports]
    if interval_ms > 0:
        argv += ["--interval-ms", str(interval_ms)]
    raise typer.Exit(virtual.main(argv))


#: The largest passphrase a systemd credential file may hold.
MAX_CREDENTIAL_FILE = 4096


def service_secret(
    env: str, credential: str, prompt: str, *, error: type[BleprovError] = BleprovError
) -> bytes:
    """``env``, else systemd's credential ``credential`` (``$CREDENTIALS_DIRECTORY``, a
    private in-memory file a unit's LoadCredential= provides), else a no-echo prompt."""
    import os
    from pathlib import Path

    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if env not in os.environ and directory:
        path = Path(directory) / credential
        if path.is_file():
            with path.open("rb") as handle:
                data = handle.read(MAX_CREDENTIAL_FILE + 1)
            value = data.rstrip(b"\r\n")
            if not value or len(data) > MAX_CREDENTIAL_FILE:
                raise error(
                    f"the {credential} credential is empty or over {MAX_CREDENTIAL_FILE} "
                    "bytes: check the file LoadCredential= names"
                )
            return value
    return secret_input(env, prompt)


def secret_input(env: str, prompt: str, *, confirm: bool = False) -> bytes:
    """A passphrase from the environment or typed without echo; never from argv."""
    import os

    from bleprov.cli.prompts import ask

    value = os.environ.get(env)
    if value is None:
        if not sys.stdin.isatty():
            err_console.print(f"[bold red]error:[/] set {env} or run interactively")
            raise typer.Exit(EXIT_ERROR)
        value = str(ask(prompt, hide_input=True, confirmation_prompt=confirm))
    if not value:
        err_console.print(f"[bold red]error:[/] {env} is empty")
        raise typer.Exit(EXIT_ERROR)
    return value.encode()


@factory_app.command("init")
def factory_init(
    directory: Annotated[Path, typer.Option("--dir", help="Factory directory to create.")],
    name: Annotated[str, typer.Option(help="Manufacturer name in the certificates.")],
) -> None:
    """Create the manufacturer root and intermediate CA (passphrase: BLEPROV_FACTORY_PASSPHRASE)."""
    from bleprov.store.factory_files import init_manufacturer

    passphrase = secret_input("BLEPROV_FACTORY_PASSPHRASE", "Factory passphrase", confirm=True)
    try:
        manufacturer = init_manufacturer(directory, name, passphrase)
    except BleprovError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_ERROR) from None
    console.print(f"manufacturer {name!r} created in {directory}")
    console.print(
        f"root certificate: {directory / 'root.pem'} "
        f"(SHA-256 {manufacturer.root_fingerprint.hex()})"
    )


def parse_modes(modes: str) -> OobMode:
    """``qr,code,...`` as OobMode flags; an unknown word is bad usage (exit 2)."""
    from bleprov.core.advertising import OobMode
    from bleprov.core.mode_bits import mode_by_name

    flags = OobMode(0)
    for word in modes.split(","):
        try:
            flags |= mode_by_name(word)
        except KeyError:
            err_console.print(f"[bold red]error:[/] unknown mode {word!r}")
            raise typer.Exit(2) from None
    return flags


def issue_from_factory(
    directory: Path, out: Path, modes: str, *, scratch_card: bool
) -> IssuedDevice:
    """Issue one device from a factory directory, as ``factory device`` and ``label make`` do.

    Passphrases: BLEPROV_FACTORY_PASSPHRASE and BLEPROV_DEVICE_PASSPHRASE (or prompts).
    The factory passphrase is checked before the device passphrase is asked for (twice):
    a typo in the first is said at once, not after both were typed.
    """
    from bleprov.core.identity import IdentityError
    from bleprov.store.factory_files import issue_device, load_manufacturer

    flags = parse_modes(modes)
    try:
        try:
            manufacturer = load_manufacturer(
                directory, lambda: secret_input("BLEPROV_FACTORY_PASSPHRASE", "Factory passphrase")
            )
        except IdentityError as exc:
            raise IdentityError(
                f"the factory passphrase does not open {directory} ({exc}): type it "
                "again, or check BLEPROV_FACTORY_PASSPHRASE"
            ) from None
        device_pass = secret_input("BLEPROV_DEVICE_PASSPHRASE", "Device passphrase", confirm=True)
        return issue_device(manufacturer, out, device_pass, modes=flags, scratch_card=scratch_card)
    except BleprovError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_ERROR) from None


@factory_app.command("device")
def factory_device(
    directory: Annotated[Path, typer.Option("--dir", help="Factory directory.")],
    out: Annotated[Path, typer.Option(help="Where device directories go.")],
    modes: Annotated[
        str, typer.Option(help="Comma-separated: qr,code,compare,passkey,button.")
    ] = "qr,code",
    scratch_card: Annotated[bool, typer.Option(help="Also issue a user/password card.")] = False,
) -> None:
    """Issue a device identity, its secrets and its label.

    Passphrases: BLEPROV_FACTORY_PASSPHRASE and BLEPROV_DEVICE_PASSPHRASE (or prompts).
    """
    from bleprov.core.advertising import format_discriminator

    issued = issue_from_factory(directory, out, modes, scratch_card=scratch_card)
    console.print(
        f"device {issued.device_id}, discriminator "
        f"{format_discriminator(issued.label.payload.discriminator)}: {issued.directory}",
        highlight=False,
    )
    console.print(
        f"label: {issued.directory / 'label.txt'} (keep it with the device; it is secret)"
    )


@device_app.command("factory-reset")
def device_factory_reset(
    store: Annotated[Path, typer.Option(help="The device's store directory.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Forget Wi-Fi, zone, owner and attempt counters; keep the factory identity.

    A physical action: it runs on the device (its shell or its reset button), never
    over the air. Remotely only the bound owner can ask for it, over a secure session.
    """
    from bleprov.store.device_store import STORE_FILE_NAME, DeviceStore

    if not (store / STORE_FILE_NAME).exists():
        err_console.print(
            f"[bold red]error:[/] no device store in {escape(str(store))}: nothing to reset "
            "(check --store)"
        )
        raise typer.Exit(EXIT_ERROR)
    if not yes and not sys.stdin.isatty():
        raise typer.BadParameter("no terminal to confirm on: give --yes", param_hint="--yes")
    from bleprov.cli.prompts import ask_yes_no

    if not yes and not ask_yes_no(f"Factory-reset the device store in {store}?", default=False):
        raise typer.Exit(EXIT_ERROR)
    try:
        DeviceStore.open(store).factory_reset()
    except BleprovError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_ERROR) from None
    console.print("factory reset done: the device is back to its factory state")


from bleprov.cli.completion import completion  # noqa: E402
from bleprov.cli.config import config_app  # noqa: E402
from bleprov.cli.label import label_app  # noqa: E402  (it uses the helpers above)
from bleprov.cli.topics import help_command  # noqa: E402

app.add_typer(config_app, name="config")
app.command("help")(help_command)
app.command("completion")(completion)

app.add_typer(label_app, name="label")

from bleprov.cli.host import register as _register_host_commands  # noqa: E402

_register_host_commands(app)
from bleprov.cli import device as _device_commands  # noqa: E402, F401  (registers device init/serve)
from bleprov.cli.contrib import contrib_app  # noqa: E402

app.add_typer(contrib_app, name="contrib")

#: pydantic's wording, which typer passes through for a value it cannot convert.
_PYDANTIC_WORDS = re.compile(r"^Input should be (?:a valid |an? )?(?P<what>[^,]+?)(?:,.*)?$")


def plain_words(message: str) -> str:
    """A conversion error in words: "Input should be a valid integer, unable to parse
    string as an integer" (pydantic, through typer) reads "give a whole number"."""
    message = message.strip().removeprefix("Value error, ")
    match = _PYDANTIC_WORDS.match(message)
    if match is None:
        return message
    what = match.group("what")
    if not message.startswith("Input should be a valid "):
        return f"it should be {what}"
    return {"integer": "give a whole number", "number": "give a number"}.get(
        what, f"give a valid {what}"
    )


def resolve_annotations(typer_app: typer.Typer) -> None:
    """Evaluate the commands' annotations once, before typer builds the command line.

    Under ``from __future__ import annotations`` they are strings, which typer compiles
    and evaluates twice for each parameter (``inspect.signature``, then
    ``get_type_hints``): done here once, a start costs 0.03 to 0.05 s less, every command
    and ``--help`` alike (docs/performance.md, section 8)."""
    import typing

    infos = [*typer_app.registered_commands, typer_app.registered_callback]
    for info in infos:
        function = None if info is None else info.callback
        if function is not None:
            function.__annotations__ = typing.get_type_hints(function, include_extras=True)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            resolve_annotations(group.typer_instance)


def main() -> None:
    """``bleprov``: typer runs the command; its usage errors are shown in words (exit 2),
    and a file or directory the system refuses is one line (exit 1), never a traceback."""
    from typer._click.exceptions import ClickException

    resolve_annotations(app)
    from bleprov.cli.completion import prepare as prepare_completion
    from bleprov.cli.config import ConfigError

    prepare_completion()
    try:
        # prog_name: ``python -m bleprov`` is bleprov too (its usage lines, and the
        # _BLEPROV_COMPLETE variable shell completion sets).
        code = app(standalone_mode=False, prog_name="bleprov")
        # typer turns a KeyboardInterrupt it sees into exit 130, silently (a prompt
        # outside the event loop, a sync command): the one line is said here.
        if code == EXIT_INTERRUPTED and not _interrupt_reported:
            err_console.print("interrupted")
    except ConfigError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(2)
    except ClickException as exc:
        from typer import rich_utils  # 0.05 s of markdown parsing: only for a message

        exc.message = plain_words(exc.message)
        rich_utils.rich_format_error(exc)
        sys.exit(exc.exit_code)
    except typer.Abort:
        from typer import rich_utils

        rich_utils.rich_abort_error()
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except OSError as exc:
        err_console.print(f"[bold red]error:[/] {escape(describe_os_error(exc))}")
        sys.exit(EXIT_ERROR)
    except ImportError as exc:
        from bleprov.extras import missing_extra

        # A command whose optional extra is not installed: the pip install that brings it.
        missing = missing_extra(exc)
        if missing is None:
            raise
        err_console.print(f"[bold red]error:[/] {escape(str(missing))}")
        sys.exit(EXIT_ERROR)
    sys.exit(code if isinstance(code, int) else 0)


def describe_os_error(exc: OSError) -> str:
    """A file the system refused, in one line: which, why, and what to check."""
    reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{reason} (check the path and its permissions)"
