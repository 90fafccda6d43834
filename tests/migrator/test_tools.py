"""Real migration tools through ``python -m migrator run`` against the real local Postgres (#25.6):
Alembic (from PyPI, the dev group) and node-pg-migrate (from npm, pinned in its package-lock.json,
installed with ``npm ci``). Each applies a migration, is refused through PgBouncer, serialises with a
second run, exits non-zero on a failing migration, and leaves the application role DML on the new
table and nothing on the tool's bookkeeping table.

Prisma Migrate is documented (docs/migrations.md) but not run: its engines are binaries downloaded
from Prisma's own servers, which this machine cannot reach.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from migrator.contract import APP_ROLE_ENV, APP_ROLE_VERIFIER_ENV
from migrator.errors import ExitCode
from tests.migrator.support import lock_waiters, migrator_argv, query, run_cli, secrets_of, started, wait_until
from tests.support import AppDatabase, RunningPooler, node_and_npm, npm_installed

TOOLS_DIR = Path(__file__).with_name("tools")
NPM_FILES = ("package.json", "package-lock.json")
GATE = "migration_gate"
"""While a table of this name exists, each tool's first migration waits (a test holds a run with it)."""


@dataclass(frozen=True)
class Tool:
    name: str
    command: list[str]
    bookkeeping: str
    bookkeeping_column: str
    new_table: str
    add_failing_migration: Callable[[], None]
    keeps_earlier_migrations: bool
    """A failure leaves the migrations before it applied (Alembic: one transaction per migration), or none
    (node-pg-migrate: all pending in one transaction, its default)."""


def alembic(tmp_path: Path) -> Tool:
    project = shutil.copytree(TOOLS_DIR / "alembic_project", tmp_path / "alembic_project")

    def add_failing() -> None:
        (project / "versions" / "0002_broken.py").write_text(
            'from alembic import op\n\nrevision = "0002"\ndown_revision = "0001"\n\n\n'
            'def upgrade() -> None:\n    op.execute("ALTER TABLE no_such_table ADD COLUMN x int")\n'
        )

    return Tool("alembic", [sys.executable, "-m", "alembic", "-c", str(project / "alembic.ini"), "upgrade", "head"],
                "alembic_version", "version_num", "widgets", add_failing, keeps_earlier_migrations=True)


def node_pg_migrate(tmp_path: Path) -> Tool:
    installed = npm_installed(TOOLS_DIR / "node_pg_migrate", NPM_FILES, "node-pg-migrate")
    found = node_and_npm()
    migrations = shutil.copytree(TOOLS_DIR / "node_pg_migrate" / "migrations", tmp_path / "migrations")

    def add_failing() -> None:
        (migrations / "1000000000002_broken.js").write_text(
            'exports.up = (pgm) => { pgm.sql("ALTER TABLE no_such_table ADD COLUMN x int"); };\n'
        )

    binary = installed / "node_modules" / "node-pg-migrate" / "bin" / "node-pg-migrate.js"
    return Tool("node-pg-migrate", [found[0], str(binary), "up", "-m", str(migrations)], "pgmigrations", "name",
                "gadgets", add_failing, keeps_earlier_migrations=False)


@pytest.fixture(params=["alembic", "node-pg-migrate"])
def tool(request: pytest.FixtureRequest, tmp_path: Path) -> Tool:
    return {"alembic": alembic, "node-pg-migrate": node_pg_migrate}[request.param](tmp_path)


def role_env(db: AppDatabase, url: str | None = None) -> dict[str, str]:
    return {"DATABASE_URL_UNPOOLED": url or db.direct_url, APP_ROLE_ENV: db.user, APP_ROLE_VERIFIER_ENV: db.verifier}


def exists(db: AppDatabase, table: str) -> bool:
    return bool(query(db, "SELECT to_regclass(%s) IS NOT NULL", (table,))[0][0])


def assert_role_uses_new_table_not_bookkeeping(db: AppDatabase, tool: Tool) -> None:
    table, bookkeeping = sql.Identifier(tool.new_table), sql.Identifier(tool.bookkeeping)
    with psycopg.connect(db.app_direct_url, autocommit=True) as app:
        app.execute(sql.SQL("INSERT INTO {} (name) VALUES ('made by the application role')").format(table))
        assert app.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone() == (1,)
        for statement in ("SELECT * FROM {}", "DELETE FROM {}", "UPDATE {} SET {} = {}", "TRUNCATE {}"):
            column = sql.Identifier(tool.bookkeeping_column)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute(sql.SQL(statement).format(bookkeeping, column, column))


def test_applies_a_migration_through_the_wrapper(app_db: AppDatabase, tool: Tool) -> None:
    proc = run_cli(["run", "--", *tool.command], role_env(app_db), secrets_of(app_db))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert exists(app_db, tool.new_table) and exists(app_db, tool.bookkeeping)
    assert_role_uses_new_table_not_bookkeeping(app_db, tool)
    again = run_cli(["run", "--", *tool.command], role_env(app_db), secrets_of(app_db))
    assert again.returncode == 0, again.stdout + again.stderr


def test_is_refused_through_pgbouncer(app_db: AppDatabase, start_pooler: Callable[..., RunningPooler],
                                      tool: Tool) -> None:
    pooled = start_pooler().url()
    proc = run_cli(["run", "--", *tool.command], role_env(app_db, pooled), [*secrets_of(app_db), pooled])
    assert proc.returncode == ExitCode.REFUSED, proc.stderr
    assert "refusing to migrate through a pooler" in proc.stderr
    assert not exists(app_db, tool.bookkeeping)


def at_the_gate(db: AppDatabase) -> int:
    """Sessions running a migration's wait loop on the gate (the tools' first migrations)."""
    found = query(db, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() "
                      "AND query LIKE %s", (f"%tablename = '{GATE}'%",))
    return int(found[0][0])


def test_two_runs_serialise(app_db: AppDatabase, tool: Tool) -> None:
    query(app_db, f"CREATE TABLE {GATE} ()")
    argv = migrator_argv("run", "--lock-timeout", "120", "--", *tool.command)
    with started(argv, role_env(app_db), 2) as procs:
        # One holds the lock, its migration held at the gate; the other waits for it, on our lock. The gate
        # is dropped only once the first run's migration spins on it: before that, the run's own role
        # provisioning may be granting on every table, the gate too, and Postgres refuses a DROP of a
        # table whose catalog row another transaction is updating ("tuple concurrently updated").
        wait_until(lambda: lock_waiters(app_db) == 1 and at_the_gate(app_db) == 1, 60,
                   "the first run's migration to wait at the gate and the second run for the migration lock")
        query(app_db, f"DROP TABLE {GATE}")
        results = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [out + err for out, err in results]
    assert int(query(app_db, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(tool.bookkeeping)))[0][0]) == 1
    assert_role_uses_new_table_not_bookkeeping(app_db, tool)


def test_a_failing_migration_exits_non_zero(app_db: AppDatabase, tool: Tool) -> None:
    tool.add_failing_migration()
    proc = run_cli(["run", "--", *tool.command], role_env(app_db), secrets_of(app_db))
    assert proc.returncode != 0, proc.stderr
    assert "no_such_table" in proc.stdout + proc.stderr
    assert f"the command exited with {proc.returncode}" in proc.stderr  # the tool's own code, passed through
    if tool.keeps_earlier_migrations:
        # What the tool applied before the failure is the application's all the same.
        assert_role_uses_new_table_not_bookkeeping(app_db, tool)
    else:
        assert not exists(app_db, tool.new_table)
