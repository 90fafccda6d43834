"""widgets: the application's first table."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "widgets",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
    )
    # Slow enough for a second run started alongside to have to wait for this one.
    op.execute("SELECT pg_sleep(1)")


def downgrade() -> None:
    op.drop_table("widgets")
