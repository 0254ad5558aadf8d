"""Release 2: items with name and title (writes both, reads title, falls back to name)."""

import sqlalchemy as sa

metadata = sa.MetaData()
items = sa.Table(
    "items", metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.Text),
    sa.Column("title", sa.Text),
)
