"""Factory provisioning: the label a device ships with opens a session with that device."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from bleprov.core.advertising import OobMode
from bleprov.core.attempts import AttemptLimits, ButtonWindow
from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.errors import LocalProtocolError
from bleprov.core.factory import DeviceProvisioning, provision_device
from bleprov.core.identity import Manufacturer, TrustPolicy
from bleprov.core.onboarding import parse_manual_code, parse_ndef, parse_qr, passcode_password
from bleprov.core.session import device as dev
from bleprov.core.session import host as hst
from bleprov.core.session.messages import Mode

NOW = datetime.now(UTC)
CHEAP = ScryptCost(n=1 << 10, r=8, p=1)
MANUFACTURER = Manufacturer.create("Acme", now=NOW)
TRUST = hst.Trust((MANUFACTURER.root_certificate.public_bytes(Encoding.DER),), TrustPolicy.REFUSE)


def handshake(device: DeviceProvisioning, mode: Mode, secret: hst.OutOfBand) -> bool:
    info = device.info().encode()
    d = dev.DeviceSession(
        secrets=device.secrets(),
        policy=int(device.modes),
        device_info=info,
        limits=AttemptLimits(),
        button=ButtonWindow(),
        connection="c",
        now=0.0,
    )
    h = hst.HostSession(
        mode=mode, secret=secret, device_info=info, trust=TRUST, wall_clock=NOW, now=0.0
    )
    pending = [e.data for e in h.start(0.0) if isinstance(e, hst.SendMessage)]
    while pending:
        replies = [
            e.data for m in pending for e in d.receive(m, 1.0) if isinstance(e, dev.SendMessage)
        ]
        pending = [
            e.data for m in replies for e in h.receive(m, 1.0) if isinstance(e, hst.SendMessage)
        ]
    return h.is_open and d.is_open


def test_the_qr_label_opens_the_device() -> None:
    device, label = provision_device(
        MANUFACTURER.issue_device(now=NOW), modes=OobMode.QR | OobMode.CODE, cost=CHEAP
    )
    payload = parse_qr(label.qr_text)
    assert payload == parse_ndef(label.ndef)
    assert payload.discriminator == device.discriminator
    secret = hst.QrSecret(payload.device_public_key, payload.label_secret)
    assert handshake(device, Mode.QR, secret)


def test_the_manual_code_opens_the_device_which_keeps_only_a_verifier() -> None:
    device, label = provision_device(
        MANUFACTURER.issue_device(now=NOW), modes=OobMode.QR | OobMode.CODE, cost=CHEAP
    )
    assert label.manual_code is not None
    code = parse_manual_code(label.manual_code)
    assert code.matches(device.discriminator)
    assert handshake(device, Mode.CODE, hst.CodeSecret(passcode_password(code.passcode)))
    stored = device.to_bytes(None)
    assert passcode_password(code.passcode) not in stored


def test_the_scratch_card_opens_the_device() -> None:
    device, label = provision_device(
        MANUFACTURER.issue_device(now=NOW),
        modes=OobMode.QR | OobMode.CODE,
        scratch_card=True,
        cost=CHEAP,
    )
    card = label.scratch_card
    assert card is not None
    assert card.spake2_password not in device.to_bytes(None)
    assert handshake(device, Mode.CODE, hst.CodeSecret(card.spake2_password, user=card.spake2_user))


def test_provisioning_record_round_trip() -> None:
    device, _ = provision_device(
        MANUFACTURER.issue_device(now=NOW), modes=OobMode.QR | OobMode.CODE, cost=CHEAP
    )
    again = DeviceProvisioning.from_bytes(device.to_bytes(b"k" * 32), b"k" * 32)
    assert again.info() == device.info()
    assert again.code_records == device.code_records
    assert again.identity.device_id == device.identity.device_id


def test_labels_always_carry_qr() -> None:
    with pytest.raises(LocalProtocolError):
        provision_device(MANUFACTURER.issue_device(now=NOW), modes=OobMode.CODE)


def test_label_repr_hides_secrets() -> None:
    _, label = provision_device(MANUFACTURER.issue_device(now=NOW), modes=OobMode.QR)
    assert label.qr_text not in repr(label)
