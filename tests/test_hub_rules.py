"""The hub's rules over a CA that is not Zone (tests.ca_doubles.MemoryCa): the registry
is the truth about revocations, whichever process recorded them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from bleprov.service.hub_rules import EnrolmentRefused, RegistryHub, check_may_enrol
from bleprov.store.registry import NotAuthorized, Registry, Role, User
from tests.ca_doubles import MemoryCa
from tests.rig import CHEAP

NOW = datetime.now(UTC)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[RegistryHub, MemoryCa, User]]:
    ca = MemoryCa(now=NOW)
    registry = Registry.open(f"sqlite:///{tmp_path / 'registry.sqlite'}", passphrase_cost=CHEAP)
    registry.add_user("admin", Role.ADMIN, passphrase="admin passphrase", actor=None)
    admin = registry.authenticate("admin", "admin passphrase")
    registry.add_user("alice", Role.MEMBER, passphrase="alice passphrase", actor=admin)
    hub = RegistryHub(ca, registry)
    yield hub, ca, admin
    hub.close()


def _crl_serials(der: bytes) -> set[int]:
    return {entry.serial_number for entry in x509.load_der_x509_crl(der)}


def test_a_revocation_recorded_elsewhere_is_on_the_next_crl(
    hub: tuple[RegistryHub, MemoryCa, User],
) -> None:
    zone_hub, ca, admin = hub
    zone_hub.registry.record_enrolment(
        "dev-1", owner="alice", enrolled_by=admin, serial=0x51, not_after=NOW + timedelta(days=1)
    )
    # Another process (the CLI beside a running hub) revokes in the registry only.
    assert zone_hub.registry.revoke("dev-1", actor=admin) == [0x51]
    assert 0x51 not in ca.revoked_serials
    assert _crl_serials(zone_hub.crl(now=NOW)) == {0x51}


def test_revoking_through_the_hub_reaches_the_ca_and_a_new_crl(
    hub: tuple[RegistryHub, MemoryCa, User],
) -> None:
    zone_hub, ca, admin = hub
    zone_hub.registry.record_enrolment(
        "dev-2", owner="alice", enrolled_by=admin, serial=0x52, not_after=NOW + timedelta(days=1)
    )
    before = ca.crl_number
    assert zone_hub.revoke("dev-2", actor=admin, now=NOW) == [0x52]
    assert ca.revoked_serials == {0x52}
    assert ca.crl_number == before + 1


def test_only_an_admin_enrols_and_not_twice(hub: tuple[RegistryHub, MemoryCa, User]) -> None:
    zone_hub, _, admin = hub
    alice = zone_hub.registry.authenticate("alice", "alice passphrase")
    with pytest.raises(NotAuthorized):
        check_may_enrol(zone_hub.registry, alice, "dev-3")
    check_may_enrol(zone_hub.registry, admin, "dev-3")  # unknown device: may enrol
    zone_hub.registry.record_enrolment(
        "dev-3", owner="alice", enrolled_by=admin, serial=0x53, not_after=NOW + timedelta(days=1)
    )
    with pytest.raises(EnrolmentRefused, match="already enrolled"):
        check_may_enrol(zone_hub.registry, admin, "dev-3")
