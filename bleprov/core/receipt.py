"""Enrolment receipts: how a host learns what a device committed when the answer was lost.

A COMMIT whose answer never arrives leaves the host unable to tell whether the device
committed; guessing either way breaks something (a revoked certificate on an enrolled
device, or an enrolment the hub keeps that the device rolled back). Matter resolves this
by reaching the device again after commissioning; so do we, over the same link:

1. Every enrolment session has an **ID** (:attr:`EnrolmentReceipt.enrolment_id`, 16
   bytes of the session's channel binding: unique to the session, not secret) and a
   **receipt secret** (32 bytes of the session's exporter: known to its two ends only).
2. Every COMMIT writes, in the same atomic store write as everything else, the
   ``enrolment`` record (:func:`encode_record`): the ID and a SPAKE2+ verifier of the
   secret. A device also keeps, in RAM, the verifiers of the last few sessions it rolled
   back since it started.
3. A host that lost the answer reconnects in code mode as the reserved prover
   ``"bleprov enrolment " || hex(ID)`` with the receipt secret. The device accepts that
   prover whatever its owner and policy, but only for an enrolment it committed last or
   rolled back lately; such a session may read ``info`` and ``enrolment/status`` only
   (docs/protocol.md, "Enrolment outcome"). The device's attestation authenticates the
   answer; only an authenticated answer confirms or revokes.

Pure code: bytes in, bytes out.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from bleprov.core import cbor
from bleprov.core.crypto.spake2plus import (
    POINT_LEN,
    SCALAR_LEN,
    ProverSecrets,
    ScryptCost,
    VerifierRecord,
    derive_verifier,
)
from bleprov.core.errors import MalformedData
from bleprov.core.peer import PeerError, PeerPin

#: SPAKE2+ prover identity of receipt sessions, followed by the enrolment ID in hex.
RECEIPT_USER_PREFIX: Final = b"bleprov enrolment "
#: Channel-binding label of the enrolment ID (public, unique to the session).
ENROLMENT_ID_LABEL: Final = b"enrolment id"
#: Exporter label of the receipt secret (secret, known to the session's two ends).
RECEIPT_SECRET_LABEL: Final = b"enrolment receipt"
ENROLMENT_ID_SIZE: Final = 16
#: The secret is 256 random bits: scrypt's work factor adds nothing, so its least cost.
RECEIPT_COST: Final = ScryptCost(n=1 << 10, r=1, p=1)
#: Store record a COMMIT writes (docs/protocol.md, "Device records").
RECORD_ENROLMENT: Final = "enrolment"
RECORD_VERSION: Final = 1
RECORD_SIZE: Final = 1 + ENROLMENT_ID_SIZE + SCALAR_LEN + POINT_LEN
#: Rolled-back sessions whose receipts a device keeps (RAM only).
MAX_ROLLED_BACK: Final = 4
#: Enrolments whose outcome a host keeps to learn later (its encrypted store).
MAX_UNRESOLVED: Final = 64
_UNRESOLVED_LABEL: Final = "bleprov unresolved enrolments"
_MAX_UNRESOLVED_SIZE: Final = 64 + MAX_UNRESOLVED * 2400


@dataclass(frozen=True, repr=False)
class EnrolmentReceipt:
    """One session's enrolment ID and receipt secret (the host's proof that it ran it)."""

    enrolment_id: bytes
    secret: bytes

    def __post_init__(self) -> None:
        if len(self.enrolment_id) != ENROLMENT_ID_SIZE or len(self.secret) != 32:
            raise MalformedData("an enrolment receipt is a 16-byte ID and a 32-byte secret")

    @classmethod
    def of_session(
        cls, channel_binding: Callable[[bytes], bytes], exporter: Callable[[bytes], bytes]
    ) -> EnrolmentReceipt:
        """This session's receipt: both ends derive the same one."""
        return cls(enrolment_id_of(channel_binding), exporter(RECEIPT_SECRET_LABEL))

    @property
    def user(self) -> bytes:
        """The code mode's prover identity for this receipt."""
        return receipt_user(self.enrolment_id)

    def prover(self) -> ProverSecrets:
        from bleprov.core.device_secrets import SPAKE_ID_VERIFIER

        return derive_verifier(
            self.secret,
            salt=self.enrolment_id,
            id_prover=self.user,
            id_verifier=SPAKE_ID_VERIFIER,
            cost=RECEIPT_COST,
        )

    def verifier(self) -> VerifierRecord:
        """What the device keeps: never the secret."""
        return self.prover().verifier_record()

    def __repr__(self) -> str:
        return f"EnrolmentReceipt(id={self.enrolment_id.hex()})"


def enrolment_id_of(channel_binding: Callable[[bytes], bytes]) -> bytes:
    """The ID of the enrolment a session runs (what the hub records it under)."""
    return channel_binding(ENROLMENT_ID_LABEL)[:ENROLMENT_ID_SIZE]


def receipt_user(enrolment_id: bytes) -> bytes:
    return RECEIPT_USER_PREFIX + enrolment_id.hex().encode("ascii")


def is_receipt_user(user: bytes) -> bool:
    return user.startswith(RECEIPT_USER_PREFIX)


@dataclass(frozen=True, repr=False)
class CommittedEnrolment:
    """The ``enrolment`` record: the last committed enrolment's ID and receipt verifier."""

    enrolment_id: bytes
    verifier: VerifierRecord

    @property
    def user(self) -> bytes:
        return receipt_user(self.enrolment_id)

    def is_(self, enrolment_id: bytes) -> bool:
        """Constant-time: is this record the enrolment ``enrolment_id``?"""
        return hmac.compare_digest(self.enrolment_id, enrolment_id)

    def __repr__(self) -> str:
        return f"CommittedEnrolment(id={self.enrolment_id.hex()})"


def encode_record(receipt: EnrolmentReceipt) -> bytes:
    """``version 1 || ID (16) || w0 (32) || L (65)``: fixed layout, 114 bytes."""
    verifier = receipt.verifier()
    return bytes([RECORD_VERSION]) + receipt.enrolment_id + verifier.encode()


def decode_record(raw: bytes) -> CommittedEnrolment:
    """Strict inverse of :func:`encode_record`; MalformedData for anything else."""
    if len(raw) != RECORD_SIZE or raw[0] != RECORD_VERSION:
        raise MalformedData(f"an enrolment record is version {RECORD_VERSION}, {RECORD_SIZE} bytes")
    start = 1 + ENROLMENT_ID_SIZE
    return CommittedEnrolment(raw[1:start], VerifierRecord.decode(raw[start:]))


@dataclass(frozen=True, repr=False)
class UnresolvedEnrolment:
    """An enrolment whose COMMIT answer was lost and whose device could not be asked: what
    a later run needs to ask it (the receipt) and to finish (the pin to add, the hub's
    pending certificate). Kept in the host's encrypted store (the receipt is a secret)."""

    device_id: str
    discriminator: int
    receipt: EnrolmentReceipt
    #: Peer binding: the device's pin, pinned once the device says it committed.
    peer: PeerPin | None = None
    #: Zone enrolment: the serial of the certificate the hub keeps pending.
    zone_serial: int | None = None

    def __repr__(self) -> str:
        return f"UnresolvedEnrolment({self.device_id}, {self.receipt!r})"

    def _fields(self) -> list[object]:
        return [
            self.device_id,
            self.discriminator,
            self.receipt.enrolment_id,
            self.receipt.secret,
            self.zone_serial,
            None if self.peer is None else self.peer.cert_der,
        ]


def encode_unresolved(entries: list[UnresolvedEnrolment]) -> bytes:
    """Deterministic CBOR ``[label, 1, [[device, discriminator, id, secret, serial / null,
    pin certificate / null], ...]]``, by device."""
    ordered = sorted(entries, key=lambda entry: entry.device_id)
    return cbor.dumps([_UNRESOLVED_LABEL, 1, [entry._fields() for entry in ordered]])


def decode_unresolved(raw: bytes) -> list[UnresolvedEnrolment]:
    """Strict inverse of :func:`encode_unresolved`; MalformedData for anything else."""
    value = cbor.decode_array(raw, _MAX_UNRESOLVED_SIZE, MalformedData, "unresolved enrolments")
    if len(value) != 3 or value[0] != _UNRESOLVED_LABEL or type(value[1]) is not int:
        raise MalformedData("not a bleprov record of unresolved enrolments")
    rows = value[2]
    if value[1] != 1 or not isinstance(rows, list) or len(rows) > MAX_UNRESOLVED:
        raise MalformedData(f"unresolved enrolments: version 1, at most {MAX_UNRESOLVED}")
    entries = []
    for row in rows:
        if not isinstance(row, list) or len(row) != 6:
            raise MalformedData("an unresolved enrolment has six fields")
        device_id, discriminator, enrolment_id, secret, serial, cert = row
        if not isinstance(device_id, str) or not 0 < len(device_id) <= 128:
            raise MalformedData("an unresolved enrolment names its device")
        if type(discriminator) is not int or not 0 <= discriminator < 1 << 12:
            raise MalformedData("an unresolved enrolment's discriminator is 12 bits")
        if not isinstance(enrolment_id, bytes) or not isinstance(secret, bytes):
            raise MalformedData("an unresolved enrolment's receipt is two byte strings")
        if serial is not None and (type(serial) is not int or not 0 < serial < 1 << 160):
            raise MalformedData("an unresolved enrolment's serial is a certificate serial")
        if cert is not None and not isinstance(cert, bytes):
            raise MalformedData("an unresolved enrolment's pin is a certificate")
        try:
            pin = None if cert is None else PeerPin.from_certificate(cert)
        except PeerError as exc:
            raise MalformedData(f"an unresolved enrolment's pin: {exc}") from None
        receipt = EnrolmentReceipt(enrolment_id, secret)
        entries.append(UnresolvedEnrolment(device_id, discriminator, receipt, pin, serial))
    return entries


__all__ = [
    "ENROLMENT_ID_SIZE",
    "MAX_ROLLED_BACK",
    "RECEIPT_COST",
    "RECEIPT_USER_PREFIX",
    "RECORD_ENROLMENT",
    "CommittedEnrolment",
    "EnrolmentReceipt",
    "UnresolvedEnrolment",
    "decode_record",
    "decode_unresolved",
    "encode_record",
    "encode_unresolved",
    "enrolment_id_of",
    "is_receipt_user",
    "receipt_user",
]
