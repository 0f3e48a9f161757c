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

from bleprov.core.crypto.spake2plus import (
    POINT_LEN,
    SCALAR_LEN,
    ProverSecrets,
    ScryptCost,
    VerifierRecord,
    derive_verifier,
)
from bleprov.core.errors import MalformedData

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
        from bleprov.core.session.modes import SPAKE_ID_VERIFIER

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


__all__ = [
    "ENROLMENT_ID_SIZE",
    "MAX_ROLLED_BACK",
    "RECEIPT_COST",
    "RECEIPT_USER_PREFIX",
    "RECORD_ENROLMENT",
    "CommittedEnrolment",
    "EnrolmentReceipt",
    "decode_record",
    "encode_record",
    "enrolment_id_of",
    "is_receipt_user",
    "receipt_user",
]
