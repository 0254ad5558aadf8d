"""Alembic environment for the state store; run programmatically by slipway.store.repository."""

from __future__ import annotations

from alembic import context

from slipway.store.schema import Base

VERSION_TABLE = "slipway_store_version"  # the same name as slipway.store.repository.VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    version_table=VERSION_TABLE,
)
with context.begin_transaction():
    context.run_migrations()
