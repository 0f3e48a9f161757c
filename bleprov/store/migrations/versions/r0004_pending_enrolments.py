"""Enrolments stay pending until the device's commit is known.

Revision ID: 0004
Revises: 0003

The hub records a certificate before the device sees it, and the device commits it (or
rolls it back) afterwards; until the host has learnt which, the enrolment is *pending*
(issue 15: a lost COMMIT answer, a host that died before COMMIT). ``devices.enrolment_id``
is the enrolment's ID, bound to its session (32 hex digits, docs/protocol.md
"Enrolment outcome"); ``devices.confirmed_at`` is when the device's commit was known. A
device whose status is ``enrolled`` and whose ``confirmed_at`` is NULL is pending.

Devices enrolled before this revision were counted enrolled at once: their
``confirmed_at`` is their ``enrolled_at``. Adding columns keeps ``devices`` in place
(a batch copy would have to drop the table ``certificates`` references).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Two nullable columns; every existing enrolment counts as confirmed."""
    op.add_column("devices", sa.Column("enrolment_id", sa.String(32), nullable=True))
    op.add_column("devices", sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE devices SET confirmed_at = enrolled_at")


def downgrade() -> None:
    """Drop both columns: an older bleprov counts a pending enrolment as enrolled (what it
    did before this revision), so nothing is revoked by going back."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE devices DROP COLUMN confirmed_at")
        op.execute("ALTER TABLE devices DROP COLUMN enrolment_id")
    else:
        op.drop_column("devices", "confirmed_at")
        op.drop_column("devices", "enrolment_id")
