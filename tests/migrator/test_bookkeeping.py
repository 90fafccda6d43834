"""The application role never touches a migration tool's bookkeeping table (#25.2): each known tool's,
and the ones the user names, tried with DML as the application role against the real Postgres."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from migrator.bookkeeping import KNOWN_TABLES, BookkeepingTable, parse_table, tables_from_env
from migrator.errors import MigratorConfigError
from migrator.roles import AppRole, RoleRefused, provision_app_role
from tests.migrator.support import query, run_cli, secrets_of, write_migrations
from tests.support import AppDatabase

USER_NAMED = BookkeepingTable("our_migrations_log")


def create_as_owner(db: AppDatabase, table: BookkeepingTable) -> None:
    """The table as its tool makes it: a serial id (a sequence the role must not advance either), a text column."""
    if table.schema is not None:
        query(db, sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(table.schema)))
        # A schema the role could reach (a user's grant): the table itself is still withheld.
        query(db, sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(table.schema),
                                                                   sql.Identifier(db.user)))
    name = sql.Identifier(*([table.schema] if table.schema else []), table.name)
    query(db, sql.SQL("CREATE TABLE {} (id serial PRIMARY KEY, note text)").format(name))
    # As if someone had granted it by hand before: provisioning takes it back.
    query(db, sql.SQL("GRANT ALL ON {} TO {}").format(name, sql.Identifier(db.user)))


def provision(db: AppDatabase, extra: tuple[BookkeepingTable, ...] = ()) -> None:
    with psycopg.connect(db.direct_url, autocommit=True) as conn:
        provision_app_role(conn, AppRole(db.user, db.verifier), "public", bookkeeping=extra)


@pytest.mark.parametrize("table", [*KNOWN_TABLES, USER_NAMED], ids=str)
def test_the_application_role_cannot_read_or_write_a_bookkeeping_table(app_db: AppDatabase,
                                                                        table: BookkeepingTable) -> None:
    create_as_owner(app_db, table)
    query(app_db, "CREATE TABLE orders (id serial PRIMARY KEY, note text)")
    provision(app_db, (USER_NAMED,))
    qualified = str(table)
    with psycopg.connect(app_db.app_direct_url, autocommit=True) as app:
        app.execute("INSERT INTO orders (note) VALUES ('the application table is usable')")
        for statement in (f"INSERT INTO {qualified} (note) VALUES ('forged')", f"UPDATE {qualified} SET note = 'x'",
                          f"DELETE FROM {qualified}", f"SELECT * FROM {qualified}", f"TRUNCATE {qualified}",
                          f"SELECT nextval(pg_get_serial_sequence('{qualified}', 'id'))"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute(statement)


def test_a_table_the_owner_creates_later_is_usable_and_a_grant_to_public_is_refused(app_db: AppDatabase) -> None:
    query(app_db, "CREATE TABLE created_after (id int)")  # app_db provisioned before: default privileges
    with psycopg.connect(app_db.app_direct_url, autocommit=True) as app:
        app.execute("INSERT INTO created_after VALUES (1)")
    query(app_db, "CREATE TABLE alembic_version (version_num text)")
    query(app_db, "GRANT SELECT ON alembic_version TO PUBLIC")
    with pytest.raises(RoleRefused, match=r"REVOKE ALL ON public\.alembic_version FROM PUBLIC"):
        provision(app_db)


def test_the_sample_runner_withholds_the_tables_the_user_names(app_db: AppDatabase, tmp_path: Path) -> None:
    directory = write_migrations(tmp_path / "m", {"0001_log.sql": "CREATE TABLE ops_log (id int);\n"})
    env = {"DATABASE_URL_UNPOOLED": app_db.direct_url, "LIFEGUARD_APP_ROLE": app_db.user,
           "LIFEGUARD_APP_ROLE_VERIFIER": app_db.verifier, "LIFEGUARD_BOOKKEEPING_TABLES": "ops_log"}
    # Provisioning runs before the migrations: the second run finds the table and withholds it.
    for _ in range(2):
        proc = run_cli(["--migrations-dir", str(directory)], env, secrets_of(app_db))
        assert proc.returncode == 0, proc.stderr
    assert "none on bookkeeping table(s) ops_log" in proc.stderr
    with psycopg.connect(app_db.app_direct_url, autocommit=True) as app, \
            pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("INSERT INTO ops_log VALUES (1)")


def test_names_are_checked() -> None:
    assert parse_table("Drizzle.__drizzle_migrations") == BookkeepingTable("__drizzle_migrations", "drizzle")
    assert tables_from_env({"LIFEGUARD_BOOKKEEPING_TABLES": " a , ops.b ,"}) == (
        BookkeepingTable("a"), BookkeepingTable("b", "ops"))
    for bad in ("a;drop table x", "a.b.c", '"quoted"', ""):
        with pytest.raises(MigratorConfigError, match="is not a table name"):
            parse_table(bad)
