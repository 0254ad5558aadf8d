"""blue/green: which release each slot of each host holds, and which slot serves"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slot_releases",
        sa.Column("environment", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("slot", sa.String(length=63), nullable=False),
        sa.Column("release_id", sa.String(length=200), nullable=False),
        sa.Column("artifact_digest", sa.String(length=80), nullable=False),
        sa.Column("commit", sa.String(length=64), nullable=False),
        sa.Column("since", sa.Float(), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("serving", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("environment", "host", "slot"),
    )


def downgrade() -> None:
    op.drop_table("slot_releases")
