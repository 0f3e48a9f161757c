"""The registry's schema revisions, oldest first; Alembic chains them by ``down_revision``."""
