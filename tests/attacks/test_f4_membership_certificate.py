"""F4 (issue 15): ZoneMembership.decode took the certificate of a zone record on trust.
A record whose certificate was not DER decoded fine; ``.serial`` and ``.renew_after()``
raised ValueError later, from the daemon's renewal timer. The record is now refused at
decode, with MembershipError, unless its certificate parses, is for the record's key and
is a member certificate of the record's zone that chains to the record's root.
"""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from cryptography import x509

from bleprov.core import membership as mb
from tests.core.test_membership import OTHER_ZONE, Device


def zone_record() -> dict[str, Any]:
    device = Device()
    device.enrol()
    value: dict[str, Any] = cbor2.loads(device.commit()[mb.RECORD_ZONE] or b"")
    return value


def encode(value: dict[str, Any]) -> bytes:
    out: bytes = cbor2.dumps(value, canonical=True)
    return out


def test_a_zone_record_whose_certificate_is_not_der_is_refused_at_decode() -> None:
    """F4, the minimal input: a good record with ``cert`` = one zero byte. Before, it
    decoded, and ``renew_after()`` raised ValueError from the renewal timer."""
    value = zone_record()
    value["cert"] = b"\x00"
    with pytest.raises(mb.MembershipError, match="certificate"):
        mb.ZoneMembership.decode(encode(value))


def test_a_zone_record_whose_certificate_is_for_another_key_is_refused() -> None:
    """F4: before, a certificate for another device's key decoded (and TLS failed later)."""
    value = zone_record()
    value["cert"] = zone_record()["cert"]
    with pytest.raises(mb.MembershipError, match="key"):
        mb.ZoneMembership.decode(encode(value))


@pytest.mark.parametrize(
    ("field", "replacement"),
    [
        ("zone", "ZZZZZZZZZZZZZZZZ"),
        ("owner", "mallory"),
        ("root", OTHER_ZONE.root_der),
        ("chain", [OTHER_ZONE.issuer_der]),
        ("chain", [b"\x00"]),
    ],
    ids=["zone", "owner", "root", "chain", "chain-not-der"],
)
def test_a_zone_record_that_does_not_fit_its_certificate_is_refused(
    field: str, replacement: object
) -> None:
    """F4: the certificate's profile is checked at decode (path to the record's root at
    the start of its validity, the record's zone and owner); before, all decoded."""
    value = zone_record()
    value[field] = replacement
    with pytest.raises(mb.MembershipError):
        mb.ZoneMembership.decode(encode(value))


def test_a_good_record_decodes_and_answers_serial_and_renewal() -> None:
    membership = mb.ZoneMembership.decode(encode(zone_record()))
    assert membership.serial > 0
    leaf = x509.load_der_x509_certificate(membership.cert_der)
    assert leaf.not_valid_before_utc < membership.renew_after() < leaf.not_valid_after_utc
