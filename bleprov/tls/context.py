"""TLS 1.3 contexts for validated connections, and getting a private key into ``ssl``.

Python's ``ssl`` loads keys from files only. The key must never rest on disk in the clear,
so it is written as *encrypted* PKCS#8 PEM under a one-time random password, into a
private (0700) temporary directory, loaded with that password and deleted at once; the
password exists only in this process's memory.
"""

from __future__ import annotations

import os
import secrets
import ssl
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bleprov.core.crypto import pki
from bleprov.core.crypto.loading import UnreadableCertificate, load_der_certificate
from bleprov.core.crypto.pki import SigningKey
from bleprov.core.errors import BleprovError


class TlsSetupError(BleprovError):
    """Our own TLS material could not be loaded (a bad key, certificate or trust anchor)."""


def _pem(cert_der: bytes) -> bytes:
    try:
        return pki.certificate_pem(load_der_certificate(cert_der))
    except (UnreadableCertificate, TypeError):
        raise TlsSetupError("a certificate of our own credentials is not DER") from None


def load_key_and_chain(
    context: ssl.SSLContext, key: SigningKey, chain_der: Sequence[bytes]
) -> None:
    """Load ``key`` and ``chain_der`` (leaf first) into ``context`` without plaintext on disk."""
    password = secrets.token_urlsafe(32).encode("ascii")
    key_pem = pki.pkcs8_pem(key, password)  # PBES2, AES-256-CBC
    data = b"".join(_pem(c) for c in chain_der) + key_pem
    with tempfile.TemporaryDirectory(prefix="bleprov-tls-") as directory:  # mkdtemp: 0700
        path = Path(directory) / "credentials.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        try:
            context.load_cert_chain(path, password=password)
        except ssl.SSLError:
            raise TlsSetupError("our key does not match our certificate") from None
        finally:
            path.unlink()


def make_context(
    *,
    server: bool,
    key: SigningKey,
    chain_der: Sequence[bytes],
    trust_der: Sequence[bytes],
) -> ssl.SSLContext:
    """Mutual TLS 1.3 only, peer certificate required, trusting exactly ``trust_der``.

    No hostname check: a peer is named by its zone URN or its pin, which the caller
    checks after the handshake. Servers issue no session tickets, so every connection
    runs a full handshake with the peer's certificate.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    if server:
        context.num_tickets = 0
    if trust_der:
        try:
            context.load_verify_locations(cadata=b"".join(trust_der))
        except ssl.SSLError:
            raise TlsSetupError("a trust anchor is not a DER certificate") from None
    load_key_and_chain(context, key, chain_der)
    return context
