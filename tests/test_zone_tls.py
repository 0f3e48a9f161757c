"""Zone members over mutual TLS 1.3 on loopback: Python's ssl module, and OpenSSL's tools."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bleprov.core.zone import (
    MemberCertificate,
    MemberIdentity,
    Zone,
    ZoneError,
    make_csr,
    make_member_key,
    verify_member,
)

TIMEOUT = 10.0
OPENSSL = shutil.which("openssl")


@dataclass
class Member:
    """One enrolled member's files, as an adapter would keep them."""

    zone: Zone
    device_id: str
    certificate: MemberCertificate
    chain_file: Path
    key_file: Path

    @property
    def serial(self) -> int:
        return x509.load_der_x509_certificate(self.certificate.cert_der).serial_number


def _pem_cert(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def _pem_crl(der: bytes) -> str:
    return x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM).decode()


def enrol(zone: Zone, device_id: str, directory: Path, *, now: datetime, days: int = 30) -> Member:
    binding = bytes(32)
    key: ec.EllipticCurvePrivateKey = make_member_key()
    certificate = zone.issue_member(
        make_csr(key, device_id=device_id, session_binding=binding),
        device_id=device_id,
        owner="alice",
        expected_binding=binding,
        now=now,
        validity=timedelta(days=days),
    )
    chain_file = directory / f"{device_id}.chain.pem"
    chain_file.write_bytes(
        b"".join(_pem_cert(c) for c in (certificate.cert_der, *certificate.chain_der))
    )
    key_file = directory / f"{device_id}.key.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Member(zone, device_id, certificate, chain_file, key_file)


def member_context(member: Member, crl_der: bytes, *, server: bool) -> ssl.SSLContext:
    """Mutual TLS 1.3 trusting only the zone root, with the leaf checked against the CRL."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False  # members are named by URN; verify_member checks names
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF | ssl.VERIFY_X509_STRICT
    # cadata takes certificates only; a CAfile may also hold CRLs (X509_STORE_load_file).
    trust_file = member.chain_file.with_suffix(".trust.pem")
    trust_file.write_text(_pem_cert(member.certificate.root_der).decode() + _pem_crl(crl_der))
    context.load_verify_locations(cafile=trust_file)
    context.load_cert_chain(member.chain_file, member.key_file)
    return context


def peer_identity(
    ssl_object: ssl.SSLObject | ssl.SSLSocket, member: Member, crl_der: bytes
) -> MemberIdentity:
    """The post-handshake check: the peer's certificate through :func:`verify_member`."""
    peer = ssl_object.getpeercert(binary_form=True)
    assert peer is not None
    return verify_member(
        peer,
        [member.zone.issuer_der],
        zone_root_der=member.certificate.root_der,
        crl_der=crl_der,
        now=datetime.now(UTC),
    )


@dataclass
class Server:
    port: int
    peers: list[MemberIdentity]


@contextlib.asynccontextmanager
async def serve(member: Member, crl_der: bytes) -> AsyncIterator[Server]:
    """A member answering ``ok <own device>`` to each authenticated peer, then closing."""
    peers: list[MemberIdentity] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            peers.append(peer_identity(writer.get_extra_info("ssl_object"), member, crl_der))
            await asyncio.wait_for(reader.readline(), TIMEOUT)
            writer.write(f"ok {member.device_id}\n".encode())
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    server = await asyncio.start_server(
        handle, "127.0.0.1", 0, ssl=member_context(member, crl_der, server=True)
    )
    try:
        yield Server(server.sockets[0].getsockname()[1], peers)
    finally:
        server.close()
        await server.wait_closed()


async def talk(member: Member, crl_der: bytes, port: int) -> tuple[bytes, MemberIdentity]:
    """Connect as ``member``, verify the server, say hello and return its answer."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(
            "127.0.0.1",
            port,
            ssl=member_context(member, crl_der, server=False),
        ),
        TIMEOUT,
    )
    try:
        server_identity = peer_identity(writer.get_extra_info("ssl_object"), member, crl_der)
        writer.write(b"hello\n")
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), TIMEOUT), server_identity
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def zone(now: datetime) -> Zone:
    return Zone.create("Home", now=now - timedelta(days=90))


async def test_members_connect_with_mutual_tls13(tmp_path: Path, zone: Zone, now: datetime) -> None:
    hub = enrol(zone, "HUB-0001", tmp_path, now=now)
    lamp = enrol(zone, "LAMP-0001", tmp_path, now=now)
    crl = zone.crl(now=now)
    async with serve(hub, crl) as server:
        answer, server_identity = await talk(lamp, crl, server.port)
    assert answer == b"ok HUB-0001\n"
    assert (server_identity.device_id, server_identity.zone_id) == ("HUB-0001", zone.zone_id)
    assert [p.device_id for p in server.peers] == ["LAMP-0001"]
    assert server.peers[0].owner == "alice"


async def _answer_or_raise(client: Member, crl: bytes, port: int) -> bytes:
    """The server's answer; a TLS 1.3 server that refuses a client certificate after the
    client's handshake has finished shows up as an alert on read or as an empty read."""
    answer, _ = await talk(client, crl, port)
    if not answer:
        raise ConnectionResetError("server closed without answering")
    return answer


async def _refused_client(client: Member, server_member: Member, crl: bytes) -> Server:
    """``client`` must not get an answer from ``server_member``'s server."""
    async with serve(server_member, crl) as server:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await _answer_or_raise(client, crl, server.port)
    return server


async def test_revoked_member_refused(tmp_path: Path, zone: Zone, now: datetime) -> None:
    hub = enrol(zone, "HUB-0001", tmp_path, now=now)
    lamp = enrol(zone, "LAMP-0001", tmp_path, now=now)
    zone.revoke(lamp.serial, now=now)
    crl = zone.crl(now=now)
    server = await _refused_client(lamp, hub, crl)
    assert server.peers == []
    # ...and as a server, the revoked member is refused by the client.
    with pytest.raises(ssl.SSLCertVerificationError, match="revoked"):
        async with serve(lamp, crl) as revoked_server:
            await talk(hub, crl, revoked_server.port)


async def test_expired_member_refused(tmp_path: Path, zone: Zone, now: datetime) -> None:
    hub = enrol(zone, "HUB-0001", tmp_path, now=now)
    stale = enrol(zone, "OLD-0001", tmp_path, now=now - timedelta(days=40), days=30)
    crl = zone.crl(now=now)
    server = await _refused_client(stale, hub, crl)
    assert server.peers == []
    with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
        async with serve(stale, crl) as expired_server:
            await talk(hub, crl, expired_server.port)


async def test_member_of_another_zone_refused(tmp_path: Path, zone: Zone, now: datetime) -> None:
    other = Zone.create("Neighbour", now=now - timedelta(days=1))
    hub = enrol(zone, "HUB-0001", tmp_path, now=now)
    intruder = enrol(other, "INTRUDER-01", tmp_path, now=now)
    server = await _refused_client(intruder, hub, zone.crl(now=now))
    assert server.peers == []
    with pytest.raises(ssl.SSLCertVerificationError):
        async with serve(intruder, other.crl(now=now)) as foreign_server:
            await talk(hub, zone.crl(now=now), foreign_server.port)


def test_verify_member_agrees_with_tls_on_revocation(
    tmp_path: Path, zone: Zone, now: datetime
) -> None:
    lamp = enrol(zone, "LAMP-0001", tmp_path, now=now)
    zone.revoke(lamp.serial, now=now)
    with pytest.raises(ZoneError):
        verify_member(
            lamp.certificate.cert_der,
            lamp.certificate.chain_der,
            zone_root_der=zone.root_der,
            crl_der=zone.crl(now=now),
            now=now,
        )


# ------------------------------------------------------------------ OpenSSL interop

needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl command not installed")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _trust_files(member: Member, crl: bytes, directory: Path) -> tuple[Path, Path]:
    root_file = directory / "root.pem"
    root_file.write_bytes(_pem_cert(member.certificate.root_der))
    crl_file = directory / "crl.pem"
    crl_file.write_text(_pem_crl(crl))
    return root_file, crl_file


async def _stop(process: asyncio.subprocess.Process) -> bytes:
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    output, _ = await asyncio.wait_for(process.communicate(), TIMEOUT)
    return output


@needs_openssl
async def test_openssl_s_server_accepts_member_client(
    tmp_path: Path, zone: Zone, now: datetime
) -> None:
    assert OPENSSL is not None
    hub = enrol(zone, "HUB-0001", tmp_path, now=now)
    lamp = enrol(zone, "LAMP-0001", tmp_path, now=now)
    crl = zone.crl(now=now)
    root_file, crl_file = _trust_files(hub, crl, tmp_path)
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        OPENSSL,
        "s_server",
        "-accept",
        f"127.0.0.1:{port}",
        "-naccept",
        "1",
        "-tls1_3",
        "-cert",
        str(hub.chain_file),
        "-key",
        str(hub.key_file),
        "-cert_chain",
        str(hub.chain_file),
        "-CAfile",
        str(root_file),
        "-CRL",
        str(crl_file),
        "-crl_check",
        "-Verify",
        "2",
        "-verify_return_error",
        "-rev",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        while b"ACCEPT" not in await asyncio.wait_for(process.stdout.readline(), TIMEOUT):
            pass
        answer, server_identity = await talk(lamp, crl, port)
    finally:
        output = await _stop(process)
    assert answer == b"olleh\n"  # s_server -rev echoes each line reversed
    assert server_identity.device_id == "HUB-0001"
    assert b"LAMP-0001" in output  # s_server printed the client certificate's subject


@needs_openssl
async def test_openssl_s_client_connects_to_member_server(
    tmp_path: Path, zone: Zone, now: datetime
) -> None:
    assert OPENSSL is not None
    hub = enrol(zone, "HUB-0001", tmp_path, now=now)
    lamp = enrol(zone, "LAMP-0001", tmp_path, now=now)
    crl = zone.crl(now=now)
    root_file, crl_file = _trust_files(hub, crl, tmp_path)
    async with serve(hub, crl) as server:
        process = await asyncio.create_subprocess_exec(
            OPENSSL,
            "s_client",
            "-connect",
            f"127.0.0.1:{server.port}",
            "-tls1_3",
            "-cert",
            str(lamp.chain_file),
            "-key",
            str(lamp.key_file),
            "-cert_chain",
            str(lamp.chain_file),
            "-CAfile",
            str(root_file),
            "-CRL",
            str(crl_file),
            "-crl_check",
            "-verify_return_error",
            "-ign_eof",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(b"hello\n"), TIMEOUT)
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
    assert b"Verify return code: 0 (ok)" in output
    assert b"ok HUB-0001" in output
    assert [p.device_id for p in server.peers] == ["LAMP-0001"]
