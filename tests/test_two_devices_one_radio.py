"""Two devices on one radio are two devices: each daemon's bumble address comes from its
device ID (a static random address), so neither hides the other and each keeps its
address across restarts. Every daemon used F0:B1:E9:00:00:01 before, and a scan saw one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bleprov.radio.spec import device_address
from tests.processes import EXAMPLE_NETWORK, bleprov, read_until, served_device, start, stop

pytestmark = pytest.mark.multiprocess


def test_two_daemons_on_one_radio_are_both_found(tmp_path: Path) -> None:
    with served_device(tmp_path, controllers=3) as first:
        issued = bleprov(
            "factory", "device", "--dir", str(tmp_path / "factory"), "--out", str(tmp_path / "more")
        )
        assert issued.returncode == 0, issued.stdout + issued.stderr
        [second_dir] = list((tmp_path / "more").iterdir())
        store = str(tmp_path / "store-2")
        init = bleprov("device", "init", "--store", store, "--from", str(second_dir))
        assert init.returncode == 0, init.stdout + init.stderr
        second = start(
            "device", "serve", "--store", store, "--radio", f"bumble:{first.controllers[2]}",
            "--network", f"simulated:{EXAMPLE_NETWORK}",
        )  # fmt: skip
        try:
            read_until(second, "ready:", 30)
            found = bleprov("scan", "--radio", first.host_radio, "--timeout", "3", "--json")
            assert found.returncode == 0, found.stdout + found.stderr
            addresses = {row["address"].upper() for row in json.loads(found.stdout)}
        finally:
            stop(second)
    assert addresses == {device_address(first.device_id), device_address(second_dir.name)}


def test_a_device_address_is_static_random_and_stable() -> None:
    address = device_address("2B18D2AC02E17CBE")
    assert address == device_address("2B18D2AC02E17CBE") != device_address("2B18D2AC02E17CBF")
    assert int(address[:2], 16) >> 6 == 0b11  # static random (Core spec, Vol 6, Part B, 1.3)
