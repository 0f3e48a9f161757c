"""The minimal inputs of the campaign's findings, as regression cases.

Each case is written to ``fuzz/corpus/<harness>/regress-<id>-<what>`` by
``python -m fuzz.capture`` (so every campaign starts from them) and replayed by
``make test`` (tests/fuzz/test_harnesses.py), which expects each to be harmless once its
finding is fixed. The ids are issue 15's (F1-F6) and this campaign's new ones (N1...,
:mod:`fuzz.known`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cbor2

from fuzz import material as fx

#: F1: a value that refers to itself (shared-ref tag 28 around an array holding tag 29
#: ref 0): decodes to a cyclic list, which the canonical re-encode refuses.
SHARED_REF: bytes = bytes.fromhex("d81c81d81d00")
#: F1: an array holding a MIME message (tag 36, text "A"): decodes to an
#: email.message.Message, which cbor2 cannot encode again.
MIME: bytes = bytes.fromhex("81d8246141")
#: F3: PKCS#8 of a key of an unknown algorithm (OID 1.2.3): cryptography raises
#: UnsupportedAlgorithm, not ValueError.
UNKNOWN_KEY: bytes = bytes.fromhex("300b020100300406022a030400")
#: F6: a profile whose characteristic is not a table.
PROFILE_WRONG_TYPE: bytes = b"profile=0\nservice=0\nadvertisement=0\ncharacteristic=[0]\n"


def nested_map_keys(depth: int) -> bytes:
    """F2: an array holding ``{{{...{0: 0}...: 0}: 0}: 0}``, maps nested ``depth`` deep as
    map keys (2 bytes a level). cbor2's canonical encoder encodes each key twice (once to
    sort the keys, once to write it), so the re-encode check takes 2^depth steps."""
    inner = b"\x00"
    for _ in range(depth):
        inner = b"\xa1" + inner + b"\x00"
    return b"\x81" + inner


#: The depth of the F2 instance in the corpus: a few seconds of CPU on the current code
#: (each level doubles it), stopped by the harness's 1 s time bound.
F2_DEPTH = 20


@dataclass(frozen=True)
class Case:
    finding: str
    harness: str
    what: str
    data: bytes

    @property
    def file_name(self) -> str:
        return f"regress-{self.finding}-{self.what}"


def _dumps(value: object) -> bytes:
    out: bytes = cbor2.dumps(value, canonical=True)
    return out


def _request(request_id: int, endpoint: str, body: dict[str, Any]) -> bytes:
    from bleprov.core.enrolment.messages import Request, encode

    return encode(Request(request_id, endpoint, body))


def _bad_version(cert_der: bytes) -> bytes:
    """The certificate with X.509 version 5 (``a0 03 02 01 04``): cryptography raises
    InvalidVersion, which is not a ValueError."""
    marker = bytes.fromhex("a003020102")
    assert marker in cert_der
    return cert_der.replace(marker, bytes.fromhex("a003020104"), 1)


def _unknown_key_algorithm(cert_der: bytes) -> bytes:
    """The certificate with its key's algorithm OID changed (id-ecPublicKey to an unused
    arc): it loads, and ``public_key()`` raises UnsupportedAlgorithm."""
    ec_public_key = bytes.fromhex("06072a8648ce3d0201")
    assert ec_public_key in cert_der
    return cert_der.replace(ec_public_key, bytes.fromhex("06072a8648ce3d0209"), 1)


def _point_off_curve(cert_der: bytes) -> bytes:
    """The certificate with its P-256 point moved off the curve (the last byte of X
    changed): it loads, and ``public_key()`` raises ValueError."""
    point = bytes.fromhex("03420004")
    at = cert_der.index(point) + len(point) + 31
    return cert_der[:at] + bytes([cert_der[at] ^ 1]) + cert_der[at + 1 :]


def _with_item(record: bytes, index: int | str, value: object) -> bytes:
    items = cbor2.loads(record)
    items[index] = value
    return _dumps(items)


def cases() -> Iterator[Case]:
    """Every regression case (needs the fixtures: fuzz/fixtures/)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from bleprov.core.factory import DeviceProvisioning
    from bleprov.core.membership import ZoneMembership, install_body
    from bleprov.store.sealed import seal

    m = fx.material()
    # F1: pre-authentication crash of the strict decoders' re-encode.
    for harness in (
        "device_session",
        "host_session_qr",
        "host_session_code",
        "device_enrolment",
        "peer_identity",
        "zone_store",
        "session_message",
        "enrolment_message",
        "pin_set",
        "device_identity",
    ):
        yield Case("F1", harness, "shared-ref", SHARED_REF)
        yield Case("F1", harness, "mime", MIME)
    yield Case("F1", "attestation", "shared-ref", bytes(32) + SHARED_REF)
    # F2: pre-authentication freeze of the same check (each costs make test its time
    # bound, 1 s of CPU, until it is fixed: three places, not every one).
    for harness in ("device_session", "session_message", "enrolment_message"):
        yield Case("F2", harness, f"nested-map-keys-{F2_DEPTH}", nested_map_keys(F2_DEPTH))
    # F3: cryptography's other exceptions where only ValueError/TypeError is caught.
    install = install_body(m.member)
    yield Case(
        "F3",
        "zone_install",
        "invalid-version",
        _request(2, "zone/install", {**install, "cert": _bad_version(m.member.cert_der)}),
    )
    yield Case(
        "F3",
        "zone_install",
        "unsupported-key",
        _request(2, "zone/install", {**install, "cert": _unknown_key_algorithm(m.member.cert_der)}),
    )
    zone_record = ZoneMembership(
        fx.member_key(), m.member.cert_der, m.member.chain_der, m.member.root_der, "0" * 16, "x"
    ).encode()
    yield Case("F3", "zone_membership", "unsupported-key", _with_key(zone_record, UNKNOWN_KEY))
    with fx.cheap_stretch():
        zone_bin = m.zone.to_bytes(fx.PASSPHRASE)
    yield Case("F3", "zone_store", "unsupported-key", _with_item(zone_bin, 3, UNKNOWN_KEY))
    identity = _with_item(m.identity.to_bytes(None), 3, UNKNOWN_KEY)
    yield Case("F3", "device_identity", "unsupported-key", identity)
    record = DeviceProvisioning(
        m.identity, fx.DISCRIMINATOR, _all_modes(), fx.LABEL_SECRET, fx.SALT, fx.CHEAP, {}
    ).to_bytes(None)
    bad_record = _with_item(record, 2, identity)
    yield Case("F3", "provisioning", "unsupported-key", bad_record)
    yield Case("F3", "device_bin", "unsupported-key", seal(bad_record, fx.PASSPHRASE, log2_n=10))
    yield Case("F3", "trust_roots", "invalid-version", _bad_version(m.manufacturer_root))
    # F4: a zone record whose certificate is not DER decodes; .serial fails later.
    # (ZoneMembership refuses to be made so since F4's fix: the record is edited instead.)
    not_der = _with_item(zone_record, "cert", b"not DER")
    yield Case("F4", "zone_membership", "certificate-not-der", not_der)
    # F5: scrypt's cost read from the sealed file's unauthenticated header.
    yield Case("F5", "sealed", "scrypt-r-huge", _sealed_header(10, 1 << 40, 1))
    yield Case("F5", "sealed", "scrypt-r-negative", _sealed_header(10, -1, 1))
    yield Case("F5", "device_bin", "scrypt-r-zero", _sealed_header(10, 0, 1))
    # N1: a stored certificate whose key does not parse.
    certificate = m.identity.certificate.public_bytes(Encoding.DER)
    yield Case(
        "N1",
        "device_identity",
        "key-off-curve",
        _with_item(m.identity.to_bytes(None), 4, _point_off_curve(certificate)),
    )
    yield Case(
        "N1",
        "zone_store",
        "key-off-curve",
        _with_item(zone_bin, 4, _point_off_curve(m.zone.root_der)),
    )
    # N2: a LIST_NETWORKS row whose id is a digit to str.isdigit(), not to int().
    yield Case("N2", "wpa_supplicant", "superscript-digit", "network id\n1\u00b2\n".encode())
    # F6: load_profile's other exceptions.
    yield Case("F6", "profile_toml", "not-utf8", b"\xff")
    yield Case("F6", "profile_toml", "wrong-type", PROFILE_WRONG_TYPE)


def _all_modes() -> Any:
    from bleprov.core.advertising import ALL_MODES

    return ALL_MODES


def _with_key(record: bytes, key: bytes) -> bytes:
    body = cbor2.loads(record)
    body["key"] = key
    return _dumps(body)


def _sealed_header(log2_n: int, r: int, p: int) -> bytes:
    """A sealed file whose header names scrypt cost (2^log2_n, r, p); the tag is junk."""
    return _dumps(["bleprov sealed", 1, bytes(16), [log2_n, r, p], bytes(12), bytes(32)])


__all__ = ["F2_DEPTH", "MIME", "SHARED_REF", "Case", "cases", "nested_map_keys"]
