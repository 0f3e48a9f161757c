"""Alembic environment: runs the registry's migrations on the connection the caller passes.

:func:`bleprov.store.registry.migrate` opens the connection (and its transaction) and puts
it in ``config.attributes["connection"]``; offline SQL generation is not supported, since
the registry always migrates a live database.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from bleprov.store.registry import VERSION_TABLE, RegistryError

_connection = context.config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise RegistryError("the registry migrates only through bleprov.store.registry.migrate")
context.configure(connection=_connection, version_table=VERSION_TABLE, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
