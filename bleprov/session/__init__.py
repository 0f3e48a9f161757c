"""Session driving: the core's session machines run over a message link.

The device side (:class:`SecureDeviceServer`) runs a
:class:`~bleprov.core.session.device.DeviceSession` for each host's connection on any link
(BLE's ``DeviceLink``, the broker's transport) and hands only authenticated application data
to the product's :class:`SecureApplication`; the host side (:class:`SecureHostLink`) runs a
:class:`~bleprov.core.session.host.HostSession` over one link to one device. It sits between
``service`` (which chooses what to run) and the adapters (which carry the bytes).
"""

from bleprov.session.device import (
    FAILED_SESSION_LOG_INTERVAL,
    REMOTE_HANDSHAKE_TIMEOUT,
    AttemptStore,
    DeviceUi,
    MemoryAttemptStore,
    NumberConfirmer,
    PasskeyReader,
    SecureApplication,
    SecureDeviceChannel,
    SecureDeviceServer,
    SecureHostLink,
    SessionInfo,
    SilentUi,
)

__all__ = [
    "FAILED_SESSION_LOG_INTERVAL",
    "REMOTE_HANDSHAKE_TIMEOUT",
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
