"""Alembic migrations of the hub's registry (see docs/registry.md, "Migrations").

:meth:`bleprov.store.registry.Registry.open` runs them programmatically, so a deployment
needs no ``alembic.ini``: ``script_location`` is this directory.
"""
