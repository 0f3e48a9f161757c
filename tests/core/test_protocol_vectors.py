"""The test vectors printed in docs/protocol.md are what the implementation produces."""

from __future__ import annotations

import re
from pathlib import Path

from bleprov.core.frames import FrameChannel, MessageReceived, Role

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def vector_frames() -> list[bytes]:
    host = FrameChannel(Role.HOST, rx_window=16, max_message=65536)
    host.connection_made(23)
    host.open(peer_rx_window=16, peer_max_message=65536, now=0.0)
    host.send_message(bytes(range(40)), 0.0)
    return host.data_to_send(0.0)


def test_framing_vectors_match_the_document() -> None:
    text = DOC.read_text()
    block = text[text.index("## Test vectors") :]
    documented = [
        bytes.fromhex(m.group(2)) for m in re.finditer(r"^(OPEN|DATA)\s+([0-9a-f ]+)$", block, re.M)
    ]
    assert documented == vector_frames()


def test_framing_vectors_decode() -> None:
    device = FrameChannel(Role.DEVICE)
    device.connection_made(23)
    events = [e for f in vector_frames() for e in device.receive_frame(f, 0.0)]
    assert events[-1] == MessageReceived(bytes(range(40)))


def _documented(name: str) -> str:
    text = DOC.read_text()
    block = text[text.index("## Session test vectors") :]
    return re.search(name + r" = ([0-9a-f]+)", block).group(1)  # type: ignore[union-attr]


def test_session_vectors_match_the_document() -> None:
    from bleprov.core.identity import signed_message
    from bleprov.core.session.messages import Mode
    from bleprov.core.session.modes import key_schedule, prologue, qr_psk

    assert qr_psk(bytes(range(16))).hex() == _documented("psk")
    keys = key_schedule(bytes(range(32)), bytes(range(32, 64)))
    assert keys.host_to_device.hex() == _documented("k_h2d")
    assert keys.device_to_host.hex() == _documented("k_d2h")
    from bleprov.core.receipt import EnrolmentReceipt
    from bleprov.core.session.modes import channel_binding, exporter

    receipt = EnrolmentReceipt.of_session(
        lambda label: channel_binding(keys.handshake_hash, label),
        lambda label: exporter(keys, label),
    )
    assert receipt.enrolment_id.hex() == _documented("enrolment_id")
    assert receipt.secret.hex() == _documented("receipt_secret")
    assert prologue(Mode.CODE, b"\xa1").hex() == _documented("prologue")
    from bleprov.core.session.modes import passkey_secrets

    passkey = passkey_secrets(123456, bytes(range(16)))
    assert passkey.w0.to_bytes(32, "big").hex() == _documented("w0")
    assert passkey.w1.to_bytes(32, "big").hex() == _documented("w1")
    from bleprov.core.session.common import ATTESTATION_CONTEXT

    assert ATTESTATION_CONTEXT == b"bleprov/2 session"
    message = signed_message(bytes(32), ATTESTATION_CONTEXT)
    assert message == bytes.fromhex(_documented("message")) + bytes(32)
