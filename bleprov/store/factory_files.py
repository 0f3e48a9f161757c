"""The factory tool's files: a manufacturer directory and one directory per device.

    factory/manufacturer.bin   manufacturer keys and certificates (scrypt + PKCS#8)
    factory/root.pem           the root certificate, for hosts to trust
    devices/<ID>/device.bin    the device's provisioning record, sealed
    devices/<ID>/label.txt     QR text, printed key, manual code, scratch card
    devices/<ID>/label.ndef    the NFC tag's NDEF message

Passphrases come from the caller (the CLI reads environment variables or prompts),
never from the command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bleprov.core.advertising import OobMode
from bleprov.core.crypto.spake2plus import DEFAULT_COST, ScryptCost
from bleprov.core.errors import BleprovError
from bleprov.core.factory import DeviceProvisioning, Label, provision_device
from bleprov.core.identity import Manufacturer
from bleprov.store.files import write_atomic
from bleprov.store.sealed import read_sealed, write_sealed


class FactoryError(BleprovError):
    """A factory directory is missing or already initialised."""


def init_manufacturer(directory: Path, name: str, passphrase: bytes) -> Manufacturer:
    directory = Path(directory)
    if (directory / "manufacturer.bin").exists():
        raise FactoryError(f"{directory} already holds a manufacturer; refusing to replace it")
    manufacturer = Manufacturer.create(name, now=datetime.now(UTC))
    write_atomic(directory / "manufacturer.bin", manufacturer.to_bytes(passphrase))
    write_atomic(directory / "root.pem", manufacturer.root_certificate_pem(), mode=0o644)
    return manufacturer


def load_manufacturer(directory: Path, passphrase: bytes) -> Manufacturer:
    path = Path(directory) / "manufacturer.bin"
    if not path.exists():
        raise FactoryError(f"no manufacturer in {directory}: run `bleprov factory init` first")
    return Manufacturer.from_bytes(path.read_bytes(), passphrase)


@dataclass(frozen=True)
class IssuedDevice:
    device_id: str
    directory: Path
    label: Label


def issue_device(
    manufacturer: Manufacturer,
    out: Path,
    device_passphrase: bytes,
    *,
    modes: OobMode,
    scratch_card: bool = False,
    cost: ScryptCost = DEFAULT_COST,
) -> IssuedDevice:
    identity = manufacturer.issue_device(now=datetime.now(UTC))
    device, label = provision_device(identity, modes=modes, scratch_card=scratch_card, cost=cost)
    directory = Path(out) / identity.device_id
    write_sealed(directory / "device.bin", device.to_bytes(None), device_passphrase)
    write_atomic(directory / "label.txt", label.text().encode())
    write_atomic(directory / "label.ndef", label.ndef)
    return IssuedDevice(identity.device_id, directory, label)


def load_device(directory: Path, device_passphrase: bytes) -> DeviceProvisioning:
    return DeviceProvisioning.from_bytes(
        read_sealed(Path(directory) / "device.bin", device_passphrase), None
    )
