"""The private key reaches ``ssl`` encrypted, through a private directory that is removed."""

from __future__ import annotations

import ssl
import stat
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bleprov.core.zone import Zone
from bleprov.tls import TlsSetupError
from bleprov.tls.context import make_context

from .conftest import enrol


def test_key_file_is_encrypted_private_and_removed(
    zone: Zone, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    lamp = enrol(zone, "LAMP-0001", now=now)
    seen: list[tuple[Path, bytes, int, int]] = []
    original = ssl.SSLContext.load_cert_chain

    def spy(self: ssl.SSLContext, certfile: Any, keyfile: Any = None, password: Any = None) -> None:
        path = Path(certfile)
        seen.append(
            (
                path,
                path.read_bytes(),
                stat.S_IMODE(path.parent.stat().st_mode),
                stat.S_IMODE(path.stat().st_mode),
            )
        )
        original(self, certfile, keyfile, password)

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spy)
    context = make_context(
        server=True, key=lamp.key, chain_der=(lamp.cert_der, *lamp.chain_der), trust_der=()
    )
    [(path, content, directory_mode, file_mode)] = seen
    assert b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in content
    assert b"-----BEGIN PRIVATE KEY-----" not in content
    assert content.count(b"-----BEGIN CERTIFICATE-----") == 2
    assert (directory_mode, file_mode) == (0o700, 0o600)
    assert not path.exists() and not path.parent.exists()
    assert context.minimum_version == context.maximum_version == ssl.TLSVersion.TLSv1_3
    assert context.verify_mode == ssl.CERT_REQUIRED and not context.check_hostname


def test_mismatched_key_is_a_setup_error(zone: Zone, now: datetime) -> None:
    lamp = enrol(zone, "LAMP-0001", now=now)
    fan = enrol(zone, "FAN-0001", now=now)
    with pytest.raises(TlsSetupError):
        make_context(server=False, key=fan.key, chain_der=(lamp.cert_der,), trust_der=())
    with pytest.raises(TlsSetupError):
        make_context(server=False, key=lamp.key, chain_der=(lamp.cert_der,), trust_der=(b"x",))
