"""The factory tool's files: a manufacturer directory and one directory per device.

    factory/manufacturer.bin   manufacturer keys and certificates (scrypt + PKCS#8)
    factory/root.pem           the root certificate, for hosts to trust
    devices/<ID>/device.bin    the device's provisioning record, sealed
    devices/<ID>/label.txt     QR text, printed key, manual code, scratch card
    devices/<ID>/label.ndef    the NFC tag's NDEF message
    devices/<ID>/label.png, label.svg, label-sheet.svg   rendered by ``bleprov label make``

Passphrases come from the caller (the CLI reads environment variables or prompts),
never from the command line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bleprov.core.advertising import OobMode
from bleprov.core.crypto.spake2plus import DEFAULT_COST, ScryptCost
from bleprov.core.errors import BleprovError
from bleprov.core.factory import DeviceProvisioning, Label, provision_device
from bleprov.core.identity import Manufacturer
from bleprov.core.onboarding import PayloadError, parse_ndef, parse_user_password
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


def load_manufacturer(directory: Path, passphrase: bytes | Callable[[], bytes]) -> Manufacturer:
    """The manufacturer in ``directory``; ``passphrase`` may be a function that asks for
    it, called only once the directory is known to hold one (no prompt for nothing)."""
    path = Path(directory) / "manufacturer.bin"
    if not path.exists():
        raise FactoryError(f"no manufacturer in {directory}: run `bleprov factory init` first")
    data = path.read_bytes()
    return Manufacturer.from_bytes(
        data, passphrase if isinstance(passphrase, bytes) else passphrase()
    )


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


#: label.txt is under 400 bytes and label.ndef 77; anything far larger is not ours.
_LABEL_FILE_MAX = 4096
_SCRATCH_CARD_LINE = "Scratch card:"


def _read_small(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            data = file.read(_LABEL_FILE_MAX + 1)
    except FileNotFoundError:
        raise FactoryError(
            f"{path} is missing: give a device directory made by `bleprov factory device`"
            " or `bleprov label make`"
        ) from None
    except OSError as exc:
        raise FactoryError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > _LABEL_FILE_MAX:
        raise FactoryError(f"{path} is larger than a label file ({_LABEL_FILE_MAX} bytes)")
    return data


def read_label(directory: Path) -> Label:
    """The label of a device directory, from ``label.ndef`` (and ``label.txt``'s card).

    The NDEF file's strict parser is the source of truth; ``label.txt`` must agree with
    it and adds the scratch card, which no payload carries.
    """
    directory = Path(directory)
    try:
        payload = parse_ndef(_read_small(directory / "label.ndef"))
        text = _read_small(directory / "label.txt").decode("ascii")
        card = None
        for line in text.splitlines():
            if line.startswith(_SCRATCH_CARD_LINE):
                card = parse_user_password(line.removeprefix(_SCRATCH_CARD_LINE))
    except (PayloadError, UnicodeDecodeError):
        raise FactoryError(
            f"the label files in {directory} are corrupt: issue the device's label again"
        ) from None
    label = Label.from_payload(payload, card)
    if label.text() != text:
        raise FactoryError(
            f"label.txt and label.ndef in {directory} disagree: issue the device's label again"
        )
    return label
