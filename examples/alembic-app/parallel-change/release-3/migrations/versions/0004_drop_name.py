"""drop items.name: only release 1 and 2 read it

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

phase = "contract"  # held until no host runs a release that still reads name


def upgrade() -> None:
    op.drop_column("items", "name")


def downgrade() -> None:
    op.add_column("items", sa.Column("name", sa.Text, nullable=True))
