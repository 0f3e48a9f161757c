"""No user error ever prints a traceback (issue 13): every command, with bad input.

Each command of the typer app (enumerated from it, so a new command cannot be forgotten)
runs as its own process with stdin closed and secrets only in the environment: ``--help``,
then the bad inputs it takes (a bad option value, a missing argument, an unreadable file,
a radio nobody answers). Each must exit with the code README.md's "Exit codes" table gives
and print a short message: no traceback, no Python repr, no secret from the environment.

The processes are forked from one that imported the CLI once (tests/cli_fork.py): a
hundred fresh interpreters would take minutes on a small machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer.main

from bleprov.cli import app
from tests.processes import SECRETS

pytestmark = pytest.mark.multiprocess

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_NETWORK = ROOT / "bleprov/network/simulated_example.toml"
#: A TCP port nothing listens on (bumble's tcp-client is refused at once).
DEAD = "bumble:tcp-client:127.0.0.1:1"
#: Wrong secrets: they must not be echoed either.
WRONG = {
    "BLEPROV_FACTORY_PASSPHRASE": "wrong factory secret 7731",
    "BLEPROV_DEVICE_PASSPHRASE": "wrong device secret 7732",
    "BLEPROV_ZONE_PASSPHRASE": "wrong zone secret 7733",
    "BLEPROV_USER_PASSPHRASE": "wrong user secret 7734",
}
#: What the messages of a dead bumble radio and a missing BlueZ say to check.
HUB, BT = "bleprov radio hub", "systemctl status"
#: An environment value that removes the variable (a secret not given at all).
UNSET = "<unset>"
OK, ERROR, USAGE, NOT_FOUND, AUTHENTICATION, WIFI, INTERRUPTED = 0, 1, 2, 3, 4, 5, 130


@dataclass(frozen=True)
class Case:
    """``bleprov ARGS`` must exit ``code``; ``{tmp}``, ``{store}``, ``{device}``,
    ``{label}``, ``{root}``, ``{network}`` (simulated Wi-Fi), ``{dead}`` (a bumble
    radio nobody answers) and ``{bus}`` (a D-Bus with no BlueZ on it) in ARGS or ENV
    name the module's fixtures."""

    why: str
    args: tuple[str, ...]
    code: int
    env: dict[str, str] = field(default_factory=dict)
    says: str = ""  # in the message, when the code alone does not tell which error


#: Broken config files (bleprov help config), by name in the module's directory.
CONFIG_FILES = {
    "config-broken.toml": "radio = [\n",
    "config-secret.toml": 'passphrase = "hunter2 in a config file"\n',
    "config-unknown.toml": 'raido = "system"\n',
    "config-radio.toml": 'radio = "carrier-pigeon"\n',
    "config-type.toml": "radio = 3\n",
    # Issue 15, F6: RecursionError escaped tomllib (a traceback).
    "config-deep.toml": "radio = " + "[" * 5000 + "\n",
}


def C(why: str, code: int, args: str, says: str = "", **env: str) -> Case:
    """A row of the table: ``args`` split on spaces (no fixture path has one)."""
    return Case(why, tuple(args.split()), code, env, says)


#: Bad inputs per command. Every command the app has must appear (test_every_command...).
CASES: dict[str, list[Case]] = {
    "version": [C("unknown option", USAGE, "--bogus")],
    "help": [
        C("unknown topic", USAGE, "exitcodes", says="no help topic"),
        C("unknown command", USAGE, "zone nope", says="no help topic"),
    ],
    "completion": [
        C("unknown shell", USAGE, "tcsh"),
        C("missing shell", USAGE, ""),
    ],
    "config show": [
        C("config file not TOML", USAGE, "", BLEPROV_CONFIG="{tmp}/config-broken.toml",
          says="config-broken.toml: not valid TOML"),
        C("a secret in the config file", USAGE, "", BLEPROV_CONFIG="{tmp}/config-secret.toml",
          says="passphrase: bleprov never reads a secret"),
        C("unknown key in the config file", USAGE, "",
          BLEPROV_CONFIG="{tmp}/config-unknown.toml", says="unknown key 'raido'"),
        C("config file named but missing", USAGE, "", BLEPROV_CONFIG="{tmp}/missing.toml",
          says="no such file"),
        C("config file is a directory", USAGE, "", BLEPROV_CONFIG="{tmp}", says=""),
        C("config file nested too deeply", USAGE, "", BLEPROV_CONFIG="{tmp}/config-deep.toml",
          says="config-deep.toml: not valid TOML: nested too deeply"),
    ],
    "demo": [
        C("unknown mode", USAGE, "--mode nope"),
        C("MTU out of range", USAGE, "--mtu 5", says="--mtu"),
        C("MTU not a number", USAGE, "--mtu many"),
    ],
    "scan": [
        C("no system bus", ERROR, "--timeout 1", says=BT),
        C("no BlueZ on the system bus", ERROR, "--timeout 1", DBUS_SYSTEM_BUS_ADDRESS="{bus}",
          says=BT),
        C("bumble radio nobody answers", ERROR, "--radio {dead} --timeout 1", says=HUB),
        C("unknown radio", USAGE, "--radio carrier-pigeon"),
        C("not a BlueZ adapter's name", USAGE, "--radio system:wlan0", says="adapter"),
        C("an adapter, and no system bus", ERROR, "--radio system:hci7 --timeout 1", says=BT),
        C("timeout not a number", USAGE, "--timeout soon"),
        C("unknown radio in BLEPROV_RADIO", USAGE, "--timeout 1",
          BLEPROV_RADIO="carrier-pigeon", says="BLEPROV_RADIO"),
        C("unknown radio in the config file", USAGE, "--timeout 1",
          BLEPROV_CONFIG="{tmp}/config-radio.toml", says="config-radio.toml: radio:"),
        C("radio of the wrong type in the config file", USAGE, "--timeout 1",
          BLEPROV_CONFIG="{tmp}/config-type.toml", says="radio: give a non-empty string"),
        C("negative timeout, before any radio", USAGE, "--radio {dead} --timeout -1",
          says="--timeout"),
        C("timeout not a finite number", USAGE, "--radio {dead} --timeout nan", says="--timeout"),
    ],
    "provision": [
        C("MTU out of range, before any radio", USAGE,
          "--radio {dead} --qr-file {label} --trust {root} --no-wifi --mtu 5", says="--mtu"),
        C("unknown radio", USAGE, "--radio carrier-pigeon --qr-file {label}"),
        C("unreadable label file", ERROR,
          "--radio {dead} --qr-file {tmp}/missing --trust {root} --peer --no-wifi"),
        C("a label file that is no label", ERROR,
          "--radio {dead} --qr-file {tmp}/garbage --trust {root} --peer --no-wifi"),
        C("no trusted root, before the code is asked for", USAGE,
          "--radio {dead} --manual-code --peer --no-wifi", BLEPROV_MANUAL_CODE=UNSET,
          says="--trust"),
        C("a discriminator the manual code disagrees with, before any radio", ERROR,
          "--radio {dead} --manual-code --discriminator 0x123 --trust {root} --peer --no-wifi",
          BLEPROV_MANUAL_CODE="6048-6137-020", says="does not agree"),
        C("bad Wi-Fi security", USAGE, "--radio {dead} --qr-file {label} --wifi-security wep"),
        C("--wifi-hidden without --wifi-ssid, before any radio", USAGE,
          "--radio {dead} --qr-file {label} --trust {root} --peer --wifi-hidden",
          says="--wifi-ssid"),
        C("bumble radio nobody answers", ERROR,
          "--radio {dead} --qr-file {label} --trust {root} --peer --no-wifi --timeout 1",
          says=HUB),
        C("no system bus", ERROR,
          "--qr-file {label} --trust {root} --peer --no-wifi --timeout 1", says=BT),
        C("no BlueZ on the system bus", ERROR,
          "--qr-file {label} --trust {root} --peer --no-wifi --timeout 1",
          DBUS_SYSTEM_BUS_ADDRESS="{bus}", says=BT),
        C("no trusted root", USAGE, "--radio {dead} --qr-file {label} --peer --no-wifi"),
        C("unreadable trust root", ERROR,
          "--radio {dead} --qr-file {label} --trust {tmp}/missing --peer --no-wifi"),
        C("no label source", USAGE, "--radio {dead} --trust {root} --peer --no-wifi",
          says="exactly once"),
        C("--no-wifi and nothing else to do, before any radio", USAGE,
          "--radio {dead} --qr-file {label} --trust {root} --no-wifi", says="--peer"),
        C("no network named and no terminal to choose one, before any radio", USAGE,
          "--radio {dead} --qr-file {label} --trust {root} --peer", says="--wifi-ssid"),
        C("--zone without --user, before any passphrase", USAGE,
          "--radio {dead} --qr-file {label} --trust {root} --zone {tmp}/missing --no-wifi",
          BLEPROV_ZONE_PASSPHRASE=UNSET, says="--user"),
        C("--zone and --peer", USAGE,
          "--radio {dead} --qr-file {label} --trust {root} --zone {tmp}/missing --user alice "
          "--peer --no-wifi", says="not both"),
        C("negative timeout, before any radio", USAGE,
          "--radio {dead} --qr-file {label} --trust {root} --peer --no-wifi --timeout -1",
          says="--timeout"),
        C("not a broker URL", USAGE,
          "--via ftp://broker --qr-file {label} --trust {root} --peer --no-wifi", says="--via"),
        C("--device-id without --via", USAGE,
          "--radio {dead} --qr-file {label} --trust {root} --peer --no-wifi --device-id ABC",
          says="--via"),
        C("printed key with a short group, before any radio", ERROR,
          "--radio {dead} --printed-key --trust {root} --peer --no-wifi", says="group 4 has 3",
          BLEPROV_PRINTED_KEY="24VR-M56D-8PGR-SBH-17FP"),
        C("printed key neither given nor typed", ERROR,
          "--radio {dead} --printed-key --trust {root} --peer --no-wifi",
          says="BLEPROV_PRINTED_KEY",
          BLEPROV_PRINTED_KEY=UNSET),
        C("hex discriminator without its 0x", USAGE, "--radio {dead} --compare --discriminator F00",
          says="0xF00"),
        C("discriminator over 12 bits", USAGE,
          "--radio {dead} --compare --discriminator 0x1000", says="0xFFF"),
        C("unreadable Wi-Fi password file, before any radio", ERROR,
          "--radio {dead} --qr-file {label} --trust {root} --wifi-ssid home "
          "--wifi-password-file {tmp}/missing", says="Wi-Fi password"),
        C("a broken config file", USAGE, "--qr-file {label} --no-wifi",
          BLEPROV_CONFIG="{tmp}/config-broken.toml", says="config-broken.toml"),
        C("--zone and --no-zone", USAGE,
          "--radio {dead} --qr-file {label} --trust {root} --zone {tmp} --no-zone"),
        C("--labels with another label", USAGE,
          "--radio {dead} --labels {tmp}/devs --qr-file {label} --trust {root}",
          says="drop --qr-file"),
        C("--labels of a directory with no labels", USAGE,
          "--radio {dead} --labels {tmp}/home --trust {root} --peer --no-wifi", says="no labels"),
        C("--labels list with a line that is no label", USAGE,
          "--radio {dead} --labels {tmp}/garbage --trust {root} --peer --no-wifi",
          says="garbage:1: not a label file"),
        C("--labels list unreadable", ERROR,
          "--radio {dead} --labels {tmp}/missing --trust {root} --peer --no-wifi",
          says="cannot read the label list"),
        C("--labels, radio nobody answers", ERROR,
          "--radio {dead} --labels {tmp}/devs --trust {root} --peer --no-wifi --timeout 1",
          says=HUB),
    ],
    "linktest serve": [
        C("missing --radio", USAGE, ""),
        C("unknown radio", USAGE, "--radio carrier-pigeon"),
        C("bumble radio nobody answers", ERROR, "--radio {dead}", says=HUB),
        C("discriminator not a number", USAGE, "--radio {dead} --discriminator kitchen"),
    ],
    "linktest run": [
        C("missing --radio", USAGE, ""),
        C("bumble radio nobody answers", ERROR, "--radio {dead} --timeout 1", says=HUB),
        C("MTU out of range", USAGE, "--radio {dead} --mtu 5", says="--mtu"),
        C("no system bus", ERROR, "--radio system --timeout 1", says=BT),
        C("discriminator over 12 bits", USAGE, "--radio {dead} --discriminator 4096"),
    ],
    "radio hub": [
        C("ports not numbers", USAGE, "--ports a,b"),
        C("port out of range", USAGE, "--ports 70000"),
    ],
    "factory init": [
        C("missing --name", USAGE, "--dir {tmp}/f2"),
        C("no passphrase, no terminal", ERROR, "--dir {tmp}/f3 --name Acme",
          BLEPROV_FACTORY_PASSPHRASE=UNSET),
        C("empty passphrase", ERROR, "--dir {tmp}/f3 --name Acme", BLEPROV_FACTORY_PASSPHRASE=""),
        C("a file where the directory goes", ERROR, "--dir {tmp}/garbage --name Acme"),
    ],
    "factory device": [
        C("unknown mode", USAGE, "--dir {tmp}/factory --out {tmp}/d2 --modes qr,x"),
        C("no factory there", ERROR, "--dir {tmp}/missing --out {tmp}/d2"),
        C("wrong factory passphrase", ERROR, "--dir {tmp}/factory --out {tmp}/d2",
          BLEPROV_FACTORY_PASSPHRASE=WRONG["BLEPROV_FACTORY_PASSPHRASE"],
          says="factory passphrase"),
    ],
    "device factory-reset": [
        C("no store there", ERROR, "--store {tmp}/missing --yes"),
        C("no confirmation, no terminal", USAGE, "--store {store}", says="--yes"),
    ],
    "device init": [
        C("unknown key provider", USAGE, "--store {tmp}/s2 --from {device} --key-provider nope"),
        C("no device record there", ERROR, "--store {tmp}/s2 --from {tmp}/missing"),
        C("wrong device passphrase", ERROR, "--store {tmp}/s2 --from {device}",
          BLEPROV_DEVICE_PASSPHRASE=WRONG["BLEPROV_DEVICE_PASSPHRASE"]),
        C("a store there already", ERROR, "--store {store} --from {device}"),
        C("--tpm-pcrs without the TPM key provider", USAGE,
          "--store {tmp}/s2 --from {device} --tpm-pcrs sha256:7", says="--key-provider tpm"),
        C("no passphrase, no terminal", ERROR, "--store {tmp}/s2 --from {device}",
          BLEPROV_DEVICE_PASSPHRASE=UNSET),
    ],
    "device serve": [
        C("unknown UI", USAGE, "--store {store} --radio {dead} --network simulated --ui lcd"),
        C("unknown radio", USAGE, "--store {store} --radio carrier-pigeon --network simulated"),
        C("no store there", ERROR, "--store {tmp}/missing --radio {dead} --network {network}"),
        C("unknown network", USAGE, "--store {store} --radio {dead} --network ether"),
        C("bumble radio nobody answers", ERROR,
          "--store {store} --radio {dead} --network {network}", says=HUB),
        C("no system bus", ERROR, "--store {store} --radio bluez --network {network}", says=BT),
        C("no BlueZ on the system bus", ERROR,
          "--store {store} --radio bluez --network {network}", DBUS_SYSTEM_BUS_ADDRESS="{bus}",
          says=BT),
        C("bad --tls endpoint", USAGE,
          "--store {store} --radio {dead} --network {network} --tls nowhere"),
    ],
    "zone init": [
        C("missing --admin", USAGE, "--dir {tmp}/z2 --name Home"),
        C("no passphrase, no terminal", ERROR, "--dir {tmp}/z3 --name Home --admin alice",
          BLEPROV_ZONE_PASSPHRASE=UNSET),
    ],
    "zone list": [C("no hub there", ERROR, "--dir {tmp}/missing")],
    "zone show": [
        C("no hub there", ERROR, "DEV --dir {tmp}/missing"),
        C("missing device", USAGE, "--dir {tmp}/missing"),
    ],
    "zone revoke": [C("no hub there", ERROR, "DEV --dir {tmp}/missing --user alice")],
    "zone open-window": [
        C("bad purpose", USAGE,
          "DEV --dir {tmp}/missing --user alice --address 127.0.0.1:1 --purpose party"),
        C("minutes not a number", USAGE,
          "DEV --dir {tmp}/missing --user alice --address 127.0.0.1:1 --minutes soon"),
        C("no hub there", ERROR, "DEV --dir {tmp}/missing --user alice --address 127.0.0.1:1"),
    ],
    "zone serve": [
        C("no hub there", ERROR, "--dir {tmp}/missing"),
        C("bad listen address", USAGE, "--dir {tmp}/missing --listen here"),
    ],
    "zone export": [C("no hub there", ERROR, "--dir {tmp}/missing --out {tmp}/x")],
    "zone audit": [C("no hub there", ERROR, "--dir {tmp}/missing")],
    "zone user add": [
        C("bad role", USAGE, "bob --dir {tmp}/missing --role king --user alice"),
        C("no hub there", ERROR, "bob --dir {tmp}/missing --role member --user alice"),
    ],
    "zone user list": [C("no hub there", ERROR, "--dir {tmp}/missing")],
    "label make": [
        C("unknown mode", USAGE, "--dir {tmp}/factory --out {tmp}/d3 --modes x"),
        C("no factory there", ERROR, "--dir {tmp}/missing --out {tmp}/d3"),
        C("no factory there: no passphrase asked for", ERROR,
          "--dir {tmp}/missing --out {tmp}/d3", BLEPROV_FACTORY_PASSPHRASE=UNSET,
          says="factory init"),
        C("wrong factory passphrase, said before the device passphrase is asked for", ERROR,
          "--dir {tmp}/factory --out {tmp}/d3", BLEPROV_DEVICE_PASSPHRASE=UNSET,
          BLEPROV_FACTORY_PASSPHRASE=WRONG["BLEPROV_FACTORY_PASSPHRASE"],
          says="factory passphrase does not open"),
    ],
    "label show": [
        C("no device directory", ERROR, "{tmp}/missing"),
        C("missing argument", USAGE, ""),
    ],
    "label decode": [
        C("no image there", ERROR, "{tmp}/missing"),
        C("not an image", ERROR, "{tmp}/garbage"),
    ],
    "peer bind": [
        C("bumble radio nobody answers", ERROR,
          "--radio {dead} --qr-file {label} --trust {root} --timeout 1", says=HUB),
        C("unreadable label file", ERROR, "--radio {dead} --qr-file {tmp}/missing --trust {root}"),
        C("unknown radio", USAGE, "--radio carrier-pigeon --qr-file {label}"),
        C("negative timeout", USAGE, "--radio {dead} --qr-file {label} --timeout -1",
          says="--timeout"),
        C("discriminator in words", USAGE, "--radio {dead} --compare --discriminator 0xkitchen"),
    ],
    "peer open-window": [
        C("bad purpose", USAGE, "DEV --purpose party"),
        C("minutes out of range", USAGE, "DEV --minutes -1"),
        C("device not bound here", ERROR, "DEV --address 127.0.0.1:1"),
    ],
    "peer close-window": [C("device not bound here", ERROR, "DEV --address 127.0.0.1:1")],
    "peer list": [C("host dir is a file", ERROR, "--host-dir {tmp}/garbage")],
    "contrib list": [C("unknown option", USAGE, "--bogus")],
    "contrib show": [
        C("no such shipped file", USAGE, "nope.conf", says="bleprov contrib list"),
        C("missing name", USAGE, ""),
    ],
    "contrib path": [C("no such shipped file", USAGE, "nope.conf", says="bleprov contrib list")],
    "contrib install-systemd": [
        C("unknown service", USAGE, "printer --root {tmp}/sysroot"),
        C("missing service", USAGE, "--root {tmp}/sysroot"),
        C("relative --command", USAGE, "device --root {tmp}/sysroot --command bin/bleprov"),
        C("root is a file", ERROR, "device --root {tmp}/garbage", says="not a directory"),
        C("an installed unit edited by hand", ERROR, "device --root {tmp}/edited",
          says="--force"),
    ],
    "peer unbind": [
        C("device not bound here", ERROR, "DEV --address 127.0.0.1:1"),
        C("missing device", USAGE, ""),
    ],
}  # fmt: skip


def commands() -> list[str]:
    """Every leaf command of the app, as the words a person types."""
    found: list[str] = []

    def walk(command: Any, words: list[str]) -> None:
        children = getattr(command, "commands", None)
        if children is None:
            found.append(" ".join(words))
            return
        for name, child in children.items():
            walk(child, [*words, name])

    walk(typer.main.get_command(app), [])
    return sorted(found)


def _base_env(tmp: Path) -> dict[str, str]:
    """A clean environment: no system bus (so no BlueZ), a fresh home, secrets."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp / "home"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "COLUMNS": "200",
        "LANG": "C.UTF-8",
        "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp}/no-system-bus",
        "BLEPROV_HOST_DIR": str(tmp / "host"),
        **SECRETS,
    }


def _fork_run(tmp: Path, batches: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    cases = tmp / f"cases-{len(list(tmp.glob('cases-*')))}.json"
    cases.write_text(json.dumps(batches))
    done = subprocess.run(
        [sys.executable, "-m", "tests.cli_fork", str(cases)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=_base_env(tmp),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: list[list[dict[str, Any]]] = json.loads(done.stdout)
    return result


@dataclass
class Matrix:
    results: dict[tuple[str, str], dict[str, Any]]
    env: dict[str, str]


@contextmanager
def bus_without_bluez() -> Iterator[str]:
    """A private D-Bus daemon taken for the system bus: reachable, but no BlueZ on it."""
    daemon = shutil.which("dbus-daemon")
    if daemon is None:
        pytest.skip("dbus-daemon is not installed (Debian package: dbus)")
    directory = tempfile.mkdtemp(prefix="bleprov-bus-", dir="/tmp")  # a short socket path
    proc = subprocess.Popen(
        [daemon, "--session", "--nofork", "--nopidfile", "--print-address=1",
         f"--address=unix:path={directory}/bus"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    with bus_without_bluez() as bus:
        yield from _matrix(tmp_path_factory, bus)


def _matrix(tmp_path_factory: pytest.TempPathFactory, bus: str) -> Iterator[Matrix]:
    tmp = tmp_path_factory.mktemp("bad-input")
    (tmp / "garbage").write_text("this is not what you are looking for\n")
    for name, text in CONFIG_FILES.items():
        (tmp / name).write_text(text)
    (tmp / "home").mkdir()
    edited = tmp / "edited/etc/systemd/system/bleprov-device.service"
    edited.parent.mkdir(parents=True)
    edited.write_text("[Service]\nExecStart=/usr/local/bin/bleprov device serve\n")
    env = _base_env(tmp)

    def case(*argv: str, **extra: str) -> dict[str, Any]:
        given = {name: value for name, value in {**env, **extra}.items() if value != UNSET}
        return {"argv": list(argv), "env": given, "timeout": 40}

    made = _fork_run(
        tmp,
        [
            [case("factory", "init", "--dir", str(tmp / "factory"), "--name", "Acme")],
            [case("factory", "device", "--dir", str(tmp / "factory"), "--out", str(tmp / "devs"))],
        ],
    )
    assert [r["code"] for batch in made for r in batch] == [0, 0], made
    [device] = list((tmp / "devs").iterdir())
    fill = {
        "{tmp}": str(tmp),
        "{store}": str(tmp / "store"),
        "{device}": str(device),
        "{label}": str(device / "label.txt"),
        "{root}": str(tmp / "factory" / "root.pem"),
        "{bus}": bus,
        "{network}": f"simulated:{EXAMPLE_NETWORK}",
        "{dead}": DEAD,
    }

    def expand(text: str) -> str:
        for key, value in fill.items():
            text = text.replace(key, value)
        return text

    keys: list[tuple[str, str]] = []
    runs: list[dict[str, Any]] = []
    for command in commands():
        keys.append((command, "--help"))
        runs.append(case(*command.split(), "--help"))
        for bad in CASES.get(command, []):
            keys.append((command, bad.why))
            extra = {name: expand(value) for name, value in bad.env.items()}
            runs.append(case(*command.split(), *map(expand, bad.args), **extra))
    init = case("device", "init", "--store", fill["{store}"], "--from", fill["{device}"])
    plan = plan_batches(keys)
    [[initialised], *batches] = _fork_run(tmp, [[init], *[[runs[i] for i in b] for b in plan]])
    assert initialised["code"] == 0, initialised
    results: list[dict[str, Any]] = [{} for _ in runs]
    for indexes, batch in zip(plan, batches, strict=True):
        for index, result in zip(indexes, batch, strict=True):
            results[index] = result
    yield Matrix(dict(zip(keys, results, strict=True)), env)


#: Commands that claim the device store while they run (StoreClaim: one device, one
#: daemon). Two of their cases side by side refuse each other.
CLAIMS_THE_STORE = frozenset({"device serve"})


def plan_batches(keys: list[tuple[str, str]]) -> list[list[int]]:
    """The matrix's cases (indexes into ``keys``) in batches: each batch runs in
    parallel, the batches one after the other. A case that claims the store runs alone,
    after the rest."""
    alone = [i for i, (command, _) in enumerate(keys) if command in CLAIMS_THE_STORE]
    together = [i for i, (command, _) in enumerate(keys) if command not in CLAIMS_THE_STORE]
    return [together, *[[i] for i in alone]]


# ------------------------------------------------------------------ what is checked

_TRACEBACK = re.compile(r"Traceback|File \"[^\"]*\", line \d+|\.py:\d+ in ")
_REPRS = [
    re.compile(r"\b[A-Z][A-Za-z]+\((?:[a-z_]+=|'|\")"),  # Foo(x=...), Foo('...')
    re.compile(r"\{'[a-z_]+': "),  # {'key': ...}
    re.compile(r"<[\w.]+ object at 0x"),
    re.compile(r"valid integer|input_value=|pydantic"),
    re.compile(r"device reported error 0x"),
    re.compile(r"(?<![\w/.\-])[a-z]+_[a-z_]+(?![\w/.\-])"),  # a raw enum name: wrong_password
]


def check_output(result: dict[str, Any], case: Case, env: dict[str, str], command: str) -> None:
    output = result["stdout"] + result["stderr"]
    shown = f"exit {result['code']}\n--- stdout\n{result['stdout']}--- stderr\n{result['stderr']}"
    assert result["code"] == case.code, f"{case.why}: expected exit {case.code}\n{shown}"
    assert not _TRACEBACK.search(output), f"{case.why}: a traceback\n{shown}"
    for name, value in {**env, **case.env, **WRONG}.items():
        if name.endswith(("PASSPHRASE", "PASSWORD", "CODE", "KEY")) and len(value) > 3:
            assert value not in output, f"{case.why}: {name} echoed\n{shown}"
    assert "hunter2" not in output, f"{case.why}: a config file's secret echoed\n{shown}"
    if case.code == OK:
        return
    for pattern in _REPRS:
        assert not pattern.search(output), f"{case.why}: {pattern.pattern} in\n{shown}"
    lines = [line for line in result["stderr"].splitlines() if line.strip()]
    assert lines, f"{case.why}: no message\n{shown}"
    assert case.says in result["stderr"], f"{case.why}: {case.says!r} not said\n{shown}"
    if case.code == USAGE and "usage:" in result["stderr"].lower():
        assert f"bleprov {command} " in result["stderr"], f"{case.why}: another program\n{shown}"
    limit = 7 if case.code == USAGE else 3  # typer frames a usage error in a box
    assert len(lines) <= limit, f"{case.why}: {len(lines)} lines\n{shown}"


def test_every_command_has_bad_inputs() -> None:
    """A new command must say which bad inputs it takes (or take none: ``version``)."""
    assert sorted(CASES) == commands()


MATRIX = [(command, case) for command in sorted(CASES) for case in CASES[command]]


@pytest.mark.parametrize("command", commands())
def test_help(matrix: Matrix, command: str) -> None:
    result = matrix.results[(command, "--help")]
    check_output(result, Case("--help", ("--help",), OK), matrix.env, command)
    assert "Usage" in result["stdout"], result


@pytest.mark.parametrize(
    ("command", "case"), MATRIX, ids=[f"{c}: {case.why}" for c, case in MATRIX]
)
def test_bad_input(matrix: Matrix, command: str, case: Case) -> None:
    check_output(matrix.results[(command, case.why)], case, matrix.env, command)


def test_no_two_cases_that_claim_the_store_run_at_once() -> None:
    """``device serve`` claims the store (one device, one daemon) for as long as it runs;
    two of its cases side by side on ``{store}`` refuse each other ("another bleprov
    process serves the store"), which CI saw once in place of "systemctl status"."""
    keys = [(command, bad.why) for command in commands() for bad in CASES.get(command, [])]
    for batch in plan_batches(keys):
        claiming = [keys[i] for i in batch if keys[i][0] in CLAIMS_THE_STORE]
        assert len(claiming) <= 1, claiming
    assert sorted(i for batch in plan_batches(keys) for i in batch) == list(range(len(keys)))
