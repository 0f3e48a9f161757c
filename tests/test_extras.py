"""What ``pip install bleprov`` without extras gives, and what a missing extra says.

Each child process runs with the packages of the extras refused at import
(tests/without_extras.py), as on a smaller install. The host side runs for real: a
device served (with every extra) on the virtual radio, scanned and provisioned by a host
that has none. A command whose extra is missing says which, in one line (exit 1)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import HOME_PASSWORD, SECRETS, child_env, served_device
from tests.without_extras import NON_BASE

ROOT = Path(__file__).resolve().parents[1]
WITHOUT_EXTRAS = str(ROOT / "tests" / "without_extras.py")


def without(
    blocked: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``bleprov ARGS`` with the ``blocked`` packages not importable."""
    argv = [sys.executable, WITHOUT_EXTRAS, blocked, "-m", "bleprov", *args]
    for value in SECRETS.values():
        assert value not in argv
    return subprocess.run(
        argv,
        env=env or child_env(),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def assert_names_extra(done: subprocess.CompletedProcess[str], extra: str, module: str) -> None:
    """Exit 1, one line, no traceback: the extra, the package missing, the pip install."""
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: the {extra} extra is not installed ({module} is missing): "
        f"pip install 'bleprov[{extra}]'"
    ]


@pytest.mark.parametrize(
    ("blocked", "argv", "extra", "module"),
    [
        ("sqlalchemy,alembic", ["zone", "init", "--dir", "{tmp}/hub", "--name", "Home",
                                "--admin", "alice"], "hub", "sqlalchemy"),
        ("sqlalchemy,alembic", ["zone", "list", "--dir", "{tmp}/hub"], "hub", "sqlalchemy"),
        (NON_BASE, ["provision", "--via", "mqtt://127.0.0.1:1", "--qr-file", "{tmp}/label.txt",
                    "--allow-unknown-manufacturer", "--no-wifi", "--peer"], "broker", "aiomqtt"),
        (NON_BASE, ["demo"], "all", "aiomqtt"),
    ],
)  # fmt: skip
def test_a_command_whose_extra_is_missing_says_which(
    tmp_path: Path, blocked: str, argv: list[str], extra: str, module: str
) -> None:
    (tmp_path / "label.txt").write_text("not read: the broker client is missing first\n")
    done = without(blocked, *(arg.format(tmp=tmp_path) for arg in argv))
    assert_names_extra(done, extra, module)


def test_the_host_commands_start_without_extras() -> None:
    for command in ([], ["provision"], ["scan"], ["peer", "bind"], ["zone"], ["label"]):
        done = without(NON_BASE, *command, "--help")
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    with served_device(tmp_path_factory.mktemp("base-install"), modes="qr") as served:
        yield served


@pytest.mark.multiprocess
def test_the_base_install_runs_the_host_side(device: object, tmp_path: Path) -> None:
    """Scan, then provision Wi-Fi and bind this host as a peer, with no extra."""
    from tests.processes import ServedDevice

    assert isinstance(device, ServedDevice)
    found = without(NON_BASE, "scan", "--radio", device.host_radio, "--timeout", "2", "--json")
    assert found.returncode == 0, found.stdout + found.stderr
    assert [seen["state"] for seen in json.loads(found.stdout)] == ["virgin"]

    done = without(
        NON_BASE,
        *["provision", "--radio", device.host_radio, "--qr-file", str(device.label_txt)],
        *device.trust, *["--wifi-ssid", "Home", "--peer", "--host-dir", str(tmp_path / "laptop")],
        "--json",
        env=child_env(BLEPROV_WIFI_PASSWORD=HOME_PASSWORD),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["device_id"] == device.device_id
    assert summary["wifi"]["state"] == "connected"
    assert "Traceback" not in done.stderr

    # Rendering its label is the labels extra's; a zone is the hub extra's (the hub is
    # opened through bleprov.Hub, a MissingExtra the provision command reports as it is).
    shown = without(NON_BASE, "label", "show", str(device.device_dir))
    assert_names_extra(shown, "labels", "segno")
    zone = without(
        NON_BASE,
        *["provision", "--radio", device.host_radio, "--qr-file", str(device.label_txt)],
        *device.trust, *["--no-wifi", "--zone", str(tmp_path / "hub"), "--user", "alice"],
    )  # fmt: skip
    assert_names_extra(zone, "hub", "sqlalchemy")
