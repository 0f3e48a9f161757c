"""As a person would, in separate processes over the loopback virtual radio.

A radio hub serves two virtual controllers; ``bleprov device serve`` runs the device on
one of them; every host step is a ``bleprov`` command on the other: scan, provision with a
wrong Wi-Fi password (exit 5, nothing changed), provision with Wi-Fi and a zone
certificate, a wrong manual code (exit 4), the zone's registry; and, once the device has
an owner, its label binds no one. Secrets travel in environment variables and files, never
on a command line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bleprov.core.onboarding import encode_manual_code, parse_manual_code, parse_qr

pytestmark = pytest.mark.multiprocess

EXAMPLE_NETWORK = Path(__file__).resolve().parents[1] / "bleprov/network/simulated_example.toml"
HOME_PASSWORD = "correct horse battery staple"  # the simulated network's (not a secret)
SECRETS = {
    "BLEPROV_FACTORY_PASSPHRASE": "factory passphrase 1",
    "BLEPROV_DEVICE_PASSPHRASE": "device passphrase 2",
    "BLEPROV_ZONE_PASSPHRASE": "zone passphrase 3",
    "BLEPROV_USER_PASSPHRASE": "alice passphrase 4",
}


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **SECRETS, **extra}


def bleprov(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "bleprov", *args]
    for value in SECRETS.values():
        assert value not in argv  # secrets never on a command line
    return subprocess.run(
        argv,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _read_until(proc: subprocess.Popen[str], prefix: str, timeout: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"process exited early: {lines}")
        lines.append(line.rstrip())
        if line.startswith(prefix):
            return lines
    raise AssertionError(f"no line {prefix!r} within {timeout} s: {lines}")


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@dataclass
class Rig:
    work: Path
    host_radio: str
    device_dir: Path
    device_id: str
    label_txt: Path
    manual_code: str


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    work = tmp_path_factory.mktemp("two-process")
    hub = subprocess.Popen(
        [sys.executable, "-m", "bleprov", "radio", "hub", "--ports", "0,0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    device = None
    try:
        lines = _read_until(hub, "ready", 30)
        controllers = [line.split()[2] for line in lines if line.startswith("controller ")]
        assert len(controllers) == 2, lines
        assert (
            bleprov("factory", "init", "--dir", str(work / "factory"), "--name", "Acme").returncode
            == 0
        )
        issued = bleprov(
            "factory", "device", "--dir", str(work / "factory"), "--out", str(work / "devices"),
            "--modes", "qr,code",
        )  # fmt: skip
        assert issued.returncode == 0, issued.stderr
        [device_dir] = list((work / "devices").iterdir())
        label_txt = device_dir / "label.txt"
        manual_code = next(
            line.split(":", 1)[1].strip()
            for line in label_txt.read_text().splitlines()
            if line.startswith("Manual code")
        )
        init = bleprov("device", "init", "--store", str(work / "store"), "--from", str(device_dir))
        assert init.returncode == 0, init.stdout + init.stderr
        zone = bleprov(
            "zone", "init", "--dir", str(work / "hub"), "--name", "Home", "--admin", "alice"
        )
        assert zone.returncode == 0, zone.stdout + zone.stderr
        device = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bleprov",
                "device",
                "serve",
                "--store",
                str(work / "store"),
                "--radio",
                f"bumble:{controllers[0]}",
                "--network",
                f"simulated:{EXAMPLE_NETWORK}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        ready = _read_until(device, "ready:", 30)[-1]
        assert device_dir.name in ready
        yield Rig(
            work,
            f"bumble:{controllers[0 + 1]}",
            device_dir,
            device_dir.name,
            label_txt,
            manual_code,
        )
    finally:
        if device is not None:
            _stop(device)
        _stop(hub)


def test_a_wrong_code_is_exit_4(rig: Rig) -> None:
    """Before anyone owns the device (this module's tests run in order)."""
    code = parse_manual_code(rig.manual_code)
    wrong_passcode = 20202021 if code.passcode != 20202021 else 20202022
    # The same device (its discriminator, from its label), another passcode.
    qr_text = re.search(r"BP:[0-9A-Z.\-]+", rig.label_txt.read_text())
    assert qr_text is not None
    wrong = encode_manual_code(parse_qr(qr_text.group(0)).discriminator, wrong_passcode)
    trust = ["--trust", str(rig.work / "factory" / "root.pem")]
    laptop = ["--host-dir", str(rig.work / "laptop")]
    refused = bleprov(
        "provision",
        *["--radio", rig.host_radio, "--manual-code", "--no-wifi", "--peer", *trust, *laptop],
        env=_env(BLEPROV_MANUAL_CODE=wrong),
    )
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_person_provisions_a_device_from_another_process(rig: Rig) -> None:
    found = bleprov("scan", "--radio", rig.host_radio, "--timeout", "2", "--json")
    assert found.returncode == 0, found.stderr
    [seen] = json.loads(found.stdout)
    assert seen["state"] == "virgin" and "qr" in seen["modes"]

    common = ["provision", "--radio", rig.host_radio, "--qr-file", str(rig.label_txt)]
    common += ["--trust", str(rig.work / "factory" / "root.pem"), "--wifi-ssid", "Home"]
    common += ["--zone", str(rig.work / "hub"), "--user", "alice", "--json"]
    wrong = bleprov(*common, env=_env(BLEPROV_WIFI_PASSWORD="not the password"))
    assert wrong.returncode == 5, wrong.stdout + wrong.stderr
    assert "nothing was changed" in wrong.stderr

    done = bleprov(*common, env=_env(BLEPROV_WIFI_PASSWORD=HOME_PASSWORD))
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    assert summary["device_id"] == rig.device_id
    assert summary["wifi"]["state"] == "connected"
    assert summary["zone"]["owner"] == "alice"
    for output in (wrong, done):
        for secret in (*SECRETS.values(), HOME_PASSWORD):
            assert secret not in output.stdout + output.stderr

    registry = bleprov("zone", "list", "--dir", str(rig.work / "hub"), "--json")
    [record] = json.loads(registry.stdout)
    assert record["device_id"] == rig.device_id and record["owner"] == "alice"
    assert record["enrolled_by"] == "alice" and record["status"] == "enrolled"
    after = json.loads(
        bleprov("scan", "--radio", rig.host_radio, "--timeout", "2", "--json").stdout
    )
    assert after[0]["state"] == "enrolled"


def test_once_enrolled_the_label_binds_no_one(rig: Rig) -> None:
    trust = ["--trust", str(rig.work / "factory" / "root.pem")]
    laptop = ["--host-dir", str(rig.work / "laptop")]
    # The device is enrolled (the test before): its label is dead, and a host that insists
    # (--reprovision) is refused by the device itself.
    for insist in ([], ["--reprovision"]):
        bound = bleprov(
            "peer", "bind", "--radio", rig.host_radio, "--qr-file", str(rig.label_txt),
            *trust, *laptop, *insist,
        )  # fmt: skip
        assert bound.returncode == 4, bound.stdout + bound.stderr
        assert "has an owner" in bound.stderr and "Traceback" not in bound.stderr
    pins = bleprov("peer", "list", "--host-dir", str(rig.work / "laptop"), "--json")
    assert json.loads(pins.stdout) == []
