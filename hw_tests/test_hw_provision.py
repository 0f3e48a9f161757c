"""The laptop's commands against a Raspberry Pi running ``bleprov device serve``, on real
radios: scan, each mode, Wi-Fi and zone enrolment, then the hub resets the device so the
next run starts from a virgin device again.

Declare the rig (each test skips, naming what is missing, otherwise):

- ``BLEPROV_HW_HOST_RADIO``: this laptop's radio (``system``, or ``bumble:usb:0``);
- ``BLEPROV_HW_PI_LABEL``: the Pi's ``label.txt`` (from ``bleprov factory device``);
- ``BLEPROV_HW_TRUST_ROOT``: the factory's ``root.pem``;
- ``BLEPROV_HW_PI_TLS``: HOST:PORT the Pi's daemon serves validated connections on
  (``device serve --tls``), and ``BLEPROV_HW_HUB_LISTEN``: HOST:PORT where this test runs
  the zone hub's server, which the Pi's ``--hub`` points at (it fetches its CRL there);
  the hub then factory-resets the Pi over a validated connection;
- ``BLEPROV_HW_WIFI_SSID`` / ``BLEPROV_HW_WIFI_PASSPHRASE``: a network the Pi can join;
- ``BLEPROV_HW_ATTENDED=1``: a person at the Pi answers compare mode (the Pi's daemon
  runs with ``--device-confirms``: the person presses its button to accept the number
  too) and presses its button for button mode (those tests skip otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytestmark = pytest.mark.provision_hw

HOST_RADIO = os.environ.get("BLEPROV_HW_HOST_RADIO") or None
LABEL = os.environ.get("BLEPROV_HW_PI_LABEL") or None
ROOT = os.environ.get("BLEPROV_HW_TRUST_ROOT") or None
PI_TLS = os.environ.get("BLEPROV_HW_PI_TLS") or None
HUB_LISTEN = os.environ.get("BLEPROV_HW_HUB_LISTEN") or None
SSID = os.environ.get("BLEPROV_HW_WIFI_SSID") or None
PASSPHRASE = os.environ.get("BLEPROV_HW_WIFI_PASSPHRASE") or None
ATTENDED = os.environ.get("BLEPROV_HW_ATTENDED") == "1"

needs_pi = pytest.mark.skipif(
    not (HOST_RADIO and LABEL and ROOT),
    reason="set BLEPROV_HW_HOST_RADIO, BLEPROV_HW_PI_LABEL and BLEPROV_HW_TRUST_ROOT "
    "(a Pi running `bleprov device serve`) to provision a real device",
)
ZONE_SECRETS = {
    "BLEPROV_ZONE_PASSPHRASE": "hardware test zone",
    "BLEPROV_USER_PASSPHRASE": "hardware test admin",
}


def bleprov(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "bleprov", *args],
        env={**os.environ, **ZONE_SECRETS, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def common() -> list[str]:
    assert HOST_RADIO
    assert ROOT
    return ["--radio", HOST_RADIO, "--trust", ROOT, "--timeout", "30"]


def discriminator() -> str:
    assert LABEL
    text = Path(LABEL).read_text()
    from bleprov.core.onboarding import parse_qr

    match = re.search(r"BP:[0-9A-Z.\-]+", text)
    assert match is not None, "the label file holds no QR text"
    return str(parse_qr(match.group(0)).discriminator)


@needs_pi
def test_scan_sees_the_pi() -> None:
    assert HOST_RADIO
    found = json.loads(bleprov("scan", "--radio", HOST_RADIO, "--timeout", "10", "--json"))
    assert any(str(d["discriminator"]) == discriminator() for d in found), found


@needs_pi
@pytest.mark.parametrize("mode", ["qr", "code"])
def test_each_label_mode_binds_a_peer(mode: str, tmp_path: Path) -> None:
    assert LABEL
    if mode == "qr":
        how = ["--qr-file", LABEL]
        env: dict[str, str] = {}
    else:
        code = next(
            line.split(":", 1)[1].strip()
            for line in Path(LABEL).read_text().splitlines()
            if line.startswith("Manual code")
        )
        how, env = ["--manual-code"], {"BLEPROV_MANUAL_CODE": code}
    out = bleprov(
        "provision", *common(), *how, "--no-wifi", "--peer",
        "--host-dir", str(tmp_path / "laptop"), "--json", env=env,
    )  # fmt: skip
    assert json.loads(out[out.index("{") :])["peer"] is not None


@needs_pi
@pytest.mark.skipif(not ATTENDED, reason="compare and button need a person at the Pi")
@pytest.mark.parametrize("mode", ["compare", "button"])
def test_attended_modes(mode: str, tmp_path: Path) -> None:
    out = bleprov(
        "provision", *common(), f"--{mode}", "--discriminator", discriminator(), "--no-wifi",
        "--peer", "--host-dir", str(tmp_path / "laptop"), "--json",
        stdin="y\n",  # the person compared the digits on the Pi and on this screen
    )  # fmt: skip
    assert json.loads(out[out.index("{") :])["peer"] is not None


@needs_pi
@pytest.mark.skipif(
    not (SSID and PASSPHRASE and PI_TLS and HUB_LISTEN),
    reason="set BLEPROV_HW_WIFI_SSID, BLEPROV_HW_WIFI_PASSPHRASE, BLEPROV_HW_PI_TLS and "
    "BLEPROV_HW_HUB_LISTEN",
)
def test_wifi_and_zone_enrolment_then_the_hub_resets_the_pi(tmp_path: Path) -> None:
    assert LABEL
    assert SSID
    assert PASSPHRASE
    assert PI_TLS
    hub_dir = tmp_path / "hub"
    bleprov("zone", "init", "--dir", str(hub_dir), "--name", "HW", "--admin", "admin")
    with _hub_server(hub_dir):
        out = bleprov(
            "provision", *common(), "--qr-file", LABEL, "--wifi-ssid", SSID,
            "--zone", str(hub_dir), "--user", "admin", "--json",
            env={"BLEPROV_WIFI_PASSWORD": PASSPHRASE},
        )  # fmt: skip
        summary = json.loads(out[out.index("{") :])
        assert summary["wifi"]["state"] == "connected"
        assert summary["zone"] is not None
        asyncio.run(_reset(hub_dir, summary["device_id"]))


@contextlib.contextmanager
def _hub_server(hub_dir: Path) -> Iterator[None]:
    """The zone hub's server (CRLs, renewal) on HUB_LISTEN, in a thread of its own."""
    from bleprov.service.zone_hub import serve_hub
    from bleprov.store.hub_files import Hub

    assert HUB_LISTEN
    host, _, port = HUB_LISTEN.rpartition(":")
    loop = asyncio.new_event_loop()
    hub = Hub.open(hub_dir, ZONE_SECRETS["BLEPROV_ZONE_PASSPHRASE"].encode())
    server = loop.run_until_complete(serve_hub(hub, host, int(port)))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()
        hub.close()


async def _reset(hub_dir: Path, device_id: str) -> None:
    """The zone's hub asks the Pi to factory-reset (only the owner may)."""
    from bleprov.service.zone_hub import hub_server_credentials
    from bleprov.store.hub_files import Hub
    from bleprov.tls.connection import open_member_connection

    assert PI_TLS
    host, _, port = PI_TLS.rpartition(":")
    with Hub.open(hub_dir, ZONE_SECRETS["BLEPROV_ZONE_PASSPHRASE"].encode()) as hub:
        now = datetime.now(UTC)
        await asyncio.sleep(2)  # the daemon follows its state (0.5 s) and fetches the CRL
    async with await open_member_connection(
        host,
        int(port),
        hub_server_credentials(hub, now=now),
        crl_der=hub.crl(now=now),
        expect_device=device_id,
    ) as connection:
        await connection.request("factory-reset", {})
