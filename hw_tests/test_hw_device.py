"""Device side on real hardware: ``bleprov device serve`` on this machine's adapter, and its
GPIO UI on real pins.

Opt-in, each by its own variables (skipped with the reason otherwise):

- ``BLEPROV_HW_DAEMON_RADIO`` (``bluez`` on a Raspberry Pi, or ``bumble:usb:0``) and
  ``BLEPROV_HW_HOST_RADIO`` (a second adapter here for the host: ``bumble:usb:1``, or
  ``system`` when the daemon uses a dongle): the daemon is initialised from a fresh device
  record, found by the host over the air, given Wi-Fi and bound as a peer, then serves a
  validated connection and stops cleanly on SIGTERM. ``BLEPROV_HW_NETWORK`` picks its
  Wi-Fi backend (default: the simulated example, so the runner's own network is left
  alone); with a real backend set ``BLEPROV_HW_WIFI_SSID`` and
  ``BLEPROV_HW_WIFI_PASSPHRASE`` too.
- ``BLEPROV_HW_GPIO_LOOPBACK=OUT,IN`` (BCM numbers of two pins joined by a wire): the
  GPIO UI's button on IN sees presses driven on OUT, through the Pi's real pin driver.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from bleprov.core.advertising import OobMode
from bleprov.core.identity import Manufacturer, TrustPolicy
from bleprov.core.session import host as hst
from bleprov.core.wifi import WifiCredentials, WifiSecurity
from bleprov.radio.spec import RadioSpec, open_central
from bleprov.service.device_ui import GpioUi, UiActions
from bleprov.service.enrolment import EnrolmentClient
from bleprov.service.host_session import DeviceAuthentication, open_session
from bleprov.service.trust import HostTrust
from bleprov.store.device_store import DeviceStore
from bleprov.store.factory_files import issue_device
from bleprov.store.keys import KeyFileProvider
from tests.daemon_process import Process, daemon_env

pytestmark = pytest.mark.device_hw

DAEMON_RADIO = os.environ.get("BLEPROV_HW_DAEMON_RADIO") or None
HOST_RADIO = os.environ.get("BLEPROV_HW_HOST_RADIO") or None
NETWORK = os.environ.get("BLEPROV_HW_NETWORK") or None
GPIO_LOOPBACK = os.environ.get("BLEPROV_HW_GPIO_LOOPBACK") or None
EXAMPLE_NETWORK = (
    Path(__file__).resolve().parents[1] / "bleprov" / "network" / "simulated_example.toml"
)
DEVICE_PASSPHRASE = "hardware test device"


def _wifi() -> WifiCredentials:
    if NETWORK is None:  # the simulated example's network (not a secret)
        return WifiCredentials(
            b"Home", WifiSecurity.WPA2_WPA3_PERSONAL, passphrase="correct horse battery staple"
        )
    ssid = os.environ.get("BLEPROV_HW_WIFI_SSID")
    passphrase = os.environ.get("BLEPROV_HW_WIFI_PASSPHRASE")
    if not ssid or not passphrase:
        pytest.skip("BLEPROV_HW_NETWORK is set: set BLEPROV_HW_WIFI_SSID and _PASSPHRASE too")
    return WifiCredentials(ssid.encode(), WifiSecurity.WPA2_PERSONAL, passphrase=passphrase)


def _device_init(store: Path, source: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "bleprov",
            "device",
            "init",
            "--store",
            str(store),
            "--from",
            str(source),
        ],
        env=daemon_env(BLEPROV_DEVICE_PASSPHRASE=DEVICE_PASSPHRASE),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(
    not (DAEMON_RADIO and HOST_RADIO),
    reason="set BLEPROV_HW_DAEMON_RADIO (bluez | bumble:<transport>) and "
    "BLEPROV_HW_HOST_RADIO (a second adapter) to run the daemon on real radios",
)
async def test_daemon_on_a_real_radio_binds_a_peer_and_serves_it(tmp_path: Path) -> None:
    assert DAEMON_RADIO is not None
    assert HOST_RADIO is not None
    credentials = _wifi()
    manufacturer = Manufacturer.create("Hardware test", now=datetime.now(UTC))
    issued = issue_device(
        manufacturer, tmp_path / "devices", DEVICE_PASSPHRASE.encode(), modes=OobMode.QR
    )
    store = tmp_path / "store"
    init = await asyncio.to_thread(_device_init, store, issued.directory)
    assert init.returncode == 0, init.stderr
    network = NETWORK or f"simulated:{EXAMPLE_NETWORK}"
    daemon = Process(
        [
            *(sys.executable, "-m", "bleprov", "device", "serve", "--store", str(store)),
            *("--radio", DAEMON_RADIO, "--network", network, "--tls", "127.0.0.1:0"),
        ],
        daemon_env(),
    )
    try:
        ready = await daemon.expect("ready:", timeout=60)
        assert ready.endswith("state virgin")
        trust = hst.Trust(
            (manufacturer.root_certificate.public_bytes(Encoding.DER),), TrustPolicy.REFUSE
        )
        host = HostTrust(
            DeviceStore(tmp_path / "host", KeyFileProvider(tmp_path / "host.key")), name="hw-host"
        )
        async with open_central(RadioSpec.parse(HOST_RADIO)) as radio:
            auth = DeviceAuthentication.from_qr_text(issued.label.qr_text)
            session = await open_session(radio, auth, trust, timeout=30)
            client = EnrolmentClient(session, timeout=120)
            status = await client.set_wifi(credentials)
            assert status.ip is not None, status
            pin = await client.peer_bind(host.identity())
            await client.commit()
            host.pin(pin)
            await session.close()
        assert await daemon.expect("state:", timeout=30) == "state: virgin -> peer-bound"
        serving = await daemon.expect("tls: serving pinned peers on ", timeout=30)
        port = int(serving.rsplit(":", 1)[1])
        async with await host.connect("127.0.0.1", port, issued.device_id) as connection:
            hello = await connection.request("hello", {})
        assert hello == {"name": issued.device_id, "owner": "hw-host"}
        assert await asyncio.to_thread(daemon.stop, signal.SIGTERM) == 0
        assert daemon.rest()[-1] == "stopped"
    finally:
        daemon.kill()


@pytest.mark.skipif(
    not GPIO_LOOPBACK,
    reason="set BLEPROV_HW_GPIO_LOOPBACK=OUT,IN (two BCM pins joined by a wire) to test "
    "the GPIO UI on real pins",
)
async def test_gpio_button_on_real_pins() -> None:
    from gpiozero import DigitalOutputDevice

    assert GPIO_LOOPBACK is not None
    out_pin, in_pin = (int(p) for p in GPIO_LOOPBACK.split(","))
    # The button pulls up; the driver pulls it low, as a press to ground would.
    driver = DigitalOutputDevice(out_pin, initial_value=True)
    ui = GpioUi(button_pin=in_pin, long_press=0.5)
    pressed = asyncio.Event()
    reset = asyncio.Event()
    await ui.start(UiActions(button=pressed.set, reset=reset.set))
    try:
        driver.off()
        await asyncio.sleep(0.1)
        driver.on()  # a short press
        await asyncio.wait_for(pressed.wait(), 5)
        assert not reset.is_set()
        driver.off()  # held past long_press: the reset
        await asyncio.wait_for(reset.wait(), 5)
        driver.on()
    finally:
        await ui.close()
        driver.close()
