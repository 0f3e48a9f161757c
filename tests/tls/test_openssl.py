"""Validated connections interoperate with OpenSSL's s_client, s_server and verify."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import socket
import subprocess
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bleprov.core.zone import Zone
from bleprov.tls import MemberCredentials, ValidatedConnection, open_member_connection
from bleprov.tls.connection import encode_message

from .conftest import HOST, Served, enrol, member_server, serial_of

OPENSSL = shutil.which("openssl")
TIMEOUT = 30.0
PASSWORD_VARIABLE = "BLEPROV_TEST_KEY_PASSWORD"

pytestmark = pytest.mark.skipif(OPENSSL is None, reason="openssl command not installed")


@pytest.fixture
def key_password(monkeypatch: pytest.MonkeyPatch) -> bytes:
    """OpenSSL reads the test keys' password from the environment, never from argv."""
    password = secrets.token_hex(16)
    monkeypatch.setenv(PASSWORD_VARIABLE, password)
    return password.encode()


def _pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def write_member_files(
    creds: MemberCredentials, directory: Path, password: bytes
) -> tuple[Path, Path]:
    """The member's chain and its key (encrypted), as OpenSSL's tools take them."""
    name = creds.device_id
    chain = directory / f"{name}.chain.pem"
    chain.write_bytes(b"".join(_pem(c) for c in (creds.cert_der, *creds.chain_der)))
    key = directory / f"{name}.key.pem"
    key.write_bytes(
        creds.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password),
        )
    )
    return chain, key


def write_trust_files(zone: Zone, crl: bytes, directory: Path) -> tuple[Path, Path]:
    root = directory / "root.pem"
    root.write_bytes(_pem(zone.root_der))
    crl_file = directory / "crl.pem"
    crl_file.write_bytes(x509.load_der_x509_crl(crl).public_bytes(serialization.Encoding.PEM))
    return root, crl_file


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def one_reply(served: Served) -> Callable[[ValidatedConnection], Awaitable[None]]:
    """Answer one request, then close (s_client waits for the server to close)."""

    async def handle(connection: ValidatedConnection) -> None:
        served.peers.append(connection)
        request = await connection.next_request(timeout=TIMEOUT)
        await connection.reply(request, {"seen": connection.peer_name})

    return handle


async def test_openssl_s_client_connects_to_member_server(
    tmp_path: Path, zone: Zone, now: datetime, key_password: bytes
) -> None:
    assert OPENSSL is not None
    hub = enrol(zone, "HUB-0001", now=now)
    lamp = enrol(zone, "LAMP-0001", now=now)
    crl = zone.crl(now=now)
    chain, key = write_member_files(lamp, tmp_path, key_password)
    root, crl_file = write_trust_files(zone, crl, tmp_path)
    request = encode_message({"op": "echo", "id": 1, "body": {"via": "openssl"}})
    async with member_server(hub, lambda: crl, one_reply) as served:
        process = await asyncio.create_subprocess_exec(
            OPENSSL, "s_client",
            "-connect", f"{HOST}:{served.port}",
            "-tls1_3",
            "-cert", str(chain), "-cert_chain", str(chain),
            "-key", str(key), "-pass", f"env:{PASSWORD_VARIABLE}",
            "-CAfile", str(root), "-CRL", str(crl_file), "-crl_check",
            "-verify_return_error", "-ign_eof",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            output, _ = await asyncio.wait_for(process.communicate(request), TIMEOUT)
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
    assert b"Verify return code: 0 (ok)" in output
    assert b"TLSv1.3" in output
    # The server said hello, then answered the framed request.
    assert encode_message({"op": "welcome", "id": 0, "body": {"version": 1}}) in output
    assert encode_message({"op": "echo", "id": 1, "body": {"seen": "LAMP-0001"}}) in output
    [seen] = served.peers
    assert seen.peer_member is not None and seen.peer_member.serial == serial_of(lamp)


async def test_openssl_s_server_accepts_member_connection(
    tmp_path: Path, zone: Zone, now: datetime, key_password: bytes
) -> None:
    assert OPENSSL is not None
    hub = enrol(zone, "HUB-0001", now=now)
    lamp = enrol(zone, "LAMP-0001", now=now)
    crl = zone.crl(now=now)
    chain, key = write_member_files(hub, tmp_path, key_password)
    root, crl_file = write_trust_files(zone, crl, tmp_path)
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        OPENSSL, "s_server",
        "-accept", f"{HOST}:{port}", "-naccept", "1",
        "-tls1_3",
        "-cert", str(chain), "-cert_chain", str(chain),
        "-key", str(key), "-pass", f"env:{PASSWORD_VARIABLE}",
        "-CAfile", str(root), "-CRL", str(crl_file), "-crl_check",
        "-Verify", "2", "-verify_return_error",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    output = b""
    try:
        while b"ACCEPT" not in output:
            output += await asyncio.wait_for(process.stdout.readline(), TIMEOUT)
        # s_server sends what it reads on stdin: our hello frame, once a client is in.
        process.stdin.write(encode_message({"op": "welcome", "id": 0, "body": {"version": 1}}))
        await process.stdin.drain()
        ping = {"op": "ping", "id": 1, "body": {"from": "LAMP-0001"}}
        async with await open_member_connection(
            HOST, port, lamp, crl_der=crl, expect_device="HUB-0001", timeout=TIMEOUT
        ) as connection:
            assert connection.peer_member is not None
            assert connection.peer_member.device_id == "HUB-0001"
            await connection.send(ping)
            while encode_message(ping) not in output:
                chunk = await asyncio.wait_for(process.stdout.read(4096), TIMEOUT)
                assert chunk, f"s_server ended early: {output[-400:]!r}"
                output += chunk
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        output += (await asyncio.wait_for(process.communicate(), TIMEOUT))[0]
    assert b"LAMP-0001" in output  # s_server's verify callback printed our subject


def test_openssl_verify_agrees_on_members_and_revocation(
    tmp_path: Path, zone: Zone, now: datetime
) -> None:
    assert OPENSSL is not None
    lamp = enrol(zone, "LAMP-0001", now=now)
    gone = enrol(zone, "GONE-0001", now=now)
    zone.revoke(serial_of(gone), now=now)
    root, crl_file = write_trust_files(zone, zone.crl(now=now), tmp_path)
    issuer = tmp_path / "issuer.pem"
    issuer.write_bytes(_pem(zone.issuer_der))

    def verify(creds: MemberCredentials) -> subprocess.CompletedProcess[str]:
        leaf = tmp_path / f"{creds.device_id}.pem"
        leaf.write_bytes(_pem(creds.cert_der))
        assert OPENSSL is not None
        return subprocess.run(
            [OPENSSL, "verify", "-x509_strict", "-purpose", "sslclient",
             "-CAfile", str(root), "-untrusted", str(issuer),
             "-crl_check", "-CRLfile", str(crl_file), str(leaf)],
            capture_output=True, text=True, timeout=TIMEOUT, check=False,
        )  # fmt: skip

    ok = verify(lamp)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    revoked = verify(gone)
    assert revoked.returncode != 0
    assert "revoked" in revoked.stdout + revoked.stderr
