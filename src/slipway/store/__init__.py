"""The state store: SQLAlchemy on SQLite (default) or PostgreSQL, schema managed by Alembic."""
