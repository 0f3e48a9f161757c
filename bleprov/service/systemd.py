"""systemd's service protocol (sd_notify and its watchdog), without libsystemd.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET``, a unix datagram socket (a path, or
``@name`` in the abstract namespace); a service sends ``READY=1`` once it serves,
``STATUS=...`` lines for ``systemctl status``, and ``STOPPING=1`` when it shuts down. With
``WatchdogSec=`` systemd also passes ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``): the service
sends ``WATCHDOG=1`` more often than that, or is killed and restarted. :func:`watchdog`
sends them from the event loop itself, so a loop that is stuck (a blocking call, a
deadlock) stops the pings and gets the daemon restarted, while a slow but working one
does not.

Without ``NOTIFY_SOCKET`` (not under systemd) nothing is sent and no socket is opened.
The protocol is a few lines over a socket, so no library: libsystemd's bindings need a C
build, and the pure-Python ones add nothing over this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Mapping

logger = logging.getLogger(__name__)

Notify = Callable[[str], object]

#: Failures already logged: a socket that cannot be reached is said once, not at every
#: watchdog ping.
_reported: set[str] = set()


def _address(environ: Mapping[str, str]) -> str | None:
    """``NOTIFY_SOCKET`` as a socket address (abstract names start with NUL), or None."""
    address = environ.get("NOTIFY_SOCKET")
    if not address:
        return None
    if address.startswith("@"):
        return "\0" + address[1:]
    if address.startswith("/"):
        return address
    _report_once(f"NOTIFY_SOCKET {address!r} is neither a path nor @abstract: not notified")
    return None


def _report_once(text: str) -> None:
    if text not in _reported:
        _reported.add(text)
        logger.warning("%s", text)


def notify(message: str) -> bool:
    """Send ``message`` (``KEY=value`` lines) to systemd; whether it was sent.

    Never blocks (a full queue drops the message) and never raises: a socket systemd named
    but that cannot be reached is logged once, and the service runs on; systemd's start
    timeout or watchdog then tells the operator.
    """
    address = _address(os.environ)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.connect(address)
            sock.send(message.encode())
    except OSError as exc:
        _report_once(f"could not notify systemd ({exc.strerror or exc})")
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``, as systemd advises),
    or None: no watchdog, no notify socket, or a watchdog meant for another process
    (``WATCHDOG_PID``)."""
    environ = os.environ if environ is None else environ
    usec, pid = environ.get("WATCHDOG_USEC"), environ.get("WATCHDOG_PID")
    if not usec or _address(environ) is None:
        return None
    if pid and pid != str(os.getpid()):
        return None
    if not usec.isdigit() or int(usec) == 0:
        _report_once(f"WATCHDOG_USEC {usec!r} is not a positive number: no watchdog pings")
        return None
    return int(usec) / 2_000_000


@contextlib.asynccontextmanager
async def watchdog(send: Notify = notify) -> AsyncIterator[float | None]:
    """Ping systemd's watchdog from this event loop while the body runs; yields the
    interval (None: no watchdog asked for, nothing is sent)."""
    interval = watchdog_interval()
    if interval is None:
        yield None
        return

    async def ping() -> None:
        while True:
            send("WATCHDOG=1")
            await asyncio.sleep(interval)

    task = asyncio.create_task(ping(), name="systemd-watchdog")
    try:
        yield interval
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
