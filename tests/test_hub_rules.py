"""The hub's rules over a CA that is not Zone (tests.ca_doubles.MemoryCa): the registry
is the truth about revocations, whichever process recorded them."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from sqlalchemy import event

from bleprov.core.ca import MemberCertificate
from bleprov.core.identity import AttestationResult
from bleprov.core.membership import ZONE_KEY_BINDING
from bleprov.core.zone import make_key_proof, make_member_key
from bleprov.service.hub_rules import EnrolmentRefused, RegistryHub, check_may_enrol
from bleprov.service.zone_hub import ZoneEnroller
from bleprov.session.host import SessionInfo
from bleprov.store.registry import DeviceStatus, NotAuthorized, Registry, Role, User
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


# The registry's work per enrolment (issue 17) ------------------------------------------------


@dataclass
class _Session:
    """What ZoneEnroller.stage reads of a session: the attestation and a channel binding."""

    device_id: str
    secret: bytes
    info: Any = field(init=False)

    def __post_init__(self) -> None:
        attestation = AttestationResult(self.device_id, hashlib.sha256(b"root").digest(), True)
        self.info = SessionInfo(mode=None, attestation=attestation, device_info=None)  # type: ignore[arg-type]

    def channel_binding(self, label: bytes) -> bytes:
        return hashlib.sha256(self.secret + label).digest()


@dataclass
class _Client:
    """A device that pushed its zone key (with its proof) and takes the certificate."""

    key: tuple[bytes, bytes]
    installed: list[MemberCertificate] = field(default_factory=list)

    async def zone_key(self) -> tuple[bytes, bytes]:
        return self.key

    async def zone_install(self, certificate: MemberCertificate) -> None:
        self.installed.append(certificate)


@dataclass
class _Transaction:
    """The SQL one transaction (or one lock-free read) ran."""

    begin: str
    statements: list[str] = field(default_factory=list)

    def reads(self, table: str) -> int:
        """SELECTs that read ``table`` (as the statement's FROM or a joined table)."""
        pattern = re.compile(rf"\b(FROM|JOIN) {table}\b")
        return sum(1 for s in self.statements if s.startswith("SELECT") and pattern.search(s))


def _watch(registry: Registry) -> list[_Transaction]:
    """Every transaction the registry's engine runs from now on, with its statements."""
    transactions: list[_Transaction] = []

    def on_statement(*args: Any) -> None:
        statement = " ".join(str(args[2]).split())
        if statement.startswith("BEGIN"):
            transactions.append(_Transaction(statement))
        elif not transactions or transactions[-1].begin == "":
            transactions.append(_Transaction("", [statement]))  # autocommit: one statement
        else:
            transactions[-1].statements.append(statement)

    def on_end(*_args: Any) -> None:
        if transactions and transactions[-1].begin:
            transactions.append(_Transaction(""))  # whatever follows is a new transaction

    event.listen(registry.engine, "before_cursor_execute", on_statement)
    event.listen(registry.engine, "commit", on_end)
    event.listen(registry.engine, "rollback", on_end)
    return transactions


async def _enrol(hub: RegistryHub, admin: User, device_id: str, number: int) -> str:
    session = _Session(device_id, number.to_bytes(8, "big"))
    binding = session.channel_binding(ZONE_KEY_BINDING)
    client = _Client(
        make_key_proof(make_member_key(), device_id=device_id, session_binding=binding)
    )
    enroller = ZoneEnroller(hub, admin)
    pending = await enroller.stage(client, session, device_id=device_id, owner="alice")  # type: ignore[arg-type]
    assert client.installed == [pending.certificate]
    await enroller.confirm(pending)
    assert pending.enrolment_id is not None
    return pending.enrolment_id


async def test_an_enrolment_checks_once_and_writes_in_one_transaction_each(
    hub: tuple[RegistryHub, MemoryCa, User],
) -> None:
    """Issue 17: the admin and the device are read once per transaction, reads take no
    write lock, the pending record is one write transaction and its confirmation one more
    (S1: pending until the device's answer is known), nothing else writes."""
    zone_hub, _, admin = hub
    await _enrol(zone_hub, admin, "DEV-0000", 0)  # warm-up: connections, caches
    transactions = _watch(zone_hub.registry)
    await _enrol(zone_hub, admin, "DEV-0001", 1)
    ran = [t for t in transactions if t.statements]
    writes = [t for t in ran if t.begin == "BEGIN IMMEDIATE"]
    statements = [s for t in ran for s in t.statements]
    # One write transaction records the pending enrolment, one confirms it.
    assert len(writes) == 2, writes
    assert all(any(s.startswith("INSERT INTO audit_log") for s in w.statements) for w in writes)
    # Reads before the certificate is issued take no write lock, and there is one.
    reads = [t for t in ran if t.begin != "BEGIN IMMEDIATE"]
    assert len(reads) == 1, reads
    assert all(s.startswith("SELECT") for t in reads for s in t.statements)
    # No transaction reads the acting admin or the device twice.
    for transaction in ran:
        assert transaction.reads("users") <= 1, transaction
        assert transaction.reads("devices") <= 1, transaction
    # The whole enrolment: the pre-check, the record, the confirmation.
    assert len(statements) <= 9, statements
    record = zone_hub.registry.device("DEV-0001")
    assert record.status is DeviceStatus.ENROLLED


async def test_a_fresh_enrolment_supersedes_a_pending_one_in_one_transaction(
    hub: tuple[RegistryHub, MemoryCa, User],
) -> None:
    zone_hub, _, admin = hub
    registry = zone_hub.registry
    registry.record_enrolment(
        "DEV-0002",
        owner="alice",
        enrolled_by=admin,
        serial=0x99,
        not_after=NOW + timedelta(days=1),
        enrolment_id="ab" * 16,
    )
    transactions = _watch(registry)
    enrolment_id = await _enrol(zone_hub, admin, "DEV-0002", 2)
    writes = [t for t in transactions if t.begin == "BEGIN IMMEDIATE" and t.statements]
    assert len(writes) == 2  # supersede + record in one, confirm in the other
    assert [entry.serial for entry in registry.revoked_serials()] == [0x99]
    actions = [(e.action, e.detail.split()[0]) for e in registry.audit(subject="DEV-0002")]
    assert actions == [
        ("enrol", "owner=alice"),
        ("supersede", f"enrolment={'ab' * 16}"),
        ("enrol", "owner=alice"),
        ("confirm", f"enrolment={enrolment_id}"),
    ]
    assert registry.device("DEV-0002").status is DeviceStatus.ENROLLED
