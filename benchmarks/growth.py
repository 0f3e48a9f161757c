"""Growth: what a second intermediate certificate would add, on the wire and on the air.

The Wi-Fi scan list (5 vs 100 access points) is measured end to end by
:mod:`benchmarks.enrolment`. Certificate chains cannot grow the same way: the
manufacturer CA makes one attestation intermediate (its root has pathLen 1) and a zone
chain holds the issuing CA and optionally the root (``verify_member`` takes 1 or 2), so a
chain of 2 intermediates does not verify today. What a second intermediate would add is
therefore computed: the DER size of the intermediate the chain already holds (a second
one of the same profile is the same size to within a few bytes), framed at each MTU as
the link frames it (2-byte frame header, 4-byte L2CAP and 3-byte ATT headers per
notification, LL overhead as the virtual radio counts it), and the connection events it
needs at 6 LL packets per event.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from cryptography.hazmat.primitives.serialization import Encoding

from benchmarks.common import OWNER, Factory
from bleprov.core.frames import DATA_HEADER
from bleprov.core.zone import SESSION_BINDING_SIZE, Zone, make_csr, make_member_key
from bleprov.radio.virtual import LL_PAYLOAD_DLE, air_bytes_for, ll_packets_for

#: CBOR array-entry header of a certificate (byte string of 256..65535 bytes).
CBOR_ITEM: Final = 3
L2CAP_ATT: Final = 4 + 3
PACKETS_PER_EVENT: Final = 6


@dataclass
class ChainRow:
    chain: str
    certificate_bytes: int
    mtu: int
    frames: int
    air_bytes: int
    events: int


def added_by(size: int, mtu: int) -> tuple[int, int, int]:
    """Frames, bytes on air and connection events that ``size`` more bytes take."""
    room = mtu - 3 - DATA_HEADER
    frames = math.ceil(size / room)
    air = packets = 0
    left = size
    for _ in range(frames):
        chunk = min(room, left)
        left -= chunk
        pdu = L2CAP_ATT + DATA_HEADER + chunk
        air += air_bytes_for(pdu, LL_PAYLOAD_DLE)
        packets += ll_packets_for(pdu, LL_PAYLOAD_DLE)
    return frames, air, math.ceil(packets / PACKETS_PER_EVENT)


def run() -> list[ChainRow]:
    now = datetime.now(UTC)
    factory = Factory.create()
    attestation = factory.manufacturer.intermediate_certificate.public_bytes(Encoding.DER)
    zone = Zone.create("Bench", now=now)
    binding = secrets.token_bytes(SESSION_BINDING_SIZE)
    issued = zone.issue_member(
        make_csr(make_member_key(), device_id="BENCH-CHAIN", session_binding=binding),
        device_id="BENCH-CHAIN",
        owner=OWNER,
        expected_binding=binding,
        now=now,
    )
    issuing = issued.chain_der[0]
    rows = []
    for name, der in (
        ("attestation (device -> host, in the handshake)", attestation),
        ("zone (host -> device, in zone/install)", issuing),
    ):
        size = len(der) + CBOR_ITEM
        for mtu in (23, 247):
            frames, air, events = added_by(size, mtu)
            rows.append(ChainRow(name, size, mtu, frames, air, events))
    return rows


def render(rows: Sequence[ChainRow]) -> str:
    lines = [
        "| chain | a second intermediate adds | MTU | frames | bytes on air "
        "| connection events (7.5 / 30 / 50 ms) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        times = " / ".join(f"{r.events * i:g} ms" for i in (7.5, 30, 50))
        lines.append(
            f"| {r.chain} | {r.certificate_bytes} B | {r.mtu} | {r.frames} | {r.air_bytes} "
            f"| {r.events} ({times}) |"
        )
    return "\n".join(lines)


def main() -> None:
    print(render(run()))


if __name__ == "__main__":
    main()
