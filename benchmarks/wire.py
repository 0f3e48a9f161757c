"""Round trips, flights, bytes on air and connected -> committed, from traced PDUs.

One enrolment per mode (qr, code, compare, passkey, button) and trust step (Wi-Fi only,
zone, peer) at MTU 247 and 23, as the CLI's ``provision()`` runs it, every PDU traced
(:mod:`benchmarks.air`); the same table for ESP-IDF security 2, HomeKit and Matter from
their published flows (:mod:`benchmarks.flows`); and the v2 targets
(:mod:`benchmarks.targets`).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import flows, targets
from benchmarks.air import (
    CATEGORIES,
    CERTS,
    FRAMING,
    HANDSHAKE,
    OTHER,
    SETUP,
    TRACE_MODES,
    VARIANTS,
    WIFI,
    WIFI_ONLY,
    Cost,
    LinkModel,
    analyse,
    trace_enrolment,
)
from benchmarks.common import PEER, ZONE, BenchHub, Factory
from bleprov.core.session.messages import Mode


@dataclass
class WireResults:
    costs: list[Cost]
    #: qr + zone at MTU 247 on a device the host met before.
    known: Cost | None
    anchors: list[Cost]


def cases(quick: bool) -> list[tuple[Mode, str, int]]:
    if quick:
        return [(Mode.QR, ZONE, 247), (Mode.CODE, ZONE, 247), (Mode.QR, ZONE, 23)]
    return [(m, v, mtu) for v in VARIANTS for m in TRACE_MODES for mtu in (247, 23)]


async def run_all(quick: bool) -> WireResults:
    factory = Factory.create()
    costs = []
    with tempfile.TemporaryDirectory(prefix="bleprov-bench-") as name:
        work = Path(name)
        hub = BenchHub.create(work / "hub")
        try:
            for mode, variant, mtu in cases(quick):
                t = time.perf_counter()
                trace = await trace_enrolment(
                    mode, variant, mtu=mtu, factory=factory, hub=hub, work=work
                )
                costs.append(analyse(trace))
                print(
                    f"  traced {mode.label}/{variant} MTU {mtu}: {len(trace.pdus)} PDUs, "
                    f"{time.perf_counter() - t:.1f} s wall",
                    flush=True,
                )
            known = analyse(
                await trace_enrolment(
                    Mode.QR, ZONE, mtu=247, factory=factory, hub=hub, work=work, known=True
                )
            )
            # The same first contact when the user picks the network from the device's
            # scan instead of naming it: one flight more.
            costs.append(
                analyse(
                    await trace_enrolment(
                        Mode.QR, ZONE, mtu=247, factory=factory, hub=hub, work=work, named=False
                    )
                )
            )
        finally:
            hub.close()
    anchors = [flows.model(s, mtu) for s in flows.SYSTEMS for mtu in (247, 23)]
    return WireResults(costs, known, anchors)


def _step(variant: str) -> str:
    return {WIFI_ONLY: "Wi-Fi only", ZONE: "zone enrolment", PEER: "peer binding"}.get(
        variant, variant
    )


def render_costs(rows: Sequence[Cost], *, with_step: bool = True) -> str:
    """Per mode: round trips, flights, bytes by category at MTU 247 and totals at 23, time."""
    by = {(r.mode, r.variant, r.mtu): r for r in rows}
    order = [m.label for m in TRACE_MODES]
    steps = [ZONE, PEER, WIFI_ONLY]
    keys = sorted(
        {(r.mode, r.variant) for r in rows},
        key=lambda k: (
            steps.index(k[1]) if k[1] in steps else -1,
            order.index(k[0]) if k[0] in order else len(order),
        ),
    )
    head = "| mode | trust step " if with_step else "| system "
    lines = [
        head
        + "| set-up ATT round trips | ATT round trips in all | protocol flights "
        + "".join(f"| {c} " for c in CATEGORIES)
        + "| on air, MTU 247 | on air, MTU 23 | connected -> committed, 30 ms (MTU 247 / 23) "
        "| of which set-up (MTU 247 / 23) |",
        "|---" * (4 + len(CATEGORIES) + 4 + (1 if with_step else 0)) + "|",
    ]
    for mode, variant in keys:
        big, small = by.get((mode, variant, 247)), by.get((mode, variant, 23))
        r = big or small
        assert r is not None
        pair = [x for x in (big, small) if x is not None]

        def both(figure: str, rows: list[Cost] = pair) -> str:
            values = [str(getattr(x, figure)) for x in rows]
            return " / ".join(values) if len(set(values)) > 1 else values[0]

        cells = [f"{mode}", _step(variant)] if with_step else [mode]
        cells += [both("setup_round_trips"), both("att_round_trips"), both("flights")]
        cells += [f"{big.bytes_by.get(c, 0):,}" if big else "-" for c in CATEGORIES]
        cells += [f"{x.air_bytes:,} B" if x else "-" for x in (big, small)]
        cells.append(" / ".join(f"{x.seconds:.2f} s" if x else "-" for x in (big, small)))
        cells.append(" / ".join(f"{x.setup_seconds:.2f} s" if x else "-" for x in (big, small)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


MODEL_TEXT = (
    "How it is measured. Every L2CAP PDU the two virtual controllers hand each other is "
    "recorded at the link between them (benchmarks/air.py: ATT, and SMP or signalling if "
    "any; nothing is counted in bleprov's code), from the CONNECT_IND (connection-complete; "
    "finding the device by scanning is not counted) to the device's answer to the commit. "
    "Each PDU is noted with its cause: the last PDU its sender had received when it sent it. "
    "**Set-up ATT round trips**: ATT requests (and indications) begun before the host's "
    "first frame (MTU exchange, discovery, reads, CCCD write); **in all**: every ATT "
    "request of the enrolment. **Protocol flights**: the host sends (pipelined messages "
    "together), then waits for the device's answer; read from the order in which the "
    "host hands whole messages to its framing and gets whole messages back (a message "
    "queued behind others, held by credits, is in their flight however late its frames "
    "go; one sent only once the device answered opens a new flight). "
    "**Bytes on air**: each PDU's L2CAP bytes plus 10 B per LL "
    "packet (preamble, access address, header, CRC; no MIC: the link is not encrypted), LL "
    "payload 251 at MTU 247 (data length extension) and 27 at MTU 23. By category: "
    "certificates (DER X.509 wherever they travel), handshake (handshake messages and the "
    "attestation's other fields), Wi-Fi (scan, set, status), other (CSR, zone and peer "
    "bodies, commit), framing/ATT overhead (LL, L2CAP and ATT headers of the frames' PDUs, "
    "our frame headers and CREDIT/OPEN frames, record headers and AEAD tags), GATT set-up "
    "(whole PDUs before the first frame); the category columns are at MTU 247. "
    "**Time model**: connection events every 30 ms, "
    "event 0 the first after connection-complete; a PDU goes in the first event after the "
    "one that delivered its cause (a host answers in the next event at the earliest: the "
    "request goes up over HCI and the answer back down), and after what its side sent "
    "before it; each direction carries at most 6 LL packets per event (6 full 251-byte "
    "packets, about 14 ms of air at 1M PHY with their empty replies, fit a 30 ms event; "
    "phones allow 4 to 7), a longer PDU spills into the next events; connected -> committed "
    "is the event of the device's last frame times the interval. Host and device CPU and "
    "the Wi-Fi join are modelled at 0 (the join is reported on its own in section 2); LL "
    "control procedures (feature exchange, data length and PHY update) are not modelled."
)


def render(results: WireResults) -> str:
    parts = [
        MODEL_TEXT,
        "",
        render_costs(results.costs),
        "",
    ]
    if results.known is not None:
        k = results.known
        parts += [
            f"Known device (the host connected to it once before; qr, zone, MTU 247): "
            f"{k.setup_round_trips} set-up ATT round trips, {k.flights} flights, "
            f"{k.air_bytes:,} B on air, {k.seconds:.2f} s connected -> committed "
            f"({k.setup_seconds:.2f} s of set-up).",
            "",
        ]
    unclassified = sum(c.unclassified for c in results.costs)
    if unclassified:
        parts += [
            f"{unclassified} B of records could not be matched to their plaintext and are "
            "counted as other (the session layer no longer seals through "
            "`SecureChannel.seal`: benchmarks/air.py's SealLog needs its new place).",
            "",
        ]
    parts += [
        "### The anchors on the same link model",
        "",
        "Not run: modelled from each system's published message flow and field sizes "
        "(benchmarks/flows.py cites the source of every message size), turned into ATT "
        "PDUs as each system's BLE transport carries them (ESP-IDF: write the request, "
        "read the answer; HomeKit: HAP-BLE PDUs written and read; Matter: BTP segments as "
        "acknowledged writes and indications), then counted and timed by the same code as "
        "bleprov's traces. GATT set-up: MTU exchange and a full discovery of one service "
        f"({flows.GENERIC_DISCOVERY} round trips, as bumble's client does it for bleprov "
        "v1), plus what each client adds:",
        "",
    ]
    parts += [f"- {s.name}: {s.setup_note}." for s in flows.SYSTEMS]
    parts += ["", render_costs(results.anchors, with_step=False), ""]
    parts += [f"- {s.name}: {note}." for s in flows.SYSTEMS for note in s.notes]
    return "\n".join(parts)


def find(results: WireResults, mode: str, variant: str, mtu: int) -> Cost:
    return next(c for c in results.costs if (c.mode, c.variant, c.mtu) == (mode, variant, mtu))


def verdicts(
    results: WireResults,
    handshake_device_ms: dict[str, float],
    srp_device_ms: float | None,
    *,
    sansio_device_ms: float | None = None,
) -> list[targets.Verdict]:
    """Every v2 target against this run's figures (None where the run did not measure),
    each unmet one with why, in this run's figures. ``sansio_device_ms``: the session
    machines' share of the device's handshake CPU (section 1)."""
    v = targets.verdict

    def bytes_why() -> str:
        qr = find(results, "qr", ZONE, 247)
        certificates = qr.bytes_by["certificates"]
        rest = qr.air_bytes - certificates
        room = targets.QR_ZONE_BYTES.limit - rest
        return (
            f"certificates are {certificates:,} B of the {qr.air_bytes:,} B. Four DER X.509 "
            "certificates (ECDSA P-256, 500-610 B each) must travel: the device's own in "
            "its attestation (its intermediate goes by hash and the root not at all), and "
            "in zone/install the device's member certificate, its issuing CA and the zone "
            "root, the trust anchor the device has no other way to learn. Everything else "
            f"is {rest:,} B, so the target needs those four in {room:,.0f} B: "
            "CBOR-encoded certificates (C509, draft-ietf-cose-cbor-encoded-cert, an "
            "Internet-Draft with no maintained Python implementation to check ours "
            "against) or a zone without an issuing CA. Either changes the certificate "
            "profiles (protocol.md section 15) and what TLS peers present; v2 keeps X.509."
        )

    def cpu_why() -> str:
        if srp_device_ms is None or sansio_device_ms is None:
            return ""
        worst_ms = max(handshake_device_ms.values())
        return (
            f"the session machines alone (Noise, SPAKE2+ or the commitments, the "
            f"attestation) cost the device {sansio_device_ms:.2f} ms (median over modes), "
            f"{srp_device_ms / sansio_device_ms:.1f}x below SRP's {srp_device_ms:.2f} ms; "
            f"as the daemon runs it the worst mode ({worst}) costs {worst_ms:.2f} ms. "
            "`python -m benchmarks.device_cpu` splits the difference: the zone key made "
            "and its proof signed in the handshake's flight (saves a flight), the durable "
            "attempt reservation (one encrypted, fsync'd store write before HELLO is "
            "answered: the target's own mechanism, so that an attempt counts even if the "
            "power is cut), the attempt ledger and store reads, and the event loop. Code "
            "mode's machines alone cost more than the 5x budget: four P-256 "
            "multiplications by arbitrary points, already in pycryptodome's compiled "
            "code (OpenSSL through cryptography offers only the x coordinate). A "
            "reservation left standing between sessions would take the write off the "
            "handshake, but then every power cycle would count as a failed attempt and "
            "lock a device out that is merely switched off and on."
        )

    def statements_why() -> str:
        return (
            "a read-only check before the device is asked anything (an admin who may "
            "not enrol is refused before the device spends its attempt), then each of "
            "the two transactions (see the next row) checks the admin and the device "
            "again inside its write lock, which is what a concurrent change cannot slip "
            "past; BEGIN IMMEDIATE counts as a statement"
        )

    def transactions_why() -> str:
        return (
            "two facts known at two different times. The pending record (certificate "
            "serial, owner) must be durable before the device is sent its certificate, so "
            "that a hub that crashes after the device commits still knows that "
            "certificate (docs/security.md, fail-safe; S1 in tests/radio/"
            "test_lost_messages.py); it can be confirmed only once the device has "
            "committed, a flight later. One transaction would either hand out a "
            "certificate the hub has no record of, or record as done an enrolment the "
            "device may still roll back."
        )

    def cpu_ratio() -> float | None:
        if not handshake_device_ms or not srp_device_ms:
            return None
        return srp_device_ms / max(handshake_device_ms.values())

    worst = max(handshake_device_ms, key=lambda m: handshake_device_ms[m], default="?")
    known = results.known
    return [
        v(targets.QR_ZONE_FLIGHTS, lambda: find(results, "qr", ZONE, 247).flights, "traced"),
        v(targets.CODE_ZONE_FLIGHTS, lambda: find(results, "code", ZONE, 247).flights, "traced"),
        v(
            targets.KNOWN_SETUP,
            lambda: known.setup_round_trips if known else None,
            "traced, second connection of the same host",
        ),
        v(
            targets.QR_ZONE_BYTES,
            lambda: find(results, "qr", ZONE, 247).air_bytes,
            "traced",
            bytes_why,
        ),
        v(
            targets.QR_ZONE_SECONDS,
            lambda: known.seconds if known else None,
            "traced PDUs on the link model (first contact: "
            f"{find(results, 'qr', ZONE, 247).seconds:.2f} s)"
            if any(c.mode == "qr" and c.variant == ZONE and c.mtu == 247 for c in results.costs)
            else "traced PDUs on the link model",
        ),
        v(targets.DEVICE_CPU, cpu_ratio, f"section 3, same run (worst: {worst})", cpu_why),
        v(
            targets.REGISTRY,
            lambda: find(results, "qr", ZONE, 247).registry_statements,
            "SQLAlchemy statements during provision()",
            statements_why,
        ),
        v(
            targets.REGISTRY_TRANSACTIONS,
            lambda: find(results, "qr", ZONE, 247).registry_transactions,
            "SQLAlchemy commits during provision()",
            transactions_why,
        ),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    results = asyncio.run(run_all(args.quick))
    print(render(results))
    print()
    print(targets.render(verdicts(results, {}, None)))


__all__ = ["LinkModel", "WireResults", "render", "run_all", "verdicts"]
_ = (CERTS, FRAMING, HANDSHAKE, OTHER, SETUP, WIFI)

if __name__ == "__main__":
    main()
