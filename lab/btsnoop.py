"""What crossed the link, as BlueZ saw it: ATT traffic out of a ``btmon -w`` capture.

btmon writes BTSnoop files in its monitor format (data link 2001), one record per HCI
packet of every controller, the controller's index and the packet's kind in the record's
flags. This reads the ACL packets of one controller, joins fragmented L2CAP frames, keeps
the ATT channel (CID 4) and counts, per time window: the host's ATT requests (each a round
trip on air), write commands, notifications and indications, bytes each way, the largest
write value, Read Blob requests, and the MTU the Exchange MTU settled on (23 without one).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

#: Microseconds from 0000-01-01 to 1970-01-01 (BTSnoop's epoch to Unix's).
EPOCH_OFFSET_US: Final = 0x00DCDDB30F2F8000
MONITOR_DATALINK: Final = 2001
ACL_TX: Final = 4  # host to controller
ACL_RX: Final = 5  # controller to host
ATT_CID: Final = 4
#: ATT requests: each waits for its response (Core spec, Vol 3, Part F, 3.4).
ATT_REQUESTS: Final = frozenset(
    {0x02, 0x04, 0x06, 0x08, 0x0A, 0x0C, 0x0E, 0x10, 0x12, 0x16, 0x18, 0x20}
)
EXCHANGE_MTU_REQ: Final = 0x02
EXCHANGE_MTU_RSP: Final = 0x03
READ_BLOB_REQ: Final = 0x0C
WRITE_REQ: Final = 0x12
WRITE_CMD: Final = 0x52
NOTIFICATION: Final = 0x1B
#: Handle Value Multiple Notification: bluetoothd sends these to a client that supports
#: them (another bluetoothd does).
MULTIPLE_NOTIFICATION: Final = 0x23
INDICATION: Final = 0x1D
MIN_MTU: Final = 23


class CaptureError(Exception):
    """The file is not a btmon capture."""


@dataclass(frozen=True)
class AttPdu:
    time: float  # Unix seconds
    index: int  # the controller
    outgoing: bool  # sent by this controller's host
    handle: int  # the ACL connection
    pdu: bytes

    @property
    def opcode(self) -> int:
        return self.pdu[0] if self.pdu else -1


def read(path: Path) -> list[AttPdu]:
    """Every ATT PDU in the capture, in order."""
    data = path.read_bytes()
    if data[:8] != b"btsnoop\0":
        raise CaptureError(f"{path} is not a BTSnoop file")
    _version, datalink = struct.unpack(">II", data[8:16])
    if datalink != MONITOR_DATALINK:
        raise CaptureError(f"{path}: data link {datalink}, not btmon's monitor format")
    pending: dict[tuple[int, bool, int], tuple[int, bytearray]] = {}
    found: list[AttPdu] = []
    offset = 16
    while offset + 24 <= len(data):
        _orig, incl, flags, _drops, stamp = struct.unpack(">IIIIq", data[offset : offset + 24])
        packet = data[offset + 24 : offset + 24 + incl]
        offset += 24 + incl
        index, opcode = flags >> 16, flags & 0xFFFF
        if opcode not in (ACL_TX, ACL_RX) or len(packet) < 4:
            continue
        handle_flags, length = struct.unpack("<HH", packet[:4])
        handle, boundary = handle_flags & 0x0FFF, (handle_flags >> 12) & 0x3
        payload = packet[4 : 4 + length]
        key = (index, opcode == ACL_TX, handle)
        if boundary == 0x1:  # a continuation
            if key not in pending:
                continue
            total, buffer = pending[key]
            buffer += payload
        else:
            if len(payload) < 4:
                continue
            (total,) = struct.unpack("<H", payload[:2])
            buffer = bytearray(payload)
        if len(buffer) < total + 4:
            pending[key] = (total, buffer)
            continue
        pending.pop(key, None)
        cid = struct.unpack("<H", buffer[2:4])[0]
        if cid == ATT_CID:
            when = (stamp - EPOCH_OFFSET_US) / 1e6
            found.append(
                AttPdu(when, index, opcode == ACL_TX, handle, bytes(buffer[4 : 4 + total]))
            )
    return found


def att_summary(
    packets: Iterable[AttPdu], index: int, start: float, end: float, *, central: bool = True
) -> dict[str, Any]:
    """The ATT traffic of controller ``index`` between ``start`` and ``end``, counted from
    the central's side ("out": what the central sent); ``central=False`` when the
    controller is the peripheral's."""
    chosen = [p for p in packets if p.index == index and start <= p.time <= end]
    out = [p for p in chosen if p.outgoing == central]
    incoming = [p for p in chosen if p.outgoing != central]
    # Either side may exchange the MTU (bluetoothd on the device is a GATT client too).
    mtu, exchanged = MIN_MTU, False
    for requests, responses in ((out, incoming), (incoming, out)):
        asked = [p for p in requests if p.opcode == EXCHANGE_MTU_REQ and len(p.pdu) >= 3]
        answered = [p for p in responses if p.opcode == EXCHANGE_MTU_RSP and len(p.pdu) >= 3]
        if asked and answered:
            client = struct.unpack("<H", asked[-1].pdu[1:3])[0]
            server = struct.unpack("<H", answered[-1].pdu[1:3])[0]
            mtu, exchanged = max(mtu, min(client, server)), True
    writes = [p for p in out if p.opcode in (WRITE_REQ, WRITE_CMD)]
    return {
        "packets": len(chosen),
        "mtu": mtu,
        "mtu_exchanged": exchanged,
        "requests": sum(p.opcode in ATT_REQUESTS for p in out),
        # bluetoothd on the device is a GATT client too: it discovers the central's
        # database on every connection (its requests cross the same link).
        "peripheral_requests": sum(p.opcode in ATT_REQUESTS for p in incoming),
        "read_blob_requests": sum(p.opcode == READ_BLOB_REQ for p in out),
        "write_requests": sum(p.opcode == WRITE_REQ for p in out),
        "write_commands": sum(p.opcode == WRITE_CMD for p in out),
        "notifications": sum(p.opcode in (NOTIFICATION, MULTIPLE_NOTIFICATION) for p in incoming),
        "indications": sum(p.opcode == INDICATION for p in incoming),
        "bytes_out": sum(len(p.pdu) for p in out),
        "bytes_in": sum(len(p.pdu) for p in incoming),
        "largest_write_value": max((len(p.pdu) - 3 for p in writes), default=0),
        "largest_pdu_in": max((len(p.pdu) for p in incoming), default=0),
        "connections": len({p.handle for p in chosen}),
    }


def describe(summary: dict[str, Any]) -> str:
    if not summary.get("packets"):
        return "no ATT traffic captured"
    return (
        f"ATT MTU {summary['mtu']}, {summary['requests']} ATT round trips "
        f"({summary['read_blob_requests']} Read Blob), {summary['write_commands']} write "
        f"commands, {summary['notifications']} notifications, "
        f"{summary['bytes_out']} B out / {summary['bytes_in']} B in, "
        f"largest write value {summary['largest_write_value']} B; the peripheral's own "
        f"GATT client: {summary['peripheral_requests']} requests"
    )
