"""Record the manufacturer root each device's attestation chained to.

Revision ID: 0003
Revises: 0002

The hub enrols only devices whose attestation chains to a trusted manufacturer root; the
root's SHA-256 fingerprint (64 lowercase hex digits, as ``bleprov factory init`` prints
it) goes into ``devices.manufacturer_root``, so the devices of a root that is later
distrusted can be found. Devices enrolled before this revision have none (NULL): the
hub did not record it then.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the nullable column (existing rows: NULL, unknown); a plain ADD COLUMN."""
    op.add_column("devices", sa.Column("manufacturer_root", sa.String(64), nullable=True))


def downgrade() -> None:
    """Drop the column (and what it recorded).

    SQLite (3.35 or later) drops it in place: a batch copy of ``devices`` would have to
    drop the table that ``certificates`` references, which its foreign key forbids.
    """
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE devices DROP COLUMN manufacturer_root")
    else:
        op.drop_column("devices", "manufacturer_root")
