"""The example's schema as the application sees it (release 1: items with a name)."""

import sqlalchemy as sa

metadata = sa.MetaData()
items = sa.Table("items", metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.Text))
