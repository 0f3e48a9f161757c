"""Cloud binding as a person runs it: ``bleprov device serve --broker`` in one process (on
the virtual radio and a real Mosquitto at once), ``bleprov provision --via`` in another,
with the same label and the same UX as over Bluetooth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.broker.conftest import Mosquitto
from tests.processes import HOME_PASSWORD, SECRETS, bleprov, child_env, served_device

pytestmark = pytest.mark.multiprocess


def test_provision_through_the_broker_from_another_process(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    hub_dir = str(tmp_path / "hub")
    zone = bleprov("zone", "init", "--dir", hub_dir, "--name", "Home", "--admin", "alice")
    assert zone.returncode == 0, zone.stdout + zone.stderr
    with served_device(tmp_path, controllers=1, serve=["--broker", mosquitto.url]) as served:
        device_dir, factory = served.device_dir, str(tmp_path / "factory")
        done = bleprov(
            "provision", "--via", mosquitto.url, "--qr-file", str(device_dir / "label.txt"),
            "--trust", str(Path(factory) / "root.pem"), "--wifi-ssid", "Home",
            "--zone", hub_dir, "--user", "alice", "--json",
            env=child_env(BLEPROV_WIFI_PASSWORD=HOME_PASSWORD),
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        summary = json.loads(done.stdout)  # --json: stdout is the JSON alone
        assert summary["device_id"] == device_dir.name
        assert summary["wifi"]["state"] == "connected" and summary["zone"]["owner"] == "alice"
        for secret in (*SECRETS.values(), HOME_PASSWORD):
            assert secret not in done.stdout + done.stderr
