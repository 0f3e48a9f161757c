"""Defaults for the options a person types every time: ``--radio``, ``--trust``,
``--zone`` and ``--user``, from the environment and a config file.

Precedence: the option > its environment variable > the config file > the built-in
default. Click layers them already (command line, environment, default map, default):
each such option names its variable (``envvar=``, the constants below), and the config
file becomes click's default map, keyed by that variable, so the file feeds exactly the
options the environment does. The file is read only when one of its defaults is needed,
so a broken file does not stop ``bleprov --version``; when it is needed, a broken file is
one line naming it and the key, exit 2.

The file is TOML (``$XDG_CONFIG_HOME/bleprov/config.toml``, ``~/.config/bleprov/config.toml``
without it, or ``$BLEPROV_CONFIG``)::

    radio = "bumble:usb:0"
    trust = ["~/factory/root.pem"]   # or one path; relative paths are from this file
    zone = "~/hub"
    user = "alice"

No secrets: a key named like one (passphrase, password, code...) is refused, and so is
any key not listed here. Secrets come from environment variables, systemd credentials
or no-echo prompts.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bleprov.core.errors import BleprovError

if TYPE_CHECKING:
    from rich.console import Console
    from typer._click.core import Command, Context, Parameter

CONFIG_ENV = "BLEPROV_CONFIG"
RADIO_ENV = "BLEPROV_RADIO"
TRUST_ENV = "BLEPROV_TRUST"
ZONE_ENV = "BLEPROV_ZONE"
USER_ENV = "BLEPROV_USER"
#: Config key -> the environment variable that sets the same default.
KEYS = {"radio": RADIO_ENV, "trust": TRUST_ENV, "zone": ZONE_ENV, "user": USER_ENV}
#: Words that make a key a secret's name: refused with a reason, not as a typo.
SECRET_WORDS = ("passphrase", "password", "passwd", "secret", "token", "code", "printed_key")


class ConfigError(BleprovError):
    """The config file cannot be used (bad usage, exit 2): the message names the file and
    the key, never a value (a misplaced secret stays unprinted)."""


@dataclass(frozen=True)
class Config:
    """The config file's defaults, checked: strings, and paths made absolute."""

    path: Path
    found: bool
    values: dict[str, str | list[str]] = field(default_factory=dict)


def expand_home(value: str, refusal: str) -> Path:
    """``Path(value).expanduser()``, where ``~name`` of no user (or no home at all) is a
    ConfigError saying ``refusal`` (pathlib raises RuntimeError), never the value."""
    try:
        return Path(value).expanduser()
    except RuntimeError:
        raise ConfigError(refusal) from None


def config_path() -> Path:
    """``$BLEPROV_CONFIG``, else ``$XDG_CONFIG_HOME/bleprov/config.toml``, else
    ``~/.config/bleprov/config.toml``."""
    if named := os.environ.get(CONFIG_ENV):
        return expand_home(named, f"{CONFIG_ENV}: a '~' path of no home directory")
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "bleprov" / "config.toml"


def load_config(path: Path | None = None) -> Config:
    """Read and check the config file; a missing file at the default place is no config,
    one ``$BLEPROV_CONFIG`` names is an error (a typo would silently change nothing)."""
    from bleprov.core.toml_text import MAX_TOML_BYTES, TomlUnreadable, parse_toml

    path = path or config_path()
    try:
        with path.open("rb") as file:
            data = file.read(MAX_TOML_BYTES + 1)
    except FileNotFoundError:
        if os.environ.get(CONFIG_ENV):
            raise ConfigError(f"{path}: no such file ({CONFIG_ENV} names it)") from None
        return Config(path, found=False)
    except OSError as exc:
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        raise ConfigError(f"{path}: {reason} (check the config file's path)") from None
    try:
        table = parse_toml(data)
    except TomlUnreadable as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return Config(path, found=True, values=_checked(path, table))


def _checked(path: Path, table: dict[str, Any]) -> dict[str, str | list[str]]:
    values: dict[str, str | list[str]] = {}
    for key, value in table.items():
        if any(word in key.lower() for word in SECRET_WORDS):
            raise ConfigError(
                f"{path}: {key}: bleprov never reads a secret from its config file; give it "
                "in its environment variable or at the prompt (bleprov help environment)"
            )
        if key not in KEYS:
            raise ConfigError(f"{path}: unknown key {key!r} (known: {', '.join(KEYS)})")
        if key == "trust":
            paths = [value] if isinstance(value, str) else value
            if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
                raise ConfigError(f"{path}: trust: give a path or a list of paths (strings)")
            values[key] = [str(_resolve(path, key, p)) for p in paths]
        elif not isinstance(value, str) or not value:
            raise ConfigError(f"{path}: {key}: give a non-empty string")
        else:
            values[key] = str(_resolve(path, key, value)) if key == "zone" else value
    return values


def _resolve(config_file: Path, key: str, value: str) -> Path:
    """A path in the config file: ``~`` expanded, relative ones from the file's directory
    (not from wherever the command runs)."""
    candidate = expand_home(value, f"{config_file}: {key}: a '~' path of no home directory")
    return candidate if candidate.is_absolute() else config_file.parent / candidate


# ------------------------------------------------------------- click's default map


class _LazyConfig:
    """The config file, read on the first default asked of it, once."""

    def __init__(self) -> None:
        self._config: Config | None = None

    def get(self) -> Config:
        if self._config is None:
            self._config = load_config()
        return self._config


class _CommandDefaults(dict[str, Any]):
    """Click's default map for one command: its options that take a config key
    (parameter name -> key), looked up in the file only when click asks."""

    def __init__(self, keys: dict[str, str], config: _LazyConfig) -> None:
        super().__init__()
        self._keys = keys
        self._config = config

    def get(self, name: str, default: Any = None) -> Any:
        key = self._keys.get(name)
        if key is None:
            return default
        return self._config.get().values.get(key, default)


def config_key(param: Parameter) -> str | None:
    """The config key of an option that takes one: the one whose variable it reads."""
    envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
    return next((key for key, env in KEYS.items() if env in envvars), None)


def default_map(command: Command, config: _LazyConfig | None = None) -> dict[str, Any]:
    """Click's default map for ``command`` and its subcommands (set on the root context
    by the app's callback, before any subcommand parses its options)."""
    config = config or _LazyConfig()
    found: dict[str, Any] = {}
    for name, child in getattr(command, "commands", {}).items():
        if hasattr(child, "commands"):
            if nested := default_map(child, config):
                found[name] = nested
            continue
        keys = {p.name: key for p in child.params if p.name and (key := config_key(p))}
        if keys:
            found[name] = _CommandDefaults(keys, config)
    return found


def origin(ctx: Context, name: str) -> str:
    """Where an option's value came from, in words a person recognises."""
    from typer._click.core import ParameterSource

    source = ctx.get_parameter_source(name)
    param = next((p for p in ctx.command.params if p.name == name), None)
    key = config_key(param) if param is not None else None
    if source is ParameterSource.ENVIRONMENT and key is not None:
        return KEYS[key]
    if source is ParameterSource.DEFAULT_MAP and key is not None:
        return f"{key} in {config_path()}"
    return f"--{name.replace('_', '-')}"


def from_config_file(ctx: Context, name: str) -> bool:
    """Whether option ``name`` took its value from the config file."""
    from typer._click.core import ParameterSource

    return ctx.get_parameter_source(name) is ParameterSource.DEFAULT_MAP


def zone_default(
    ctx: Context, zone: Path | None, *, no_zone: bool, peer: bool, console: Console
) -> Path | None:
    """``provision``'s zone: a default one (environment, file) yields to ``--peer`` and
    ``--no-zone``, and is said, so nobody enrols into a zone they did not name unawares."""
    from typer._click.core import ParameterSource

    given = ctx.get_parameter_source("zone") is ParameterSource.COMMANDLINE
    if no_zone and given:
        raise typer.BadParameter("choose --zone or --no-zone, not both", param_hint="--no-zone")
    if zone is None or given:
        return zone
    if no_zone or peer:
        return None
    console.print(f"zone: {zone} (from {origin(ctx, 'zone')}; --no-zone for none)", markup=False)
    return zone


# ----------------------------------------------------------------------- commands

config_app = typer.Typer(
    help="The defaults of --radio, --trust, --zone, --user (bleprov help config).",
    no_args_is_help=True,
)


@config_app.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The effective defaults, each with where it comes from (environment, file, built in)."""
    from rich.markup import escape
    from rich.table import Table

    from bleprov.cli import console, err_console

    try:
        config = load_config()
    except ConfigError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    rows: list[dict[str, Any]] = []
    for key, env in KEYS.items():
        value: str | list[str] | None
        if env_value := os.environ.get(env):
            value = env_value.split(os.pathsep) if key == "trust" else env_value
            source = env
        elif key in config.values:
            value, source = config.values[key], "config file"
        else:
            value, source = BUILT_IN.get(key), "built in"
        rows.append({"key": key, "value": value, "from": source, "variable": env})
    if as_json:
        typer.echo(json.dumps({"file": str(config.path), "found": config.found, "defaults": rows}))
        return
    state = "" if config.found else " (not there: built-in defaults)"
    console.print(f"config file: {escape(str(config.path))}{state}", highlight=False)
    table = Table(box=None, pad_edge=False)
    for column in ("option", "default", "from", "variable"):
        table.add_column(column, overflow="fold")
    for row in rows:
        value = row["value"]
        shown = ", ".join(value) if isinstance(value, list) else (value or "(none)")
        table.add_row(f"--{row['key']}", escape(shown), row["from"], row["variable"])
    console.print(table)


#: What an option is when neither the environment nor the file sets it.
BUILT_IN: dict[str, str | list[str] | None] = {
    "radio": "system",
    "trust": None,
    "zone": None,
    "user": None,
}
