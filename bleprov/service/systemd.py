"""systemd's readiness protocol (sd_notify), without libsystemd.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET``, a unix datagram socket (a path, or
``@name`` in the abstract namespace); a service sends ``READY=1`` once it serves, and
``STOPPING=1`` when it shuts down. Without ``NOTIFY_SOCKET`` (not under systemd) nothing
is sent.
"""

from __future__ import annotations

import logging
import os
import socket

logger = logging.getLogger(__name__)


def notify(message: str) -> bool:
    """Send ``message`` (``KEY=value`` lines) to systemd; whether it was sent.

    A socket systemd named but that cannot be reached is logged, not raised: the service
    runs on, and systemd's start timeout tells the operator.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        logger.warning("NOTIFY_SOCKET %r is neither a path nor @abstract: not notified", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        logger.warning("could not notify systemd (%s)", exc.strerror or exc)
        return False
    return True
