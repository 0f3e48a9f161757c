"""The lab's scenarios (lab/scenarios.py) on a real machine: a Raspberry Pi (or any Linux
box) with two Bluetooth adapters, bluetoothd and NetworkManager run by systemd, and real
access points. The same scenario code as in the VM; only the daemons differ: systemd
restarts them here, where the lab starts them itself.

Declared by environment variables (all required; else every test here skips, naming them):

- ``BLEPROV_HW_LAB_DEVICE_ADAPTER`` / ``BLEPROV_HW_LAB_HOST_ADAPTER``: e.g. ``hci0`` /
  ``hci1`` (the device serves on the first, bleak connects from the second);
- ``BLEPROV_HW_LAB_STATION``: the Wi-Fi interface the device joins with, e.g. ``wlan0``;
- ``BLEPROV_HW_LAB_WPA2`` and ``BLEPROV_HW_LAB_WPA3``: ``SSID,SUBNET`` of two access points
  (a WPA2-PSK and a WPA3-SAE one; SUBNET the first three octets their DHCP gives, e.g.
  ``192.168.1``), their passphrases in ``BLEPROV_HW_LAB_WPA2_PASSPHRASE`` and
  ``BLEPROV_HW_LAB_WPA3_PASSPHRASE``;
- ``BLEPROV_HW_LAB_BUMBLE_HOST``: a bumble transport for the MTU-23 central, e.g.
  ``usb:0`` (a third adapter, a dongle bumble drives).

Run as root (the scenarios restart system daemons):
``sudo -E .venv/bin/pytest hw_tests/test_hw_lab.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from lab.scenarios import SCENARIOS, Lab, WifiNetwork, prepare, run_scenario

NEEDED = (
    "BLEPROV_HW_LAB_DEVICE_ADAPTER",
    "BLEPROV_HW_LAB_HOST_ADAPTER",
    "BLEPROV_HW_LAB_STATION",
    "BLEPROV_HW_LAB_WPA2",
    "BLEPROV_HW_LAB_WPA2_PASSPHRASE",
    "BLEPROV_HW_LAB_WPA3",
    "BLEPROV_HW_LAB_WPA3_PASSPHRASE",
    "BLEPROV_HW_LAB_BUMBLE_HOST",
)
MISSING = [name for name in NEEDED if not os.environ.get(name)]

pytestmark = [
    pytest.mark.provision_hw,
    pytest.mark.skipif(
        bool(MISSING), reason=f"lab hardware not declared: set {', '.join(MISSING)}"
    ),
]


class SystemdDaemons:
    """The scenarios' daemons on a machine where systemd runs them."""

    def __init__(self, station: str) -> None:
        self.station = station

    def restart_bluetoothd(self) -> None:
        subprocess.run(["systemctl", "kill", "-s", "KILL", "bluetooth"], check=True)
        subprocess.run(["systemctl", "restart", "bluetooth"], check=True)

    def reboot_networkmanager(self) -> None:
        subprocess.run(["systemctl", "restart", "NetworkManager"], check=True)

    def use_wpa_supplicant(self) -> None:
        subprocess.run(["systemctl", "stop", "NetworkManager"], check=True)
        unit = f"wpa_supplicant@{self.station}"
        subprocess.run(["systemctl", "start", unit], check=True)

    def station_address(self) -> str | None:
        shown = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "dev", self.station],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        found = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", shown)
        return found.group(1) if found else None


def _network(name: str, security: str) -> WifiNetwork:
    ssid, _, subnet = os.environ[f"BLEPROV_HW_LAB_{name}"].rpartition(",")
    return WifiNetwork(ssid, os.environ[f"BLEPROV_HW_LAB_{name}_PASSPHRASE"], security, subnet)


@pytest.fixture(scope="module")
def lab() -> Lab:
    work = Path(tempfile.mkdtemp(prefix="bleprov-hw-lab-"))
    prepare(work / "work")
    station = os.environ["BLEPROV_HW_LAB_STATION"]
    return Lab(
        work=work / "work",
        out=work,
        device_radio=f"bluez:{os.environ['BLEPROV_HW_LAB_DEVICE_ADAPTER']}",
        host_radio=f"system:{os.environ['BLEPROV_HW_LAB_HOST_ADAPTER']}",
        station=station,
        wpa2=_network("WPA2", "wpa2"),
        wpa3=_network("WPA3", "wpa3"),
        daemons=SystemdDaemons(station),
        bumble_host_radio=f"bumble:{os.environ['BLEPROV_HW_LAB_BUMBLE_HOST']}",
    )


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_lab_scenario_on_real_daemons(lab: Lab, name: str) -> None:
    out = lab.out / name
    out.mkdir(exist_ok=True)
    scenario_lab = Lab(**{**vars(lab), "out": out})
    result = run_scenario(name, scenario_lab)
    assert result.passed, f"{result.error} (logs in {out}; steps {result.steps})"
