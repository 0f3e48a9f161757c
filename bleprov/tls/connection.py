"""Validated connections: mutual TLS 1.3 whose peer we check ourselves before any data.

``ssl`` checks the handshake (TLS 1.3 only, a certificate both ways, chain to the zone root
or to a pinned certificate). Then each side checks the other's leaf with the core: zone
members with :func:`bleprov.core.zone.verify_member` (zone, path, validity, a fresh CRL,
the expected device), peers with :meth:`bleprov.core.peer.PinSet.match`. The accepting
side sends ``hello`` only once it has accepted the client (or ``refused`` with a code),
so the connecting side knows before it returns that it was accepted: in TLS 1.3 the
client's handshake ends before the server has judged the client's certificate.

Framing (docs/protocol.md, "Validated connections"): a 4-byte big-endian length (1 to
65536), then that many bytes of CBOR, a map with text keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final

from cryptography import x509

from bleprov.core import cbor
from bleprov.core.crypto.loading import UnreadableCertificate, load_der_certificate
from bleprov.core.crypto.pki import SigningKey
from bleprov.core.errors import BleprovError, MalformedData, ProtocolError
from bleprov.core.peer import PeerError, PeerIdentity, PeerPin, PinSet
from bleprov.core.wire_codes import ConnectionCode, ErrorCode
from bleprov.core.zone import (
    MemberCertificate,
    MemberIdentity,
    ZoneError,
    member_names,
    verify_member,
)
from bleprov.tls.context import TlsSetupError, make_context

logger = logging.getLogger(__name__)

PROTOCOL_VERSION: Final = 1
LENGTH_PREFIX_SIZE: Final = 4
MAX_MESSAGE_SIZE: Final = 65536
MAX_MESSAGE_DEPTH: Final = 16
DEFAULT_TIMEOUT: Final = 10.0
#: A server drops a connection idle this long between requests (as the secure channel).
IDLE_TIMEOUT: Final = 120.0
_CLOSE_TIMEOUT: Final = 2.0
#: The server's greeting op (v1 said "hello", also a device's operation: renamed in v2).
_HELLO: Final = "welcome"
_REFUSED: Final = "refused"
ERROR_OP: Final = "error"

#: Reply status codes besides the ProtocolError codes (docs/protocol.md, section 13;
#: registered in bleprov.core.wire_codes).
UNKNOWN_OP: Final = ConnectionCode.UNKNOWN_OP
BAD_REQUEST: Final = ConnectionCode.BAD_REQUEST
UNEXPECTED_MESSAGE: Final = ErrorCode.UNEXPECTED_MESSAGE
INTERNAL: Final = ConnectionCode.INTERNAL

# --------------------------------------------------------------------------- errors


class ValidatedConnectionError(BleprovError):
    """A validated connection could not be opened, or failed while in use."""


class ConnectFailed(ValidatedConnectionError):
    """The TCP connection could not be made (host down, port closed, unreachable)."""


class HandshakeFailed(ValidatedConnectionError):
    """TLS 1.3 could not be set up, or the peer does not speak this protocol."""


class PeerNotTrusted(ValidatedConnectionError):
    """We refused the peer's certificate; ``reason`` is the core's verdict, if it had one."""

    def __init__(self, message: str, reason: ProtocolError | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class UnexpectedPeer(ValidatedConnectionError):
    """The peer is trusted but is not the device or peer the caller asked for."""


class PeerRefused(ValidatedConnectionError):
    """The peer refused our certificate; ``code`` is its reason code when it sent one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class ConnectionClosed(ValidatedConnectionError):
    """The connection is closed (by us, by the peer, or after an error)."""


class ReceiveTimeout(ValidatedConnectionError):
    """No complete message arrived within the timeout; the connection stays usable."""


class BadMessage(ValidatedConnectionError, MalformedData):
    """The peer sent a bad frame or message; the connection has been closed."""


class MessageTooLarge(ValidatedConnectionError):
    """A message to send encodes to more than MAX_MESSAGE_SIZE bytes (nothing was sent)."""


class RequestFailed(ValidatedConnectionError):
    """The peer answered a request with an error reply: ``code`` and its ``detail``."""

    def __init__(self, op: str, code: int, detail: str) -> None:
        super().__init__(f"request {op!r} failed with code 0x{code:02x}: {detail}")
        self.code = code
        self.detail = detail


# ---------------------------------------------------------------------- credentials


@dataclass(frozen=True, repr=False)
class MemberCredentials:
    """A zone member's key, its certificate, the chain above it (issuing CA) and the root."""

    key: SigningKey
    cert_der: bytes
    chain_der: tuple[bytes, ...]
    root_der: bytes

    def __post_init__(self) -> None:
        try:
            certificate = load_der_certificate(self.cert_der)
        except (UnreadableCertificate, TypeError):
            raise TlsSetupError("member certificate is not DER") from None
        if self.key.public_key() != certificate.public_key():
            raise TlsSetupError("member key does not match the member certificate")
        if not isinstance(self.chain_der, tuple) or not 1 <= len(self.chain_der) <= 2:
            raise TlsSetupError("member chain must be a tuple holding the issuing CA")

    @classmethod
    def from_certificate(cls, key: SigningKey, issued: MemberCertificate) -> MemberCredentials:
        return cls(key, issued.cert_der, tuple(issued.chain_der), issued.root_der)

    @property
    def device_id(self) -> str:
        """Our device ID, from our own certificate's names."""
        try:
            return member_names(x509.load_der_x509_certificate(self.cert_der))[1]
        except ZoneError:
            raise TlsSetupError("our certificate is not a zone member certificate") from None

    def __repr__(self) -> str:
        return f"MemberCredentials(device_id={self.device_id!r})"


# -------------------------------------------------------------------------- framing


def encode_message(message: Mapping[str, Any]) -> bytes:
    """One frame: length prefix and deterministic CBOR of ``message``."""
    if not isinstance(message, Mapping) or not all(isinstance(k, str) for k in message):
        raise TypeError("a message is a mapping with text keys")
    try:
        data = cbor.dumps(dict(message))
    except TypeError as exc:
        raise TypeError(f"message cannot be encoded as CBOR: {exc}") from None
    if len(data) > MAX_MESSAGE_SIZE:
        raise MessageTooLarge(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_SIZE}")
    return len(data).to_bytes(LENGTH_PREFIX_SIZE, "big") + data


def decode_message(data: bytes) -> dict[str, Any]:
    """A frame's payload: exactly one CBOR map with text keys, else BadMessage."""
    try:
        value = cbor.loads(data, max_size=MAX_MESSAGE_SIZE, max_depth=MAX_MESSAGE_DEPTH)
    except cbor.CborError:
        raise BadMessage("message is not one deterministic CBOR item") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise BadMessage("message must be a CBOR map with text keys")
    return value


@dataclass(frozen=True)
class Request:
    """A request as a server reads it: ``{"op": tstr, "id": uint, "body": map}``."""

    op: str
    id: int
    body: dict[str, Any]


def _envelope(message: dict[str, Any]) -> Request:
    op, request_id, body = message.get("op"), message.get("id"), message.get("body", {})
    if (
        not isinstance(op, str)
        or not 1 <= len(op) <= 64
        or type(request_id) is not int
        or not 0 <= request_id < 2**32
        or not isinstance(body, dict)
        or not all(isinstance(k, str) for k in body)
    ):
        raise BadMessage("message needs op (text), id (uint32) and body (map)")
    return Request(op, request_id, body)


# ----------------------------------------------------------------------- connection


class ValidatedConnection:
    """One mutually authenticated TLS 1.3 connection whose peer has been checked.

    ``peer_member`` is set on zone connections, ``peer_pin`` on peer connections;
    ``peer_cert_der`` is the peer's leaf certificate either way.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        peer_cert_der: bytes,
        peer_member: MemberIdentity | None = None,
        peer_pin: PeerPin | None = None,
    ) -> None:
        self.peer_member = peer_member
        self.peer_pin = peer_pin
        self.peer_cert_der = peer_cert_der
        self._reader = reader
        self._writer = writer
        self._pending: int | None = None
        self._next_id = 1
        self._closed = False
        self._send_lock = asyncio.Lock()
        self._receive_lock = asyncio.Lock()

    @property
    def peer_name(self) -> str:
        """The peer's device ID or pinned name (for log lines)."""
        if self.peer_member is not None:
            return self.peer_member.device_id
        return self.peer_pin.name if self.peer_pin is not None else "?"

    @property
    def closed(self) -> bool:
        return self._closed

    async def send(self, message: dict[str, Any]) -> None:
        """Send one message: a CBOR map of at most 64 KiB (MessageTooLarge otherwise)."""
        frame = encode_message(message)
        async with self._send_lock:
            if self._closed or self._writer.is_closing():
                raise ConnectionClosed("connection is closed")
            try:
                self._writer.write(frame)
                await self._writer.drain()
            except (OSError, ssl.SSLError):
                await self.close()
                raise ConnectionClosed("connection lost while sending") from None

    async def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The next message. A timeout leaves the connection usable (nothing is lost);
        a bad frame or message closes it and raises BadMessage."""
        async with self._receive_lock:
            if self._closed:
                raise ConnectionClosed("connection is closed")
            try:
                async with asyncio.timeout(timeout):
                    if self._pending is None:
                        # readexactly consumes nothing until all n bytes are there, so a
                        # timeout here or below leaves the stream where it was.
                        header = await self._reader.readexactly(LENGTH_PREFIX_SIZE)
                        length = int.from_bytes(header, "big")
                        if not 0 < length <= MAX_MESSAGE_SIZE:
                            await self.close()
                            raise BadMessage(f"frame length {length} outside 1..{MAX_MESSAGE_SIZE}")
                        self._pending = length
                    data = await self._reader.readexactly(self._pending)
                    self._pending = None
            except TimeoutError:
                raise ReceiveTimeout(f"no message within {timeout} s") from None
            except asyncio.IncompleteReadError as exc:
                await self.close()
                what = "between messages" if not exc.partial else "in the middle of a frame"
                raise ConnectionClosed(f"peer closed the connection {what}") from None
            except (OSError, ssl.SSLError) as exc:
                await self.close()
                raise ConnectionClosed(f"connection lost: {_ssl_reason(exc)}") from None
        try:
            return decode_message(data)
        except BadMessage:
            await self.close()
            raise

    async def request(
        self, op: str, body: dict[str, Any], timeout: float | None = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        """Send ``op`` with ``body``, return the reply's body; an error reply raises
        RequestFailed. One request at a time; a timeout closes the connection (the late
        reply would answer the next request)."""
        request_id = self._next_id
        self._next_id = (self._next_id + 1) % 2**32 or 1
        await self.send({"op": op, "id": request_id, "body": body})
        try:
            reply = _envelope(await self.receive(timeout))
        except ReceiveTimeout:
            await self.close()
            raise
        except BadMessage:
            await self.close()
            raise
        if reply.id != request_id:
            await self.close()
            raise BadMessage(f"reply to request {reply.id}, expected {request_id}")
        if reply.op == ERROR_OP:
            code, detail = reply.body.get("code"), reply.body.get("message")
            if type(code) is not int or not isinstance(detail, str):
                await self.close()
                raise BadMessage("error reply needs code (uint) and message (text)")
            raise RequestFailed(op, code, _printable(detail))
        return reply.body

    async def next_request(self, timeout: float | None = None) -> Request:
        """For servers: the next message as a :class:`Request` (BadMessage otherwise)."""
        message = await self.receive(timeout)
        try:
            return _envelope(message)
        except BadMessage:
            await self.close()
            raise

    async def reply(self, request: Request, body: dict[str, Any], *, op: str | None = None) -> None:
        """Answer ``request`` (same id; same op unless ``op`` says otherwise)."""
        await self.send({"op": op or request.op, "id": request.id, "body": body})

    async def reply_error(self, request: Request, code: int, message: str) -> None:
        """Refuse ``request`` with a status code and a message that holds no secrets."""
        await self.send(
            {"op": ERROR_OP, "id": request.id, "body": {"code": code, "message": message}}
        )

    async def close(self) -> None:
        """Close (TLS close_notify, then TCP); idempotent."""
        if self._closed:
            return
        self._closed = True
        await _close_writer(self._writer)

    async def __aenter__(self) -> ValidatedConnection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"ValidatedConnection(peer={self.peer_name!r}, {state})"


# ---------------------------------------------------------------------------- helpers


def _printable(text: str, limit: int = 200) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in text[:limit])


def _ssl_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return str(exc.verify_message)
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc.__class__.__name__)
    return type(exc).__name__ if not str(exc) else _printable(str(exc))


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await writer.wait_closed()


def _now() -> datetime:
    return datetime.now(UTC)


def _peer_certificate(writer: asyncio.StreamWriter) -> bytes:
    ssl_object = writer.get_extra_info("ssl_object")
    if ssl_object is None or ssl_object.version() != "TLSv1.3":
        raise HandshakeFailed("connection is not TLS 1.3")
    cert_der: bytes | None = ssl_object.getpeercert(binary_form=True)
    if not cert_der:
        raise HandshakeFailed("peer presented no certificate")
    return cert_der


#: What a side checks after the handshake: the peer's leaf -> (member, pin).
_Verifier = Callable[[bytes], tuple[MemberIdentity | None, PeerPin | None]]


def _member_verifier(
    creds: MemberCredentials,
    crl_der: bytes | None,
    expect_device: str | None,
    *,
    expect_hub: bool = False,
) -> _Verifier:
    def verify(cert_der: bytes) -> tuple[MemberIdentity | None, PeerPin | None]:
        # The peer's issuer is the zone's issuing CA, which we hold in our own chain.
        member = verify_member(
            cert_der, creds.chain_der, zone_root_der=creds.root_der, crl_der=crl_der, now=_now()
        )
        if expect_device is not None and not hmac.compare_digest(
            member.device_id.encode(), expect_device.encode()
        ):
            raise UnexpectedPeer(f"peer is {member.device_id}, not {_printable(expect_device)}")
        if expect_hub and not member.is_hub:
            # The role is in the certificate; a device ID (HUB-...) proves nothing.
            raise UnexpectedPeer(
                f"peer {member.device_id} is a member of zone {member.zone_id}, not its hub"
            )
        return member, None

    return verify


def _pin_verifier(pins: PinSet, expect_name: str | None) -> _Verifier:
    def verify(cert_der: bytes) -> tuple[MemberIdentity | None, PeerPin | None]:
        pin = pins.match(cert_der)
        if expect_name is not None and not hmac.compare_digest(
            pin.name.encode(), expect_name.encode()
        ):
            raise UnexpectedPeer(f"peer is {pin.name}, not {_printable(expect_name)}")
        return None, pin

    return verify


# ----------------------------------------------------------------------------- client


async def _open(
    host: str,
    port: int,
    context: ssl.SSLContext,
    verify: _Verifier,
    *,
    timeout: float,
) -> ValidatedConnection:
    """Connect, handshake, check the server, then wait for its verdict on us."""
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        async with asyncio.timeout_at(deadline):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=context, ssl_handshake_timeout=timeout
            )
    except ssl.SSLCertVerificationError as exc:
        raise PeerNotTrusted(f"TLS refused the server's certificate: {_ssl_reason(exc)}") from None
    except ssl.SSLError as exc:
        raise HandshakeFailed(
            f"TLS handshake with {host}:{port} failed: {_ssl_reason(exc)}"
        ) from None
    except TimeoutError:
        raise HandshakeFailed(f"no TLS connection to {host}:{port} within {timeout} s") from None
    except OSError as exc:
        why = os.strerror(exc.errno).lower() if exc.errno else _ssl_reason(exc)
        raise ConnectFailed(
            f"could not connect to {host}:{port} ({why}): check the address and that the "
            "other side is running"
        ) from None
    try:
        cert_der = _peer_certificate(writer)
        member, pin = verify(cert_der)
    except (ZoneError, PeerError) as exc:
        await _close_writer(writer)
        raise PeerNotTrusted(f"server certificate refused: {exc}", reason=exc) from exc
    except BaseException:
        await _close_writer(writer)
        raise
    connection = ValidatedConnection(
        reader, writer, peer_cert_der=cert_der, peer_member=member, peer_pin=pin
    )
    try:
        remaining = max(0.0, deadline - asyncio.get_running_loop().time())
        hello = _envelope(await connection.receive(remaining))
    except ConnectionClosed as exc:
        # In TLS 1.3 a server's verdict on our certificate arrives after our handshake.
        raise PeerRefused(f"the server closed the connection before accepting us ({exc})") from None
    except ReceiveTimeout:
        await connection.close()
        raise HandshakeFailed(f"no hello from {host}:{port} within {timeout} s") from None
    if hello.op == _REFUSED:
        await connection.close()
        code = hello.body.get("code")
        code = code if type(code) is int else None
        raise PeerRefused(f"the server refused our certificate (code 0x{code or 0:02x})", code=code)
    if hello.op != _HELLO or hello.body.get("version") != PROTOCOL_VERSION:
        await connection.close()
        raise HandshakeFailed("server does not speak validated connections version 1")
    return connection


async def open_member(
    host: str,
    port: int,
    creds: MemberCredentials,
    *,
    crl_der: bytes | None,
    expect_device: str | None,
    timeout: float,
    expect_hub: bool = False,
) -> ValidatedConnection:
    context = make_context(
        server=False,
        key=creds.key,
        chain_der=(creds.cert_der, *creds.chain_der),
        trust_der=(creds.root_der,),
    )
    verify = _member_verifier(creds, crl_der, expect_device, expect_hub=expect_hub)
    return await _open(host, port, context, verify, timeout=timeout)


async def open_member_connection(
    host: str,
    port: int,
    creds: MemberCredentials,
    *,
    crl_der: bytes,
    expect_device: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> ValidatedConnection:
    """A validated connection to the zone member at ``host:port``.

    The server must present a member certificate of our zone, valid now, not on
    ``crl_der`` (which must be fresh), naming ``expect_device`` if given; and it must
    accept ours. Raises a :class:`ValidatedConnectionError` subclass otherwise.
    """
    return await open_member(
        host, port, creds, crl_der=crl_der, expect_device=expect_device, timeout=timeout
    )


async def open_peer_connection(
    host: str,
    port: int,
    identity: PeerIdentity,
    pins: PinSet,
    *,
    expect_name: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> ValidatedConnection:
    """A validated connection to a pinned peer (no CA): its key must be one of ``pins``."""
    context = make_context(
        server=False,
        key=identity.key,
        chain_der=(identity.cert_der,),
        trust_der=tuple(p.cert_der for p in pins),
    )
    return await _open(host, port, context, _pin_verifier(pins, expect_name), timeout=timeout)


# ----------------------------------------------------------------------------- server

Handler = Callable[[ValidatedConnection], Awaitable[None]]


async def _serve(
    host: str,
    port: int,
    prepare: Callable[[], tuple[ssl.SSLContext, _Verifier]],
    handler: Handler,
    *,
    what: str,
) -> asyncio.Server:
    """Accept TCP, then TLS with a per-connection context and check, then ``handler``."""

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = _printable(str(writer.get_extra_info("peername")))
        try:
            context, verify = prepare()
            await writer.start_tls(context, ssl_handshake_timeout=DEFAULT_TIMEOUT)
            cert_der = _peer_certificate(writer)
        except (OSError, ssl.SSLError, TimeoutError, HandshakeFailed) as exc:
            logger.info("%s: TLS handshake with %s failed: %s", what, address, _ssl_reason(exc))
            writer.close()  # a failed start_tls has closed the transport: nothing to wait for
            return
        except Exception:
            logger.exception("%s: could not set up TLS for %s", what, address)
            writer.close()
            return
        try:
            member, pin = verify(cert_der)
        except (ZoneError, PeerError) as exc:
            logger.warning("%s: refused %s: %s", what, address, exc)
            await _refuse(writer, exc.code)
            return
        except Exception:
            logger.exception("%s: could not check the certificate of %s", what, address)
            await _refuse(writer, INTERNAL)
            return
        connection = ValidatedConnection(
            reader, writer, peer_cert_der=cert_der, peer_member=member, peer_pin=pin
        )
        try:
            await connection.send({"op": _HELLO, "id": 0, "body": {"version": PROTOCOL_VERSION}})
            await handler(connection)
        except ValidatedConnectionError as exc:
            logger.info("%s: connection with %s ended: %s", what, connection.peer_name, exc)
        except Exception:
            logger.exception("%s: handler failed for %s", what, connection.peer_name)
        finally:
            await connection.close()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await accept(reader, writer)
        except asyncio.CancelledError:
            # The loop is shutting down. Python 3.11's start_server calls exception() on
            # a cancelled connection task, which raises and gets logged as an error.
            writer.close()

    return await asyncio.start_server(on_connect, host, port)


async def _refuse(writer: asyncio.StreamWriter, code: int) -> None:
    """Tell a refused client why (a code only) and close."""
    with contextlib.suppress(OSError, ssl.SSLError):
        writer.write(encode_message({"op": _REFUSED, "id": 0, "body": {"code": code}}))
        await writer.drain()
    await _close_writer(writer)


async def start_member_server(
    host: str,
    port: int,
    creds: MemberCredentials | Callable[[], MemberCredentials],
    *,
    crl_provider: Callable[[], bytes],
    handler: Handler,
) -> asyncio.Server:
    """Serve zone members: each client's certificate is checked against the zone root and
    a CRL from ``crl_provider()``, called anew for every connection; ``handler`` runs once
    the client is accepted and the connection is closed when it returns.

    ``creds`` may be a provider, asked for every connection: a server whose short-lived
    certificate is re-issued while it runs (the hub) serves the new one at once."""

    def provider() -> MemberCredentials:
        return creds if isinstance(creds, MemberCredentials) else creds()

    first = provider()
    cache: dict[bytes, ssl.SSLContext] = {}

    def prepare() -> tuple[ssl.SSLContext, _Verifier]:
        current = provider()
        if current.cert_der not in cache:
            cache.clear()  # one context: the current certificate's
            cache[current.cert_der] = make_context(
                server=True,
                key=current.key,
                chain_der=(current.cert_der, *current.chain_der),
                trust_der=(current.root_der,),
            )

        def verify(cert_der: bytes) -> tuple[MemberIdentity | None, PeerPin | None]:
            return _member_verifier(current, crl_provider(), None)(cert_der)

        return cache[current.cert_der], verify

    prepare()  # a bad certificate or key fails here, not at the first connection
    return await _serve(host, port, prepare, handler, what=f"member server {first.device_id}")


async def start_peer_server(
    host: str,
    port: int,
    identity: PeerIdentity | Callable[[], PeerIdentity],
    pins_provider: Callable[[], PinSet],
    handler: Handler,
) -> asyncio.Server:
    """Serve pinned peers; ``pins_provider()`` (and ``identity``, if a provider) is asked
    for every connection, so binding, unbinding and a handover's new identity take effect
    on the next connection."""
    cache: dict[bytes, ssl.SSLContext] = {}
    current = identity if callable(identity) else (lambda: identity)

    def prepare() -> tuple[ssl.SSLContext, _Verifier]:
        pins = pins_provider()
        ours = current()
        key = ours.cert_der + pins.to_bytes()
        if key not in cache:
            cache.clear()  # one context: the current identity's and pin set's
            cache[key] = make_context(
                server=True,
                key=ours.key,
                chain_der=(ours.cert_der,),
                trust_der=tuple(p.cert_der for p in pins),
            )
        return cache[key], _pin_verifier(pins, None)

    return await _serve(host, port, prepare, handler, what=f"peer server {current().name}")
