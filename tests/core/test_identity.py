"""Factory identity: certificate profile, attestation, chain validation, trust policy,
strict decoding and storage. Fixed ``now`` everywhere; the core never reads the clock."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bleprov.core.errors import MalformedData, ProtocolError
from bleprov.core.identity import (
    MAX_ATTESTATION_SIZE,
    MAX_CERTIFICATE_SIZE,
    Attestation,
    AttestationError,
    AttestationRecord,
    AttestationResult,
    ChainRequest,
    DeviceIdentity,
    IdentityError,
    InvalidDeviceId,
    MalformedAttestation,
    Manufacturer,
    TrustPolicy,
    UnknownManufacturer,
    decode_chain,
    device_id_of,
    signed_message,
    verify_attestation,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
HASH = bytes(range(32))
CONTEXT = b"bleprov/2 session"


@pytest.fixture(scope="module")
def acme() -> Manufacturer:
    return Manufacturer.create("Acme Devices", now=NOW)


@pytest.fixture(scope="module")
def device(acme: Manufacturer) -> DeviceIdentity:
    return acme.issue_device(now=NOW)


@pytest.fixture(scope="module")
def attestation_bytes(device: DeviceIdentity) -> bytes:
    return device.attest(HASH, context=CONTEXT)


def verify(
    attestation: Attestation | bytes,
    roots: Sequence[x509.Certificate | bytes],
    *,
    handshake_hash: bytes = HASH,
    context: bytes = CONTEXT,
    now: datetime = NOW,
    policy: TrustPolicy = TrustPolicy.REFUSE,
    chain: Sequence[bytes] = (),
) -> AttestationResult:
    """Bytes are a v2 record, resolved with ``chain`` (what the host cached or fetched)."""
    if isinstance(attestation, bytes):
        attestation = AttestationRecord.decode(attestation).resolve(chain)
    return verify_attestation(
        attestation,
        handshake_hash,
        context=context,
        trusted_roots=roots,
        now=now,
        policy=policy,
    )


# --------------------------------------------------------------- crafted hierarchies


def key_usage(*, signature: bool, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def crafted_certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    *,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    ca: bool,
    path_length: int | None,
    usage: x509.KeyUsage,
    extra: Sequence[tuple[x509.ExtensionType, bool]] = (),
    not_before: datetime = NOW - timedelta(days=1),
    not_after: datetime = NOW + timedelta(days=3650),
) -> x509.Certificate:
    """A certificate with the given deviations from the bleprov profile."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    for extension, critical in extra:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def ca_name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Crafted"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


@dataclass(frozen=True)
class Crafted:
    manufacturer: Manufacturer
    root_key: ec.EllipticCurvePrivateKey
    intermediate_key: ec.EllipticCurvePrivateKey

    @property
    def intermediate(self) -> x509.Certificate:
        return self.manufacturer.intermediate_certificate

    @property
    def root(self) -> x509.Certificate:
        return self.manufacturer.root_certificate


def crafted_manufacturer(
    *,
    intermediate_is_ca: bool = True,
    root_path_length: int = 1,
    intermediate_not_after: datetime = NOW + timedelta(days=3650),
) -> Crafted:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = crafted_certificate(
        ca_name("Crafted Root"),
        root_key,
        issuer=None,
        issuer_key=root_key,
        ca=True,
        path_length=root_path_length,
        usage=key_usage(signature=False, cert_sign=True),
    )
    intermediate_key = ec.generate_private_key(ec.SECP256R1())
    intermediate = crafted_certificate(
        ca_name("Crafted Intermediate"),
        intermediate_key,
        issuer=root,
        issuer_key=root_key,
        ca=intermediate_is_ca,
        path_length=0 if intermediate_is_ca else None,
        usage=key_usage(signature=not intermediate_is_ca, cert_sign=intermediate_is_ca),
        not_after=intermediate_not_after,
    )
    manufacturer = Manufacturer(
        root_key=root_key,
        root_certificate=root,
        intermediate_key=intermediate_key,
        intermediate_certificate=intermediate,
    )
    return Crafted(manufacturer, root_key, intermediate_key)


def crafted_leaf(
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    common_name: str = "CRAFTED0001",
    serial: str = "CRAFTED0001",
    uri: str = "urn:bleprov:device:CRAFTED0001",
    ca: bool = False,
    usage: x509.KeyUsage | None = None,
    extra: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, serial),
        ]
    )
    certificate = crafted_certificate(
        subject,
        key,
        issuer=issuer,
        issuer_key=issuer_key,
        ca=ca,
        path_length=None,
        usage=usage or key_usage(signature=True, cert_sign=False),
        extra=[
            (x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), False),
            *extra,
        ],
    )
    return certificate.public_bytes(serialization.Encoding.DER), key


def crafted_attestation(
    leaf_der: bytes, key: ec.EllipticCurvePrivateKey, chain: Sequence[x509.Certificate]
) -> Attestation:
    return Attestation(
        leaf_der,
        tuple(c.public_bytes(serialization.Encoding.DER) for c in chain),
        key.sign(signed_message(HASH, CONTEXT), ec.ECDSA(hashes.SHA256())),
    )


# --------------------------------------------------------------- published vectors


def test_ecdsa_p256_sha256_rfc6979_vector() -> None:
    """RFC 6979 A.2.5, P-256, SHA-256, message "sample": the primitive attestations use."""
    key = ec.derive_private_key(
        0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721, ec.SECP256R1()
    )
    numbers = key.public_key().public_numbers()
    assert numbers.x == 0x60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6
    assert numbers.y == 0x7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299
    signature = encode_dss_signature(
        0xEFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716,
        0xF7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8,
    )
    key.public_key().verify(signature, b"sample", ec.ECDSA(hashes.SHA256()))


def test_scrypt_rfc7914_vector() -> None:
    """RFC 7914 section 12, third vector: the KDF that guards manufacturer keys."""
    derived = Scrypt(salt=b"SodiumChloride", length=64, n=16384, r=8, p=1).derive(b"pleaseletmein")
    assert derived == bytes.fromhex(
        "7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2"
        "d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887"
    )


def test_signed_message_format() -> None:
    """The bytes docs/protocol.md specifies: label, NUL, u8-prefixed context and hash."""
    assert signed_message(b"\xaa" * 32, b"ctx") == (
        b"bleprov attestation v1\x00" + b"\x03ctx" + b"\x20" + b"\xaa" * 32
    )
    with pytest.raises(ValueError, match="context"):
        signed_message(HASH, b"")
    with pytest.raises(ValueError, match="context"):
        signed_message(HASH, b"x" * 256)
    with pytest.raises(ValueError, match="handshake hash"):
        signed_message(b"\x00" * 31, CONTEXT)


# -------------------------------------------------------------- profile and happy path


def test_issue_and_verify(acme: Manufacturer, device: DeviceIdentity) -> None:
    result = verify(device.attestation(HASH, context=CONTEXT), [acme.root_certificate])
    assert result.trusted
    assert result.device_id == device.device_id
    assert result.manufacturer_root_fingerprint == acme.root_fingerprint
    assert result.manufacturer == "Acme Devices"
    assert result.warning is None


def test_roots_as_der_and_from_pem(acme: Manufacturer, device: DeviceIdentity) -> None:
    """Hosts keep roots as DER (session Trust) or the distributed PEM."""
    root = x509.load_pem_x509_certificate(acme.root_certificate_pem())
    assert root == acme.root_certificate
    der = root.public_bytes(serialization.Encoding.DER)
    other = Manufacturer.create("Other", now=NOW).root_certificate
    assert verify(device.attestation(HASH, context=CONTEXT), [other, der]).trusted
    with pytest.raises(IdentityError):
        verify(device.attestation(HASH, context=CONTEXT), [b"not a certificate"])


def test_device_certificate_profile(acme: Manufacturer, device: DeviceIdentity) -> None:
    cert = device.certificate
    device_id = device.device_id
    assert len(device_id) == 16
    assert device_id == device_id.upper()
    int(device_id, 16)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == device_id
    assert cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == device_id
    assert cert.issuer == acme.intermediate_certificate.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical
    assert list(san.value) == [x509.UniformResourceIdentifier(f"urn:bleprov:device:{device_id}")]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert not usage.value.key_cert_sign
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert not constraints.value.ca
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    issuer_ski = acme.intermediate_certificate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    )
    assert aki.key_identifier == issuer_ski.value.digest
    assert cert.serial_number.bit_length() > 100
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert cert.not_valid_before_utc == NOW - timedelta(hours=1)
    assert cert.not_valid_after_utc == NOW + timedelta(days=25 * 365)
    assert device.chain == (acme.intermediate_certificate, acme.root_certificate)
    assert len(device.noise_static_public_key) == 32
    assert device_id_of(cert) == device_id


def test_ca_profiles(acme: Manufacturer) -> None:
    root, intermediate = acme.root_certificate, acme.intermediate_certificate
    assert root.subject == root.issuer
    for cert, path_length in ((root, 1), (intermediate, 0)):
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert constraints.critical
        assert constraints.value.ca
        assert constraints.value.path_length == path_length
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert usage.critical
        assert usage.value.key_cert_sign
        assert usage.value.crl_sign
    assert intermediate.not_valid_after_utc < root.not_valid_after_utc
    assert root.not_valid_after_utc == NOW - timedelta(hours=1) + timedelta(days=40 * 365)


def test_explicit_device_ids(acme: Manufacturer) -> None:
    assert acme.issue_device("SN-2025-000042", now=NOW).device_id == "SN-2025-000042"
    for bad in ["", "abc", "sn-lowercase", "-LEADING", "TRAILING-", "A" * 33, "SP ACE", "É123"]:
        with pytest.raises(InvalidDeviceId):
            acme.issue_device(bad, now=NOW)


def test_device_certificate_never_outlives_its_intermediate(acme: Manufacturer) -> None:
    identity = acme.issue_device(now=NOW, validity=timedelta(days=100 * 365))
    assert identity.certificate.not_valid_after_utc == (
        acme.intermediate_certificate.not_valid_after_utc
    )


def test_naive_now_is_refused(acme: Manufacturer) -> None:
    with pytest.raises(ValueError, match="timezone"):
        acme.issue_device(now=datetime(2025, 1, 1))


# ------------------------------------------------------------------ failing proofs


def test_signature_over_another_handshake_hash_fails(
    acme: Manufacturer, device: DeviceIdentity
) -> None:
    attestation = device.attestation(HASH, context=CONTEXT)
    with pytest.raises(AttestationError, match="signature"):
        verify(attestation, [acme.root_certificate], handshake_hash=bytes(32))


def test_signature_in_another_context_fails(acme: Manufacturer, device: DeviceIdentity) -> None:
    attestation = device.attestation(HASH, context=CONTEXT)
    with pytest.raises(AttestationError, match="signature"):
        verify(attestation, [acme.root_certificate], context=b"bleprov/1 other")


def test_certificate_reused_with_another_devices_key(acme: Manufacturer) -> None:
    first, second = acme.issue_device(now=NOW), acme.issue_device(now=NOW)
    forged = Attestation(
        first.attestation(HASH, context=CONTEXT).device_certificate,
        first.attestation(HASH, context=CONTEXT).chain,
        second.sign_handshake(HASH, context=CONTEXT),
    )
    with pytest.raises(AttestationError, match="signature"):
        verify(forged, [acme.root_certificate])


@pytest.mark.parametrize(
    ("issued_offset", "validity", "checked_offset"),
    [
        pytest.param(timedelta(0), timedelta(days=1), timedelta(days=2), id="expired"),
        pytest.param(timedelta(0), timedelta(days=1), -timedelta(days=1), id="not-yet-valid"),
    ],
)
def test_validity_is_checked_at_now(
    acme: Manufacturer, issued_offset: timedelta, validity: timedelta, checked_offset: timedelta
) -> None:
    identity = acme.issue_device(now=NOW + issued_offset, validity=validity)
    attestation = identity.attestation(HASH, context=CONTEXT)
    assert verify(attestation, [acme.root_certificate], now=NOW + timedelta(hours=1)).trusted
    for policy in TrustPolicy:
        with pytest.raises(AttestationError, match="not valid at validation time"):
            verify(attestation, [acme.root_certificate], now=NOW + checked_offset, policy=policy)


def test_expired_chain_to_unknown_root_is_an_error_not_a_warning(acme: Manufacturer) -> None:
    identity = acme.issue_device(now=NOW, validity=timedelta(days=1))
    with pytest.raises(AttestationError) as info:
        verify(
            identity.attestation(HASH, context=CONTEXT),
            [],
            now=NOW + timedelta(days=2),
            policy=TrustPolicy.WARN,
        )
    assert not isinstance(info.value, UnknownManufacturer)


@pytest.mark.parametrize("where", [0.2, 0.5, 0.8, 0.97])
def test_tampered_certificate_bytes(
    acme: Manufacturer, device: DeviceIdentity, where: float
) -> None:
    good = device.attestation(HASH, context=CONTEXT)
    for certificate_index in range(2):
        blobs = [good.device_certificate, *good.chain]
        blob = bytearray(blobs[certificate_index])
        blob[int(len(blob) * where)] ^= 0x01
        blobs[certificate_index] = bytes(blob)
        tampered = Attestation(blobs[0], tuple(blobs[1:]), good.signature)
        for policy in TrustPolicy:
            with pytest.raises(AttestationError):
                verify(tampered, [acme.root_certificate], policy=policy)


def test_expired_intermediate_fails() -> None:
    crafted = crafted_manufacturer(intermediate_not_after=NOW + timedelta(days=10))
    leaf, key = crafted_leaf(crafted.intermediate, crafted.intermediate_key)
    attestation = crafted_attestation(leaf, key, [crafted.intermediate])
    assert verify(attestation, [crafted.root]).trusted
    with pytest.raises(AttestationError, match="not valid at validation time"):
        verify(attestation, [crafted.root], now=NOW + timedelta(days=11))


def test_non_ca_intermediate_fails() -> None:
    crafted = crafted_manufacturer(intermediate_is_ca=False)
    identity = crafted.manufacturer.issue_device(now=NOW)
    with pytest.raises(AttestationError, match="basicConstraints"):
        verify(identity.attestation(HASH, context=CONTEXT), [crafted.root])


def test_crafted_hierarchy_with_the_right_shape_verifies() -> None:
    """The crafting helpers make valid chains, so the failures below are the deviations'."""
    crafted = crafted_manufacturer()
    leaf, key = crafted_leaf(crafted.intermediate, crafted.intermediate_key)
    attestation = crafted_attestation(leaf, key, [crafted.intermediate])
    assert verify(attestation, [crafted.root]).device_id == "CRAFTED0001"


def test_root_path_length_is_enforced() -> None:
    crafted = crafted_manufacturer(root_path_length=0)
    identity = crafted.manufacturer.issue_device(now=NOW)
    with pytest.raises(AttestationError, match="path length"):
        verify(identity.attestation(HASH, context=CONTEXT), [crafted.root])


def test_leaf_signed_directly_by_the_root_is_refused() -> None:
    """Policy: device <- intermediate <- root exactly, as Matter's DAC <- PAI <- PAA; the
    root key stays offline and never signs devices."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = crafted_certificate(
        ca_name("Crafted Root"),
        root_key,
        issuer=None,
        issuer_key=root_key,
        ca=True,
        path_length=1,
        usage=key_usage(signature=False, cert_sign=True),
    )
    leaf, key = crafted_leaf(root, root_key)
    with pytest.raises(AttestationError, match="intermediate"):
        verify(crafted_attestation(leaf, key, [root]), [root])


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"usage": key_usage(signature=False, cert_sign=False)}, "digitalSignature"),
        ({"usage": key_usage(signature=True, cert_sign=True)}, "keyCertSign"),
        ({"ca": True}, "must not be"),
        ({"common_name": "CRAFTED0002"}, "CN and serialNumber"),
        ({"uri": "urn:bleprov:device:CRAFTED0002"}, "SAN"),
        ({"common_name": "lower", "serial": "lower"}, "invalid device ID"),
        (
            {
                "extra": [
                    (
                        x509.UnrecognizedExtension(
                            x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00"
                        ),
                        True,
                    )
                ]
            },
            "critical",
        ),
    ],
    ids=[
        "no-signature-usage",
        "cert-sign-usage",
        "leaf-ca",
        "id-mismatch",
        "san-mismatch",
        "bad-id",
        "unknown-critical",
    ],
)
def test_device_certificate_profile_is_enforced(changes: dict[str, object], reason: str) -> None:
    crafted = crafted_manufacturer()
    leaf, key = crafted_leaf(
        crafted.intermediate,
        crafted.intermediate_key,
        **changes,  # type: ignore[arg-type]
    )
    attestation = crafted_attestation(leaf, key, [crafted.intermediate])
    with pytest.raises(AttestationError, match=reason):
        verify(attestation, [crafted.root])


# ------------------------------------------------------------------ trust policy


def test_unknown_root_refused(device: DeviceIdentity) -> None:
    other = Manufacturer.create("Other", now=NOW)
    with pytest.raises(UnknownManufacturer) as info:
        verify(device.attestation(HASH, context=CONTEXT), [other.root_certificate])
    assert isinstance(info.value, AttestationError)
    assert isinstance(info.value, ProtocolError)


@pytest.mark.parametrize("configured", [0, 1])
def test_unknown_root_warns(acme: Manufacturer, device: DeviceIdentity, configured: int) -> None:
    roots = [Manufacturer.create("Other", now=NOW).root_certificate][:configured]
    result = verify(device.attestation(HASH, context=CONTEXT), roots, policy=TrustPolicy.WARN)
    assert not result.trusted
    assert result.device_id == device.device_id
    assert result.manufacturer_root_fingerprint == acme.root_fingerprint
    assert result.warning is not None
    assert acme.root_fingerprint.hex() in result.warning
    assert "not trusted" in result.warning


def test_warn_still_checks_the_signature(device: DeviceIdentity) -> None:
    attestation = device.attestation(HASH, context=CONTEXT)
    with pytest.raises(AttestationError, match="signature") as info:
        verify(attestation, [], handshake_hash=bytes(32), policy=TrustPolicy.WARN)
    assert not isinstance(info.value, UnknownManufacturer)


def test_presented_root_with_a_broken_self_signature(device: DeviceIdentity) -> None:
    """The fingerprint a user is shown must be of a root that signed itself."""
    good = device.attestation(HASH, context=CONTEXT)
    root = bytearray(good.chain[-1])
    root[-1] ^= 0x01  # last byte of the ECDSA signature value
    broken = Attestation(good.device_certificate, (good.chain[0], bytes(root)), good.signature)
    with pytest.raises(AttestationError, match="self-signature") as info:
        verify(broken, [], policy=TrustPolicy.WARN)
    assert not isinstance(info.value, UnknownManufacturer)


def test_chain_without_a_presented_root_to_an_unknown_issuer(device: DeviceIdentity) -> None:
    """Nothing to show the user: no fingerprint to pin, so even WARN refuses."""
    good = device.attestation(HASH, context=CONTEXT)
    without_root = Attestation(good.device_certificate, good.chain[:1], good.signature)
    for policy in TrustPolicy:
        with pytest.raises(UnknownManufacturer):
            verify(without_root, [], policy=policy)


def test_chain_without_the_root_verifies_against_a_trusted_root(
    acme: Manufacturer, device: DeviceIdentity
) -> None:
    good = device.attestation(HASH, context=CONTEXT)
    without_root = Attestation(good.device_certificate, good.chain[:1], good.signature)
    assert verify(without_root, [acme.root_certificate]).trusted


def test_imitating_a_trusted_manufacturer_is_an_error_not_a_warning(acme: Manufacturer) -> None:
    """An impostor copying Acme's CA names with its own keys: the chain names a trusted
    root as issuer but does not validate, so WARN must not turn it into a warning."""
    root_key, intermediate_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    root = crafted_certificate(
        acme.root_certificate.subject,
        root_key,
        issuer=None,
        issuer_key=root_key,
        ca=True,
        path_length=1,
        usage=key_usage(signature=False, cert_sign=True),
    )
    intermediate = crafted_certificate(
        acme.intermediate_certificate.subject,
        intermediate_key,
        issuer=root,
        issuer_key=root_key,
        ca=True,
        path_length=0,
        usage=key_usage(signature=False, cert_sign=True),
    )
    impostor = Manufacturer(
        root_key=root_key,
        root_certificate=root,
        intermediate_key=intermediate_key,
        intermediate_certificate=intermediate,
    )
    attestation = impostor.issue_device(now=NOW).attestation(HASH, context=CONTEXT)
    with pytest.raises(AttestationError) as info:
        verify(attestation, [acme.root_certificate], policy=TrustPolicy.WARN)
    assert not isinstance(info.value, UnknownManufacturer)
    assert verify(attestation, [root]).trusted


# ------------------------------------------------------------- attestation decoding


def test_attestation_round_trip(device: DeviceIdentity) -> None:
    """v2: the record names the intermediate by its SHA-256 and carries no root."""
    attestation = device.attestation(HASH, context=CONTEXT)
    encoded = attestation.record().encode()
    record = AttestationRecord.decode(encoded)
    assert record == attestation.record()
    assert record.resolve(attestation.chain) == attestation
    assert cbor2.loads(encoded)[0] == 2
    assert record.intermediate_hash == hashlib.sha256(attestation.chain[0]).digest()
    assert attestation.chain[-1] not in encoded  # no root on the air
    assert attestation.chain[0] not in encoded  # the intermediate by reference
    assert len(encoded) < 700  # one P-256 certificate, a hash and a signature


def _attestation_array(device: DeviceIdentity) -> list[object]:
    good = device.attestation(HASH, context=CONTEXT).record()
    return [2, good.device_certificate, good.intermediate_hash, good.signature]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda v: v[:3],
        lambda v: [*v, b""],
        lambda v: [1, *v[1:]],
        lambda v: [True, *v[1:]],
        lambda v: [2.0, *v[1:]],
        lambda v: [v[0], "text", *v[2:]],
        lambda v: [v[0], b"", *v[2:]],
        lambda v: [v[0], b"\x30" * (MAX_CERTIFICATE_SIZE + 1), *v[2:]],
        lambda v: [*v[:2], [v[2]], v[3]],
        lambda v: [*v[:2], v[2][:31], v[3]],
        lambda v: [*v[:2], v[2] + b"\x00", v[3]],
        lambda v: [*v[:2], v[1], v[3]],
        lambda v: [*v[:3], b"\x30" * 7],
        lambda v: [*v[:3], b"\x30" * 73],
        lambda v: {"attestation": v},
    ],
)
def test_attestation_decoder_rejects_malformed_structure(device: DeviceIdentity, mutate) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MalformedAttestation) as info:
        AttestationRecord.decode(cbor2.dumps(mutate(_attestation_array(device)), canonical=True))
    assert isinstance(info.value, MalformedData)
    assert isinstance(info.value, AttestationError)


def test_attestation_decoder_rejects_bad_encodings(device: DeviceIdentity) -> None:
    encoded = device.attest(HASH, context=CONTEXT)
    indefinite = cbor2.dumps(_attestation_array(device), indefinite_containers=True)
    for raw in [
        b"",
        encoded[:-1],
        encoded + b"\x00",
        indefinite,
        b"\x9b" + b"\xff" * 8,
        b"\x81" * 1000,
        b"\x00" * (MAX_ATTESTATION_SIZE + 1),
    ]:
        with pytest.raises(MalformedAttestation):
            AttestationRecord.decode(raw)
    with pytest.raises(MalformedAttestation):
        verify(b"\xa0", [])


def test_chain_decoder(device: DeviceIdentity) -> None:
    """A CHAIN body: the intermediate, and the root only if asked for; nothing else."""
    only = decode_chain(device.chain_for(ChainRequest.INTERMEDIATE))
    both = decode_chain(device.chain_for(ChainRequest.INTERMEDIATE_AND_ROOT))
    assert only == (device.chain[0].public_bytes(serialization.Encoding.DER),)
    assert both == tuple(c.public_bytes(serialization.Encoding.DER) for c in device.chain)
    for raw in [cbor2.dumps([]), cbor2.dumps([*both, both[0]]), cbor2.dumps([1]), b"\x40"]:
        with pytest.raises(MalformedAttestation):
            decode_chain(raw)


def test_a_wrong_intermediate_is_refused(acme: Manufacturer, device: DeviceIdentity) -> None:
    """An intermediate other than the one the signed-over record names: refused, even
    one that chains to the same trusted root."""
    record = device.attestation(HASH, context=CONTEXT).record()
    other = Manufacturer.create("Other", now=NOW).intermediate_certificate
    for wrong in [
        other.public_bytes(serialization.Encoding.DER),
        acme.root_certificate.public_bytes(serialization.Encoding.DER),
    ]:
        with pytest.raises(AttestationError, match="does not match"):
            record.resolve((wrong,))
    with pytest.raises(AttestationError, match="does not match"):
        record.resolve(())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_attestation_decoder_fuzz_bytes(raw: bytes) -> None:
    with contextlib.suppress(MalformedAttestation):
        AttestationRecord.decode(raw)


_cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.binary(max_size=80)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_cbor_values, min_size=3, max_size=5))
def test_attestation_decoder_fuzz_structures(value: list[object]) -> None:
    try:
        decoded = AttestationRecord.decode(cbor2.dumps(value, canonical=True))
    except MalformedAttestation:
        return
    assert decoded.encode() == cbor2.dumps(value, canonical=True)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_verify_fuzz_byte_flips(
    acme: Manufacturer, device: DeviceIdentity, attestation_bytes: bytes, data: st.DataObject
) -> None:
    """Any corruption of a valid attestation ends in a typed error, never a crash."""
    raw = bytearray(attestation_bytes)
    flips = data.draw(
        st.lists(
            st.tuples(st.integers(0, len(raw) - 1), st.integers(1, 255)), min_size=1, max_size=4
        )
    )
    for position, mask in flips:
        raw[position] ^= mask
    policy = data.draw(st.sampled_from(TrustPolicy))
    try:
        result = verify(
            bytes(raw),
            [acme.root_certificate],
            policy=policy,
            chain=(device.chain[0].public_bytes(serialization.Encoding.DER),),
        )
    except AttestationError:
        return
    # A flip inside an unsigned, unchecked field (the presented root's own signature, say)
    # may survive; the result must then still be about this device.
    assert result.device_id == device.device_id


# -------------------------------------------------------------------- storage


@pytest.mark.parametrize("passphrase", [None, b"\x01" * 32])
def test_device_identity_round_trip(device: DeviceIdentity, passphrase: bytes | None) -> None:
    blob = device.to_bytes(passphrase)
    loaded = DeviceIdentity.from_bytes(blob, passphrase)
    assert loaded.device_id == device.device_id
    assert loaded.certificate == device.certificate
    assert loaded.chain == device.chain
    assert loaded.noise_static_public_key == device.noise_static_public_key
    assert loaded.attestation_key.public_key() == device.attestation_key.public_key()
    assert _is_encrypted(blob) == (passphrase is not None)


def _is_encrypted(blob: bytes) -> bool:
    value = cbor2.loads(blob)
    try:
        serialization.load_der_private_key(value[2], None)
    except TypeError:
        return True
    return False


def test_device_identity_passphrase_errors(device: DeviceIdentity) -> None:
    encrypted = device.to_bytes(b"right passphrase")
    for blob, passphrase in [
        (encrypted, b"wrong passphrase"),
        (encrypted, None),
        (device.to_bytes(None), b"unexpected"),
    ]:
        with pytest.raises(IdentityError) as info:
            DeviceIdentity.from_bytes(blob, passphrase)
        assert "passphrase" in str(info.value)
        assert b"right" not in str(info.value).encode()
    with pytest.raises(IdentityError):
        device.to_bytes(b"")


def test_device_identity_store_rejects_corruption(device: DeviceIdentity) -> None:
    value = cbor2.loads(device.to_bytes(None))
    other = Manufacturer.create("Other", now=NOW).issue_device(now=NOW)
    other_value = cbor2.loads(other.to_bytes(None))
    for corrupt in [
        value[:5],
        ["bleprov manufacturer", *value[1:]],
        [value[0], 2, *value[2:]],
        [*value[:2], other_value[2], *value[3:]],  # key of another device
        [*value[:3], value[2], *value[4:]],  # a P-256 key where X25519 belongs
        [*value[:4], b"junk", value[5]],
        [*value[:5], "chain"],
        [*value[:5], []],
    ]:
        with pytest.raises(IdentityError):
            DeviceIdentity.from_bytes(cbor2.dumps(corrupt, canonical=True), None)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_device_identity_store_fuzz(raw: bytes) -> None:
    with contextlib.suppress(IdentityError):
        DeviceIdentity.from_bytes(raw, None)


def test_manufacturer_round_trip(acme: Manufacturer) -> None:
    blob = acme.to_bytes(b"operator passphrase")
    loaded = Manufacturer.from_bytes(blob, b"operator passphrase")
    assert loaded.root_certificate == acme.root_certificate
    assert loaded.intermediate_certificate == acme.intermediate_certificate
    assert loaded.name == acme.name
    identity = loaded.issue_device(now=NOW)
    assert verify(identity.attestation(HASH, context=CONTEXT), [acme.root_certificate]).trusted
    for value in cbor2.loads(blob)[3::2]:
        with pytest.raises(TypeError):  # keys are never stored in the clear
            serialization.load_der_private_key(value, None)


def test_manufacturer_store_errors(acme: Manufacturer) -> None:
    blob = acme.to_bytes(b"operator passphrase")
    with pytest.raises(IdentityError, match="passphrase") as info:
        Manufacturer.from_bytes(blob, b"wrong")
    assert b"operator" not in str(info.value).encode()
    with pytest.raises(IdentityError):
        Manufacturer.from_bytes(blob, b"")
    with pytest.raises(IdentityError):
        acme.to_bytes(b"")
    value = cbor2.loads(blob)
    for corrupt in [
        value[:6],
        [*value[:2], b"short", *value[3:]],
        [*value[:4], b"junk", *value[5:]],
    ]:
        with pytest.raises(IdentityError):
            Manufacturer.from_bytes(cbor2.dumps(corrupt, canonical=True), b"operator passphrase")
    with pytest.raises(IdentityError):
        Manufacturer.from_bytes(b"\xff", b"operator passphrase")


def test_manufacturer_rejects_mismatched_parts() -> None:
    first, second = crafted_manufacturer(), crafted_manufacturer()
    with pytest.raises(IdentityError, match="do not match"):
        Manufacturer(
            root_key=second.root_key,
            root_certificate=first.root,
            intermediate_key=first.intermediate_key,
            intermediate_certificate=first.intermediate,
        )
    with pytest.raises(IdentityError, match="issued"):
        Manufacturer(
            root_key=second.root_key,
            root_certificate=second.root,
            intermediate_key=first.intermediate_key,
            intermediate_certificate=first.intermediate,
        )
    for bad_name in ["", "x" * 33, "Tab\tName", " padded"]:
        with pytest.raises(IdentityError):
            Manufacturer.create(bad_name, now=NOW)


# -------------------------------------------------------------------- secrecy


def _secret_renderings(key: ec.EllipticCurvePrivateKey | X25519PrivateKey) -> list[str]:
    if isinstance(key, X25519PrivateKey):
        raw = key.private_bytes_raw()
        return [raw.hex(), raw.hex().upper(), repr(raw)]
    value = key.private_numbers().private_value
    return [str(value), f"{value:x}", f"{value:X}", f"{value:064x}"]


def test_reprs_do_not_leak_keys() -> None:
    crafted = crafted_manufacturer()
    device = crafted.manufacturer.issue_device(now=NOW)
    texts = [repr(device), str(device), repr(crafted.manufacturer), str(crafted.manufacturer)]
    secrets = [
        *_secret_renderings(device.attestation_key),
        *_secret_renderings(device.noise_static_key),
        *_secret_renderings(crafted.root_key),
        *_secret_renderings(crafted.intermediate_key),
    ]
    for text in texts:
        for secret in secrets:
            assert secret not in text
    assert device.device_id in repr(device)
    assert "Crafted" in repr(crafted.manufacturer)


# -------------------------------------------------------------------- openssl


def test_certificates_verify_with_openssl(
    acme: Manufacturer, device: DeviceIdentity, tmp_path: Path
) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl binary is not installed")
    pem = serialization.Encoding.PEM
    (tmp_path / "root.pem").write_bytes(acme.root_certificate_pem())
    (tmp_path / "intermediate.pem").write_bytes(acme.intermediate_certificate.public_bytes(pem))
    (tmp_path / "device.pem").write_bytes(device.certificate.public_bytes(pem))
    command = [
        openssl,
        "verify",
        "-x509_strict",
        "-attime",
        str(int(NOW.timestamp())),
        "-CAfile",
        str(tmp_path / "root.pem"),
        "-untrusted",
        str(tmp_path / "intermediate.pem"),
        str(tmp_path / "device.pem"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "device.pem: OK" in done.stdout
    later = [*command]
    later[4] = str(int((NOW + timedelta(days=26 * 365)).timestamp()))
    expired = subprocess.run(later, capture_output=True, text=True, check=False)
    assert expired.returncode != 0
