"""Framing of validated connections: bad frames are typed errors and close the connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime

import cbor2
import pytest

from bleprov.core.errors import MalformedData
from bleprov.core.zone import Zone
from bleprov.tls import (
    MAX_MESSAGE_SIZE,
    BadMessage,
    ConnectionClosed,
    MemberCredentials,
    MessageTooLarge,
    ReceiveTimeout,
    ValidatedConnection,
    open_member_connection,
)
from bleprov.tls.connection import decode_message, encode_message
from bleprov.tls.context import make_context

from .conftest import HOST, Served, enrol, member_server


def _frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


BAD_FRAMES = {
    "oversize length prefix": (MAX_MESSAGE_SIZE + 1).to_bytes(4, "big") + b"\xa0",
    "huge length prefix": b"\xff\xff\xff\xff",
    "zero length": b"\x00\x00\x00\x00",
    "not CBOR": b"\x00\x00\x00\x02\xff\xff",
    "not a map": b"\x00\x00\x00\x03" + cbor2.dumps([1, 2]),
    "integer keys": b"\x00\x00\x00\x03" + cbor2.dumps({1: 2}),
    "trailing bytes": b"\x00\x00\x00\x02\xa0\x00",
    "too deep": _frame(cbor2.dumps({"a": _nested(20)})),
}


def test_encode_decode_round_trip() -> None:
    message = {"op": "x", "id": 7, "body": {"b": b"\x01", "n": [1, 2]}}
    frame = encode_message(message)
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    assert decode_message(frame[4:]) == message


def test_send_side_limits() -> None:
    with pytest.raises(MessageTooLarge):
        encode_message({"blob": b"\x00" * MAX_MESSAGE_SIZE})
    with pytest.raises(TypeError):
        encode_message({1: 2})  # type: ignore[dict-item]
    assert issubclass(BadMessage, MalformedData)


@pytest.mark.parametrize(
    "name", sorted(n for n, f in BAD_FRAMES.items() if 0 < int.from_bytes(f[:4]) <= 65536)
)
def test_decode_refuses(name: str) -> None:
    with pytest.raises(BadMessage):
        decode_message(BAD_FRAMES[name][4:])


async def _raw_member_client(
    creds: MemberCredentials, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TLS client that speaks raw bytes once the server has said hello."""
    context = make_context(
        server=False,
        key=creds.key,
        chain_der=(creds.cert_der, *creds.chain_der),
        trust_der=(creds.root_der,),
    )
    reader, writer = await asyncio.open_connection(HOST, port, ssl=context)
    length = int.from_bytes(await reader.readexactly(4), "big")
    assert (
        decode_message(await reader.readexactly(length))["op"] == "welcome"
    )  # the greeting (v1 "hello")
    return reader, writer


@pytest.mark.parametrize("name", sorted(BAD_FRAMES))
async def test_server_closes_on_bad_frame(zone: Zone, now: datetime, name: str) -> None:
    hub = enrol(zone, "HUB-0001", now=now)
    lamp = enrol(zone, "LAMP-0001", now=now)
    crl = zone.crl(now=now)
    async with member_server(hub, lambda: crl) as served:
        reader, writer = await _raw_member_client(lamp, served.port)
        writer.write(BAD_FRAMES[name])
        await writer.drain()
        assert await reader.read() == b""  # the server closed the connection
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        for _ in range(100):  # the handler records the error as the socket closes
            if served.errors:
                break
            await asyncio.sleep(0.01)
    [error] = served.errors
    assert isinstance(error, BadMessage)


def _raw_handler(
    raw: bytes,
) -> Callable[[Served], Callable[[ValidatedConnection], Awaitable[None]]]:
    def make(served: Served) -> Callable[[ValidatedConnection], Awaitable[None]]:
        async def handle(connection: ValidatedConnection) -> None:
            served.peers.append(connection)
            await connection.next_request()
            connection._writer.write(raw)
            await connection._writer.drain()
            with contextlib.suppress(ConnectionClosed):
                await connection.receive()  # until the client hangs up

        return handle

    return make


@pytest.mark.parametrize("name", sorted(BAD_FRAMES))
async def test_client_closes_on_bad_frame(zone: Zone, now: datetime, name: str) -> None:
    hub = enrol(zone, "HUB-0001", now=now)
    lamp = enrol(zone, "LAMP-0001", now=now)
    crl = zone.crl(now=now)
    async with member_server(hub, lambda: crl, _raw_handler(BAD_FRAMES[name])) as served:
        connection = await open_member_connection(HOST, served.port, lamp, crl_der=crl)
        with pytest.raises(BadMessage):
            await connection.request("go", {})
        assert connection.closed
        with pytest.raises(ConnectionClosed):
            await connection.send({"op": "again"})


async def test_truncated_frame_is_connection_closed(zone: Zone, now: datetime) -> None:
    hub = enrol(zone, "HUB-0001", now=now)
    lamp = enrol(zone, "LAMP-0001", now=now)
    crl = zone.crl(now=now)

    def truncating(served: Served) -> Callable[[ValidatedConnection], Awaitable[None]]:
        async def handle(connection: ValidatedConnection) -> None:
            await connection.next_request()
            connection._writer.write(b"\x00\x00\x00\x10\xa1")  # 16 announced, 1 sent

        return handle

    async with member_server(hub, lambda: crl, truncating) as served:
        connection = await open_member_connection(HOST, served.port, lamp, crl_der=crl)
        with pytest.raises(ConnectionClosed, match="middle of a frame"):
            await connection.request("go", {})
        assert connection.closed


async def test_receive_timeout_keeps_the_connection(zone: Zone, now: datetime) -> None:
    hub = enrol(zone, "HUB-0001", now=now)
    lamp = enrol(zone, "LAMP-0001", now=now)
    crl = zone.crl(now=now)
    async with (
        member_server(hub, lambda: crl) as served,
        await open_member_connection(HOST, served.port, lamp, crl_der=crl) as c,
    ):
        with pytest.raises(ReceiveTimeout):
            await c.receive(timeout=0.01)  # the echo server only speaks when asked
        assert not c.closed
        assert (await c.request("echo", {"still": "here"}))["echo"] == {"still": "here"}
        with pytest.raises(MessageTooLarge):
            await c.send({"blob": b"\x00" * MAX_MESSAGE_SIZE})
        assert (await c.request("echo", {}))["peer"] == "LAMP-0001"
