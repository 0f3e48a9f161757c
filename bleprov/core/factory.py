"""Factory provisioning, pure: from a device identity to the device's secrets and its label.

At the factory every device gets a discriminator, the secrets of the modes it offers and
a label that carries them: the label secret and static key (qr), a passcode and/or a
scratch card (code). The device keeps only what it needs to verify: the label secret
(a symmetric key) and SPAKE2+ verifier records, never the passcode or password.
File formats and encryption at rest live in :mod:`bleprov.store.factory_files`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from bleprov.core import cbor
from bleprov.core.advertising import (
    DISCRIMINATOR_MAX,
    DeviceInfo,
    DeviceState,
    OobMode,
)
from bleprov.core.crypto.spake2plus import (
    DEFAULT_COST,
    HOST_MAX_COST,
    ScryptCost,
    VerifierRecord,
    derive_verifier,
)
from bleprov.core.device_secrets import SPAKE_ID_VERIFIER, DeviceSecrets
from bleprov.core.errors import LocalProtocolError, MalformedData
from bleprov.core.frames import DEFAULT_MAX_MESSAGE, DEFAULT_RX_WINDOW
from bleprov.core.identity import DeviceIdentity
from bleprov.core.mode_bits import known_modes
from bleprov.core.onboarding import (
    OnboardingPayload,
    UserPasswordCredential,
    encode_manual_code,
    encode_ndef,
    encode_printed_key,
    encode_qr,
    encode_user_password,
    generate_passcode,
    generate_user_password,
    passcode_password,
)
from bleprov.core.profile import default_profile

SALT_BYTES = 16


@dataclass(frozen=True, repr=False)
class DeviceProvisioning:
    """What the device stores (encrypted at rest by the store adapter)."""

    identity: DeviceIdentity
    discriminator: int
    modes: OobMode
    label_secret: bytes
    pbkdf_salt: bytes
    pbkdf_cost: ScryptCost
    code_records: dict[bytes, VerifierRecord] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"DeviceProvisioning(device_id={self.identity.device_id!r})"

    def secrets(self) -> DeviceSecrets:
        return DeviceSecrets(self.identity, self.label_secret, dict(self.code_records))

    def info(self, state: DeviceState = DeviceState.VIRGIN) -> DeviceInfo:
        """The info value this device publishes (framing fields at their defaults)."""
        profile = default_profile()
        with_code = OobMode.CODE in self.modes
        return DeviceInfo(
            protocol_version=profile.protocol_version,
            state=state,
            modes=self.modes,
            discriminator=self.discriminator,
            max_message=DEFAULT_MAX_MESSAGE,
            rx_window=DEFAULT_RX_WINDOW,
            profile_version=profile.version,
            pbkdf_salt=self.pbkdf_salt if with_code else None,
            pbkdf_cost=(
                (self.pbkdf_cost.log2_n, self.pbkdf_cost.r, self.pbkdf_cost.p)
                if with_code
                else None
            ),
        )

    def to_bytes(self, identity_passphrase: bytes | None) -> bytes:
        """Deterministic CBOR; the identity's keys encrypted under ``identity_passphrase``.
        The whole record is encrypted again by the store adapter."""
        return cbor.dumps(
            [
                "bleprov device provisioning",
                1,
                self.identity.to_bytes(identity_passphrase),
                self.discriminator,
                int(self.modes),
                self.label_secret,
                self.pbkdf_salt,
                [self.pbkdf_cost.n, self.pbkdf_cost.r, self.pbkdf_cost.p],
                {user: record.encode() for user, record in self.code_records.items()},
            ]
        )

    @classmethod
    def from_bytes(cls, raw: bytes, identity_passphrase: bytes | None) -> DeviceProvisioning:
        try:
            value = cbor.loads(raw, max_size=65536)
        except cbor.CborError:
            value = None
        if (
            not isinstance(value, list)
            or len(value) != 9
            or value[0] != "bleprov device provisioning"
            or value[1] != 1
            or not isinstance(value[2], bytes)
            or not isinstance(value[3], int)
            or not isinstance(value[4], int)
            or not isinstance(value[5], bytes)
            or not isinstance(value[6], bytes)
            or not isinstance(value[7], list)
            or len(value[7]) != 3
            or not isinstance(value[8], dict)
        ):
            raise MalformedData("device provisioning record is corrupt")
        cost = value[7]
        if (
            not all(type(c) is int for c in cost)
            or type(value[3]) is not int
            or not 0 <= value[3] <= DISCRIMINATOR_MAX
            or type(value[4]) is not int
            or value[4] & ~int(known_modes())
        ):
            raise MalformedData("device provisioning record is corrupt")
        try:
            pbkdf_cost = ScryptCost(n=cost[0], r=cost[1], p=cost[2])
        except MalformedData:
            raise MalformedData(
                "device provisioning record holds an impossible scrypt cost"
            ) from None
        if pbkdf_cost.exceeds(HOST_MAX_COST):
            # It is what the device advertises for its printed code: no host would run it.
            raise MalformedData("device provisioning record's scrypt cost is above what hosts run")
        records = {}
        for user, record in value[8].items():
            if not isinstance(user, bytes) or not isinstance(record, bytes):
                raise MalformedData("device provisioning record is corrupt")
            records[user] = VerifierRecord.decode(record)
        return cls(
            identity=DeviceIdentity.from_bytes(value[2], identity_passphrase),
            discriminator=value[3],
            modes=OobMode(value[4]),
            label_secret=value[5],
            pbkdf_salt=value[6],
            pbkdf_cost=pbkdf_cost,
            code_records=records,
        )


@dataclass(frozen=True, repr=False)
class Label:
    """What is printed on (or shipped with) the device. Secret: keep it in the box."""

    payload: OnboardingPayload
    qr_text: str
    ndef: bytes
    printed_key: str
    manual_code: str | None
    scratch_card: UserPasswordCredential | None

    def __repr__(self) -> str:
        return f"Label(discriminator=0x{self.payload.discriminator:03X})"

    @classmethod
    def from_payload(
        cls, payload: OnboardingPayload, scratch_card: UserPasswordCredential | None = None
    ) -> Label:
        """Every printed form of ``payload``; the scratch card is not in the payload."""
        return cls(
            payload=payload,
            qr_text=encode_qr(payload),
            ndef=encode_ndef(payload),
            printed_key=encode_printed_key(payload),
            manual_code=(
                encode_manual_code(payload.discriminator, payload.passcode)
                if payload.passcode is not None
                else None
            ),
            scratch_card=scratch_card,
        )

    def text(self) -> str:
        """A plain-text rendering of everything on the label."""
        lines = [
            f"QR code text:  {self.qr_text}",
            f"Printed key:   {self.printed_key}",
        ]
        if self.manual_code is not None:
            lines.append(f"Manual code:   {self.manual_code}")
        if self.scratch_card is not None:
            lines.append(f"Scratch card:  {encode_user_password(self.scratch_card)}")
        return "\n".join(lines) + "\n"


def provision_device(
    identity: DeviceIdentity,
    *,
    modes: OobMode,
    discriminator: int | None = None,
    scratch_card: bool = False,
    cost: ScryptCost = DEFAULT_COST,
) -> tuple[DeviceProvisioning, Label]:
    """Make a device's secrets and its label. ``modes`` must include qr (the label)."""
    if OobMode.QR not in modes:
        raise LocalProtocolError("every bleprov label carries the qr mode's key and secret")
    if cost.exceeds(HOST_MAX_COST):
        raise LocalProtocolError(
            f"scrypt cost above what hosts run (2^{HOST_MAX_COST.log2_n}, r {HOST_MAX_COST.r}, "
            f"p {HOST_MAX_COST.p}): no host could use this device's code"
        )
    disc = secrets.randbelow(DISCRIMINATOR_MAX + 1) if discriminator is None else discriminator
    label_secret = secrets.token_bytes(16)
    salt = secrets.token_bytes(SALT_BYTES)
    records: dict[bytes, VerifierRecord] = {}
    passcode: int | None = None
    card: UserPasswordCredential | None = None
    if OobMode.CODE in modes:
        passcode = generate_passcode()
        records[b""] = derive_verifier(
            passcode_password(passcode), salt=salt, id_verifier=SPAKE_ID_VERIFIER, cost=cost
        ).verifier_record()
        if scratch_card:
            card = generate_user_password()
            records[card.spake2_user] = derive_verifier(
                card.spake2_password,
                salt=salt,
                id_prover=card.spake2_user,
                id_verifier=SPAKE_ID_VERIFIER,
                cost=cost,
            ).verifier_record()
    payload = OnboardingPayload(
        discriminator=disc,
        modes=modes,
        device_public_key=identity.noise_static_public_key,
        label_secret=label_secret,
        passcode=passcode,
    )
    device = DeviceProvisioning(identity, disc, modes, label_secret, salt, cost, records)
    return device, Label.from_payload(payload, card)
