"""The matrix runs at the floor of the application role's SCRAM iteration count.

``pgbouncer.scram.MIN_APP_ITERATIONS`` is the lowest count ``scramIterations`` and ``lifeguard local up
--scram-iterations`` accept, because every driver here logs in against it: the matrix's stack is
made with it (conftest.py), test_drivers.py logs in with asyncpg, SQLAlchemy over psycopg and the
Node drivers pg and postgres.js, and this file checks the count is really the floor on both sides
(Postgres, PgBouncer) and logs in with psycopg itself.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import psycopg

from lifeguard.stack.stack import APP_USER
from pgbouncer.scram import MIN_APP_ITERATIONS, parse_verifier
from tests.compat.support import CompatStack


def test_the_matrix_stack_holds_the_floor_count_on_both_sides(compat_stack: CompatStack) -> None:
    stack = compat_stack.stack
    config = stack.require_config()
    verifier = stack.app_verifier(config)
    assert parse_verifier(verifier).iterations == MIN_APP_ITERATIONS
    with psycopg.connect(stack.superuser_url(config), connect_timeout=10) as conn:
        row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (APP_USER,)).fetchone()
    assert row == (verifier,)
    for pooler in stack.poolers(config):
        assert f'"{APP_USER}" "{verifier}"' in Path(pooler.settings.auth_file).read_text()


def _app_urls(compat: CompatStack) -> dict[str, str]:
    """The application role's URLs: through PgBouncer as printed, and straight at Postgres (``DATABASE_URL_UNPOOLED``
    is the owner's, whose password Postgres hashed itself)."""
    return {"pooled": compat.env["DATABASE_URL"], "direct": compat.stack.app_direct_url()}


def test_psycopg_logs_in_at_the_floor_count(compat_stack: CompatStack) -> None:
    for path, url in _app_urls(compat_stack).items():
        with psycopg.connect(url, prepare_threshold=None, connect_timeout=10) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (APP_USER,), path


def test_asyncpg_logs_in_straight_at_postgres_at_the_floor_count(compat_stack: CompatStack) -> None:
    # Through PgBouncer test_drivers.py's spikes already log in at the floor; here Postgres answers the SCRAM.
    async def login(url: str) -> object:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetchval("SELECT current_user")
        finally:
            await conn.close()

    loop = asyncio.new_event_loop()  # not asyncio.run: later tests still ask for a current loop
    try:
        assert loop.run_until_complete(login(_app_urls(compat_stack)["direct"])) == APP_USER
    finally:
        loop.close()
