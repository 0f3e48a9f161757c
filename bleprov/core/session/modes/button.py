"""``button`` mode: Noise_NN_25519_ChaChaPoly_SHA256, unauthenticated, accepted only in the
device's button window (:class:`~bleprov.core.attempts.ButtonWindow`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from bleprov.core.attempts import Credential
from bleprov.core.session.messages import Mode
from bleprov.core.session.modes.base import (
    DeviceHandshake,
    DeviceKeys,
    HostHandshake,
    NoiseDevice,
    NoiseHost,
    OobInput,
    Prompt,
)

if TYPE_CHECKING:
    from bleprov.core.advertising import DeviceInfo


def button_host(*, device_info: bytes) -> NoiseHost:
    return NoiseHost("NN", Mode.BUTTON, device_info)


def button_device(*, device_info: bytes) -> NoiseDevice:
    return NoiseDevice("NN", Mode.BUTTON, device_info)


class ButtonMode:
    """Nobody is authenticated: safe only where nobody else is in radio range, and only
    inside the device's button window."""

    mode: Final = Mode.BUTTON
    name: Final = "button"
    credential: Final = Credential.BUTTON
    oob: Final = OobInput.NONE
    prompt: Final = Prompt.NONE
    device_confirms: Final = False
    button_window: Final = True

    def host(self, secret: object, info: DeviceInfo, info_raw: bytes) -> HostHandshake:
        return button_host(device_info=info_raw)

    def device(self, keys: DeviceKeys, info_raw: bytes) -> DeviceHandshake:
        return button_device(device_info=info_raw)


ENGINE: Final = ButtonMode()
