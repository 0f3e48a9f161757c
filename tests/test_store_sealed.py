"""Sealed files and the factory tool's directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from bleprov.core.advertising import OobMode
from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.store.factory_files import (
    FactoryError,
    init_manufacturer,
    issue_device,
    load_device,
    load_manufacturer,
)
from bleprov.store.sealed import SealedFileError, seal, unseal


def test_seal_round_trip_and_wrong_passphrase() -> None:
    sealed = seal(b"wifi psk", b"pass", log2_n=10)
    assert b"wifi psk" not in sealed
    assert unseal(sealed, b"pass") == b"wifi psk"
    with pytest.raises(SealedFileError, match="wrong passphrase"):
        unseal(sealed, b"other")


@pytest.mark.parametrize("position", [5, 30, -1])
def test_tampered_seal_is_refused(position: int) -> None:
    sealed = bytearray(seal(b"data", b"pass", log2_n=10))
    sealed[position] ^= 1
    with pytest.raises(SealedFileError):
        unseal(bytes(sealed), b"pass")


def test_factory_directories(tmp_path: Path) -> None:
    manufacturer = init_manufacturer(tmp_path / "factory", "Acme", b"factory pass")
    with pytest.raises(FactoryError):
        init_manufacturer(tmp_path / "factory", "Acme", b"factory pass")
    loaded = load_manufacturer(tmp_path / "factory", b"factory pass")
    assert loaded.root_fingerprint == manufacturer.root_fingerprint
    issued = issue_device(
        loaded,
        tmp_path / "devices",
        b"device pass",
        modes=OobMode.QR | OobMode.CODE,
        cost=ScryptCost(n=1 << 10, r=8, p=1),
    )
    text = (issued.directory / "label.txt").read_text()
    assert issued.label.qr_text in text
    raw = (issued.directory / "device.bin").read_bytes()
    assert issued.label.payload.label_secret not in raw  # sealed at rest
    device = load_device(issued.directory, b"device pass")
    assert device.identity.device_id == issued.device_id
    assert device.label_secret == issued.label.payload.label_secret
    with pytest.raises(FactoryError, match="factory init"):
        load_manufacturer(tmp_path / "nowhere", b"x")
