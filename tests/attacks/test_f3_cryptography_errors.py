"""F3 (issue 15): ``cryptography`` raises more than ValueError and TypeError on hostile
bytes: ``x509.InvalidVersion`` (not a ValueError) for a damaged version field,
``UnsupportedAlgorithm`` for a key of an algorithm it does not know. Code that caught
only ValueError/TypeError let those escape: from ``zone/install`` (an authenticated host
could crash the device's enrolment machine), from corrupted store records, from
device.bin's identity, from zone.bin, manufacturer.bin, crl.pem and user key files.

Each test holds the smallest input found that escaped on the old code; every parse now
goes through :mod:`bleprov.core.crypto.loading` and ends in the module's typed error.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bleprov.core import membership as mb
from bleprov.core.enrolment.messages import Status
from bleprov.core.identity import DeviceIdentity, IdentityError, Manufacturer
from bleprov.core.zone import Zone, ZoneSetupError, make_member_key
from bleprov.store.hub_files import BadCredential, Hub
from bleprov.tls.connection import MemberCredentials
from bleprov.tls.context import TlsSetupError
from tests.core.test_membership import Device

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

#: The smallest certificate shape cryptography parses (71 bytes: empty names, key and
#: signature algorithm OID 1.2, 2000-01-01 validity) with version field 3: ``load``
#: raises ``x509.InvalidVersion``.
BAD_VERSION_CERT = bytes.fromhex(
    "3045303ba003020103020101300306012a3000301e170d3030303130313030303030305a170d30303031"
    "30313030303030305a30003008300306012a030100300306012a030100"
)
#: The same with version 2 (v3): it loads, and ``public_key()`` raises
#: ``UnsupportedAlgorithm`` (key algorithm 1.2).
ALIEN_KEY_CERT = bytes.fromhex(
    "3045303ba003020102020101300306012a3000301e170d3030303130313030303030305a170d30303031"
    "30313030303030305a30003008300306012a030100300306012a030100"
)
#: Unencrypted PKCS#8 of key algorithm 1.2 (12 bytes): ``UnsupportedAlgorithm``.
ALIEN_PKCS8 = bytes.fromhex("300a020100300306012a0400")

_AES256_CBC_OID = bytes.fromhex("060960864801650304012a")


def flip_iv_into_alien_key(encrypted_pkcs8: bytes) -> bytes:
    """CBC is malleable: XOR-ing the IV's byte 15 turns the decrypted PKCS#8's key OID
    1.2.840.10045.2.1 (ecPublicKey) into 1.2.840.10045.1.1, and the padding still checks."""
    at = encrypted_pkcs8.index(_AES256_CBC_OID) + len(_AES256_CBC_OID) + 2 + 15
    out = bytearray(encrypted_pkcs8)
    out[at] ^= 0x02 ^ 0x01
    return bytes(out)


# ------------------------------------------------------------------- zone/install


@pytest.mark.parametrize("cert", [BAD_VERSION_CERT, ALIEN_KEY_CERT], ids=["version", "key"])
def test_zone_install_of_an_unparseable_certificate_is_a_typed_refusal(cert: bytes) -> None:
    """F3: before, InvalidVersion / UnsupportedAlgorithm escaped DeviceEnrolment.receive."""
    device = Device()
    device.ok(mb.ZONE_KEY)
    body: dict[str, Any] = {"cert": cert, "chain": [cert], "root": cert}
    assert device.refused(mb.ZONE_INSTALL, body) in (Status.BAD_REQUEST, Status.NOT_ALLOWED)
    device.enrol()  # the session goes on


# ------------------------------------------------------------- store records


def test_a_zone_record_with_a_key_of_an_unknown_algorithm_is_a_membership_error() -> None:
    """F3: before, UnsupportedAlgorithm escaped ZoneMembership.decode."""
    raw = cbor2.dumps(
        {
            "v": 1,
            "key": ALIEN_PKCS8,
            "cert": ALIEN_KEY_CERT,
            "chain": [ALIEN_KEY_CERT],
            "root": ALIEN_KEY_CERT,
            "zone": "z",
            "owner": "a",
        },
        canonical=True,
    )
    with pytest.raises(mb.MembershipError):
        mb.ZoneMembership.decode(raw)


@pytest.mark.parametrize("cert", [BAD_VERSION_CERT, ALIEN_KEY_CERT], ids=["version", "key"])
def test_the_owner_fingerprint_of_an_unparseable_certificate_is_a_membership_error(
    cert: bytes,
) -> None:
    """F3: before, InvalidVersion / UnsupportedAlgorithm escaped spki_fingerprint."""
    with pytest.raises(mb.MembershipError):
        mb.spki_fingerprint(cert)


# ------------------------------------------------------------------- device.bin


def test_a_device_identity_with_a_key_of_an_unknown_algorithm_is_an_identity_error() -> None:
    """F3: the identity inside device.bin; before, UnsupportedAlgorithm escaped."""
    manufacturer = Manufacturer.create("Acme", now=NOW)
    value = cbor2.loads(manufacturer.issue_device(now=NOW).to_bytes(None))
    for index in (2, 3):  # attestation key, Noise static key
        tampered = list(value)
        tampered[index] = ALIEN_PKCS8
        with pytest.raises(IdentityError):
            DeviceIdentity.from_bytes(cbor2.dumps(tampered, canonical=True), None)


# ---------------------------------------------------- zone.bin, manufacturer.bin


def test_zone_bin_with_a_flipped_iv_bit_is_a_zone_setup_error() -> None:
    """F3: zone.bin's keys are AES-CBC PKCS#8; before, UnsupportedAlgorithm escaped."""
    value = cbor2.loads(Zone.create("Home", now=NOW).to_bytes(b"zone passphrase"))
    value[3] = flip_iv_into_alien_key(value[3])
    with pytest.raises(ZoneSetupError):
        Zone.from_bytes(cbor2.dumps(value, canonical=True), b"zone passphrase")


def test_manufacturer_bin_with_a_flipped_iv_bit_is_an_identity_error() -> None:
    """F3: manufacturer.bin, as zone.bin; before, UnsupportedAlgorithm escaped."""
    value = cbor2.loads(Manufacturer.create("Acme", now=NOW).to_bytes(b"factory passphrase"))
    value[3] = flip_iv_into_alien_key(value[3])
    with pytest.raises(IdentityError):
        Manufacturer.from_bytes(cbor2.dumps(value, canonical=True), b"factory passphrase")


# --------------------------------------------------------------------------- hub


@pytest.fixture
def hub(tmp_path: Path) -> Any:
    from bleprov.core.crypto.spake2plus import ScryptCost

    with Hub.init(
        tmp_path / "hub",
        name="Home",
        zone_passphrase=b"zone passphrase 1",
        admin="alice",
        admin_passphrase="admin passphrase 1",
        now=NOW,
        passphrase_cost=ScryptCost(n=16, r=1, p=1),
    ) as opened:
        yield opened


def test_a_published_crl_of_a_bad_version_counts_as_none(hub: Hub) -> None:
    """F3: crl.pem with its version field set to 3; before, InvalidVersion escaped
    Hub.crl (the hub reads the published CRL's number before signing the next)."""
    der = x509.load_pem_x509_crl((hub.directory / "crl.pem").read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    at = der.index(b"\x02\x01\x01")  # TBSCertList's version, v2
    damaged = der[:at] + b"\x02\x01\x03" + der[at + 3 :]
    with pytest.raises(x509.InvalidVersion):
        x509.load_der_x509_crl(damaged)
    body = base64.encodebytes(damaged).decode()
    (hub.directory / "crl.pem").write_text(
        f"-----BEGIN X509 CRL-----\n{body}-----END X509 CRL-----\n"
    )
    assert x509.load_der_x509_crl(hub.crl(now=NOW)).issuer == hub.zone.issuer_certificate.subject


def test_a_user_key_file_with_a_flipped_iv_bit_is_a_bad_credential(hub: Hub) -> None:
    """F3: a user's key file; before, UnsupportedAlgorithm escaped Hub.authenticate_key."""
    admin = hub.authenticate("alice", "admin passphrase 1")
    key_pem, cert_pem = hub.issue_user_credential(
        "bob", admin.role, actor=admin, key_passphrase=b"key passphrase 1", now=NOW
    )
    lines = key_pem.decode().strip().splitlines()
    tampered = flip_iv_into_alien_key(base64.b64decode("".join(lines[1:-1])))
    body = base64.encodebytes(tampered).decode()
    tampered_pem = f"{lines[0]}\n{body}{lines[-1]}\n".encode()
    with pytest.raises(BadCredential):
        hub.authenticate_key("bob", tampered_pem, b"key passphrase 1", cert_pem, now=NOW)


# ------------------------------------------------------------------ TLS, CLI


def test_member_credentials_with_a_key_of_an_unknown_algorithm_are_a_setup_error() -> None:
    """F3: before, UnsupportedAlgorithm escaped MemberCredentials (the device's own TLS
    material, from its store)."""
    with pytest.raises(TlsSetupError):
        MemberCredentials(make_member_key(), ALIEN_KEY_CERT, (ALIEN_KEY_CERT,), ALIEN_KEY_CERT)
    with pytest.raises(TlsSetupError):
        MemberCredentials(make_member_key(), BAD_VERSION_CERT, (BAD_VERSION_CERT,), b"x")


@pytest.mark.parametrize("pem", [False, True], ids=["der", "pem"])
def test_a_trust_root_of_a_bad_version_is_a_host_error(tmp_path: Path, pem: bool) -> None:
    """F3: ``--trust FILE``; before, InvalidVersion escaped load_roots (a traceback)."""
    from bleprov.cli.host import HostError, load_roots

    path = tmp_path / "root"
    if pem:
        body = base64.encodebytes(BAD_VERSION_CERT).decode()
        path.write_text(f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n")
    else:
        path.write_bytes(BAD_VERSION_CERT)
    with pytest.raises(HostError):
        load_roots([path])
