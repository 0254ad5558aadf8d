"""add items.title, nullable: release 1 keeps writing name only

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

phase = "expand"


def upgrade() -> None:
    op.add_column("items", sa.Column("title", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("items", "title")
