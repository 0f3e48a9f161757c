"""Zone user certificates (people, not devices) and CRL numbers across processes."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from bleprov.core.zone import (
    CertificateExpired,
    NotAZoneMember,
    UserIdentity,
    WrongZone,
    Zone,
    ZoneSetupError,
    make_csr,
    make_member_key,
    member_names,
    user_names,
    verify_member,
    verify_user,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def zone() -> Zone:
    return Zone.create("Home", now=NOW - timedelta(days=1))


def user_cert(zone: Zone, name: str = "bob", **kwargs: timedelta) -> bytes:
    return zone.issue_user(
        ec.generate_private_key(ec.SECP256R1()).public_key(), name, NOW, **kwargs
    )


def test_user_certificate_profile(zone: Zone) -> None:
    cert = x509.load_der_x509_certificate(user_cert(zone))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"urn:bleprov:zone:{zone.zone_id}:user:bob"
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.not_valid_after_utc - NOW <= timedelta(days=365)
    assert user_names(cert) == (zone.zone_id, "bob")


def test_verify_user(zone: Zone) -> None:
    der = user_cert(zone)
    identity = verify_user(der, [zone.issuer_der], zone_root_der=zone.root_der, now=NOW)
    assert identity == UserIdentity(
        zone.zone_id, "bob", x509.load_der_x509_certificate(der).serial_number
    )


def test_user_certificate_is_refused_as_device_member(zone: Zone) -> None:
    der = user_cert(zone)
    with pytest.raises(NotAZoneMember, match="user certificate"):
        member_names(x509.load_der_x509_certificate(der))
    with pytest.raises(NotAZoneMember):
        verify_member(der, [zone.issuer_der], zone_root_der=zone.root_der, crl_der=None, now=NOW)


def test_device_member_is_refused_as_user(zone: Zone) -> None:
    binding = os.urandom(32)
    csr = make_csr(make_member_key(), device_id="A1B2C3D4E5F60718", session_binding=binding)
    member = zone.issue_member(
        csr, device_id="A1B2C3D4E5F60718", owner="bob", expected_binding=binding, now=NOW
    )
    with pytest.raises(NotAZoneMember):
        verify_user(member.cert_der, member.chain_der, zone_root_der=zone.root_der, now=NOW)


def test_user_of_another_zone_refused(zone: Zone) -> None:
    other = Zone.create("Home", now=NOW - timedelta(days=1))
    with pytest.raises(WrongZone):
        verify_user(user_cert(other), [zone.issuer_der], zone_root_der=zone.root_der, now=NOW)


def test_expired_user_refused(zone: Zone) -> None:
    der = user_cert(zone, validity=timedelta(days=10))
    with pytest.raises(CertificateExpired):
        verify_user(
            der, [zone.issuer_der], zone_root_der=zone.root_der, now=NOW + timedelta(days=11)
        )


@pytest.mark.parametrize("name", ["", "bob smith", "x" * 65, "bob:admin", "-bob"])
def test_bad_user_names_refused(zone: Zone, name: str) -> None:
    with pytest.raises(ZoneSetupError):
        user_cert(zone, name)


def test_user_validity_is_at_most_a_year(zone: Zone) -> None:
    with pytest.raises(ZoneSetupError):
        user_cert(zone, validity=timedelta(days=366))


def test_advance_crl_number(zone: Zone) -> None:
    current = zone.crl_number
    zone.advance_crl_number(current + 5)
    crl = x509.load_der_x509_crl(zone.crl(now=NOW))
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == current + 6
    zone.advance_crl_number(0)  # never goes back
    assert zone.crl_number == current + 6
    with pytest.raises(ZoneSetupError):
        zone.advance_crl_number(-1)
