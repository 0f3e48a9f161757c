"""The hub's registry: migrations, roles, authentication, enrolment, revocation, audit."""

from __future__ import annotations

import base64
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.errors import BleprovError
from bleprov.store.registry import (
    HEAD_REVISION,
    VERSION_TABLE,
    AuthenticationFailed,
    Base,
    CredentialKind,
    DeviceRevoked,
    DeviceStatus,
    DuplicateCertificate,
    DuplicateDevice,
    DuplicateUser,
    EnrolmentPending,
    NotAuthorized,
    NotPending,
    Registry,
    RegistryError,
    Role,
    UnknownDevice,
    UnknownUser,
    User,
    current_revision,
    downgrade,
    hash_passphrase,
    migrate,
    normalize_fingerprint,
    verify_passphrase,
)

# Tests only: scrypt at the smallest cost, so a test adds users in microseconds.
TINY_COST = ScryptCost(n=16, r=1, p=1)
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOT_AFTER = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
FINGERPRINT = "ab" * 32


def ticking_clock() -> Callable[[], datetime]:
    """A clock that advances one second per reading, so every timestamp is predictable."""
    ticks = iter(range(1_000_000))
    return lambda: START + timedelta(seconds=next(ticks))


def _postgres_binaries() -> Path | None:
    """The directory of Debian's (or any) PostgreSQL server binaries, if installed."""
    found = shutil.which("pg_ctl")
    if found is not None:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return candidates[-1].parent if candidates else None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Path]:
    """A throwaway PostgreSQL server on a unix socket in a temporary directory.

    PostgreSQL refuses to run as root, so as root the server runs as the ``postgres``
    account. Yields the socket directory; the server is stopped and deleted afterwards.
    """
    pytest.importorskip("psycopg", reason="psycopg (PostgreSQL driver) is not installed")
    binaries = _postgres_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    run_as: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="bleprov-pg-"))  # short: socket paths are limited
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base)
            pytest.skip("running as root and no 'postgres' account to run the server as")
        os.chown(base, account.pw_uid, account.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data = base / "data"
    initdb = [*run_as, str(binaries / "initdb"), "-D", str(data), "-A", "trust"]
    subprocess.run(
        [*initdb, "-U", "bleprov", "--no-sync"],
        check=True,
        capture_output=True,
    )
    pg_ctl = [*run_as, str(binaries / "pg_ctl"), "-D", str(data)]
    server_options = f"-k {base} -c listen_addresses='' -c fsync=off"
    subprocess.run(
        [*pg_ctl, "-w", "-l", str(base / "log"), "-o", server_options, "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield base
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every registry test runs on SQLite, and on a fresh PostgreSQL database if available."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    socket_dir: Path = request.getfixturevalue("postgres_server")
    name = f"registry_{uuid.uuid4().hex}"
    admin_engine = sa.create_engine(
        f"postgresql+psycopg://bleprov@/postgres?host={socket_dir}", isolation_level="AUTOCOMMIT"
    )
    try:
        with admin_engine.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
    finally:
        admin_engine.dispose()
    return f"postgresql+psycopg://bleprov@/{name}?host={socket_dir}"


@pytest.fixture
def registry(url: str) -> Iterator[Registry]:
    with Registry.open(url, passphrase_cost=TINY_COST, clock=ticking_clock()) as opened:
        yield opened


@pytest.fixture
def admin(registry: Registry) -> User:
    return registry.add_user("alice", Role.ADMIN, passphrase="alice passphrase", actor=None)


@pytest.fixture
def member(registry: Registry, admin: User) -> User:
    return registry.add_user("bob", Role.MEMBER, passphrase="bob passphrase", actor=admin)


def enrol(registry: Registry, admin: User, device_id: str = "dev-1", serial: int = 0x1001) -> None:
    registry.record_enrolment(
        device_id, owner="bob", enrolled_by=admin, serial=serial, not_after=NOT_AFTER
    )


# Passphrase hashing -------------------------------------------------------------------------

# RFC 7914 section 12, the scrypt test vectors with N > 1.
RFC7914_VECTORS = [
    (
        "password",
        b"NaCl",
        ScryptCost(n=1024, r=8, p=16),
        "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
        "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640",
    ),
    (
        "pleaseletmein",
        b"SodiumChloride",
        ScryptCost(n=16384, r=8, p=1),
        "7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2"
        "d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887",
    ),
]


@pytest.mark.parametrize(("passphrase", "salt", "cost", "expected"), RFC7914_VECTORS)
def test_passphrase_hash_matches_rfc7914(
    passphrase: str, salt: bytes, cost: ScryptCost, expected: str
) -> None:
    stored = hash_passphrase(passphrase, cost, salt=salt)
    scheme, n, r, p, salt_text, digest_text = stored.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", cost.n, cost.r, cost.p)
    assert base64.b64decode(salt_text + "==") == salt
    # The stored hash is the first 32 bytes of scrypt's output (PBKDF2 output is a prefix).
    assert base64.b64decode(digest_text + "=" * (-len(digest_text) % 4)).hex() == expected[:64]
    full = base64.b64encode(bytes.fromhex(expected)).decode().rstrip("=")
    full_record = "$".join(["scrypt", n, r, p, salt_text, full])
    assert verify_passphrase(passphrase, full_record)
    assert not verify_passphrase(passphrase + "!", full_record)


def test_passphrase_hashes_are_salted() -> None:
    first = hash_passphrase("same", TINY_COST)
    assert first != hash_passphrase("same", TINY_COST)
    assert verify_passphrase("same", first)


@pytest.mark.parametrize("stored", ["", "scrypt$16$1$1$AAAA", "bcrypt$16$1$1$AAAA$AAAA"])
def test_malformed_stored_hash_is_a_registry_error(stored: str) -> None:
    with pytest.raises(RegistryError):
        verify_passphrase("x", stored)


def test_fingerprints_are_normalized() -> None:
    colons = ":".join(["AB"] * 32)
    assert normalize_fingerprint(colons) == FINGERPRINT
    with pytest.raises(RegistryError):
        normalize_fingerprint("ab" * 31)


# Migrations ---------------------------------------------------------------------------------


def test_open_migrates_an_empty_database_to_head(url: str) -> None:
    assert current_revision(url) is None
    Registry.open(url, passphrase_cost=TINY_COST).close()
    assert current_revision(url) == HEAD_REVISION == "0004"
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        assert set(inspector.get_table_names()) == {
            "users",
            "devices",
            "certificates",
            "audit_log",
            VERSION_TABLE,
        }
        assert {index["name"] for index in inspector.get_indexes("audit_log")} == {
            "ix_audit_log_subject_at"
        }
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            # The ORM models and the migrations describe the same schema.
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_opening_a_current_database_again_changes_nothing(url: str) -> None:
    with Registry.open(url, passphrase_cost=TINY_COST) as first:
        first.add_user("alice", Role.ADMIN, passphrase="alice passphrase", actor=None)
    with Registry.open(url, passphrase_cost=TINY_COST) as second:
        assert [user.name for user in second.users()] == ["alice"]
    assert current_revision(url) == HEAD_REVISION


def test_upgrading_a_revision_1_database_keeps_its_data(url: str) -> None:
    migrate(url, "0001")
    assert current_revision(url) == "0001"
    enrolled = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    timestamp = sa.DateTime(timezone=True)
    users = sa.table(
        "users",
        *[sa.column(name) for name in ["id", "name", "role", "credential_kind"]],
        sa.column("certificate_fingerprint"),
        sa.column("created_at", timestamp),
        sa.column("disabled", sa.Boolean()),
    )
    devices = sa.table(
        "devices",
        *[sa.column(name) for name in ["device_id", "owner_id", "enrolled_by_id", "status"]],
        sa.column("certificate_serial"),
        sa.column("enrolled_at", timestamp),
        sa.column("certificate_not_after", timestamp),
    )
    certificates = sa.table(
        "certificates",
        sa.column("serial"),
        sa.column("device_id"),
        sa.column("issued_at", timestamp),
        sa.column("not_after", timestamp),
    )
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        root_id = connection.execute(
            sa.insert(users)
            .values(
                name="root",
                role="admin",
                credential_kind="certificate",
                certificate_fingerprint=FINGERPRINT,
                created_at=enrolled,
                disabled=False,
            )
            .returning(users.c.id)
        ).scalar_one()
        connection.execute(
            sa.insert(devices).values(
                device_id="old-dev",
                owner_id=root_id,
                enrolled_by_id=root_id,
                status="enrolled",
                certificate_serial="beef",
                enrolled_at=enrolled,
                certificate_not_after=enrolled,
            )
        )
        connection.execute(
            sa.insert(certificates).values(
                serial="beef", device_id="old-dev", issued_at=enrolled, not_after=enrolled
            )
        )
        assert "ix_audit_log_subject_at" not in {
            index["name"] for index in sa.inspect(connection).get_indexes("audit_log")
        }
    engine.dispose()

    with Registry.open(url, passphrase_cost=TINY_COST) as registry:
        assert current_revision(url) == HEAD_REVISION
        root = registry.authenticate_certificate(FINGERPRINT)
        assert (root.name, root.role, root.credential_kind) == (
            "root",
            Role.ADMIN,
            CredentialKind.CERTIFICATE,
        )
        device = registry.device("old-dev")
        assert device.certificate_serial == 0xBEEF
        assert device.enrolled_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert registry.revoke("old-dev", actor=root) == [0xBEEF]


def test_upgrading_a_revision_2_database_adds_the_manufacturer_root(url: str) -> None:
    """0002 -> 0003: enrolled devices keep their record and have no root recorded (NULL);
    enrolments from then on record it; 0003 -> 0002 drops the column again."""
    migrate(url, "0002")
    assert current_revision(url) == "0002"
    engine = sa.create_engine(url)
    try:
        assert "manufacturer_root" not in {
            column["name"] for column in sa.inspect(engine).get_columns("devices")
        }
        timestamp = sa.DateTime(timezone=True)
        users = sa.table(
            "users",
            *[sa.column(name) for name in ["id", "name", "role", "credential_kind"]],
            sa.column("certificate_fingerprint"),
            sa.column("created_at", timestamp),
            sa.column("disabled", sa.Boolean()),
        )
        devices = sa.table(
            "devices",
            *[sa.column(name) for name in ["device_id", "owner_id", "enrolled_by_id", "status"]],
            sa.column("certificate_serial"),
            sa.column("enrolled_at", timestamp),
            sa.column("certificate_not_after", timestamp),
        )
        with engine.begin() as connection:
            admin_id = connection.execute(
                sa.insert(users)
                .values(
                    name="root",
                    role="admin",
                    credential_kind="certificate",
                    certificate_fingerprint=FINGERPRINT,
                    created_at=START,
                    disabled=False,
                )
                .returning(users.c.id)
            ).scalar_one()
            connection.execute(
                sa.insert(devices).values(
                    device_id="old-dev",
                    owner_id=admin_id,
                    enrolled_by_id=admin_id,
                    status="enrolled",
                    certificate_serial="beef",
                    enrolled_at=START,
                    certificate_not_after=NOT_AFTER,
                )
            )
    finally:
        engine.dispose()

    with Registry.open(url, passphrase_cost=TINY_COST) as registry:
        assert current_revision(url) == HEAD_REVISION == "0004"
        old = registry.device("old-dev")
        assert (old.certificate_serial, old.manufacturer_root) == (0xBEEF, None)
        admin = registry.authenticate_certificate(FINGERPRINT)
        registry.record_enrolment(
            "new-dev",
            owner="root",
            enrolled_by=admin,
            serial=0x1002,
            not_after=NOT_AFTER,
            manufacturer_root=":".join(["CD"] * 32),
        )
        assert registry.device("new-dev").manufacturer_root == "cd" * 32
        assert "manufacturer_root=" + "cd" * 32 in registry.audit(subject="new-dev")[-1].detail

    downgrade(url, "0002")
    assert current_revision(url) == "0002"
    engine = sa.create_engine(url)
    try:
        assert "manufacturer_root" not in {
            column["name"] for column in sa.inspect(engine).get_columns("devices")
        }
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM devices")).scalar_one() == 2
    finally:
        engine.dispose()


def test_upgrading_a_revision_3_database_counts_its_enrolments_confirmed(url: str) -> None:
    """0003 -> 0004: devices enrolled before stay enrolled (confirmed when enrolled);
    enrolments with an ID are pending from then on; 0004 -> 0003 drops both columns, and
    the older code counts a pending enrolment as enrolled again (it revokes nothing)."""
    migrate(url, "0003")
    engine = sa.create_engine(url)
    try:
        timestamp = sa.DateTime(timezone=True)
        users = sa.table(
            "users",
            *[sa.column(name) for name in ["id", "name", "role", "credential_kind"]],
            sa.column("certificate_fingerprint"),
            sa.column("created_at", timestamp),
            sa.column("disabled", sa.Boolean()),
        )
        devices = sa.table(
            "devices",
            *[sa.column(name) for name in ["device_id", "owner_id", "enrolled_by_id", "status"]],
            sa.column("certificate_serial"),
            sa.column("enrolled_at", timestamp),
            sa.column("certificate_not_after", timestamp),
        )
        with engine.begin() as connection:
            admin_id = connection.execute(
                sa.insert(users)
                .values(
                    name="root",
                    role="admin",
                    credential_kind="certificate",
                    certificate_fingerprint=FINGERPRINT,
                    created_at=START,
                    disabled=False,
                )
                .returning(users.c.id)
            ).scalar_one()
            connection.execute(
                sa.insert(devices).values(
                    device_id="old-dev",
                    owner_id=admin_id,
                    enrolled_by_id=admin_id,
                    status="enrolled",
                    certificate_serial="beef",
                    enrolled_at=START,
                    certificate_not_after=NOT_AFTER,
                )
            )
    finally:
        engine.dispose()

    with Registry.open(url, passphrase_cost=TINY_COST) as registry:
        assert current_revision(url) == HEAD_REVISION == "0004"
        old = registry.device("old-dev")
        assert (old.status, old.enrolment_id) == (DeviceStatus.ENROLLED, None)
        admin = registry.authenticate_certificate(FINGERPRINT)
        registry.record_enrolment(
            "new-dev",
            owner="root",
            enrolled_by=admin,
            serial=0x1002,
            not_after=NOT_AFTER,
            enrolment_id="ab" * 16,
        )
        assert registry.device("new-dev").status is DeviceStatus.PENDING

    downgrade(url, "0003")
    engine = sa.create_engine(url)
    try:
        columns = {column["name"] for column in sa.inspect(engine).get_columns("devices")}
        assert not {"enrolment_id", "confirmed_at"} & columns
        with engine.connect() as connection:
            statuses = dict(
                connection.execute(sa.text("SELECT device_id, status FROM devices")).all()
            )
        assert statuses == {"old-dev": "enrolled", "new-dev": "enrolled"}
    finally:
        engine.dispose()


def test_a_malformed_manufacturer_root_is_refused(registry: Registry, admin: User) -> None:
    with pytest.raises(RegistryError, match="fingerprint"):
        registry.record_enrolment(
            "dev-1",
            owner="alice",
            enrolled_by=admin,
            serial=0x1001,
            not_after=NOT_AFTER,
            manufacturer_root="not a fingerprint",
        )
    with pytest.raises(UnknownDevice):
        registry.device("dev-1")


# Users and roles ----------------------------------------------------------------------------


def test_the_first_user_is_an_admin_added_without_actor(registry: Registry) -> None:
    with pytest.raises(RegistryError, match="first user"):
        registry.add_user("bob", Role.MEMBER, passphrase="bob passphrase", actor=None)
    admin = registry.add_user("alice", Role.ADMIN, passphrase="alice passphrase", actor=None)
    assert admin.role is Role.ADMIN
    with pytest.raises(NotAuthorized):
        registry.add_user("mallory", Role.ADMIN, passphrase="mallory pass", actor=None)


def test_a_user_has_exactly_one_credential(registry: Registry, admin: User) -> None:
    with pytest.raises(RegistryError, match="exactly one"):
        registry.add_user("x", Role.MEMBER, actor=admin)
    with pytest.raises(RegistryError, match="exactly one"):
        registry.add_user(
            "x", Role.MEMBER, passphrase="p", certificate_fingerprint=FINGERPRINT, actor=admin
        )


def test_duplicate_users_are_refused(registry: Registry, admin: User) -> None:
    registry.add_user("carol", Role.MEMBER, certificate_fingerprint=FINGERPRINT, actor=admin)
    with pytest.raises(DuplicateUser):
        registry.add_user("carol", Role.MEMBER, passphrase="other", actor=admin)
    with pytest.raises(DuplicateUser):
        registry.add_user("dave", Role.MEMBER, certificate_fingerprint=FINGERPRINT, actor=admin)


def test_members_cannot_enrol_revoke_or_manage_users(
    registry: Registry, admin: User, member: User
) -> None:
    with pytest.raises(NotAuthorized):
        registry.require_admin(member)
    with pytest.raises(NotAuthorized):
        registry.record_enrolment(
            "dev-1", owner="bob", enrolled_by=member, serial=1, not_after=NOT_AFTER
        )
    enrol(registry, admin)
    with pytest.raises(NotAuthorized):
        registry.revoke("dev-1", actor=member)
    with pytest.raises(NotAuthorized):
        registry.add_user("eve", Role.ADMIN, passphrase="eve passphrase", actor=member)
    with pytest.raises(NotAuthorized):
        registry.disable_user("alice", actor=member)
    assert registry.device("dev-1").status is DeviceStatus.ENROLLED
    registry.require_admin(admin)


def test_roles_are_checked_against_the_database_not_the_callers_value(
    registry: Registry, admin: User, member: User
) -> None:
    forged = User(member.id, member.name, Role.ADMIN, member.credential_kind, START, False)
    with pytest.raises(NotAuthorized):
        registry.require_admin(forged)
    second = registry.add_user("root", Role.ADMIN, passphrase="root passphrase", actor=admin)
    registry.disable_user("alice", actor=second)
    with pytest.raises(NotAuthorized):
        registry.revoke("dev-1", actor=admin)


def test_the_enrolment_checks_read_the_role_from_the_database(
    registry: Registry, admin: User, member: User
) -> None:
    """check_enrolment, record_enrolment and confirm_enrolment check the acting user's
    stored role, name and status (issue 17 folded these checks into their statements)."""
    forged = User(member.id, member.name, Role.ADMIN, member.credential_kind, START, False)
    renamed = User(admin.id, "mallory", Role.ADMIN, admin.credential_kind, START, False)
    for user in (member, forged, renamed):
        with pytest.raises(NotAuthorized):
            registry.check_enrolment(user, "dev-1")
        with pytest.raises(NotAuthorized):
            registry.record_enrolment(
                "dev-1", owner="bob", enrolled_by=user, serial=1, not_after=NOT_AFTER
            )
    assert registry.check_enrolment(admin, "dev-1") is None
    with pytest.raises(UnknownUser):
        registry.record_enrolment(
            "dev-1", owner="nobody", enrolled_by=admin, serial=1, not_after=NOT_AFTER
        )
    pending = registry.record_enrolment(
        "dev-1",
        owner="bob",
        enrolled_by=admin,
        serial=0x1001,
        not_after=NOT_AFTER,
        enrolment_id=ENROLMENT,
    )
    assert registry.check_enrolment(admin, "dev-1") == pending == registry.device("dev-1")
    for user in (member, forged, renamed):
        with pytest.raises(NotAuthorized):
            registry.confirm_enrolment("dev-1", enrolment_id=ENROLMENT, actor=user, how="x")
        with pytest.raises(NotAuthorized):  # the actor's check comes before the device's
            registry.confirm_enrolment("dev-9", enrolment_id=ENROLMENT, actor=user, how="x")
    with pytest.raises(UnknownDevice):
        registry.confirm_enrolment("dev-9", enrolment_id=ENROLMENT, actor=admin, how="x")
    with pytest.raises(UnknownDevice):
        registry.confirm_enrolment("dev-9", enrolment_id=ENROLMENT, actor=None, how="x")
    assert registry.device("dev-1").status is DeviceStatus.PENDING
    confirmed = registry.confirm_enrolment(
        "dev-1", enrolment_id=ENROLMENT, actor=admin, how="the device answered"
    )
    assert confirmed == registry.device("dev-1") == registry.check_enrolment(admin, "dev-1")
    assert confirmed.status is DeviceStatus.ENROLLED
    second = registry.add_user("root", Role.ADMIN, passphrase="root passphrase", actor=admin)
    registry.disable_user("alice", actor=second)
    with pytest.raises(NotAuthorized):  # disabled since it logged in
        registry.check_enrolment(admin, "dev-2")
    with pytest.raises(NotAuthorized):
        registry.record_enrolment(
            "dev-2", owner="bob", enrolled_by=admin, serial=2, not_after=NOT_AFTER
        )
    assert [device.device_id for device in registry.devices()] == ["dev-1"]


def test_authentication_by_passphrase(registry: Registry, admin: User, member: User) -> None:
    assert registry.authenticate("bob", "bob passphrase") == member
    assert registry.authenticate("alice", "alice passphrase") == admin


def test_failed_authentications_are_indistinguishable(
    registry: Registry, admin: User, member: User
) -> None:
    registry.add_user("carol", Role.MEMBER, certificate_fingerprint=FINGERPRINT, actor=admin)
    registry.add_user("dave", Role.MEMBER, passphrase="dave passphrase", actor=admin)
    registry.disable_user("dave", actor=admin)
    attempts = [
        ("bob", "wrong passphrase"),
        ("nobody", "bob passphrase"),
        ("dave", "dave passphrase"),  # disabled
        ("carol", "anything"),  # certificate-only
        ("bob", "x" * 5000),
        ("bob", ""),
    ]
    messages = set()
    for name, passphrase in attempts:
        with pytest.raises(AuthenticationFailed) as caught:
            registry.authenticate(name, passphrase)
        messages.add(str(caught.value))
    assert messages == {"authentication failed"}
    assert isinstance(caught.value, RegistryError)
    assert isinstance(caught.value, BleprovError)


def test_authentication_by_certificate(registry: Registry, admin: User) -> None:
    carol = registry.add_user(
        "carol", Role.MEMBER, certificate_fingerprint=FINGERPRINT, actor=admin
    )
    assert registry.authenticate_certificate(":".join(["AB"] * 32)) == carol
    for unknown in ["cd" * 32, "not hex"]:
        with pytest.raises(AuthenticationFailed):
            registry.authenticate_certificate(unknown)
    registry.disable_user("carol", actor=admin)
    with pytest.raises(AuthenticationFailed):
        registry.authenticate_certificate(FINGERPRINT)


def test_disabling_an_unknown_user_is_unknown_user(registry: Registry, admin: User) -> None:
    with pytest.raises(UnknownUser):
        registry.disable_user("nobody", actor=admin)


# Devices ------------------------------------------------------------------------------------


def test_enrolment_records_owner_enroller_and_certificate(
    registry: Registry, admin: User, member: User
) -> None:
    device = registry.record_enrolment(
        "dev-1", owner="bob", enrolled_by=admin, serial=0x1001, not_after=NOT_AFTER
    )
    assert registry.device("dev-1") == device
    assert (device.owner, device.enrolled_by, device.status) == (
        "bob",
        "alice",
        DeviceStatus.ENROLLED,
    )
    assert device.certificate_serial == 0x1001
    assert device.certificate_not_after == NOT_AFTER
    assert device.enrolled_at.tzinfo is UTC
    assert START < device.enrolled_at < START + timedelta(minutes=1)
    assert registry.devices() == [device]
    assert registry.devices(owner="bob") == [device]
    assert registry.devices(owner="alice") == []


def test_enrolment_refusals(registry: Registry, admin: User, member: User) -> None:
    enrol(registry, admin)
    with pytest.raises(DuplicateDevice):
        enrol(registry, admin, serial=0x2002)
    with pytest.raises(UnknownUser):
        registry.record_enrolment(
            "dev-2", owner="nobody", enrolled_by=admin, serial=0x2002, not_after=NOT_AFTER
        )
    with pytest.raises(DuplicateCertificate):
        enrol(registry, admin, device_id="dev-2", serial=0x1001)
    for serial in [0, -1, 1 << 160]:
        with pytest.raises(RegistryError, match="serial"):
            enrol(registry, admin, device_id="dev-2", serial=serial)
    with pytest.raises(RegistryError, match="timezone"):
        registry.record_enrolment(
            "dev-2", owner="bob", enrolled_by=admin, serial=3, not_after=datetime(2027, 1, 1)
        )
    with pytest.raises(RegistryError, match="device id"):
        enrol(registry, admin, device_id="", serial=4)
    # None of the refused enrolments left a trace.
    assert [device.device_id for device in registry.devices()] == ["dev-1"]
    assert [entry.action for entry in registry.audit()] == ["add_user", "add_user", "enrol"]
    with pytest.raises(UnknownDevice):
        registry.device("dev-2")


ENROLMENT = "0123456789abcdef" * 2


def test_an_enrolment_with_an_id_is_pending_until_confirmed(
    registry: Registry, admin: User, member: User
) -> None:
    device = registry.record_enrolment(
        "dev-1",
        owner="bob",
        enrolled_by=admin,
        serial=0x1001,
        not_after=NOT_AFTER,
        enrolment_id=ENROLMENT,
    )
    assert (device.status, device.enrolment_id) == (DeviceStatus.PENDING, ENROLMENT)
    assert registry.devices()[0].status is DeviceStatus.PENDING
    with pytest.raises(EnrolmentPending):  # not counted enrolled: no renewal either
        registry.record_renewal("dev-1", 0x1002, NOT_AFTER)
    with pytest.raises(NotPending):
        registry.confirm_enrolment("dev-1", enrolment_id="ff" * 16, actor=admin, how="test")
    confirmed = registry.confirm_enrolment(
        "dev-1", enrolment_id=ENROLMENT, actor=admin, how="the device answered"
    )
    assert confirmed.status is DeviceStatus.ENROLLED
    # Again: nothing changes, nothing is audited twice.
    registry.confirm_enrolment("dev-1", enrolment_id=ENROLMENT, actor=admin, how="again")
    actions = [(entry.action, entry.detail) for entry in registry.audit(subject="dev-1")]
    assert actions == [
        ("enrol", f"owner=bob serial=1001 enrolment={ENROLMENT} pending"),
        ("confirm", f"enrolment={ENROLMENT} the device answered"),
    ]
    with pytest.raises(DuplicateDevice):
        enrol(registry, admin, serial=0x2002)
    with pytest.raises(RegistryError, match="enrolment ID"):
        registry.record_enrolment(
            "dev-2",
            owner="bob",
            enrolled_by=admin,
            serial=0x2002,
            not_after=NOT_AFTER,
            enrolment_id="not hex",
        )


def test_a_pending_enrolment_is_confirmed_by_its_certificate_or_superseded(
    registry: Registry, admin: User, member: User
) -> None:
    for device_id, serial in (("dev-1", 0x1001), ("dev-2", 0x2001)):
        registry.record_enrolment(
            device_id,
            owner="bob",
            enrolled_by=admin,
            serial=serial,
            not_after=NOT_AFTER,
            enrolment_id=ENROLMENT,
        )
    # The device authenticated with its certificate (a renewal): it committed.
    with pytest.raises(NotPending):
        registry.confirm_enrolment("dev-1", serial=0x2001, actor=None, how="by renewal")
    device = registry.confirm_enrolment("dev-1", serial=0x1001, actor=None, how="by renewal")
    assert device.status is DeviceStatus.ENROLLED
    # A new enrolment of a device still pending supersedes it: its certificate is revoked.
    device = registry.record_enrolment(
        "dev-2",
        owner="bob",
        enrolled_by=admin,
        serial=0x2002,
        not_after=NOT_AFTER,
        enrolment_id="fe" * 16,
    )
    assert (device.status, device.certificate_serial) == (DeviceStatus.PENDING, 0x2002)
    assert [entry.serial for entry in registry.revoked_serials()] == [0x2001]
    supersede = registry.audit(subject="dev-2")[-2]
    assert (supersede.action, supersede.detail) == (
        "supersede",
        f"enrolment={ENROLMENT} serials=2001",
    )
    # An admin may still revoke a pending enrolment outright.
    assert registry.revoke("dev-2", actor=admin) == [0x2002]
    assert registry.device("dev-2").status is DeviceStatus.REVOKED
    with pytest.raises(NotPending):
        registry.confirm_enrolment("dev-2", enrolment_id="fe" * 16, actor=admin, how="late")


@contextmanager
def counted_statements(registry: Registry) -> Iterator[list[str]]:
    """Every SQL statement the registry's engine sends while the block runs, as
    benchmarks/air.py's RegistryMeter counts them (SQLite's BEGIN IMMEDIATE included)."""
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(" ".join(str(args[2]).split()))

    sa.event.listen(registry.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(registry.engine, "before_cursor_execute", count)


def test_a_zone_enrolment_costs_the_registry_at_most_ten_statements(
    registry: Registry, admin: User, member: User
) -> None:
    """Issue 17: v1 made 20 statements per enrolment; the target is half. The confirmation
    is one UPDATE ... RETURNING and its audit entry, however it is named and by whom."""
    with counted_statements(registry) as statements:
        assert registry.check_enrolment(admin, "dev-1") is None
        registry.record_enrolment(
            "dev-1",
            owner="bob",
            enrolled_by=admin,
            serial=0x1001,
            not_after=NOT_AFTER,
            enrolment_id=ENROLMENT,
        )
        checked_and_recorded = len(statements)
        confirmed = registry.confirm_enrolment(
            "dev-1", enrolment_id=ENROLMENT, actor=admin, how="the device answered"
        )
    if registry.engine.dialect.name == "sqlite":  # PostgreSQL's BEGIN is no statement
        assert len(statements) <= 10
    confirmation = [sql for sql in statements[checked_and_recorded:] if sql != "BEGIN IMMEDIATE"]
    assert [sql.split()[0] for sql in confirmation] == ["UPDATE", "INSERT"]
    assert confirmed == registry.device("dev-1")
    assert (confirmed.owner, confirmed.enrolled_by) == ("bob", "alice")
    assert confirmed.status is DeviceStatus.ENROLLED
    registry.record_enrolment(
        "dev-2",
        owner="bob",
        enrolled_by=admin,
        serial=0x2001,
        not_after=NOT_AFTER,
        enrolment_id=ENROLMENT,
    )
    with counted_statements(registry) as statements:
        confirmed = registry.confirm_enrolment("dev-2", serial=0x2001, actor=None, how="by renewal")
    confirmation = [sql for sql in statements if sql != "BEGIN IMMEDIATE"]
    assert [sql.split()[0] for sql in confirmation] == ["UPDATE", "INSERT"]
    assert confirmed == registry.device("dev-2")
    assert confirmed.status is DeviceStatus.ENROLLED
    assert [
        (entry.actor, entry.detail) for entry in registry.audit() if entry.action == "confirm"
    ] == [
        ("alice", f"enrolment={ENROLMENT} the device answered"),
        (None, f"enrolment={ENROLMENT} by renewal"),
    ]


def test_a_refused_confirmation_says_why_and_changes_nothing(
    registry: Registry, admin: User, member: User
) -> None:
    """Each way a confirmation can fail raises its own error, with the same text as before
    issue 17 folded the checks into one UPDATE, and leaves the enrolment pending."""
    second = registry.add_user("root", Role.ADMIN, passphrase="root passphrase", actor=admin)
    pending = registry.record_enrolment(
        "dev-1",
        owner="bob",
        enrolled_by=admin,
        serial=0x1001,
        not_after=NOT_AFTER,
        enrolment_id=ENROLMENT,
    )
    registry.disable_user("root", actor=admin)
    audit_before = registry.audit()
    refusals: list[tuple[dict[str, object], type[RegistryError], str]] = [
        ({"enrolment_id": ENROLMENT, "actor": member}, NotAuthorized, "only an enabled admin"),
        ({"enrolment_id": ENROLMENT, "actor": second}, NotAuthorized, "only an enabled admin"),
        (
            {"enrolment_id": "ff" * 16, "actor": admin},
            NotPending,
            f"device 'dev-1' has no pending enrolment {'ff' * 16}",
        ),
        (
            {"serial": 0x1002, "actor": None},
            NotPending,
            "device 'dev-1' has no pending enrolment 1002",
        ),
        (
            {"serial": 0x1002, "actor": admin},
            NotPending,
            "device 'dev-1' has no pending enrolment 1002",
        ),
    ]
    for arguments, error, message in refusals:
        with pytest.raises(error, match=message):
            registry.confirm_enrolment("dev-1", how="x", **arguments)  # type: ignore[arg-type]
    with pytest.raises(NotAuthorized):  # the actor's check comes before the device's
        registry.confirm_enrolment("dev-9", serial=0x1001, actor=second, how="x")
    with pytest.raises(UnknownDevice, match="no device has id 'dev-9'"):
        registry.confirm_enrolment("dev-9", serial=0x1001, actor=admin, how="x")
    with pytest.raises(RegistryError, match="by its ID or by its certificate's serial"):
        registry.confirm_enrolment("dev-1", actor=admin, how="x")
    assert registry.device("dev-1") == pending
    assert registry.audit() == audit_before
    # Confirmed once, by its serial; confirming again returns it unchanged, audits nothing.
    confirmed = registry.confirm_enrolment("dev-1", serial=0x1001, actor=admin, how="once")
    again = registry.confirm_enrolment("dev-1", enrolment_id=ENROLMENT, actor=None, how="twice")
    assert again == confirmed == registry.device("dev-1")
    assert [entry.detail for entry in registry.audit(subject="dev-1")][1:] == [
        f"enrolment={ENROLMENT} once"
    ]
    with pytest.raises(NotAuthorized):  # even when there is nothing left to confirm
        registry.confirm_enrolment("dev-1", enrolment_id=ENROLMENT, actor=member, how="x")
    registry.revoke("dev-1", actor=admin)
    with pytest.raises(NotPending):
        registry.confirm_enrolment("dev-1", serial=0x1001, actor=None, how="late")


def test_concurrent_confirmations_confirm_once(url: str) -> None:
    """Two hubs confirming one enrolment together: both see it enrolled, one audits it."""
    first = Registry.open(url, passphrase_cost=TINY_COST)
    second = Registry.open(url, passphrase_cost=TINY_COST)
    outcomes: list[object] = []

    def confirm(
        registry: Registry, device_id: str, actor: User | None, barrier: threading.Barrier
    ) -> None:
        barrier.wait()
        try:
            confirmed = registry.confirm_enrolment(
                device_id, enrolment_id=ENROLMENT, actor=actor, how="raced"
            )
            outcomes.append(confirmed.status)
        except BaseException as exc:  # reported to the main thread below
            outcomes.append(exc)

    try:
        admin = first.add_user("alice", Role.ADMIN, passphrase="alice passphrase", actor=None)
        first.add_user("bob", Role.MEMBER, passphrase="bob passphrase", actor=admin)
        for index in range(5):
            device_id = f"dev-{index}"
            first.record_enrolment(
                device_id,
                owner="bob",
                enrolled_by=admin,
                serial=0x1000 + index,
                not_after=NOT_AFTER,
                enrolment_id=ENROLMENT,
            )
            barrier = threading.Barrier(2)
            outcomes.clear()
            racers = [
                threading.Thread(target=confirm, args=(first, device_id, admin, barrier)),
                threading.Thread(target=confirm, args=(second, device_id, None, barrier)),
            ]
            for thread in racers:
                thread.start()
            for thread in racers:
                thread.join()
            assert outcomes == [DeviceStatus.ENROLLED, DeviceStatus.ENROLLED]
            actions = [entry.action for entry in first.audit(subject=device_id)]
            assert actions == ["enrol", "confirm"]
    finally:
        first.close()
        second.close()


def test_renewal_replaces_the_current_certificate(
    registry: Registry, admin: User, member: User
) -> None:
    enrol(registry, admin)
    later = NOT_AFTER + timedelta(days=365)
    renewed = registry.record_renewal("dev-1", 0x1002, later)
    assert (renewed.certificate_serial, renewed.certificate_not_after) == (0x1002, later)
    assert renewed.owner == "bob"
    assert registry.revoked_serials() == []
    with pytest.raises(UnknownDevice):
        registry.record_renewal("dev-9", 0x1003, later)
    with pytest.raises(DuplicateCertificate):
        registry.record_renewal("dev-1", 0x1001, later)


def test_revoke_returns_every_valid_serial_and_blocks_renewal(
    registry: Registry, admin: User, member: User
) -> None:
    enrol(registry, admin)
    registry.record_renewal("dev-1", 0x1002, NOT_AFTER)
    enrol(registry, admin, device_id="dev-2", serial=0x2001)
    assert registry.revoke("dev-1", actor=admin) == [0x1001, 0x1002]
    assert registry.device("dev-1").status is DeviceStatus.REVOKED
    assert registry.device("dev-2").status is DeviceStatus.ENROLLED
    revoked = registry.revoked_serials()
    assert [entry.serial for entry in revoked] == [0x1001, 0x1002]
    assert all(entry.revoked_at.tzinfo is UTC for entry in revoked)
    last = registry.audit(limit=1)[0]
    assert (last.action, last.actor, last.subject, last.detail) == (
        "revoke",
        "alice",
        "dev-1",
        "serials=1001,1002",
    )
    assert registry.revoke("dev-1", actor=admin) == []
    with pytest.raises(DeviceRevoked):
        registry.record_renewal("dev-1", 0x1003, NOT_AFTER)
    with pytest.raises(UnknownDevice):
        registry.revoke("dev-9", actor=admin)


def test_a_revoked_device_can_be_enrolled_again(
    registry: Registry, admin: User, member: User
) -> None:
    enrol(registry, admin)
    registry.revoke("dev-1", actor=admin)
    registry.add_user("carol", Role.MEMBER, passphrase="carol passphrase", actor=admin)
    device = registry.record_enrolment(
        "dev-1", owner="carol", enrolled_by=admin, serial=0x3001, not_after=NOT_AFTER
    )
    assert (device.owner, device.status, device.certificate_serial) == (
        "carol",
        DeviceStatus.ENROLLED,
        0x3001,
    )
    assert [entry.serial for entry in registry.revoked_serials()] == [0x1001]


def test_every_change_is_audited_with_its_actor(url: str) -> None:
    with Registry.open(url, passphrase_cost=TINY_COST, clock=ticking_clock()) as registry:
        admin = registry.add_user("alice", Role.ADMIN, passphrase="alice passphrase", actor=None)
        registry.add_user("bob", Role.MEMBER, certificate_fingerprint=FINGERPRINT, actor=admin)
        enrol(registry, admin)
        registry.record_renewal("dev-1", 0x1002, NOT_AFTER)
        registry.revoke("dev-1", actor=admin)
        registry.disable_user("bob", actor=admin)
        entries = registry.audit()
    assert [(e.action, e.actor, e.subject) for e in entries] == [
        ("add_user", None, "alice"),
        ("add_user", "alice", "bob"),
        ("enrol", "alice", "dev-1"),
        ("renew", None, "dev-1"),
        ("revoke", "alice", "dev-1"),
        ("disable_user", "alice", "bob"),
    ]
    assert entries[1].detail == "role=member credential=certificate"
    assert entries[2].detail == "owner=bob serial=1001"
    assert all(entry.at.tzinfo is UTC for entry in entries)
    assert [entry.at for entry in entries] == sorted(entry.at for entry in entries)
    with Registry.open(url, passphrase_cost=TINY_COST) as reopened:
        assert [e.action for e in reopened.audit(subject="dev-1")] == ["enrol", "renew", "revoke"]
        assert reopened.audit(subject="dev-1", limit=1)[0].action == "revoke"


def test_audit_entries_never_hold_passphrases(registry: Registry, admin: User) -> None:
    registry.add_user("bob", Role.MEMBER, passphrase="very secret words", actor=admin)
    for entry in registry.audit():
        assert "secret" not in entry.detail
    assert "secret" not in repr(registry)


# Concurrency --------------------------------------------------------------------------------


def test_two_registries_on_one_database(url: str) -> None:
    first = Registry.open(url, passphrase_cost=TINY_COST)
    second = Registry.open(url, passphrase_cost=TINY_COST)
    try:
        admin = first.add_user("alice", Role.ADMIN, passphrase="alice passphrase", actor=None)
        second.add_user("bob", Role.MEMBER, passphrase="bob passphrase", actor=admin)
        assert first.authenticate("bob", "bob passphrase").name == "bob"

        errors: list[BaseException] = []

        def enrol_many(registry: Registry, prefix: str, base: int) -> None:
            try:
                for index in range(25):
                    registry.record_enrolment(
                        f"{prefix}-{index}",
                        owner="bob",
                        enrolled_by=admin,
                        serial=base + index,
                        not_after=NOT_AFTER,
                    )
            except BaseException as exc:  # reported to the main thread below
                errors.append(exc)

        threads = [
            threading.Thread(target=enrol_many, args=(first, "a", 0x10000)),
            threading.Thread(target=enrol_many, args=(second, "b", 0x20000)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(first.devices()) == len(second.devices()) == 50
        assert len(second.audit()) == 2 + 50

        outcomes: list[str] = []
        barrier = threading.Barrier(2)

        def race(registry: Registry, serial: int) -> None:
            barrier.wait()
            try:
                registry.record_enrolment(
                    "contested", owner="bob", enrolled_by=admin, serial=serial, not_after=NOT_AFTER
                )
                outcomes.append("enrolled")
            except DuplicateDevice:
                outcomes.append("duplicate")

        racers = [
            threading.Thread(target=race, args=(first, 0x30001)),
            threading.Thread(target=race, args=(second, 0x30002)),
        ]
        for thread in racers:
            thread.start()
        for thread in racers:
            thread.join()
        assert sorted(outcomes) == ["duplicate", "enrolled"]
        assert [e.action for e in first.audit(subject="contested")] == ["enrol"]
    finally:
        first.close()
        second.close()


def test_hubs_opening_a_fresh_database_together_migrate_it_once(url: str) -> None:
    barrier = threading.Barrier(3)
    opened: list[Registry] = []
    errors: list[BaseException] = []

    def open_registry() -> None:
        barrier.wait()
        try:
            opened.append(Registry.open(url, passphrase_cost=TINY_COST))
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=open_registry) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for registry in opened:
        registry.close()
    assert errors == []
    assert len(opened) == 3
    assert current_revision(url) == HEAD_REVISION


def test_a_database_on_a_file_system_without_shared_memory_is_a_clear_error() -> None:
    """Seen in the lab with the hub directory on the VM's 9p share: SQLite answers "disk
    I/O error" to the first PRAGMA on a WAL database whose index it cannot map. That is a
    RegistryError saying what to do, at once (it used to be retried, then a traceback)."""
    import sqlite3

    from bleprov.store import registry as registry_module

    class SharedFolderCursor:
        calls = 0

        def execute(self, _sql: str) -> None:
            SharedFolderCursor.calls += 1
            raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(registry_module.RegistryUnavailable, match="local file system"):
        registry_module._enable_wal(SharedFolderCursor())
    assert SharedFolderCursor.calls == 1
