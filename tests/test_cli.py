"""The command line as a person uses it: demo in every mode, the factory tool, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bleprov.cli import app

runner = CliRunner()


@pytest.mark.parametrize("mode", ["qr", "code", "compare", "button"])
def test_demo_completes_in_every_mode(mode: str) -> None:
    result = runner.invoke(app, ["demo", "--mode", mode])
    assert result.exit_code == 0, result.output
    assert "demo complete" in result.output
    assert "trusted" in result.output


@pytest.mark.parametrize("mode", ["qr", "compare"])
def test_demo_zone_enrolment_ends_in_a_validated_connection(mode: str) -> None:
    result = runner.invoke(app, ["demo", "--mode", mode])
    assert result.exit_code == 0, result.output
    assert "zone certificate step" in result.output
    assert "validated connection: hub -> device" in result.output


@pytest.mark.parametrize("mode", ["qr", "code"])
def test_demo_peer_binding(mode: str) -> None:
    result = runner.invoke(app, ["demo", "--mode", mode, "--peer"])
    assert result.exit_code == 0, result.output
    assert "pinned keys, no CA" in result.output
    assert "demo complete" in result.output


def test_demo_refuses_an_unknown_mode() -> None:
    result = runner.invoke(app, ["demo", "--mode", "telepathy"])
    assert result.exit_code == 2


def test_factory_tool(tmp_path: Path) -> None:
    env = {
        "BLEPROV_FACTORY_PASSPHRASE": "factory secret",
        "BLEPROV_DEVICE_PASSPHRASE": "device secret",
    }
    result = runner.invoke(
        app, ["factory", "init", "--dir", str(tmp_path / "f"), "--name", "Acme"], env=env
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "f" / "root.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE")
    result = runner.invoke(
        app,
        [
            "factory",
            "device",
            "--dir",
            str(tmp_path / "f"),
            "--out",
            str(tmp_path / "d"),
            "--modes",
            "qr,code",
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    [device_dir] = list((tmp_path / "d").iterdir())
    label = (device_dir / "label.txt").read_text()
    assert "QR code text:  BP:" in label
    assert "Manual code:" in label
    assert "device secret" not in result.output and "factory secret" not in result.output


def test_factory_device_without_init_says_what_to_do(tmp_path: Path) -> None:
    env = {"BLEPROV_FACTORY_PASSPHRASE": "x", "BLEPROV_DEVICE_PASSPHRASE": "y"}
    result = runner.invoke(
        app,
        ["factory", "device", "--dir", str(tmp_path / "none"), "--out", str(tmp_path / "d")],
        env=env,
    )
    assert result.exit_code == 1
    assert "factory init" in " ".join(result.output.split())


def test_missing_passphrase_is_not_read_from_argv(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["factory", "init", "--dir", str(tmp_path), "--name", "A"],
        env={"BLEPROV_FACTORY_PASSPHRASE": None},
        input="",
    )
    assert result.exit_code != 0


def test_device_factory_reset_keeps_the_identity_and_drops_the_rest(tmp_path: Path) -> None:
    from bleprov.store.device_store import DeviceStore

    store = DeviceStore.open(tmp_path / "store")
    store.update({"provisioning": b"identity", "wifi": b"creds", "attempts": b"\x83\x01\x05\xf4"})
    result = runner.invoke(
        app, ["device", "factory-reset", "--store", str(tmp_path / "store"), "--yes"]
    )
    assert result.exit_code == 0, result.output
    assert DeviceStore.open(tmp_path / "store").load() == {"provisioning": b"identity"}
