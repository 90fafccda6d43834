"""widgets: the application's first table."""

import os
import time

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
    # A test holds this run here (MIGRATION_GATE: a file it creates) until a second run waits for it.
    gate = os.environ.get("MIGRATION_GATE")
    deadline = time.monotonic() + 120
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.05)


def downgrade() -> None:
    op.drop_table("widgets")
