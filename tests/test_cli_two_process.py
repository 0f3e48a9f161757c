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
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bleprov.core.onboarding import encode_manual_code, parse_manual_code, parse_qr
from tests.processes import HOME_PASSWORD, SECRETS, bleprov, child_env, served_device

pytestmark = pytest.mark.multiprocess


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
    zone = bleprov("zone", "init", "--dir", str(work / "hub"), "--name", "Home", "--admin", "alice")
    assert zone.returncode == 0, zone.stdout + zone.stderr
    with served_device(work, modes="qr,code") as served:
        manual_code = next(
            line.split(":", 1)[1].strip()
            for line in served.label_txt.read_text().splitlines()
            if line.startswith("Manual code")
        )
        yield Rig(
            work,
            served.host_radio,
            served.device_dir,
            served.device_id,
            served.label_txt,
            manual_code,
        )


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
        env=child_env(BLEPROV_MANUAL_CODE=wrong),
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
    wrong = bleprov(*common, env=child_env(BLEPROV_WIFI_PASSWORD="not the password"))
    assert wrong.returncode == 5, wrong.stdout + wrong.stderr
    assert "nothing was changed" in wrong.stderr

    done = bleprov(*common, env=child_env(BLEPROV_WIFI_PASSWORD=HOME_PASSWORD))
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)  # --json: stdout is the JSON alone
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
