"""Peer identities and pins: profile, round trips, tampering and fuzzed decoders."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from bleprov.core.errors import ProtocolError
from bleprov.core.peer import (
    MAX_PINS,
    PEER_URN_PREFIX,
    BadPeerIdentity,
    NotPinned,
    PeerError,
    PeerIdentity,
    PeerPin,
    PeerSetupError,
    PinSet,
)
from bleprov.core.zone import Zone, make_csr, make_member_key

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def alice() -> PeerIdentity:
    return PeerIdentity.create("alice-laptop", now=NOW)


@pytest.fixture(scope="module")
def bob() -> PeerIdentity:
    return PeerIdentity.create("LAMP-0001", now=NOW)


def _self_signed(
    name: str,
    *,
    key: ec.EllipticCurvePrivateKey | None = None,
    san: str | None = None,
    cn: str | None = None,
    curve: ec.EllipticCurve | None = None,
) -> bytes:
    """A certificate shaped like a peer's, with one thing changed."""
    key = key or ec.generate_private_key(curve or ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn or name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(san or PEER_URN_PREFIX + name)]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


# ----------------------------------------------------------------------- identity


def test_identity_certificate_profile(alice: PeerIdentity) -> None:
    cert = x509.load_der_x509_certificate(alice.cert_der)
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice-laptop"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "urn:bleprov:peer:alice-laptop"
    ]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    assert set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == {
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    }
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc > timedelta(days=19 * 365)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    assert alice.fingerprint == alice.pin.fingerprint == digest.finalize()


def test_identity_round_trip_and_repr_hides_key(alice: PeerIdentity) -> None:
    again = PeerIdentity.from_bytes(alice.to_bytes())
    assert again.name == alice.name and again.cert_der == alice.cert_der
    assert again.fingerprint == alice.fingerprint
    assert "PRIVATE" not in repr(again) and "key=" not in repr(again)
    assert again.to_bytes() == alice.to_bytes()


@pytest.mark.parametrize("name", ["", "-x", "a b", "x" * 65, "é", "a/b"])
def test_create_refuses_bad_names(name: str) -> None:
    with pytest.raises(PeerSetupError):
        PeerIdentity.create(name, now=NOW)


def test_identity_key_must_match_certificate(alice: PeerIdentity, bob: PeerIdentity) -> None:
    with pytest.raises(BadPeerIdentity, match="key does not match"):
        PeerIdentity(alice.name, bob.key, alice.cert_der)
    with pytest.raises(BadPeerIdentity, match="name differs"):
        PeerIdentity("mallory", alice.key, alice.cert_der)


def test_identity_from_bytes_refuses_swapped_key(alice: PeerIdentity, bob: PeerIdentity) -> None:
    import cbor2

    fields = cbor2.loads(alice.to_bytes())
    fields[3] = cbor2.loads(bob.to_bytes())[3]
    with pytest.raises(BadPeerIdentity):
        PeerIdentity.from_bytes(cbor2.dumps(fields, canonical=True))


def test_identity_from_bytes_refuses_oversize() -> None:
    with pytest.raises(BadPeerIdentity, match="exceeds"):
        PeerIdentity.from_bytes(b"\x00" * 100_000)


# ---------------------------------------------------------------------------- pins


def test_pin_from_certificate(alice: PeerIdentity) -> None:
    pin = PeerPin.from_certificate(alice.cert_der)
    assert pin == alice.pin
    assert pin.name == "alice-laptop"


def test_pin_refuses_tampered_certificate(alice: PeerIdentity) -> None:
    tampered = bytearray(alice.cert_der)
    tampered[-10] ^= 0x01  # inside the signature
    with pytest.raises(BadPeerIdentity):
        PeerPin.from_certificate(bytes(tampered))


def test_pin_refuses_a_name_that_differs_from_the_certificate(alice: PeerIdentity) -> None:
    with pytest.raises(BadPeerIdentity):
        PeerPin("bob", alice.cert_der)


@pytest.mark.parametrize(
    ("cert", "message"),
    [
        (lambda: _self_signed("eve", cn="mallory"), "CN must equal"),
        (lambda: _self_signed("eve", san="urn:bleprov:zone:eve"), "SAN must be"),
        (lambda: _self_signed("eve", san=PEER_URN_PREFIX + "bad name"), "invalid peer name"),
        (lambda: _self_signed("eve", curve=ec.SECP384R1()), "P-256"),
        (lambda: b"\x30\x03\x02\x01\x01", "not a DER certificate"),
        (lambda: b"", "1 to"),
        (lambda: b"\x30" * 3000, "1 to"),
    ],
)
def test_pin_refuses_off_profile_certificates(cert: object, message: str) -> None:
    assert callable(cert)
    with pytest.raises(BadPeerIdentity, match=message):
        PeerPin.from_certificate(cert())


def test_pin_refuses_a_ca_issued_member_certificate() -> None:
    """A zone member certificate is not self-signed: it cannot be a pin."""
    zone = Zone.create("Home", now=NOW)
    key = make_member_key()
    member = zone.issue_member(
        make_csr(key, device_id="LAMP-0001", session_binding=bytes(32)),
        device_id="LAMP-0001",
        owner="alice",
        expected_binding=bytes(32),
        now=NOW,
    )
    with pytest.raises(BadPeerIdentity):
        PeerPin.from_certificate(member.cert_der)


def test_pinset_add_remove_match(alice: PeerIdentity, bob: PeerIdentity) -> None:
    empty = PinSet()
    pins = empty.add(alice.pin).add(bob.pin)
    assert len(empty) == 0 and len(pins) == 2  # immutable: empty is unchanged
    assert pins.names() == ["LAMP-0001", "alice-laptop"]
    assert "alice-laptop" in pins and "carol" not in pins
    assert pins.match(bob.cert_der) == bob.pin
    assert pins.match(alice.cert_der) == alice.pin
    without = pins.remove("alice-laptop")
    assert without.names() == ["LAMP-0001"]
    with pytest.raises(NotPinned):
        without.match(alice.cert_der)
    assert without.remove("alice-laptop") == without  # unbinding twice is harmless


def test_match_refuses_unpinned_certificate_with_the_same_name(alice: PeerIdentity) -> None:
    impostor = PeerIdentity.create(alice.name, now=NOW)
    pins = PinSet([alice.pin])
    with pytest.raises(NotPinned):
        pins.match(impostor.cert_der)
    assert isinstance(NotPinned("x"), PeerError) and isinstance(NotPinned("x"), ProtocolError)


def test_match_accepts_a_reissued_certificate_for_the_same_key(alice: PeerIdentity) -> None:
    reissued = _self_signed(alice.name, key=alice.key)
    assert PinSet([alice.pin]).match(reissued) == alice.pin


def test_match_refuses_garbage(alice: PeerIdentity) -> None:
    with pytest.raises(BadPeerIdentity):
        PinSet([alice.pin]).match(b"not a certificate")


def test_a_name_never_moves_to_another_key_but_a_key_may_rename(alice: PeerIdentity) -> None:
    newer = PeerIdentity.create(alice.name, now=NOW)
    pins = PinSet([alice.pin])
    with pytest.raises(PeerSetupError, match="another key"):
        pins.add(newer.pin)
    assert pins.match(alice.cert_der) == alice.pin
    assert pins.add(alice.pin) == pins  # the same pin again changes nothing
    renamed = PeerPin.from_certificate(_self_signed("alice-2", key=alice.key))
    pins = pins.add(renamed)
    assert pins.names() == ["alice-2"]


def test_pinset_refuses_more_than_max_pins() -> None:
    pins = PinSet(PeerPin.from_certificate(_self_signed(f"peer-{i}")) for i in range(MAX_PINS))
    assert len(pins) == MAX_PINS
    with pytest.raises(PeerSetupError, match="unbind"):
        pins.add(PeerPin.from_certificate(_self_signed("one-too-many")))
    # Pinning an existing peer again is still allowed when full.
    assert len(pins.add(pins.pins()[0])) == MAX_PINS


def test_pinset_round_trip_is_deterministic(alice: PeerIdentity, bob: PeerIdentity) -> None:
    one = PinSet([alice.pin, bob.pin])
    two = PinSet([bob.pin, alice.pin])
    assert one.to_bytes() == two.to_bytes()
    again = PinSet.from_bytes(one.to_bytes())
    assert again == one and again.names() == one.names()
    assert PinSet.from_bytes(PinSet().to_bytes()) == PinSet()


def test_pinset_from_bytes_refuses_bad_records(alice: PeerIdentity, bob: PeerIdentity) -> None:
    import cbor2

    def encode(value: object) -> bytes:
        return bytes(cbor2.dumps(value, canonical=True))

    out_of_order = encode(["bleprov peer pins", 1, [alice.cert_der, bob.cert_der]])
    duplicate = encode(["bleprov peer pins", 1, [alice.cert_der, alice.cert_der]])
    same_key = encode(
        ["bleprov peer pins", 1, [alice.cert_der, _self_signed("alice-z", key=alice.key)]]
    )
    for raw in (
        out_of_order,
        duplicate,
        same_key,
        encode(["bleprov peer pins", 2, []]),
        encode(["bleprov peer identity", 1, []]),
        encode(["bleprov peer pins", 1, [b"junk"]]),
        encode(["bleprov peer pins", 1, [alice.cert_der] * (MAX_PINS + 1)]),
        encode({"pins": []}),
        b"\xff",
        b"\x00" * 200_000,
    ):
        with pytest.raises(BadPeerIdentity):
            PinSet.from_bytes(raw)


# --------------------------------------------------------------------------- fuzzing


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_pinset_from_bytes_fuzz_raises_only_typed_errors(raw: bytes) -> None:
    with contextlib.suppress(BadPeerIdentity):
        PinSet.from_bytes(raw)


# A mutated serial can make cryptography warn; as an error it is a typed refusal too.
@pytest.mark.filterwarnings("error::cryptography.utils.CryptographyDeprecationWarning")
@settings(max_examples=200, deadline=None)
@given(st.data())
def test_identity_from_bytes_fuzz_mutations(data: st.DataObject) -> None:
    raw = bytearray(_FUZZ_IDENTITY.to_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(raw) - 1))
        raw[index] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    with contextlib.suppress(BadPeerIdentity):
        PeerIdentity.from_bytes(bytes(raw))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_pin_from_certificate_fuzz(raw: bytes) -> None:
    with contextlib.suppress(BadPeerIdentity):
        PeerPin.from_certificate(raw)


_FUZZ_IDENTITY = PeerIdentity.create("fuzz", now=NOW)
