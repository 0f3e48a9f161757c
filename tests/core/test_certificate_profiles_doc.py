"""docs/protocol.md section 15's certificate profile table is what the code issues."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bleprov.core.identity import DEVICE_ID_PATTERN, Manufacturer
from bleprov.core.peer import NAME_PATTERN, PeerIdentity
from bleprov.core.zone import (
    MAX_HUB_VALIDITY,
    MAX_MEMBER_VALIDITY,
    MAX_USER_VALIDITY,
    OWNER_PATTERN,
    ZONE_ID_PATTERN,
    Zone,
    hub_device_id,
    make_csr,
    make_member_key,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
_OIDS = {
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
    "serialNumber": NameOID.SERIAL_NUMBER,
}


def _table() -> dict[str, list[str]]:
    text = DOC.read_text()
    block = text[
        text.index("<!-- certificate-profiles -->") : text.index("<!-- /certificate-profiles -->")
    ]
    rows = [line for line in block.splitlines() if line.startswith("| ")][1:]
    table = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        table[cells[0]] = cells[1:]
    return table


def _certificates() -> dict[str, tuple[x509.Certificate, dict[str, str]]]:
    acme = Manufacturer.create("Acme", now=NOW)
    device = acme.issue_device(now=NOW)
    zone = Zone.create("Home", now=NOW)
    key = make_member_key()
    binding = bytes(32)
    member = zone.issue_member(
        make_csr(key, device_id=device.device_id, session_binding=binding),
        device_id=device.device_id,
        owner="alice",
        expected_binding=binding,
        now=NOW,
    )
    hub = zone.issue_hub(make_member_key().public_key(), now=NOW)
    user = zone.issue_user(make_member_key().public_key(), "bob", NOW)
    peer = PeerIdentity.create("carol", now=NOW)
    load = x509.load_der_x509_certificate
    values = {
        "<m>": "Acme",
        "<z>": "Home",
        "<device-id>": device.device_id,
        "<zone-id>": zone.zone_id,
        "<ZONE-ID>": zone.zone_id.upper(),
    }
    return {
        "manufacturer root": (acme.root_certificate, values),
        "manufacturer intermediate": (acme.intermediate_certificate, values),
        "device": (device.certificate, values),
        "zone root": (zone.root_certificate, values),
        "zone issuing CA": (zone.issuer_certificate, values),
        "zone member": (load(member.cert_der), values | {"<owner>": "alice"}),
        "zone hub": (load(hub.cert_der), values),
        "zone user": (load(user), values | {"<name>": "bob"}),
        "peer": (load(peer.cert_der), values | {"<name>": "carol"}),
    }


def _fill(text: str, values: dict[str, str]) -> str:
    for placeholder, value in sorted(values.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(placeholder, value)
    return text


def _days(text: str) -> timedelta:
    number, unit = text.split()
    return timedelta(days=int(number) * (365 if unit.startswith("year") else 1))


CERTIFICATES = _certificates()


def test_the_table_lists_every_profile() -> None:
    assert set(_table()) == set(CERTIFICATES)


@pytest.mark.parametrize("profile", sorted(CERTIFICATES))
def test_a_profile_row_is_what_the_code_issues(profile: str) -> None:
    subject, san, constraints, issuer, validity = _table()[profile]
    certificate, values = CERTIFICATES[profile]
    # subject: attributes in DER order, each exactly as documented
    expected = [
        (_OIDS[name], _fill(value.strip("`"), values))
        for name, value in (part.split("=", 1) for part in subject.split(", "))
    ]
    assert [(a.oid, a.value) for a in certificate.subject] == expected
    # subjectAltName: exactly the URIs listed, in order
    try:
        uris = list(
            certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        )
    except x509.ExtensionNotFound:
        uris = []
    documented = [] if san == "none" else [_fill(u.strip("`"), values) for u in san.split(", ")]
    assert uris == [x509.UniformResourceIdentifier(u) for u in documented]
    # basicConstraints
    bc = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical
    if constraints == "not cA":
        assert not bc.value.ca
    else:
        assert bc.value.ca and constraints == f"cA, pathLen {bc.value.path_length}"
    # issuer
    if issuer == "itself":
        assert certificate.issuer == certificate.subject
    else:
        assert certificate.issuer == CERTIFICATES[issuer][0].subject
    # validity: the default (one hour of backdating added), and the documented maximum
    default, _, maximum = validity.partition("; ")
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert lifetime - _days(default) in (timedelta(0), timedelta(hours=1))
    if maximum:
        limits = {"zone member": MAX_MEMBER_VALIDITY, "zone hub": MAX_HUB_VALIDITY}
        assert limits.get(profile, MAX_USER_VALIDITY) == _days(maximum)


def test_key_usage_and_extended_key_usage_as_documented() -> None:
    leaf_eku = {
        "zone member": {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH},
        "zone hub": {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH},
        "peer": {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH},
        "zone user": {ExtendedKeyUsageOID.CLIENT_AUTH},
    }
    for profile, (certificate, _) in CERTIFICATES.items():
        ku = certificate.extensions.get_extension_for_class(x509.KeyUsage)
        ca = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert ku.critical
        assert (ku.value.digital_signature, ku.value.key_cert_sign, ku.value.crl_sign) == (
            (False, True, True) if ca else (True, False, False)
        )
        try:
            eku = set(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        except x509.ExtensionNotFound:
            eku = set()
        assert eku == leaf_eku.get(profile, set()), profile


def test_the_identifier_rules_as_documented() -> None:
    text = DOC.read_text()
    for pattern in (DEVICE_ID_PATTERN, ZONE_ID_PATTERN, OWNER_PATTERN, NAME_PATTERN):
        assert f"`{pattern.pattern}`" in text
    assert DEVICE_ID_PATTERN.fullmatch("hub-00112233aabbccdd") is None  # upper case only
    example = re.search(r"zone `([0-9a-f]{16})`: `(HUB-[0-9A-F]{16})`", text)
    assert example is not None
    assert hub_device_id(example.group(1)) == example.group(2)
    assert DEVICE_ID_PATTERN.fullmatch(example.group(2))
