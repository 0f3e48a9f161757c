"""Cloud binding as a person runs it: ``bleprov device serve --broker`` in one process (on
the virtual radio and a real Mosquitto at once), ``bleprov provision --via`` in another,
with the same label and the same UX as over Bluetooth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.broker.conftest import Mosquitto
from tests.test_cli_two_process import (
    EXAMPLE_NETWORK,
    HOME_PASSWORD,
    SECRETS,
    _env,
    _read_until,
    _stop,
    bleprov,
)

pytestmark = pytest.mark.multiprocess


def test_provision_through_the_broker_from_another_process(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    hub = subprocess.Popen(
        [sys.executable, "-m", "bleprov", "radio", "hub", "--ports", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    device = None
    try:
        lines = _read_until(hub, "ready", 30)
        [controller] = [line.split()[2] for line in lines if line.startswith("controller ")]
        factory, devices = str(tmp_path / "factory"), str(tmp_path / "devices")
        assert bleprov("factory", "init", "--dir", factory, "--name", "Acme").returncode == 0
        assert bleprov("factory", "device", "--dir", factory, "--out", devices).returncode == 0
        [device_dir] = list(Path(devices).iterdir())
        store = str(tmp_path / "store")
        assert (
            bleprov("device", "init", "--store", store, "--from", str(device_dir)).returncode == 0
        )
        hub_dir = str(tmp_path / "hub")
        assert (
            bleprov(
                "zone", "init", "--dir", hub_dir, "--name", "Home", "--admin", "alice"
            ).returncode
            == 0
        )
        serve = [sys.executable, "-m", "bleprov", "device", "serve", "--store", store]
        serve += ["--radio", f"bumble:{controller}", "--network", f"simulated:{EXAMPLE_NETWORK}"]
        serve += ["--broker", mosquitto.url]
        device = subprocess.Popen(
            serve,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        _read_until(device, "ready:", 30)

        done = bleprov(
            "provision", "--via", mosquitto.url, "--qr-file", str(device_dir / "label.txt"),
            "--trust", str(Path(factory) / "root.pem"), "--wifi-ssid", "Home",
            "--zone", hub_dir, "--user", "alice", "--json",
            env=_env(BLEPROV_WIFI_PASSWORD=HOME_PASSWORD),
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        summary = json.loads(done.stdout[done.stdout.index("{") :])
        assert summary["device_id"] == device_dir.name
        assert summary["wifi"]["state"] == "connected" and summary["zone"]["owner"] == "alice"
        for secret in (*SECRETS.values(), HOME_PASSWORD):
            assert secret not in done.stdout + done.stderr
    finally:
        if device is not None:
            _stop(device)
        _stop(hub)
