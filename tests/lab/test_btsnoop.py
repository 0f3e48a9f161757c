"""The lab's reading of btmon captures: what it counts is what crossed the link."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from lab import btsnoop

T0 = 1_800_000_000.0


def _record(index: int, opcode: int, payload: bytes, when: float) -> bytes:
    stamp = int(when * 1e6) + btsnoop.EPOCH_OFFSET_US
    flags = (index << 16) | opcode
    return struct.pack(">IIIIq", len(payload), len(payload), flags, 0, stamp) + payload


def _acl(handle: int, boundary: int, data: bytes) -> bytes:
    return struct.pack("<HH", handle | (boundary << 12), len(data)) + data


def _att(pdu: bytes) -> bytes:
    return struct.pack("<HH", len(pdu), btsnoop.ATT_CID) + pdu


def _capture(tmp_path: Path, records: list[bytes]) -> Path:
    path = tmp_path / "hci.btsnoop"
    header = b"btsnoop\0" + struct.pack(">II", 1, btsnoop.MONITOR_DATALINK)
    path.write_bytes(header + b"".join(records))
    return path


def test_counts_a_central_s_exchange_with_fragments_joined(tmp_path: Path) -> None:
    frame = bytes(range(60))  # a 63-byte write command, sent in three ACL fragments
    write = _att(bytes([btsnoop.WRITE_CMD, 0x10, 0x00]) + frame)
    records = [
        # the MTU exchange: 517 asked, 185 answered
        _record(1, btsnoop.ACL_TX, _acl(64, 0, _att(b"\x02\x05\x02")), T0),
        _record(1, btsnoop.ACL_RX, _acl(64, 2, _att(b"\x03\xb9\x00")), T0 + 0.1),
        # a read and a Read Blob of the info value
        _record(1, btsnoop.ACL_TX, _acl(64, 0, _att(b"\x0a\x03\x00")), T0 + 0.2),
        _record(1, btsnoop.ACL_RX, _acl(64, 2, _att(b"\x0b" + b"i" * 184)), T0 + 0.3),
        _record(1, btsnoop.ACL_TX, _acl(64, 0, _att(b"\x0c\x03\x00\xb8\x00")), T0 + 0.4),
        _record(1, btsnoop.ACL_RX, _acl(64, 2, _att(b"\x0d" + b"i" * 10)), T0 + 0.5),
        _record(1, btsnoop.ACL_TX, _acl(64, 0, write[:27]), T0 + 0.6),
        _record(1, btsnoop.ACL_TX, _acl(64, 1, write[27:54]), T0 + 0.6),
        _record(1, btsnoop.ACL_TX, _acl(64, 1, write[54:]), T0 + 0.6),
        _record(1, btsnoop.ACL_RX, _acl(64, 2, _att(b"\x1b\x12\x00hello")), T0 + 0.7),
        # another controller's traffic and a command packet: not counted
        _record(0, btsnoop.ACL_RX, _acl(64, 2, _att(b"\x0a\x03\x00")), T0 + 0.3),
        _record(1, 2, b"\x01\x0c\x00", T0 + 0.3),
        # after the window
        _record(1, btsnoop.ACL_TX, _acl(64, 0, _att(b"\x0a\x03\x00")), T0 + 9),
    ]
    packets = btsnoop.read(_capture(tmp_path, records))
    summary = btsnoop.att_summary(packets, 1, T0 - 1, T0 + 1)
    assert summary["mtu"] == 185 and summary["mtu_exchanged"]
    assert summary["requests"] == 3  # Exchange MTU, Read, Read Blob
    assert summary["read_blob_requests"] == 1
    assert summary["write_commands"] == 1 and summary["largest_write_value"] == 60
    assert summary["notifications"] == 1
    assert summary["bytes_out"] == 3 + 3 + 5 + 63
    assert summary["bytes_in"] == 3 + 185 + 11 + 8
    assert "ATT MTU 185, 3 ATT round trips (1 Read Blob)" in btsnoop.describe(summary)


def test_from_the_peripheral_s_controller_the_directions_turn(tmp_path: Path) -> None:
    records = [
        _record(0, btsnoop.ACL_RX, _acl(1, 2, _att(b"\x0a\x03\x00")), T0),
        _record(0, btsnoop.ACL_TX, _acl(1, 0, _att(b"\x0b" + b"i" * 22)), T0 + 0.1),
        _record(0, btsnoop.ACL_RX, _acl(1, 2, _att(b"\x52\x10\x00" + b"f" * 20)), T0 + 0.2),
    ]
    packets = btsnoop.read(_capture(tmp_path, records))
    summary = btsnoop.att_summary(packets, 0, T0 - 1, T0 + 1, central=False)
    assert summary["mtu"] == 23 and not summary["mtu_exchanged"]
    assert summary["requests"] == 1 and summary["largest_write_value"] == 20
    assert summary["largest_pdu_in"] == 23


def test_a_file_that_is_not_a_btmon_capture_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "x"
    other.write_bytes(b"btsnoop\0" + struct.pack(">II", 1, 1002))
    with pytest.raises(btsnoop.CaptureError, match="monitor"):
        btsnoop.read(other)
    other.write_bytes(b"not a capture")
    with pytest.raises(btsnoop.CaptureError):
        btsnoop.read(other)
