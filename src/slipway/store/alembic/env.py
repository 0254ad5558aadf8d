"""Alembic environment for the state store; run programmatically by slipway.store.repository."""

from __future__ import annotations

from alembic import context

from slipway.store.schema import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
    version_table="slipway_store_version",
)
with context.begin_transaction():
    context.run_migrations()
