"""`bleprov zone` as an operator uses it: passphrases from the environment, never echoed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import Result
from cryptography import x509
from typer.testing import CliRunner

from bleprov import cli
from bleprov.cli import app
from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.zone import make_csr, make_member_key
from bleprov.store.hub_files import Hub

runner = CliRunner()
TINY_COST = ScryptCost(n=16, r=1, p=1)  # tests only
ZONE_PASS = "zone-secret-8c1f"
ALICE_PASS = "alice-secret-51d2"
BOB_PASS = "bob-secret-0e77"
CAROL_KEY_PASS = "carol-key-secret-a9b3"
SECRETS = (ZONE_PASS, ALICE_PASS, BOB_PASS, CAROL_KEY_PASS)
DEVICE = "A1B2C3D4E5F60718"


def invoke(args: Sequence[str], **env: str | None) -> Result:
    """Run `bleprov ...`; whatever happens, no passphrase may appear in its output."""
    result = runner.invoke(app, list(args), env=env)
    for secret in SECRETS:
        assert secret not in result.output
    return result


@pytest.fixture
def hub_dir(tmp_path: Path) -> Path:
    """A hub made through the API with a cheap user-passphrase cost, and one device."""
    directory = tmp_path / "hub"
    now = datetime.now(UTC)
    with Hub.init(
        directory,
        name="Home",
        zone_passphrase=ZONE_PASS.encode(),
        admin="alice",
        admin_passphrase=ALICE_PASS,
        now=now,
        passphrase_cost=TINY_COST,
    ) as hub:
        alice = hub.authenticate("alice", ALICE_PASS)
        binding = os.urandom(32)
        csr = make_csr(make_member_key(), device_id=DEVICE, session_binding=binding)
        member = hub.zone.issue_member(
            csr, device_id=DEVICE, owner="alice", expected_binding=binding, now=now
        )
        cert = x509.load_der_x509_certificate(member.cert_der)
        hub.registry.record_enrolment(
            DEVICE,
            owner="alice",
            enrolled_by=alice,
            serial=cert.serial_number,
            not_after=cert.not_valid_after_utc,
        )
    return directory


def serial_of_device(hub_dir: Path) -> str:
    result = invoke(["zone", "list", "--json"], BLEPROV_HUB_DIR=str(hub_dir))
    assert result.exit_code == 0, result.output
    [device] = json.loads(result.output)
    return str(device["certificate_serial"])


def test_init_creates_a_hub_and_refuses_a_second(tmp_path: Path) -> None:
    directory = tmp_path / "hub"
    args = ["zone", "init", "--dir", str(directory), "--name", "Home", "--admin", "alice"]
    env = {"BLEPROV_ZONE_PASSPHRASE": ZONE_PASS, "BLEPROV_USER_PASSPHRASE": ALICE_PASS}
    result = invoke(args, **env)
    assert result.exit_code == 0, result.output
    assert "created" in result.output and "SHA-256" in result.output
    for name in ("zone.bin", "root.pem", "crl.pem", "hub.toml", "registry.sqlite"):
        assert (directory / name).is_file()
    result = invoke(["zone", "user", "list", "--json", "--dir", str(directory)])
    assert [u["name"] for u in json.loads(result.output)] == ["alice"]
    again = invoke(args, **env)
    assert again.exit_code == 1
    assert "already holds a hub" in " ".join(again.output.split())


def test_list_show_and_audit(hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.console, "width", 200)  # a wide terminal: one row per device
    env = {"BLEPROV_HUB_DIR": str(hub_dir)}
    result = invoke(["zone", "list"], **env)
    assert result.exit_code == 0, result.output
    assert DEVICE in result.output and "enrolled" in result.output
    [device] = json.loads(invoke(["zone", "list", "--json"], **env).output)
    assert (device["device_id"], device["owner"], device["enrolled_by"]) == (
        DEVICE,
        "alice",
        "alice",
    )
    assert device["status"] == "enrolled"
    shown = json.loads(invoke(["zone", "show", DEVICE, "--json"], **env).output)
    assert shown["certificate_serial"] == device["certificate_serial"]
    assert [e["action"] for e in shown["audit"]] == ["enrol"]
    result = invoke(["zone", "show", DEVICE], **env)
    assert result.exit_code == 0 and "enrol" in result.output
    audit = json.loads(invoke(["zone", "audit", "--json"], **env).output)
    assert [e["action"] for e in audit] == ["add_user", "enrol"]
    result = invoke(["zone", "show", "NOPE"], **env)
    assert result.exit_code == 1 and "no device" in result.output


def test_piped_the_table_keeps_every_value_whole(hub_dir: Path) -> None:
    """Without a terminal (a pipe, no COLUMNS) rich sized the table to 80 columns and
    folded the serial over lines; piped, each row is whole on its line (issue 13)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["BLEPROV_HUB_DIR"] = str(hub_dir)
    piped = subprocess.run(
        [sys.executable, "-m", "bleprov", "zone", "list"],
        env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert piped.returncode == 0, piped.stdout + piped.stderr
    serial = serial_of_device(hub_dir)
    rows = [line for line in piped.stdout.splitlines() if DEVICE in line]
    assert len(rows) == 1, piped.stdout  # the device ID was folded over two lines
    [row] = rows
    assert serial in row, piped.stdout
    assert "alice" in row and "enrolled" in row and "…" not in piped.stdout


def test_user_add_and_only_admins_revoke(hub_dir: Path) -> None:
    env = {"BLEPROV_HUB_DIR": str(hub_dir), "BLEPROV_ZONE_PASSPHRASE": ZONE_PASS}
    result = invoke(
        ["zone", "user", "add", "bob", "--role", "member", "--user", "alice"],
        **env,
        BLEPROV_USER_PASSPHRASE=ALICE_PASS,
        BLEPROV_NEW_USER_PASSPHRASE=BOB_PASS,
    )
    assert result.exit_code == 0, result.output
    users = json.loads(invoke(["zone", "user", "list", "--json"], **env).output)
    assert [(u["name"], u["role"], u["credential"]) for u in users] == [
        ("alice", "admin", "passphrase"),
        ("bob", "member", "passphrase"),
    ]
    serial = serial_of_device(hub_dir)
    refused = invoke(
        ["zone", "revoke", DEVICE, "--user", "bob"], **env, BLEPROV_USER_PASSPHRASE=BOB_PASS
    )
    assert refused.exit_code == 1
    assert "admin" in refused.output
    wrong = invoke(
        ["zone", "revoke", DEVICE, "--user", "alice"], **env, BLEPROV_USER_PASSPHRASE=BOB_PASS
    )
    assert wrong.exit_code == 1 and "authentication failed" in wrong.output
    result = invoke(
        ["zone", "revoke", DEVICE, "--user", "alice"], **env, BLEPROV_USER_PASSPHRASE=ALICE_PASS
    )
    assert result.exit_code == 0, result.output
    assert serial in "".join(result.output.split())
    crl = x509.load_pem_x509_crl((hub_dir / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None
    [device] = json.loads(invoke(["zone", "list", "--json"], **env).output)
    assert device["status"] == "revoked"
    audit = json.loads(invoke(["zone", "audit", "--device", DEVICE, "--json"], **env).output)
    assert [(e["action"], e["actor"]) for e in audit] == [("enrol", "alice"), ("revoke", "alice")]


def test_key_credential_user_can_revoke(hub_dir: Path, tmp_path: Path) -> None:
    env = {"BLEPROV_HUB_DIR": str(hub_dir), "BLEPROV_ZONE_PASSPHRASE": ZONE_PASS}
    key_dir = tmp_path / "carol"
    result = invoke(
        [
            "zone",
            "user",
            "add",
            "carol",
            "--role",
            "admin",
            "--user",
            "alice",
            "--key-out",
            str(key_dir),
        ],
        **env,
        BLEPROV_USER_PASSPHRASE=ALICE_PASS,
        BLEPROV_NEW_USER_PASSPHRASE=CAROL_KEY_PASS,
    )
    assert result.exit_code == 0, result.output
    assert (key_dir / "user.key.pem").stat().st_mode & 0o777 == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in (key_dir / "user.key.pem").read_bytes()
    users = json.loads(invoke(["zone", "user", "list", "--json"], **env).output)
    assert ("carol", "certificate") in [(u["name"], u["credential"]) for u in users]
    revoke = ["zone", "revoke", DEVICE, "--user", "carol", "--user-key", str(key_dir)]
    wrong = invoke(revoke, **env, BLEPROV_USER_PASSPHRASE="not carol's")
    assert wrong.exit_code == 1 and "key passphrase" in wrong.output
    result = invoke(revoke, **env, BLEPROV_USER_PASSPHRASE=CAROL_KEY_PASS)
    assert result.exit_code == 0, result.output
    again = invoke(
        [
            "zone",
            "user",
            "add",
            "dave",
            "--role",
            "member",
            "--user",
            "alice",
            "--key-out",
            str(key_dir),
        ],
        **env,
        BLEPROV_USER_PASSPHRASE=ALICE_PASS,
        BLEPROV_NEW_USER_PASSPHRASE=BOB_PASS,
    )
    assert again.exit_code == 1 and "exists" in again.output


def test_export_writes_root_and_fresh_crl(hub_dir: Path, tmp_path: Path) -> None:
    before = x509.load_pem_x509_crl((hub_dir / "crl.pem").read_bytes())
    out = tmp_path / "export"
    result = invoke(
        ["zone", "export", "--dir", str(hub_dir), "--out", str(out)],
        BLEPROV_ZONE_PASSPHRASE=ZONE_PASS,
    )
    assert result.exit_code == 0, result.output
    assert (out / "root.pem").read_bytes() == (hub_dir / "root.pem").read_bytes()
    crl = x509.load_pem_x509_crl((out / "crl.pem").read_bytes())
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    old = before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number == old + 1


def test_wrong_zone_passphrase(hub_dir: Path, tmp_path: Path) -> None:
    result = invoke(
        ["zone", "export", "--dir", str(hub_dir), "--out", str(tmp_path / "x")],
        BLEPROV_ZONE_PASSPHRASE=BOB_PASS,
    )
    assert result.exit_code == 1
    assert "zone passphrase" in " ".join(result.output.split())


def test_missing_dir_is_bad_usage() -> None:
    result = invoke(["zone", "list"], BLEPROV_HUB_DIR=None)
    assert result.exit_code == 2


def test_no_hub_says_what_to_do(tmp_path: Path) -> None:
    result = invoke(["zone", "list", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "zone init" in " ".join(result.output.split())


def test_passphrase_is_never_read_from_argv(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["zone", "init", "--dir", str(tmp_path / "h"), "--name", "Home", "--admin", "alice"],
        env={"BLEPROV_ZONE_PASSPHRASE": None, "BLEPROV_USER_PASSPHRASE": None},
        input="",
    )
    assert result.exit_code != 0
    assert not (tmp_path / "h" / "zone.bin").exists()


def test_registry_url_with_password_refused(tmp_path: Path) -> None:
    result = invoke(
        [
            *("zone", "init", "--dir", str(tmp_path / "h"), "--name", "Home", "--admin", "alice"),
            *("--registry-url", "postgresql+psycopg://hub:pw-in-url-77@db.example/reg"),
        ],
        BLEPROV_ZONE_PASSPHRASE=ZONE_PASS,
        BLEPROV_USER_PASSPHRASE=ALICE_PASS,
    )
    assert result.exit_code == 1
    assert "pgpass" in result.output
    assert "pw-in-url-77" not in result.output


def test_serve_errors_are_one_line_and_an_exit_code(hub_dir: Path) -> None:
    """A bad --listen is usage (2); a wrong passphrase or a busy port, an error (1)."""
    env = {"BLEPROV_HUB_DIR": str(hub_dir), "BLEPROV_ZONE_PASSPHRASE": ZONE_PASS}
    bad = invoke(["zone", "serve", "--listen", "8444"], **env)
    assert bad.exit_code == 2 and "HOST:PORT" in bad.output
    wrong = invoke(["zone", "serve"], **{**env, "BLEPROV_ZONE_PASSPHRASE": "not it"})
    assert wrong.exit_code == 1 and "passphrase" in wrong.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = invoke(["zone", "serve", "--listen", f"127.0.0.1:{port}"], **env)
    assert taken.exit_code == 1 and "cannot listen" in taken.output
    assert "Traceback" not in bad.output + wrong.output + taken.output


def test_serve_takes_the_passphrase_from_a_systemd_credential(
    hub_dir: Path, tmp_path: Path
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "zone-passphrase").write_text("not it\n")
    result = invoke(
        ["zone", "serve", "--listen", "127.0.0.1:0"],
        BLEPROV_HUB_DIR=str(hub_dir),
        CREDENTIALS_DIRECTORY=str(credentials),
        BLEPROV_ZONE_PASSPHRASE=None,
    )
    assert result.exit_code == 1 and "check the zone passphrase" in result.output
