"""``qr`` mode: Noise_NKpsk0_25519_ChaChaPoly_SHA256. The label carries the device's static
key (authenticates the device) and a 128-bit secret, the PSK (authenticates the host).
One round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from bleprov.core.attempts import Credential
from bleprov.core.crypto.primitives import X25519PrivateKey, hkdf_sha256
from bleprov.core.errors import LocalProtocolError, MalformedData
from bleprov.core.session.messages import Mode
from bleprov.core.session.modes.base import (
    DeviceHandshake,
    DeviceKeys,
    HostHandshake,
    ModeNotAllowed,
    NoiseDevice,
    NoiseHost,
    OobInput,
    Prompt,
)

if TYPE_CHECKING:
    from bleprov.core.advertising import DeviceInfo

QR_PSK_INFO: Final = b"bleprov/1 qr psk"


def qr_psk(label_secret: bytes) -> bytes:
    """The Noise PSK from the label's 128-bit secret (HKDF-SHA256, fixed info)."""
    if len(label_secret) != 16:
        raise MalformedData("label secret must be 16 bytes")
    derived = hkdf_sha256(label_secret, 32, salt=None, info=QR_PSK_INFO)
    return derived


def qr_host(*, device_static_public: bytes, label_secret: bytes, device_info: bytes) -> NoiseHost:
    return NoiseHost(
        "NKpsk0",
        Mode.QR,
        device_info,
        remote_static=device_static_public,
        psk=qr_psk(label_secret),
    )


def qr_device(
    *, static_key: X25519PrivateKey, label_secret: bytes, device_info: bytes
) -> NoiseDevice:
    return NoiseDevice(
        "NKpsk0", Mode.QR, device_info, static_key=static_key, psk=qr_psk(label_secret)
    )


@dataclass(frozen=True, repr=False)
class QrSecret:
    """From the QR code, NFC tag or long printed key."""

    device_static_public: bytes
    label_secret: bytes


class QrMode:
    """The label's key and secret authenticate both ends."""

    mode: Final = Mode.QR
    name: Final = "qr"
    credential: Final = Credential.LABEL
    oob: Final = OobInput.LABEL
    prompt: Final = Prompt.NONE
    device_confirms: Final = False
    button_window: Final = False

    def host(self, secret: object, info: DeviceInfo, info_raw: bytes) -> HostHandshake:
        if not isinstance(secret, QrSecret):
            raise LocalProtocolError("qr mode needs the label's key and secret")
        return qr_host(
            device_static_public=secret.device_static_public,
            label_secret=secret.label_secret,
            device_info=info_raw,
        )

    def device(self, keys: DeviceKeys, info_raw: bytes) -> DeviceHandshake:
        if keys.label_secret is None:
            raise ModeNotAllowed("this device has no label secret")
        return qr_device(
            static_key=keys.noise_static_key, label_secret=keys.label_secret, device_info=info_raw
        )


ENGINE: Final = QrMode()
