"""add notes.author

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# A nullable column: the release before it keeps inserting notes while this one rolls out (expand).
phase = "expand"


def upgrade() -> None:
    op.add_column("notes", sa.Column("author", sa.String(80), nullable=True))


def downgrade() -> None:
    op.drop_column("notes", "author")
