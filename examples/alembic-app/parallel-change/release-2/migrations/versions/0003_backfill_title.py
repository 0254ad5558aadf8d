"""copy name into title for the rows written before release 2

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

phase = "migrate"  # a backfill: before the switch, like expand


def upgrade() -> None:
    op.execute("UPDATE items SET title = name WHERE title IS NULL")


def downgrade() -> None:
    pass
