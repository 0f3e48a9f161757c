"""Create the registry: users, devices, certificates and the audit log.

Revision ID: 0001
Revises: none (the first revision)

Written out by hand rather than imported from the ORM models, so the revision stays what
it was when databases were created with it, whatever the models become later.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the four tables with their keys and value constraints."""
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("credential_kind", sa.String(16), nullable=False),
        sa.Column("passphrase_hash", sa.String(255), nullable=True),
        sa.Column("certificate_fingerprint", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("name", name="uq_users_name"),
        sa.UniqueConstraint("certificate_fingerprint", name="uq_users_certificate_fingerprint"),
        sa.CheckConstraint("role IN ('admin', 'member')", name="ck_users_role"),
        sa.CheckConstraint(
            "(credential_kind = 'passphrase' AND passphrase_hash IS NOT NULL"
            " AND certificate_fingerprint IS NULL)"
            " OR (credential_kind = 'certificate' AND certificate_fingerprint IS NOT NULL"
            " AND passphrase_hash IS NULL)",
            name="ck_users_credential",
        ),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("enrolled_by_id", sa.Integer(), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("certificate_serial", sa.String(40), nullable=False),
        sa.Column("certificate_not_after", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_devices"),
        sa.UniqueConstraint("device_id", name="uq_devices_device_id"),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name="fk_devices_owner_id_users"),
        sa.ForeignKeyConstraint(
            ["enrolled_by_id"], ["users.id"], name="fk_devices_enrolled_by_id_users"
        ),
        sa.CheckConstraint("status IN ('enrolled', 'revoked')", name="ck_devices_status"),
    )
    op.create_table(
        "certificates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("serial", sa.String(40), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_certificates"),
        sa.UniqueConstraint("serial", name="uq_certificates_serial"),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.device_id"], name="fk_certificates_device_id_devices"
        ),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], name="fk_audit_log_actor_id_users"),
    )


def downgrade() -> None:
    """Drop the tables, dependents first."""
    op.drop_table("audit_log")
    op.drop_table("certificates")
    op.drop_table("devices")
    op.drop_table("users")
