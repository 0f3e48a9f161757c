"""The out-of-band pairing modes: one module per mode, each a handshake engine.

Each engine consumes and produces handshake bodies (the ``body`` of HELLO and HANDSHAKE
messages) and, once keys exist, hands back :class:`SessionKeys`. Engines know nothing of
framing, attempts or attestation: :mod:`bleprov.core.session.host` and
:mod:`bleprov.core.session.device` drive them.

This package re-exports the names other modules imported from the old single
``modes`` module, so their imports stay as they were.
"""

from bleprov.core.crypto.spake2plus import ProverSecrets
from bleprov.core.session.modes.base import (
    PROTOCOL_LABEL,
    SPAKE_ID_VERIFIER,
    AuthenticationFailed,
    NoiseDevice,
    NoiseHost,
    SessionKeys,
    Step,
    UnexpectedMessage,
    UserRejected,
    channel_binding,
    exporter,
    key_schedule,
    prologue,
)
from bleprov.core.session.modes.button import button_device, button_host
from bleprov.core.session.modes.code import CodeDevice, CodeHost, unknown_user_record
from bleprov.core.session.modes.compare import CompareDevice, CompareHost
from bleprov.core.session.modes.passkey import (
    PasskeyDevice,
    PasskeyHost,
    parse_passkey,
    passkey_password,
    passkey_secrets,
)
from bleprov.core.session.modes.qr import qr_device, qr_host, qr_psk

__all__ = [
    "PROTOCOL_LABEL",
    "SPAKE_ID_VERIFIER",
    "AuthenticationFailed",
    "CodeDevice",
    "CodeHost",
    "CompareDevice",
    "CompareHost",
    "NoiseDevice",
    "NoiseHost",
    "PasskeyDevice",
    "PasskeyHost",
    "ProverSecrets",
    "SessionKeys",
    "Step",
    "UnexpectedMessage",
    "UserRejected",
    "button_device",
    "button_host",
    "channel_binding",
    "exporter",
    "key_schedule",
    "parse_passkey",
    "passkey_password",
    "passkey_secrets",
    "prologue",
    "qr_device",
    "qr_host",
    "qr_psk",
    "unknown_user_record",
]
