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
