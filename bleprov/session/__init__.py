"""Session driving: the core's session machines run over any message link.

:mod:`.device`: :class:`SecureDeviceServer` runs a
:class:`~bleprov.core.session.device.DeviceSession` for each host's connection on any of
the device's links (BLE's ``DeviceLink``, the broker's transport) and hands only
authenticated application data to the product's :class:`SecureApplication`.
:mod:`.host`: :class:`SecureHostLink` runs a :class:`~bleprov.core.session.host.HostSession`
over one link to one device.

This layer sits between ``service`` (which chooses what to run) and the adapters (which
carry the bytes), and knows no transport: every link is a :mod:`bleprov.link` protocol.
The rules of who may open a session are the core's (:mod:`bleprov.core.session.admission`).
"""

from bleprov.session.attempts import AttemptLedger, AttemptStore
from bleprov.session.device import (
    FAILED_SESSION_LOG_INTERVAL,
    REMOTE_HANDSHAKE_TIMEOUT,
    DeviceUi,
    MemoryAttemptStore,
    SecureApplication,
    SecureDeviceChannel,
    SecureDeviceServer,
    SilentUi,
)
from bleprov.session.host import NumberConfirmer, PasskeyReader, SecureHostLink, SessionInfo

__all__ = [
    "FAILED_SESSION_LOG_INTERVAL",
    "REMOTE_HANDSHAKE_TIMEOUT",
    "AttemptLedger",
    "AttemptStore",
    "DeviceUi",
    "MemoryAttemptStore",
    "NumberConfirmer",
    "PasskeyReader",
    "SecureApplication",
    "SecureDeviceChannel",
    "SecureDeviceServer",
    "SecureHostLink",
    "SessionInfo",
    "SilentUi",
]
