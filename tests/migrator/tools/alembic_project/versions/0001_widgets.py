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
    # A test holds this run here, while a table named migration_gate exists, until a second run waits for it.
    op.execute(
        "DO $$ BEGIN WHILE EXISTS (SELECT FROM pg_tables WHERE schemaname = current_schema()"
        " AND tablename = 'migration_gate') LOOP PERFORM pg_sleep(0.05); END LOOP; END $$"
    )


def downgrade() -> None:
    op.drop_table("widgets")
