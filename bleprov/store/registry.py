"""The hub's registry of users and enrolled devices, with an audit log (docs/registry.md).

The hub is a zone CA: it enrols devices, issues and revokes their certificates, and must be
able to say afterwards who enrolled what, for whom, and when. The registry keeps that in a
SQL database through SQLAlchemy: an embedded SQLite file by default, PostgreSQL when a
deployment outgrows one machine (only the URL changes). :meth:`Registry.open` brings any
database to the current schema with the Alembic migrations in
:mod:`bleprov.store.migrations`.

Every change and its audit entry are written in one transaction, so the log can not miss a
change that happened nor record one that did not. Only admins enrol, revoke and manage
users; the registry checks the acting user's stored role and status on every change rather
than trusting the :class:`User` value the caller holds.

The API is synchronous (SQLite and psycopg calls block); an asyncio hub calls it through
``asyncio.to_thread``. One :class:`Registry` may be shared by threads; several registries
or processes may open the same database.
"""

from __future__ import annotations

import base64
import hmac
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Engine,
    ForeignKey,
    Index,
    Integer,
    Row,
    String,
    Text,
    bindparam,
    create_engine,
    event,
    insert,
    not_,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    aliased,
    mapped_column,
    sessionmaker,
)
from sqlalchemy.types import TypeDecorator

from bleprov.core.crypto.primitives import scrypt
from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.errors import BleprovError

#: Alembic's bookkeeping table; named for bleprov so a shared PostgreSQL database can host
#: other applications' Alembic histories too.
VERSION_TABLE: Final = "bleprov_registry_version"

#: The newest schema revision (the last file in ``migrations/versions``).
HEAD_REVISION: Final = "0004"

#: OWASP's scrypt recommendation for password storage: N=2**17, r=8, p=1 (128 MiB).
PASSPHRASE_COST: Final = ScryptCost(n=2**17, r=8, p=1)
#: The dearest scrypt the registry runs: twice :data:`PASSPHRASE_COST`'s memory (256 MiB)
#: and twice its work (``n * r * p``, which time follows). Each hash carries its own cost,
#: read back from the database, and hub.toml's ``passphrase_cost`` is a file: neither may
#: make a login allocate a GiB or run sixteen passes (issue 15, F5). Room to raise the
#: default once; RFC 7914's test costs fit.
MAX_PASSPHRASE_MEMORY: Final = 2 * PASSPHRASE_COST.memory_bytes
MAX_PASSPHRASE_WORK: Final = 2 * PASSPHRASE_COST.n * PASSPHRASE_COST.r * PASSPHRASE_COST.p


def passphrase_cost_allowed(cost: ScryptCost) -> bool:
    """Whether the registry runs scrypt at ``cost`` (:data:`MAX_PASSPHRASE_MEMORY`,
    :data:`MAX_PASSPHRASE_WORK`)."""
    work = cost.n * cost.r * cost.p
    return cost.memory_bytes <= MAX_PASSPHRASE_MEMORY and work <= MAX_PASSPHRASE_WORK


MAX_NAME_LENGTH: Final = 64
MAX_DEVICE_ID_LENGTH: Final = 128
MAX_PASSPHRASE_BYTES: Final = 1024
_SALT_BYTES: Final = 16
_HASH_BYTES: Final = 32
_MAX_SERIAL: Final = 1 << 160  # RFC 5280 section 4.1.2.2: at most 20 octets
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_ENROLMENT_ID = re.compile(r"[0-9a-f]{32}")
_SQLITE_BUSY_SECONDS: Final = 30
_MIGRATIONS: Final = Path(__file__).with_name("migrations")
_MIGRATION_LOCK_KEY: Final = int.from_bytes(b"bleprov\x01", "big")  # a PostgreSQL bigint


class RegistryError(BleprovError):
    """The registry refused a request or could not serve it."""


class RegistryUnavailable(RegistryError):
    """The registry's database cannot be opened where it is."""


class NotAuthorized(RegistryError):
    """The acting user may not do this (not an admin, or disabled)."""


class UnknownUser(RegistryError):
    """No user has this name (raised to admins only, never by authentication)."""


class DuplicateUser(RegistryError):
    """A user with this name or certificate fingerprint already exists."""


class AuthenticationFailed(RegistryError):
    """The credential was not accepted; deliberately silent about which part was wrong."""

    def __init__(self) -> None:
        super().__init__("authentication failed")


class DuplicateDevice(RegistryError):
    """The device is already enrolled; revoke it before enrolling it again."""


class NotPending(RegistryError):
    """No pending enrolment of the device has that ID: nothing to confirm."""


class EnrolmentPending(RegistryError):
    """The device's enrolment is pending: whether it committed is not known yet."""


class UnknownDevice(RegistryError):
    """No device has this id."""


class DeviceRevoked(RegistryError):
    """The device was revoked; it gets no new certificate until it is enrolled again."""


class DuplicateCertificate(RegistryError):
    """A certificate with this serial is already recorded (serials must be unique per CA)."""


class Role(StrEnum):
    """What a user may do: admins enrol, revoke and manage users; members own devices."""

    ADMIN = "admin"
    MEMBER = "member"


class CredentialKind(StrEnum):
    """How a user proves who they are to the hub."""

    PASSPHRASE = "passphrase"  # noqa: S105 (the kind's name, not a password)
    CERTIFICATE = "certificate"


class DeviceStatus(StrEnum):
    """A device's standing in the zone.

    ``pending``: a certificate was issued and staged on the device, and whether the device
    committed it is not known yet (stored as ``enrolled`` with no ``confirmed_at``)."""

    ENROLLED = "enrolled"
    PENDING = "pending"
    REVOKED = "revoked"


@dataclass(frozen=True)
class User:
    """A person known to the hub, as authentication returns it (no credential material)."""

    id: int
    name: str
    role: Role
    credential_kind: CredentialKind
    created_at: datetime
    disabled: bool


@dataclass(frozen=True)
class Device:
    """An enrolled (or revoked) device, with its owner's and enroller's names.

    ``manufacturer_root``: SHA-256 (64 hex digits) of the manufacturer root certificate
    the device's attestation chained to when it was last enrolled; ``None`` for devices
    enrolled before schema 0003 recorded it.
    """

    device_id: str
    owner: str
    enrolled_by: str
    enrolled_at: datetime
    status: DeviceStatus
    certificate_serial: int
    certificate_not_after: datetime
    manufacturer_root: str | None = None
    #: The enrolment's ID (32 hex digits, bound to its session); None before schema 0004
    #: and for enrolments recorded without one.
    enrolment_id: str | None = None


@dataclass(frozen=True)
class RevokedCertificate:
    """One CRL entry: the serial and when it was revoked."""

    serial: int
    revoked_at: datetime


@dataclass(frozen=True)
class AuditEntry:
    """One change, who made it (``None``: the hub itself or a device) and when."""

    id: int
    at: datetime
    actor: str | None
    action: str
    subject: str
    detail: str


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    SQLite has no timezone type and hands back naive values; they are stored as UTC and
    read back as UTC. Naive values are refused on the way in, since their zone is a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        _check_aware(value)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """The registry's ORM models; the migrations, not ``create_all``, create their tables."""


class UserRow(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'member')", name="ck_users_role"),
        CheckConstraint(
            "(credential_kind = 'passphrase' AND passphrase_hash IS NOT NULL"
            " AND certificate_fingerprint IS NULL)"
            " OR (credential_kind = 'certificate' AND certificate_fingerprint IS NOT NULL"
            " AND passphrase_hash IS NULL)",
            name="ck_users_credential",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    credential_kind: Mapped[str] = mapped_column(String(16))
    passphrase_hash: Mapped[str | None] = mapped_column(String(255))
    certificate_fingerprint: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    disabled: Mapped[bool] = mapped_column(Boolean)

    def to_user(self) -> User:
        return User(
            id=self.id,
            name=self.name,
            role=Role(self.role),
            credential_kind=CredentialKind(self.credential_kind),
            created_at=self.created_at,
            disabled=self.disabled,
        )


class DeviceRow(Base):
    __tablename__ = "devices"
    __table_args__ = (
        CheckConstraint("status IN ('enrolled', 'revoked')", name="ck_devices_status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[str] = mapped_column(String(128), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    enrolled_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    enrolled_at: Mapped[datetime] = mapped_column(UtcDateTime())
    status: Mapped[str] = mapped_column(String(16))
    certificate_serial: Mapped[str] = mapped_column(String(40))
    certificate_not_after: Mapped[datetime] = mapped_column(UtcDateTime())
    manufacturer_root: Mapped[str | None] = mapped_column(String(64))
    enrolment_id: Mapped[str | None] = mapped_column(String(32))
    confirmed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class CertificateRow(Base):
    __tablename__ = "certificates"
    __table_args__ = (Index("ix_certificates_device_id", "device_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(40), unique=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"))
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime())
    not_after: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class AuditRow(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_subject_at", "subject", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(128))
    detail: Mapped[str] = mapped_column(Text)


# The enrolment's statements (issue 17): SQLAlchemy Core, built once, so the hot path pays
# neither the ORM's unit of work nor statement construction; SQLAlchemy's compiled cache and
# the driver's prepared-statement cache then serve every enrolment after the first.

_OWNER = aliased(UserRow, name="owner")
_ENROLLER = aliased(UserRow, name="enroller")
_ACTOR = aliased(UserRow, name="actor")
_DEVICE_COLUMNS = (
    DeviceRow.id,
    DeviceRow.device_id,
    DeviceRow.enrolled_at,
    DeviceRow.status,
    DeviceRow.certificate_serial,
    DeviceRow.certificate_not_after,
    DeviceRow.manufacturer_root,
    DeviceRow.enrolment_id,
    DeviceRow.confirmed_at,
)
_ACTOR_COLUMNS = (
    _ACTOR.name.label("actor_name"),
    _ACTOR.role.label("actor_role"),
    _ACTOR.disabled.label("actor_disabled"),
)
_NAME_COLUMNS = (_OWNER.name.label("owner_name"), _ENROLLER.name.label("enroller_name"))

#: Before anything is issued: the acting admin and the device's record in one statement.
_ENROLMENT_CHECK = (
    select(*_ACTOR_COLUMNS, *_DEVICE_COLUMNS, *_NAME_COLUMNS)
    .select_from(_ACTOR)
    .outerjoin(DeviceRow, DeviceRow.device_id == bindparam("device_id"))
    .outerjoin(_OWNER, _OWNER.id == DeviceRow.owner_id)
    .outerjoin(_ENROLLER, _ENROLLER.id == DeviceRow.enrolled_by_id)
    .where(_ACTOR.id == bindparam("actor_id"))
)
#: In the record's transaction: the acting admin and the owner (one or two rows) ...
_ENROLMENT_USERS = select(UserRow.id, UserRow.name, UserRow.role, UserRow.disabled).where(
    or_(UserRow.id == bindparam("actor_id"), UserRow.name == bindparam("owner"))
)
#: ... and the device, locked (PostgreSQL) until the transaction ends.
_ENROLMENT_DEVICE = (
    select(*_DEVICE_COLUMNS)
    .where(DeviceRow.device_id == bindparam("device_id"))
    .with_for_update(of=DeviceRow)
)
#: The confirmation: the device, its names and the acting user, locked the same way.
_CONFIRMATION_DEVICE = (
    select(*_DEVICE_COLUMNS, *_NAME_COLUMNS, *_ACTOR_COLUMNS)
    .select_from(DeviceRow)
    .join(_OWNER, _OWNER.id == DeviceRow.owner_id)
    .join(_ENROLLER, _ENROLLER.id == DeviceRow.enrolled_by_id)
    .outerjoin(_ACTOR, _ACTOR.id == bindparam("actor_id"))
    .where(DeviceRow.device_id == bindparam("device_id"))
    .with_for_update(of=DeviceRow)
)
_SUPERSEDE_CERTIFICATES = (
    update(CertificateRow)
    .where(
        CertificateRow.device_id == bindparam("device"),
        CertificateRow.revoked_at.is_(None),
    )
    .values(revoked_at=bindparam("now"))
    .returning(CertificateRow.id, CertificateRow.serial)
)
_INSERT_DEVICE = insert(DeviceRow)
_UPDATE_DEVICE = update(DeviceRow).where(DeviceRow.id == bindparam("row_id"))
_INSERT_CERTIFICATE = insert(CertificateRow)
_INSERT_AUDIT = insert(AuditRow)
_CONFIRM_DEVICE = (
    update(DeviceRow)
    .where(DeviceRow.id == bindparam("row_id"))
    .values(confirmed_at=bindparam("now"))
)
#: The confirmation's happy path in one statement: the device's pending enrolment, named
#: by its ID or its certificate's serial (the other parameter is NULL, which matches
#: nothing), is confirmed, and the confirmed row comes back with its owner's and
#: enroller's names. No row: not pending, not that enrolment, not an enabled admin, or no
#: such device; :data:`_CONFIRMATION_DEVICE` then tells which, as before. (SQLAlchemy
#: writes SQLite's RETURNING columns unqualified: in the name subqueries ``id`` is then the
#: user's and ``owner_id``/``enrolled_by_id``, which ``users`` lacks, the device's; a test
#: checks that owner and enroller come back right.)
_CONFIRM_PENDING = (
    update(DeviceRow)
    .where(
        DeviceRow.device_id == bindparam("device"),
        or_(
            DeviceRow.enrolment_id == bindparam("enrolment", type_=String),
            DeviceRow.certificate_serial == bindparam("serial", type_=String),
        ),
        DeviceRow.status == DeviceStatus.ENROLLED.value,
        DeviceRow.confirmed_at.is_(None),
    )
    .values(confirmed_at=bindparam("now"))
    .returning(
        *_DEVICE_COLUMNS,
        select(_OWNER.name)
        .where(_OWNER.id == DeviceRow.owner_id)
        .scalar_subquery()
        .label("owner_name"),
        select(_ENROLLER.name)
        .where(_ENROLLER.id == DeviceRow.enrolled_by_id)
        .scalar_subquery()
        .label("enroller_name"),
    )
)
#: The same for an acting user, who must be (per the database) an enabled admin.
_CONFIRM_PENDING_BY_ADMIN = _CONFIRM_PENDING.where(
    select(_ACTOR.id)
    .where(
        _ACTOR.id == bindparam("actor_id"),
        _ACTOR.name == bindparam("actor_name"),
        _ACTOR.role == Role.ADMIN.value,
        not_(_ACTOR.disabled),
    )
    .exists()
)
#: Set on a connection that only reads: SQLite then takes no write lock (WAL readers
#: see the last commit and neither wait for nor block the writer).
_READ_ONLY: Final = "bleprov_read_only"


def hash_passphrase(passphrase: str, cost: ScryptCost, salt: bytes | None = None) -> str:
    """Hash a passphrase for storage as ``scrypt$n$r$p$salt$hash`` (base64 without padding).

    scrypt (RFC 7914) through ``cryptography``: memory-hard, no new dependency, and its
    parameters travel with each hash so the cost can be raised without a migration.
    """
    _check_passphrase(passphrase)
    salt = os.urandom(_SALT_BYTES) if salt is None else salt
    digest = _scrypt(passphrase.encode(), salt, cost)
    return "$".join(["scrypt", str(cost.n), str(cost.r), str(cost.p), _b64(salt), _b64(digest)])


def verify_passphrase(passphrase: str, stored: str) -> bool:
    """Whether ``passphrase`` matches ``stored``, compared in constant time."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        cost = ScryptCost(n=int(n), r=int(r), p=int(p))
        expected = _unb64(salt), _unb64(digest)
    except (ValueError, BleprovError) as exc:
        raise RegistryError("a stored passphrase hash is malformed") from exc
    if scheme != "scrypt":
        raise RegistryError("a stored passphrase hash uses an unknown scheme")
    if not passphrase_cost_allowed(cost):
        raise RegistryError(
            "a stored passphrase hash asks for a scrypt cost above the registry's bound: "
            "reset that user's passphrase"
        )
    candidate = _scrypt(passphrase.encode(), expected[0], cost, len(expected[1]))
    return hmac.compare_digest(candidate, expected[1])


def normalize_fingerprint(fingerprint: str) -> str:
    """A certificate's SHA-256 fingerprint as 64 lowercase hex digits (colons dropped)."""
    normalized = fingerprint.replace(":", "").strip().lower()
    if not _FINGERPRINT.fullmatch(normalized):
        raise RegistryError("a certificate fingerprint is 64 hex digits (SHA-256 of the DER)")
    return normalized


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (the newest by default)."""
    engine = _create_engine(url)
    try:
        _migrate(engine, revision)
    finally:
        engine.dispose()


def downgrade(url: str, revision: str) -> None:
    """Take the database at ``url`` back to ``revision`` (to run an older bleprov); what
    the later revisions added is dropped."""
    engine = _create_engine(url)
    try:
        _migrate(engine, revision, down=True)
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    """The schema revision of the database at ``url`` (``None``: never migrated)."""
    engine = _create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            return context.get_current_revision()
    finally:
        engine.dispose()


@dataclass
class Registry:
    """Users, devices, certificates and the audit log of one zone; see the module doc."""

    engine: Engine
    passphrase_cost: ScryptCost = PASSPHRASE_COST
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _sessions: sessionmaker[Session] = field(init=False, repr=False)
    _decoy_hash: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Unknown users cost one scrypt run like known ones, so timing does not tell them.
        self._decoy_hash = hash_passphrase("decoy", self.passphrase_cost)

    @classmethod
    def open(
        cls,
        url: str = "sqlite:///registry.sqlite3",
        *,
        passphrase_cost: ScryptCost = PASSPHRASE_COST,
        clock: Callable[[], datetime] | None = None,
    ) -> Registry:
        """Connect to ``url``, migrate its schema to the newest revision, return the registry."""
        engine = _create_engine(url)
        try:
            _migrate(engine, "head")
        except BaseException:
            engine.dispose()
            raise
        if clock is None:
            return cls(engine, passphrase_cost)
        return cls(engine, passphrase_cost, clock)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Users ------------------------------------------------------------------------------

    def add_user(
        self,
        name: str,
        role: Role,
        *,
        passphrase: str | None = None,
        certificate_fingerprint: str | None = None,
        actor: User | None,
    ) -> User:
        """Add a user with exactly one credential; ``actor`` must be an admin.

        ``actor=None`` is allowed once, to bootstrap the first admin of an empty registry.
        """
        _check_name(name, "user name", MAX_NAME_LENGTH)
        role = Role(role)
        if (passphrase is None) == (certificate_fingerprint is None):
            raise RegistryError("a user has exactly one credential: passphrase or certificate")
        # Hash before the transaction: scrypt is slow and must not hold the write lock.
        passphrase_hash = None
        fingerprint = None
        if passphrase is not None:
            passphrase_hash = hash_passphrase(passphrase, self.passphrase_cost)
        if certificate_fingerprint is not None:
            fingerprint = normalize_fingerprint(certificate_fingerprint)
        with self._transaction() as session:
            if actor is None:
                if session.scalars(select(UserRow.id).limit(1)).first() is not None:
                    raise NotAuthorized("only an admin may add users")
                if role is not Role.ADMIN:
                    raise RegistryError("the first user must be an admin")
                actor_id = None
            else:
                actor_id = self._admin(session, actor).id
            if session.scalars(select(UserRow.id).where(UserRow.name == name)).first():
                raise DuplicateUser(f"user {name!r} already exists")
            if (
                fingerprint is not None
                and session.scalars(
                    select(UserRow.id).where(UserRow.certificate_fingerprint == fingerprint)
                ).first()
            ):
                raise DuplicateUser("another user already has this certificate")
            row = UserRow(
                name=name,
                role=role.value,
                credential_kind=(
                    CredentialKind.PASSPHRASE if passphrase_hash else CredentialKind.CERTIFICATE
                ).value,
                passphrase_hash=passphrase_hash,
                certificate_fingerprint=fingerprint,
                created_at=self._now(),
                disabled=False,
            )
            session.add(row)
            session.flush()
            self._audit(
                session, actor_id, "add_user", name, f"role={role} credential={row.credential_kind}"
            )
            return row.to_user()

    def disable_user(self, name: str, *, actor: User) -> None:
        """Disable a user: they can no longer authenticate; their devices stay theirs."""
        with self._transaction() as session:
            actor_id = self._admin(session, actor).id
            row = self._user_by_name(session, name, lock=True)
            row.disabled = True
            self._audit(session, actor_id, "disable_user", name, "")

    def users(self) -> list[User]:
        """Every user, by name."""
        with self._sessions() as session:
            rows = session.scalars(select(UserRow).order_by(UserRow.name))
            return [row.to_user() for row in rows]

    def authenticate(self, name: str, passphrase: str) -> User:
        """The user ``name`` if enabled and ``passphrase`` matches; else AuthenticationFailed.

        Unknown, disabled and certificate-only users cost the same scrypt run and raise the
        same error as a wrong passphrase, so neither timing nor text tells which it was.
        """
        if len(passphrase.encode()) > MAX_PASSPHRASE_BYTES:
            raise AuthenticationFailed()
        with self._sessions() as session:
            row = session.scalars(select(UserRow).where(UserRow.name == name)).first()
        stored = self._decoy_hash
        if row is not None and row.passphrase_hash is not None:
            stored = row.passphrase_hash
        matched = verify_passphrase(passphrase, stored)
        if row is None or row.passphrase_hash is None or row.disabled or not matched:
            raise AuthenticationFailed()
        return row.to_user()

    def authenticate_certificate(self, fingerprint: str) -> User:
        """The enabled user whose zone certificate has this SHA-256 fingerprint.

        The caller has already verified the certificate chain and the peer's possession of
        the key (mutual TLS); the fingerprint is public, so looking it up is no secret.
        """
        try:
            normalized = normalize_fingerprint(fingerprint)
        except RegistryError:
            raise AuthenticationFailed() from None
        with self._sessions() as session:
            row = session.scalars(
                select(UserRow).where(UserRow.certificate_fingerprint == normalized)
            ).first()
        if row is None or row.disabled:
            raise AuthenticationFailed()
        return row.to_user()

    def require_admin(self, user: User) -> None:
        """Raise :class:`NotAuthorized` unless ``user`` is, per the database, an enabled admin."""
        with self._sessions() as session:
            self._admin(session, user)

    def check_enrolment(self, user: User, device_id: str) -> Device | None:
        """Before an enrolment asks the device for anything: raise :class:`NotAuthorized`
        unless ``user`` is an enabled admin; return the device's record (``None``: never
        enrolled), from which the hub's rules decide.

        One statement and no write lock; :meth:`record_enrolment` checks both again in
        its transaction, which is what a concurrent change can not slip past."""
        with self._read() as connection:
            row = connection.execute(
                _ENROLMENT_CHECK, {"actor_id": user.id, "device_id": device_id}
            ).one_or_none()
        if row is None or not _is_admin(row, user):
            raise NotAuthorized("only an enabled admin may do this")
        if row.id is None:
            return None
        return _device_of(row, device_id, row.owner_name, row.enroller_name)

    # Devices ----------------------------------------------------------------------------

    def record_enrolment(
        self,
        device_id: str,
        *,
        owner: str,
        enrolled_by: User,
        serial: int,
        not_after: datetime,
        manufacturer_root: str | None = None,
        enrolment_id: str | None = None,
    ) -> Device:
        """Record that admin ``enrolled_by`` enrolled ``device_id`` for user ``owner``.

        ``manufacturer_root`` is the SHA-256 fingerprint of the manufacturer root the
        device's attestation chained to (the hub enrols attested devices only), so the
        devices of a root found compromised can be listed. A revoked device may be
        enrolled again (after a factory reset); its record then names the new owner and
        root, and its old certificates stay revoked.

        With ``enrolment_id`` (32 hex digits, the enrolment's session-bound ID) the
        enrolment is *pending* until :meth:`confirm_enrolment`: the certificate is on
        record before the device has it, and the device may yet roll it back. A pending
        enrolment is superseded by a new one of the same device (its certificates are
        revoked in the same transaction): the device did not commit it, or it could not
        be enrolled again with its label. Without an ID it counts as enrolled at once.
        """
        _check_name(device_id, "device id", MAX_DEVICE_ID_LENGTH)
        serial_text = _serial_text(serial)
        _check_aware(not_after)
        root = None if manufacturer_root is None else normalize_fingerprint(manufacturer_root)
        if enrolment_id is not None and not _ENROLMENT_ID.fullmatch(enrolment_id):
            raise RegistryError("an enrolment ID is 32 lowercase hex digits")
        with self._write() as connection:
            users = connection.execute(
                _ENROLMENT_USERS, {"actor_id": enrolled_by.id, "owner": owner}
            ).all()
            admin = next((user for user in users if user.id == enrolled_by.id), None)
            if admin is None or not _is_admin(admin, enrolled_by, prefix=""):
                raise NotAuthorized("only an enabled admin may do this")
            owner_id = next((user.id for user in users if user.name == owner), None)
            if owner_id is None:
                raise UnknownUser(f"no user is named {owner!r}")
            now = self._now()
            row = connection.execute(_ENROLMENT_DEVICE, {"device_id": device_id}).one_or_none()
            status = None if row is None else _row_status(row.status, row.confirmed_at)
            if status is DeviceStatus.ENROLLED:
                raise DuplicateDevice(f"device {device_id!r} is already enrolled")
            audit = []
            if row is not None and status is DeviceStatus.PENDING:
                revoked = connection.execute(
                    _SUPERSEDE_CERTIFICATES, {"device": device_id, "now": now}
                ).all()
                serials = ",".join(serial for _, serial in sorted(revoked))
                detail = f"enrolment={row.enrolment_id} serials={serials}"
                audit.append(self._audit_entry(admin.id, "supersede", device_id, detail))
            values = {
                "owner_id": owner_id,
                "enrolled_by_id": admin.id,
                "enrolled_at": now,
                "status": DeviceStatus.ENROLLED.value,
                "certificate_serial": serial_text,
                "certificate_not_after": not_after,
                "manufacturer_root": root,
                "enrolment_id": enrolment_id,
                "confirmed_at": None if enrolment_id is not None else now,
            }
            if row is None:
                connection.execute(_INSERT_DEVICE, {"device_id": device_id, **values})
            else:
                connection.execute(_UPDATE_DEVICE, {"row_id": row.id, **values})
            # The unique serial is the duplicate check (DuplicateCertificate, below).
            connection.execute(
                _INSERT_CERTIFICATE,
                {
                    "serial": serial_text,
                    "device_id": device_id,
                    "issued_at": now,
                    "not_after": not_after,
                    "revoked_at": None,
                },
            )
            detail = f"owner={owner} serial={serial_text}"
            if root is not None:
                detail += f" manufacturer_root={root}"
            if enrolment_id is not None:
                detail += f" enrolment={enrolment_id} pending"
            audit.append(self._audit_entry(admin.id, "enrol", device_id, detail))
            connection.execute(_INSERT_AUDIT, audit)
        return Device(
            device_id=device_id,
            owner=owner,
            enrolled_by=admin.name,
            enrolled_at=now,
            status=DeviceStatus.PENDING if enrolment_id is not None else DeviceStatus.ENROLLED,
            certificate_serial=serial,
            certificate_not_after=not_after,
            manufacturer_root=root,
            enrolment_id=enrolment_id,
        )

    def confirm_enrolment(
        self,
        device_id: str,
        *,
        enrolment_id: str | None = None,
        serial: int | None = None,
        actor: User | None,
        how: str,
    ) -> Device:
        """The device committed its pending enrolment: it counts as enrolled from now.

        The enrolment is named by its ID (the device said so in an authenticated
        session) or by its certificate's serial (the device authenticated with that
        certificate, so it holds the committed key); ``how`` says which, for the audit.
        Confirming a confirmed enrolment again changes nothing; anything else (another
        enrolment, a revoked or unknown device) raises :class:`NotPending`."""
        if (enrolment_id is None) == (serial is None):
            raise RegistryError("name the enrolment by its ID or by its certificate's serial")
        serial_text = None if serial is None else _serial_text(serial)
        actor_id = None if actor is None else actor.id
        with self._write() as connection:
            # The usual case, a pending enrolment confirmed: one UPDATE and the audit entry.
            pending = {
                "device": device_id,
                "enrolment": enrolment_id,
                "serial": serial_text,
                "now": self._now(),
            }
            if actor is None:
                done = connection.execute(_CONFIRM_PENDING, pending).one_or_none()
            else:
                by_admin = {**pending, "actor_id": actor.id, "actor_name": actor.name}
                done = connection.execute(_CONFIRM_PENDING_BY_ADMIN, by_admin).one_or_none()
            if done is not None:
                detail = f"enrolment={done.enrolment_id} {how}"
                connection.execute(
                    _INSERT_AUDIT, self._audit_entry(actor_id, "confirm", device_id, detail)
                )
                return _device_of(done, device_id, done.owner_name, done.enroller_name)
            # Nothing confirmed: say why, as before (or, should the device have turned
            # pending since, as on PostgreSQL between two statements, confirm it now).
            row = connection.execute(
                _CONFIRMATION_DEVICE, {"device_id": device_id, "actor_id": actor_id}
            ).one_or_none()
            if actor is not None and row is None:  # the actor's check comes first
                user = connection.execute(
                    _ENROLMENT_USERS, {"actor_id": actor.id, "owner": None}
                ).one_or_none()
                if user is None or not _is_admin(user, actor, prefix=""):
                    raise NotAuthorized("only an enabled admin may do this")
            if actor is not None and row is not None and not _is_admin(row, actor):
                raise NotAuthorized("only an enabled admin may do this")
            if row is None:
                raise UnknownDevice(f"no device has id {device_id!r}")
            status = _row_status(row.status, row.confirmed_at)
            matches = (
                row.enrolment_id == enrolment_id
                if enrolment_id is not None
                else row.certificate_serial == serial_text
            )
            if not matches or status is DeviceStatus.REVOKED:
                raise NotPending(
                    f"device {device_id!r} has no pending enrolment {enrolment_id or serial_text}"
                )
            confirmed_at = row.confirmed_at
            if status is DeviceStatus.PENDING:
                confirmed_at = self._now()
                connection.execute(_CONFIRM_DEVICE, {"row_id": row.id, "now": confirmed_at})
                detail = f"enrolment={row.enrolment_id} {how}"
                connection.execute(
                    _INSERT_AUDIT, self._audit_entry(actor_id, "confirm", device_id, detail)
                )
        confirmed = _device_of(row, device_id, row.owner_name, row.enroller_name)
        return replace(confirmed, status=_row_status(row.status, confirmed_at))

    def record_renewal(self, device_id: str, serial: int, not_after: datetime) -> Device:
        """Record a renewed certificate; the previous one is superseded, not revoked."""
        serial_text = _serial_text(serial)
        _check_aware(not_after)
        with self._transaction() as session:
            row = self._device_row(session, device_id, lock=True)
            status = _status(row)
            if status is DeviceStatus.REVOKED:
                raise DeviceRevoked(f"device {device_id!r} is revoked")
            if status is DeviceStatus.PENDING:
                raise EnrolmentPending(f"device {device_id!r}: its enrolment is not confirmed yet")
            now = self._now()
            self._add_certificate(session, device_id, serial_text, now, not_after)
            previous = row.certificate_serial
            row.certificate_serial = serial_text
            row.certificate_not_after = not_after
            self._audit(session, None, "renew", device_id, f"serial={serial_text} was={previous}")
            return self._load_device(session, row)

    def revoke(self, device_id: str, *, actor: User) -> list[int]:
        """Revoke a device and every certificate of it still valid; return their serials."""
        with self._transaction() as session:
            admin = self._admin(session, actor)
            row = self._device_row(session, device_id, lock=True)
            serials = self._revoke_certificates(session, device_id, self._now())
            row.status = DeviceStatus.REVOKED.value
            self._audit(session, admin.id, "revoke", device_id, f"serials={','.join(serials)}")
            return [int(serial, 16) for serial in serials]

    def device(self, device_id: str) -> Device:
        """The device's record; :class:`UnknownDevice` if it was never enrolled."""
        with self._sessions() as session:
            return self._load_device(session, self._device_row(session, device_id))

    def devices(self, *, owner: str | None = None) -> list[Device]:
        """Every device (or every device of ``owner``), by device id."""
        with self._sessions() as session:
            query = select(DeviceRow).order_by(DeviceRow.device_id)
            if owner is not None:
                query = query.where(DeviceRow.owner_id == self._user_by_name(session, owner).id)
            names = dict(session.execute(select(UserRow.id, UserRow.name)).all())
            return [
                _device(row, names[row.owner_id], names[row.enrolled_by_id])
                for row in session.scalars(query)
            ]

    def revoked_serials(self) -> list[RevokedCertificate]:
        """Every revoked certificate, oldest revocation first: the CRL's entries."""
        with self._sessions() as session:
            rows = session.execute(
                select(CertificateRow.serial, CertificateRow.revoked_at)
                .where(CertificateRow.revoked_at.is_not(None))
                .order_by(CertificateRow.revoked_at, CertificateRow.id)
            )
            return [
                RevokedCertificate(int(serial, 16), revoked_at)
                for serial, revoked_at in rows
                if revoked_at is not None
            ]

    def audit(self, *, subject: str | None = None, limit: int | None = None) -> list[AuditEntry]:
        """The audit log (or one subject's part of it), oldest first; ``limit``: the newest N."""
        with self._sessions() as session:
            query = select(AuditRow, UserRow.name).outerjoin(
                UserRow, AuditRow.actor_id == UserRow.id
            )
            if subject is not None:
                query = query.where(AuditRow.subject == subject)
            query = query.order_by(AuditRow.id.desc())
            if limit is not None:
                query = query.limit(limit)
            entries = [
                AuditEntry(row.id, row.at, actor, row.action, row.subject, row.detail)
                for row, actor in session.execute(query)
            ]
            return entries[::-1]

    # Internals --------------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self.clock()
        _check_aware(now)
        return now.astimezone(UTC)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A connection for one read-only statement: no write lock, no transaction."""
        with self.engine.connect() as connection:
            yield connection.execution_options(**{_READ_ONLY: True})

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction in SQLAlchemy Core (the hot path's, without the ORM);
        integrity conflicts from concurrent writers become typed."""
        try:
            with self.engine.begin() as connection:
                yield connection
        except IntegrityError as exc:
            raise _integrity_error(exc) from None

    def _audit_entry(
        self, actor_id: int | None, action: str, subject: str, detail: str
    ) -> dict[str, Any]:
        return {
            "at": self._now(),
            "actor_id": actor_id,
            "action": action,
            "subject": subject,
            "detail": detail,
        }

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        """One write transaction; integrity conflicts from concurrent writers become typed."""
        try:
            with self._sessions() as session, session.begin():
                yield session
        except IntegrityError as exc:
            raise _integrity_error(exc) from None

    def _admin(self, session: Session, user: User) -> UserRow:
        row = session.get(UserRow, user.id)
        if row is None or row.name != user.name or row.disabled or row.role != Role.ADMIN:
            raise NotAuthorized("only an enabled admin may do this")
        return row

    def _user_by_name(self, session: Session, name: str, *, lock: bool = False) -> UserRow:
        query = select(UserRow).where(UserRow.name == name)
        row = session.scalars(query.with_for_update() if lock else query).first()
        if row is None:
            raise UnknownUser(f"no user is named {name!r}")
        return row

    def _device_row(self, session: Session, device_id: str, *, lock: bool = False) -> DeviceRow:
        row = self._find_device_row(session, device_id, lock=lock)
        if row is None:
            raise UnknownDevice(f"no device has id {device_id!r}")
        return row

    def _find_device_row(
        self, session: Session, device_id: str, *, lock: bool = False
    ) -> DeviceRow | None:
        query = select(DeviceRow).where(DeviceRow.device_id == device_id)
        return session.scalars(query.with_for_update() if lock else query).first()

    def _load_device(self, session: Session, row: DeviceRow) -> Device:
        owner = session.get(UserRow, row.owner_id)
        enroller = session.get(UserRow, row.enrolled_by_id)
        assert owner is not None  # foreign keys
        assert enroller is not None
        return _device(row, owner.name, enroller.name)

    def _revoke_certificates(self, session: Session, device_id: str, now: datetime) -> list[str]:
        """Revoke every still-valid certificate of the device; their serials (hex)."""
        certificates = session.scalars(
            select(CertificateRow)
            .where(CertificateRow.device_id == device_id, CertificateRow.revoked_at.is_(None))
            .order_by(CertificateRow.id)
            .with_for_update()
        ).all()
        for certificate in certificates:
            certificate.revoked_at = now
        return [certificate.serial for certificate in certificates]

    def _add_certificate(
        self, session: Session, device_id: str, serial: str, now: datetime, not_after: datetime
    ) -> None:
        if session.scalars(
            select(CertificateRow.id).where(CertificateRow.serial == serial)
        ).first():
            raise DuplicateCertificate(f"certificate serial {serial} is already recorded")
        session.add(
            CertificateRow(serial=serial, device_id=device_id, issued_at=now, not_after=not_after)
        )

    def _audit(
        self, session: Session, actor_id: int | None, action: str, subject: str, detail: str
    ) -> None:
        session.add(
            AuditRow(
                at=self._now(), actor_id=actor_id, action=action, subject=subject, detail=detail
            )
        )


def _status(row: DeviceRow) -> DeviceStatus:
    """Pending is stored as enrolled with no confirmation time (schema 0004)."""
    return _row_status(row.status, row.confirmed_at)


def _row_status(stored: str, confirmed_at: datetime | None) -> DeviceStatus:
    status = DeviceStatus(stored)
    if status is DeviceStatus.ENROLLED and confirmed_at is None:
        return DeviceStatus.PENDING
    return status


def _is_admin(row: Row[*tuple[Any, ...]], user: User, *, prefix: str = "actor_") -> bool:
    """Whether the user columns of ``row`` (``actor_name``... or ``name``...) show ``user``
    as an enabled admin, as :meth:`Registry._admin` checks."""
    mapping = row._mapping
    return (
        mapping[f"{prefix}name"] == user.name
        and mapping[f"{prefix}role"] == Role.ADMIN
        and not mapping[f"{prefix}disabled"]
    )


def _device_of(row: Row[*tuple[Any, ...]], device_id: str, owner: str, enrolled_by: str) -> Device:
    """A :class:`Device` from a Core row with the device columns."""
    return Device(
        device_id=device_id,
        owner=owner,
        enrolled_by=enrolled_by,
        enrolled_at=row.enrolled_at,
        status=_row_status(row.status, row.confirmed_at),
        certificate_serial=int(row.certificate_serial, 16),
        certificate_not_after=row.certificate_not_after,
        manufacturer_root=row.manufacturer_root,
        enrolment_id=row.enrolment_id,
    )


def _device(row: DeviceRow, owner: str, enrolled_by: str) -> Device:
    return Device(
        device_id=row.device_id,
        owner=owner,
        enrolled_by=enrolled_by,
        enrolled_at=row.enrolled_at,
        status=_status(row),
        certificate_serial=int(row.certificate_serial, 16),
        certificate_not_after=row.certificate_not_after,
        manufacturer_root=row.manufacturer_root,
        enrolment_id=row.enrolment_id,
    )


def _integrity_error(exc: IntegrityError) -> RegistryError:
    """Name the unique constraint a concurrent writer beat us to, without driver text."""
    text = str(exc.orig).lower()
    if "device_id" in text:
        return DuplicateDevice("the device was enrolled concurrently")
    if "serial" in text:
        return DuplicateCertificate("a certificate with this serial is already recorded")
    if "name" in text or "fingerprint" in text:
        return DuplicateUser("the user was added concurrently")
    return RegistryError("the change conflicts with the registry's constraints")


def _create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": _SQLITE_BUSY_SECONDS})
        event.listen(engine, "connect", _configure_sqlite)
        event.listen(engine, "begin", _begin_immediate)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _configure_sqlite(dbapi_connection: Any, _record: object) -> None:
    """Foreign keys on, WAL for readers beside the writer, and our own transaction control.

    ``synchronous = FULL`` (SQLite's usual default, set here so no build's default can
    lower it): in WAL mode every commit syncs the log before it returns, so a committed
    record survives a power cut. ``NORMAL`` would save that sync and could lose the last
    commits, a pending enrolment among them, whose certificate is already on the device.
    """
    dbapi_connection.isolation_level = None  # pysqlite's implicit BEGIN would be DEFERRED
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_SECONDS * 1000}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous = FULL")
    finally:
        cursor.close()


#: Seen with the hub directory on a 9p share (a VM's shared folder): SQLite's WAL keeps its
#: index in shared memory, which network and shared file systems do not give.
_NO_SHARED_MEMORY: Final = (
    "the registry database cannot be opened (SQLite: disk I/O error): its write-ahead log "
    "needs a local file system; move the hub directory off NFS, SMB or a VM's shared "
    "folder, or give --registry-url postgresql://..."
)


def _enable_wal(cursor: Any) -> None:
    """Switch a new database file to WAL mode (persistent: later connections find it set).

    SQLite answers "database is locked" to a journal-mode switch that races another
    connection, without waiting in its busy handler, so hubs opening a fresh file together
    retry here.
    """
    deadline = time.monotonic() + _SQLITE_BUSY_SECONDS
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            if "disk i/o error" in str(exc).lower():
                raise RegistryUnavailable(_NO_SHARED_MEMORY) from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _begin_immediate(connection: Connection) -> None:
    """Take SQLite's write lock when the transaction starts, not when it first writes.

    Two writers that both read first and then write would otherwise deadlock, one of them
    failing with "database is locked" instead of waiting its turn. A read-only connection
    (:meth:`Registry._read`: one statement) begins nothing: SQLite runs the statement in
    its own read transaction, which in WAL mode neither waits for the writer nor blocks it.
    """
    if not connection.get_execution_options().get(_READ_ONLY, False):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _migrate(engine: Engine, revision: str, *, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Hubs starting together migrate one after the other (SQLite: BEGIN IMMEDIATE).
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        config.attributes["connection"] = connection
        if down:
            command.downgrade(config, revision)
        else:
            command.upgrade(config, revision)


def _scrypt(secret: bytes, salt: bytes, cost: ScryptCost, length: int = _HASH_BYTES) -> bytes:
    return scrypt(secret, salt=salt, length=length, n=cost.n, r=cost.r, p=cost.p)


def _check_passphrase(passphrase: str) -> None:
    if not passphrase or len(passphrase.encode()) > MAX_PASSPHRASE_BYTES:
        raise RegistryError(f"a passphrase is 1 to {MAX_PASSPHRASE_BYTES} bytes")


def _check_name(value: str, what: str, limit: int) -> None:
    if not value or len(value) > limit or not value.isprintable():
        raise RegistryError(f"a {what} is 1 to {limit} printable characters")


def _check_aware(moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise RegistryError("the registry stores timezone-aware timestamps only")


def _serial_text(serial: int) -> str:
    if not 0 < serial < _MAX_SERIAL:
        raise RegistryError("a certificate serial is a positive integer of at most 20 octets")
    return format(serial, "x")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
