"""Through the real PgBouncer, the functions are the DML-only application role and nothing more.

The pooler's auth_file holds the role's SCRAM verifier (as shipped), the database is owned by
the migration role, and the role was provisioned the way the migration job does it.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psycopg
import pytest

from lambdas import charge_credits, read_invoices
from lambdas.db import Database
from migrator.contract import group_role
from migrator.roles import AppRole, provision_app_role
from pgbouncer.scram import scram_verifier
from pgbouncer.settings import render_userlist
from tests.lambdas.support import Ledger, body
from tests.support import APP_SALT, APP_USER, OWNER_PASSWORD, OWNER_USER, AppDatabase, RunningPooler


def pooled(pooler: RunningPooler, user: str | None = None, password: str | None = None) -> psycopg.Connection[
        tuple[object, ...]]:
    return psycopg.connect(pooler.url(user, password, connect_timeout=10), autocommit=True, prepare_threshold=None)


def stored_verifier(db: AppDatabase, role: str) -> str:
    with db.cluster.connect_superuser() as conn:
        row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
    assert row is not None
    return str(row[0])


def test_auth_file_holds_the_verifier_that_pg_authid_holds(pooler: RunningPooler) -> None:
    userlist = Path(pooler.process.settings.auth_file).read_text()
    verifier = stored_verifier(pooler.db, APP_USER)
    assert userlist == render_userlist({APP_USER: verifier})
    assert verifier.startswith("SCRAM-SHA-256$") and pooler.db.password not in userlist
    # PgBouncer logged in to Postgres by pass-through: the query below reached a backend as the role.
    with pooled(pooler) as conn:
        assert conn.execute("SELECT current_user, session_user").fetchone() == (APP_USER, APP_USER)


def test_the_application_role_runs_both_handlers(pooler: RunningPooler, ledger: Ledger) -> None:
    acme = ledger.org_id("acme")
    instance = Database(url=pooler.url(), env={})  # a function instance, as the handlers get it
    try:
        assert read_invoices.handle({"org_id": acme}, instance)["statusCode"] == 200
        charged = charge_credits.handle({"org_id": acme, "amount": 5, "idempotency_key": "role-test-1"}, instance)
        assert charged["statusCode"] == 200, body(charged)
    finally:
        instance.close()
    assert ledger.credits(acme) == 995


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE intruder (id int)",
        "DROP TABLE charges",
        "ALTER TABLE orgs ADD COLUMN intruder int",
        "TRUNCATE charges",
        "CREATE ROLE intruder LOGIN",
        "SELECT rolname, rolpassword FROM pg_authid",
        "CREATE SCHEMA intruder",
        "CREATE INDEX intruder ON orgs (name)",
        "ALTER ROLE lifeguard_app CREATEDB",
        "CREATE FUNCTION intruder() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    ],
)
def test_the_application_role_is_refused_everything_but_dml(
    pooler: RunningPooler, statement: str
) -> None:
    with pooled(pooler) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


def test_the_application_role_is_not_privileged(schema_db: AppDatabase) -> None:
    with schema_db.cluster.connect_superuser() as conn:
        for role, login in ((APP_USER, True), (group_role(APP_USER), False)):
            row = conn.execute(
                "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolcanlogin,"
                " ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
                "       WHERE m.member = r.oid)"
                " FROM pg_roles r WHERE rolname = %s", (role,)).fetchone()
            # The login role's one membership: the NOLOGIN role that holds exactly the DML grants.
            assert row == (False, False, False, False, False, login, [group_role(APP_USER)] if login else [])


def test_the_migration_role_can_do_ddl_and_its_new_tables_are_usable_without_a_grant(
    pooler: RunningPooler, ledger: Ledger
) -> None:
    with ledger.connect() as owner:
        assert owner.execute("SELECT current_user").fetchone() == (OWNER_USER,)
        # What a later migration does; no GRANT follows it.
        owner.execute("CREATE TABLE audit_log (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text)")
        owner.execute("ALTER TABLE orgs ADD COLUMN plan text")
    with pooled(pooler) as conn:
        conn.execute("INSERT INTO audit_log (note) VALUES ('made by the app role')")
        assert conn.execute("SELECT id, note FROM audit_log").fetchall() == [(1, "made by the app role")]
        assert conn.execute("UPDATE orgs SET plan = 'pro' WHERE name = 'acme'").rowcount == 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("TRUNCATE audit_log")


def test_the_master_user_cannot_log_in_through_pgbouncer(pooler: RunningPooler) -> None:
    assert OWNER_USER not in Path(pooler.process.settings.auth_file).read_text()
    with pytest.raises(psycopg.OperationalError) as info:
        pooled(pooler, OWNER_USER, OWNER_PASSWORD)
    assert OWNER_PASSWORD not in str(info.value)
    # ... while straight to Postgres it works: that is the migration job's way in.
    with psycopg.connect(pooler.db.direct_url, connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (OWNER_USER,)


def test_changing_the_password_reprovisions_both_sides(pooler: RunningPooler) -> None:
    db = pooler.db
    new_password = "rotated-" + db.password
    new_verifier = scram_verifier(new_password, APP_SALT)
    with psycopg.connect(db.direct_url, autocommit=True) as conn:  # the migration job's half
        provision_app_role(conn, AppRole(APP_USER, new_verifier), "public")
    # The pooler's half: its secret now holds the new verifier; RELOAD re-reads auth_file.
    auth_file = Path(pooler.process.settings.auth_file)
    old_mtime = auth_file.stat().st_mtime
    auth_file.write_text(render_userlist({APP_USER: new_verifier}))
    # PgBouncer re-reads auth_file only when its size or mtime (whole seconds) changed, and a new
    # verifier has the old one's length: make the change visible even within the same second.
    os.utime(auth_file, (old_mtime + 5, old_mtime + 5))
    pooler.process.send_signal(signal.SIGHUP)
    assert stored_verifier(db, APP_USER) == new_verifier
    deadline = time.monotonic() + 10
    while True:
        try:
            with pooled(pooler, APP_USER, new_password) as conn:
                assert conn.execute("SELECT current_user").fetchone() == (APP_USER,)
            break
        except psycopg.OperationalError:
            assert time.monotonic() < deadline, "the new password never logged in through PgBouncer"
            time.sleep(0.1)
    with pytest.raises(psycopg.OperationalError):
        pooled(pooler, APP_USER, db.password)
