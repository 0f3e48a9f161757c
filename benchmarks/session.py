"""Session benchmark: round trips, bytes and CPU time of each out-of-band mode.

CPU: the sans-IO state machines driven in one process (no radio), host and device timed
separately with ``time.process_time``, median of ``--runs`` handshakes (each including
attestation signing and verification). Round trips and bytes: the same handshake counted
message by message (session-layer bytes; framing adds 5 bytes per message at MTU 247).
The code mode's scrypt runs on the host at the device's published cost (cheap here, see
the ``scrypt`` row for the default cost).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.serialization import Encoding

from bleprov.core.advertising import ALL_MODES, DeviceInfo, DeviceState
from bleprov.core.attempts import AttemptLimits, ButtonWindow
from bleprov.core.crypto.spake2plus import DEFAULT_COST, ScryptCost, derive_verifier
from bleprov.core.device_secrets import SPAKE_ID_VERIFIER
from bleprov.core.identity import IntermediateCache, Manufacturer, TrustPolicy
from bleprov.core.session import device as dev
from bleprov.core.session import host as hst
from bleprov.core.session.messages import Mode

NOW = datetime.now(UTC)
CHEAP = ScryptCost(n=1 << 10, r=8, p=1)
SALT = bytes(16)
CODE = b"48613702"


@dataclass
class Row:
    mode: str
    round_trips: int
    messages: int
    bytes_up: int
    bytes_down: int
    host_ms: float
    device_ms: float


def _setup() -> tuple[dev.DeviceSecrets, hst.Trust, bytes]:
    manufacturer = Manufacturer.create("Bench", now=NOW)
    identity = manufacturer.issue_device(now=NOW)
    record = derive_verifier(
        CODE, salt=SALT, id_verifier=SPAKE_ID_VERIFIER, cost=CHEAP
    ).verifier_record()
    secrets = dev.DeviceSecrets(identity, bytes(range(16)), {b"": record})
    # A host that knows the manufacturer's intermediate (the steady state; a first
    # contact fetches it once: docs/protocol.md section 9).
    trust = hst.Trust(
        (manufacturer.root_certificate.public_bytes(Encoding.DER),),
        TrustPolicy.REFUSE,
        IntermediateCache([manufacturer.intermediate_certificate.public_bytes(Encoding.DER)]),
    )
    info = DeviceInfo(
        2,
        DeviceState.VIRGIN,
        ALL_MODES,
        1,
        65536,
        16,
        1,
        SALT,
        (CHEAP.log2_n, CHEAP.r, CHEAP.p),
    ).encode()
    return secrets, trust, info


def one_handshake(mode: Mode, secrets: dev.DeviceSecrets, trust: hst.Trust, info: bytes) -> Row:
    button = ButtonWindow()
    button.press(0.0)
    device = dev.DeviceSession(
        secrets=secrets,
        policy=ALL_MODES,
        device_info=info,
        limits=AttemptLimits(),
        button=button,
        connection="h",
        now=0.0,
        device_confirms=True,  # a display and a button: compare is offered
    )
    secret: hst.OutOfBand = None
    if mode is Mode.QR:
        secret = hst.QrSecret(secrets.identity.noise_static_public_key, secrets.label_secret or b"")
    elif mode is Mode.CODE:
        secret = hst.CodeSecret(CODE)
    host_cpu = device_cpu = 0.0
    t = time.process_time()
    host = hst.HostSession(
        mode=mode, secret=secret, device_info=info, trust=trust, wall_clock=NOW, now=0.0
    )
    pending = [e.data for e in host.start(0.0) if isinstance(e, hst.SendMessage)]
    host_cpu += time.process_time() - t
    row = Row(mode.label, 0, 0, 0, 0, 0.0, 0.0)
    while pending:
        row.round_trips += 1
        replies: list[bytes] = []
        for m in pending:
            row.messages += 1
            row.bytes_up += len(m)
            t = time.process_time()
            events = device.receive(m, 1.0)
            if mode is Mode.COMPARE and any(isinstance(e, dev.ShowNumber) for e in events):
                events += device.confirm_number(True, 1.0)  # the device's user, too
            device_cpu += time.process_time() - t
            replies += [e.data for e in events if isinstance(e, dev.SendMessage)]
        pending = []
        for m in replies:
            row.messages += 1
            row.bytes_down += len(m)
            t = time.process_time()
            events = host.receive(m, 1.0)
            for e in list(events):
                if isinstance(e, hst.CompareNumber):
                    events += host.confirm_number(True, 1.0)
                if isinstance(e, hst.PasskeyRequested) and device.number is not None:
                    events += host.enter_passkey(device.number, 1.0)  # typed by the user
            host_cpu += time.process_time() - t
            pending += [e.data for e in events if isinstance(e, hst.SendMessage)]
    if not host.is_open or not device.is_open:
        raise RuntimeError(f"{mode.label} handshake did not complete")
    row.host_ms, row.device_ms = host_cpu * 1000, device_cpu * 1000
    return row


def run(runs: int) -> list[Row]:
    secrets, trust, info = _setup()
    rows = []
    for mode in Mode:
        samples = [one_handshake(mode, secrets, trust, info) for _ in range(runs)]
        first = samples[0]
        first.host_ms = statistics.median(s.host_ms for s in samples)
        first.device_ms = statistics.median(s.device_ms for s in samples)
        rows.append(first)
    return rows


def scrypt_default_ms() -> float:
    t = time.process_time()
    derive_verifier(CODE, salt=SALT, id_verifier=SPAKE_ID_VERIFIER, cost=DEFAULT_COST)
    return (time.process_time() - t) * 1000


def render(rows: list[Row], scrypt_ms: float | None) -> str:
    lines = [
        "| mode | round trips | messages | bytes host->device | bytes device->host "
        "| host CPU (ms) | device CPU (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.mode} | {r.round_trips} | {r.messages} | {r.bytes_up} | {r.bytes_down} "
            f"| {r.host_ms:.2f} | {r.device_ms:.2f} |"
        )
    if scrypt_ms is not None:
        lines.append(
            f"\nscrypt at the default cost (N=2^15, r=8, p=1), once per code-mode session "
            f"on the host and once when the label is made: {scrypt_ms:.0f} ms CPU."
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    print(render(run(args.runs), scrypt_default_ms()))


if __name__ == "__main__":
    main()
