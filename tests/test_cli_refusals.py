"""A device's refusal reads as words with what to do (issue 13): ``provision --button``
before anyone pressed the device's button said "device reported error 0x44"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.processes import bleprov, served_device

pytestmark = pytest.mark.multiprocess


def test_button_mode_before_the_press_says_press_the_button(tmp_path: Path) -> None:
    with served_device(tmp_path, modes="qr,button") as served:
        scanned = bleprov("scan", "--radio", served.host_radio, "--timeout", "2", "--json")
        [device] = json.loads(scanned.stdout)
        result = bleprov(
            "provision", "--radio", served.host_radio, "--button", "--no-wifi",
            "--peer", "--host-dir", str(tmp_path / "laptop"),
            "--discriminator", str(device["discriminator"]), *served.trust,
        )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 4, output  # README: the device refused the attempt
    assert "0x44" not in output and "device reported" not in output, output
    assert "press its button" in output, output
    assert "Traceback" not in output, output
