"""What a device holds for its pairing modes, and the SPAKE2+ identity it verifies under.

Below the session layer so that the factory (which makes these secrets), the commissioning
window and the receipt (which derive SPAKE2+ verifiers for the device) need no session
module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from bleprov.core.crypto.primitives import X25519PrivateKey, hkdf_sha256
from bleprov.core.crypto.spake2plus import VerifierRecord
from bleprov.core.identity import DeviceIdentity

#: The device's SPAKE2+ identity (the verifier's), the same for every bleprov device.
SPAKE_ID_VERIFIER: Final = b"bleprov device"
UNKNOWN_USER_KEY_INFO: Final = b"bleprov/1 unknown user key"


@dataclass(frozen=True, repr=False)
class DeviceSecrets:
    """What the device holds for its modes (kept in its encrypted store)."""

    identity: DeviceIdentity
    #: qr mode: the 16-byte secret printed in the label.
    label_secret: bytes | None = None
    #: code mode: SPAKE2+ verifier records by user name (b"" for a printed code).
    code_records: dict[bytes, VerifierRecord] = field(default_factory=dict)

    @property
    def noise_static_key(self) -> X25519PrivateKey:
        return self.identity.noise_static_key

    @property
    def unknown_user_key(self) -> bytes:
        """Keys the fake verifiers unknown user names get (code mode): from the device's
        static key, so they are fixed per device and name, and nobody else can make them."""
        return hkdf_sha256(
            self.identity.noise_static_key.private_bytes_raw(),
            32,
            salt=None,
            info=UNKNOWN_USER_KEY_INFO,
        )

    def __repr__(self) -> str:
        return f"DeviceSecrets(device_id={self.identity.device_id!r})"
