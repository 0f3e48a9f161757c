"""``python -m benchmarks.trace``: every PDU of one qr + zone enrolment, into docs/trace.md.

One fresh device enrolled by ``provision()`` as the CLI runs it (qr mode, Wi-Fi, zone
certificate, commit) on the virtual radio at MTU 247 (``--mtu``), traced at the link
between the two controllers (:mod:`benchmarks.air`); each PDU with its direction, ATT
opcode, handle, length, what it carries and its time in the link model (30 ms
connection interval, ``--interval-ms``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from benchmarks.air import (
    ATT_OPCODES,
    CATEGORIES,
    CID_ATT,
    CID_SIGNALLING,
    CID_SMP,
    LinkModel,
    Trace,
    analyse,
    frame_header,
    reassemble,
    schedule,
    trace_enrolment,
)
from benchmarks.common import ZONE, BenchHub, Factory
from bleprov.core.profile import default_profile
from bleprov.core.session.messages import Mode
from bleprov.radio.virtual import LL_PAYLOAD_DLE, LL_PAYLOAD_NO_DLE, air_bytes_for

DEFAULT_OUT: Final = Path(__file__).resolve().parents[1] / "docs" / "trace.md"
_UUIDS: Final = {0x2800: "primary services", 0x2803: "characteristics", 0x2902: "CCCD"}


def _att_detail(payload: bytes) -> str:
    """A few words on a GATT set-up PDU."""
    op = payload[0]
    if op in (0x02, 0x03) and len(payload) >= 3:
        return f"MTU {int.from_bytes(payload[1:3], 'little')}"
    if op in (0x08, 0x10) and len(payload) >= 7:
        start, end = int.from_bytes(payload[1:3], "little"), int.from_bytes(payload[3:5], "little")
        uuid = payload[5:]
        name = (
            _UUIDS.get(int.from_bytes(uuid, "little"), f"0x{int.from_bytes(uuid, 'little'):04X}")
            if len(uuid) == 2
            else "128-bit UUID"
        )
        return f"{name}, handles 0x{start:04X}-0x{end:04X}"
    if op == 0x04 and len(payload) >= 5:
        start, end = int.from_bytes(payload[1:3], "little"), int.from_bytes(payload[3:5], "little")
        return f"descriptors, handles 0x{start:04X}-0x{end:04X}"
    if op == 0x01 and len(payload) >= 5:
        at = int.from_bytes(payload[2:4], "little")
        return f"to 0x{payload[1]:02X} at 0x{at:04X}, code 0x{payload[4]:02X}"
    if op in (0x09, 0x11) and len(payload) >= 2:
        entries = (len(payload) - 2) // payload[1] if payload[1] else 0
        return f"{entries} entr{'y' if entries == 1 else 'ies'}"
    if op == 0x05 and len(payload) >= 2:
        size = 4 if payload[1] == 1 else 18
        return f"{(len(payload) - 2) // size} descriptor(s)"
    if op == 0x0B:
        return f"value {len(payload) - 1} B (the device info)"
    if op == 0x12:
        return f"value {payload[3:].hex(' ')} (subscribe)" if len(payload) <= 5 else ""
    return ""


def render(trace: Trace, model: LinkModel, *, title: str | None = None) -> str:
    messages, carried = reassemble(trace)
    events = schedule(trace.pdus, model)
    cost = analyse(trace, model)
    lines = [
        title
        or (
            f"# Trace: every PDU of one qr + zone enrolment (protocol version "
            f"{default_profile().protocol_version})"
        ),
        "",
        f"One fresh device enrolled by `provision()` as the CLI runs it: qr mode, Wi-Fi "
        f"(named by the user with its security: set, status), zone certificate, commit; "
        f"ATT MTU {trace.mtu}, LL payload "
        f"{model.ll_payload}; virtual radio (bumble's controllers), every L2CAP PDU taken "
        "at the link between them from the CONNECT_IND to the device's answer to the "
        "commit. Time: the PDU's connection event in the link model of "
        'docs/performance.md (section "On the air") at '
        f"{model.interval_ms:g} ms, at most {model.packets_per_event} LL packets per "
        "direction per event, a PDU no earlier than the event after the one that "
        "delivered its cause (the last PDU its sender had received); host, device and "
        "Wi-Fi join at 0. Length: the L2CAP PDU (4-byte header included); on air adds "
        "10 B per LL packet. `cause` is the PDU number it waited for.",
        "",
        f"Totals: {len(trace.pdus)} PDUs, {cost.setup_round_trips} ATT round trips of "
        f"set-up ({cost.att_round_trips} in all), {cost.flights} protocol flights, "
        f"{cost.air_bytes:,} B on air, connected -> committed {cost.seconds:.2f} s "
        f"(set-up {cost.setup_seconds:.2f} s). Bytes on air by category: "
        + ", ".join(f"{c} {cost.bytes_by.get(c, 0):,}" for c in CATEGORIES)
        + ".",
        "",
        "| # | t (ms) | dir | cause | L2CAP | ATT | handle | length | on air | carries |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    channels = {CID_ATT: "ATT", CID_SMP: "SMP", CID_SIGNALLING: "signalling"}
    for pdu in trace.pdus:
        opcode = pdu.opcode
        att = ATT_OPCODES.get(opcode, f"0x{opcode:02X}") if opcode is not None else "-"
        handle = f"0x{pdu.handle:04X}" if pdu.handle is not None else ""
        frame = pdu.frame
        if frame is not None:
            _, what = frame_header(frame)
            names = [messages[i].label for i in carried.get(pdu.index, [])]
            carries = f"frame {what}" + (": " + "; ".join(names) if names else "")
        elif opcode is not None:
            carries = _att_detail(pdu.payload)
        else:
            carries = pdu.payload.hex(" ")[:40]
        lines.append(
            f"| {pdu.index} | {events[pdu.index] * model.interval_ms:g} "
            f"| {'host -> device' if pdu.up else 'device -> host'} "
            f"| {'' if pdu.cause is None else pdu.cause} "
            f"| {channels.get(pdu.cid, hex(pdu.cid))} | {att} | {handle} | {len(pdu.data)} "
            f"| {air_bytes_for(len(pdu.data), model.ll_payload)} | {carries} |"
        )
    lines.append("")
    return "\n".join(lines)


async def run(mtu: int, interval_ms: float) -> str:
    factory = Factory.create()
    with tempfile.TemporaryDirectory(prefix="bleprov-trace-") as name:
        work = Path(name)
        hub = BenchHub.create(work / "hub")
        try:
            first = await trace_enrolment(
                Mode.QR, ZONE, mtu=mtu, factory=factory, hub=hub, work=work
            )
            known = await trace_enrolment(
                Mode.QR, ZONE, mtu=mtu, factory=factory, hub=hub, work=work, known=True
            )
        finally:
            hub.close()
    ll_payload = LL_PAYLOAD_DLE if mtu > 23 else LL_PAYLOAD_NO_DLE
    model = LinkModel(interval_ms=interval_ms, ll_payload=ll_payload)
    version = default_profile().protocol_version
    return "\n".join(
        [
            f"# Trace: every PDU of a qr + zone enrolment (protocol version {version})",
            "",
            "Generated by `python -m benchmarks.trace` (do not edit by hand; rerun it). "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Two runs: a first contact (the host "
            "has never met the device: targeted GATT discovery) and a known device (the "
            "host met it once before and kept its GATT handles, docs/protocol.md section "
            "1.3). In both the host already holds the manufacturer's intermediate.",
            "",
            render(first, model, title="## A. First contact"),
            render(known, model, title="## B. A known device"),
        ]
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trace", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="'-' prints it")
    parser.add_argument("--mtu", type=int, default=247)
    parser.add_argument("--interval-ms", type=float, default=30.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("bumble").setLevel(logging.CRITICAL)
    text = asyncio.run(run(args.mtu, args.interval_ms))
    if str(args.out) == "-":
        print(text)
    else:
        args.out.write_text(text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
