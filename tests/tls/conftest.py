"""Zones, members and servers on loopback for the validated-connection tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from bleprov.core.zone import Zone, make_csr, make_member_key
from bleprov.tls import (
    ConnectionClosed,
    MemberCredentials,
    ReceiveTimeout,
    ValidatedConnection,
    start_member_server,
)

HOST = "127.0.0.1"


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def zone(now: datetime) -> Zone:
    return Zone.create("Home", now=now - timedelta(days=90))


def enrol(
    zone: Zone, device_id: str, *, now: datetime, days: int = 30, owner: str = "alice"
) -> MemberCredentials:
    """A member's credentials as enrolment leaves them (key made on the device)."""
    binding = bytes(range(32))
    key = make_member_key()
    issued = zone.issue_member(
        make_csr(key, device_id=device_id, session_binding=binding),
        device_id=device_id,
        owner=owner,
        expected_binding=binding,
        now=now,
        validity=timedelta(days=days),
    )
    return MemberCredentials.from_certificate(key, issued)


def serial_of(creds: MemberCredentials) -> int:
    return x509.load_der_x509_certificate(creds.cert_der).serial_number


@dataclass
class Served:
    """A running server: its port, and what its handler saw."""

    port: int
    peers: list[ValidatedConnection] = field(default_factory=list)
    requests: list[dict[str, object]] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)


def echo_handler(served: Served) -> Callable[[ValidatedConnection], Awaitable[None]]:
    """Answer every request with its own body plus the server's view of the peer."""

    async def handle(connection: ValidatedConnection) -> None:
        served.peers.append(connection)
        while True:
            try:
                request = await connection.next_request(timeout=30)
            except (ConnectionClosed, ReceiveTimeout):
                return
            except Exception as exc:
                served.errors.append(exc)
                return
            served.requests.append(request.body)
            await connection.reply(request, {"echo": request.body, "peer": connection.peer_name})

    return handle


@contextlib.asynccontextmanager
async def running(server: asyncio.Server, served: Served) -> AsyncIterator[Served]:
    served.port = server.sockets[0].getsockname()[1]
    try:
        yield served
    finally:
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0)  # let handlers see their connections close


@contextlib.asynccontextmanager
async def member_server(
    creds: MemberCredentials,
    crl_provider: Callable[[], bytes],
    handler: Callable[[Served], Callable[[ValidatedConnection], Awaitable[None]]] = echo_handler,
) -> AsyncIterator[Served]:
    served = Served(0)
    server = await start_member_server(
        HOST, 0, creds, crl_provider=crl_provider, handler=handler(served)
    )
    async with running(server, served) as result:
        yield result
