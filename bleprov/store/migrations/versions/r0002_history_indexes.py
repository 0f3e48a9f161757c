"""Index a subject's audit history and a device's certificates.

Revision ID: 0002
Revises: 0001

"Who did what to this device, and when" and "every certificate of this device" are the
registry's common questions; without these indexes each is a full table scan.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the two indexes."""
    op.create_index("ix_audit_log_subject_at", "audit_log", ["subject", "at"])
    op.create_index("ix_certificates_device_id", "certificates", ["device_id"])


def downgrade() -> None:
    """Drop the two indexes."""
    op.drop_index("ix_certificates_device_id", table_name="certificates")
    op.drop_index("ix_audit_log_subject_at", table_name="audit_log")
