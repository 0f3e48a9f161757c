"""``button`` mode: Noise_NN_25519_ChaChaPoly_SHA256, unauthenticated, accepted only in the
device's button window (:class:`~bleprov.core.attempts.ButtonWindow`).
"""

from __future__ import annotations

from bleprov.core.crypto.noise import NoiseHandshake
from bleprov.core.session.messages import Mode
from bleprov.core.session.modes.base import (
    _NoiseDevice,
    _NoiseHost,
    prologue,
)


def button_host(*, device_info: bytes) -> _NoiseHost:
    return _NoiseHost(
        NoiseHandshake(
            "NN",
            initiator=True,
            local_static=None,
            remote_static=None,
            psk=None,
            prologue=prologue(Mode.BUTTON, device_info),
        )
    )


def button_device(*, device_info: bytes) -> _NoiseDevice:
    return _NoiseDevice(
        NoiseHandshake(
            "NN",
            initiator=False,
            local_static=None,
            remote_static=None,
            psk=None,
            prologue=prologue(Mode.BUTTON, device_info),
        )
    )
