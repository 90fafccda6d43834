"""Alembic's env.py, as docs/migrations.md's recipe has it: the database URL from the environment."""

import os

from alembic import context
from sqlalchemy import create_engine, pool

# The wrapper hands the direct URL as DATABASE_URL (and DATABASE_URL_UNPOOLED). SQLAlchemy names its
# driver in the scheme; the URL's query (sslmode=verify-full&sslrootcert=...) goes to libpq as is.
url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
