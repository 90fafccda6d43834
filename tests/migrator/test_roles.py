"""The migration job provisions the application role: under its lock, idempotently, never logging the verifier."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from migrator import roles
from migrator.contract import APP_ROLE_B_VERIFIER_ENV, APP_ROLE_ENV, APP_ROLE_VERIFIER_ENV, alternate_role, group_role
from migrator.errors import ExitCode, MigratorConfigError
from migrator.roles import AppRole, app_role_from_env
from pgbouncer.scram import is_verifier, scram_verifier
from tests.migrator.support import holding_the_lock, run_cli, secrets_of, write_migrations
from tests.support import APP_SALT, AppDatabase

_names = itertools.count(1)
PASSWORD = "Fresh-app-password-123"


@pytest.fixture
def role_name(app_db: AppDatabase) -> Iterator[str]:
    """A role name no other test uses; the role is dropped (with its grants) afterwards."""
    name = f"lg_app_role_{next(_names)}"
    yield name
    with app_db.cluster.connect_superuser(app_db.dbname) as conn:
        for role in (name, alternate_role(name), group_role(name)):  # the group last: the others are its members
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def env_for(db: AppDatabase, role: str, verifier: str) -> dict[str, str]:
    return {"DATABASE_URL_UNPOOLED": db.direct_url, APP_ROLE_ENV: role, APP_ROLE_VERIFIER_ENV: verifier}


def stored(db: AppDatabase, role: str) -> str | None:
    with db.cluster.connect_superuser() as conn:
        row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
    return None if row is None else str(row[0])


def as_role(db: AppDatabase, role: str, password: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(db.cluster.dsn(role, password, db.dbname), autocommit=True, connect_timeout=10)


def test_the_job_creates_the_role_then_migrates_and_a_new_table_needs_no_grant(
    app_db: AppDatabase, tmp_path: Path, role_name: str
) -> None:
    verifier = scram_verifier(PASSWORD, APP_SALT)
    directory = write_migrations(tmp_path / "m", {"0001_t.sql": "CREATE TABLE t (id bigserial PRIMARY KEY, v text);\n"})
    secrets = [*secrets_of(app_db), verifier, PASSWORD]
    proc = run_cli(["--migrations-dir", str(directory)], env_for(app_db, role_name, verifier), secrets)
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert f"application role {role_name} created" in proc.stderr
    assert stored(app_db, role_name) == verifier  # byte-identical, as PgBouncer's copy
    # A later migration's table: the role may use it at once (ALTER DEFAULT PRIVILEGES).
    write_migrations(directory, {"0002_u.sql": "CREATE TABLE u (id int GENERATED ALWAYS AS IDENTITY, v text);\n"})
    again = run_cli(["--migrations-dir", str(directory)], env_for(app_db, role_name, verifier), secrets)
    assert again.returncode == ExitCode.OK, again.stderr
    assert f"application role {role_name} updated" in again.stderr
    assert stored(app_db, role_name) == verifier
    with as_role(app_db, role_name, PASSWORD) as conn:
        conn.execute("INSERT INTO t (v) VALUES ('x')")
        conn.execute("INSERT INTO u (v) VALUES ('y')")
        assert conn.execute("SELECT count(*) FROM t, u").fetchone() == (1,)
        for forbidden in ("TRUNCATE u", "DROP TABLE t", "SELECT * FROM lifeguard_schema_migrations",
                          "DELETE FROM lifeguard_schema_migrations", "CREATE TABLE v (id int)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(forbidden)


def test_a_changed_verifier_replaces_the_password(app_db: AppDatabase, tmp_path: Path, role_name: str) -> None:
    directory = write_migrations(tmp_path / "m", {"0001_ok.sql": "SELECT 1;\n"})
    old, new = scram_verifier(PASSWORD, APP_SALT), scram_verifier("New-" + PASSWORD, APP_SALT)
    secrets = [*secrets_of(app_db), old, new, PASSWORD]
    assert run_cli(["--migrations-dir", str(directory)], env_for(app_db, role_name, old), secrets).returncode == 0
    assert run_cli(["--migrations-dir", str(directory)], env_for(app_db, role_name, new), secrets).returncode == 0
    assert stored(app_db, role_name) == new
    with as_role(app_db, role_name, "New-" + PASSWORD):
        pass
    with pytest.raises(psycopg.OperationalError):
        as_role(app_db, role_name, PASSWORD)


def test_provisioning_happens_under_the_migration_lock(app_db: AppDatabase, tmp_path: Path, role_name: str) -> None:
    directory = write_migrations(tmp_path / "m", {"0001_ok.sql": "SELECT 1;\n"})
    verifier = scram_verifier(PASSWORD, APP_SALT)
    with holding_the_lock(app_db):
        proc = run_cli(["--migrations-dir", str(directory), "--lock-timeout", "0"],
                       env_for(app_db, role_name, verifier), [*secrets_of(app_db), verifier])
    assert proc.returncode == ExitCode.LOCK_TIMEOUT
    assert stored(app_db, role_name) is None  # nothing done without the lock


@pytest.mark.parametrize(
    ("attributes", "refusal"),
    [("CREATEDB", "exists with CREATEDB"), ("CREATEROLE", "exists with CREATEROLE"),
     ("SUPERUSER", "exists with SUPERUSER")],
)
def test_an_existing_privileged_role_is_refused_and_left_alone(
    app_db: AppDatabase, tmp_path: Path, role_name: str, attributes: str, refusal: str
) -> None:
    with app_db.cluster.connect_superuser() as conn:
        conn.execute(sql.SQL(f"CREATE ROLE {{}} LOGIN {attributes} PASSWORD 'before'").format(
            sql.Identifier(role_name)))
    before = stored(app_db, role_name)
    directory = write_migrations(tmp_path / "m", {"0001_t.sql": "CREATE TABLE t (id int);\n"})
    verifier = scram_verifier(PASSWORD, APP_SALT)
    proc = run_cli(["--migrations-dir", str(directory)], env_for(app_db, role_name, verifier),
                   [*secrets_of(app_db), verifier])
    assert proc.returncode == ExitCode.CONFIG
    assert refusal in proc.stderr and "may only run DML" in proc.stderr
    assert stored(app_db, role_name) == before
    with psycopg.connect(app_db.direct_url) as conn:  # and no migration ran
        assert conn.execute("SELECT to_regclass('t')").fetchone() == (None,)


def test_a_role_in_a_group_or_owning_tables_is_refused(app_db: AppDatabase, role_name: str) -> None:
    verifier = scram_verifier(PASSWORD, APP_SALT)
    with app_db.cluster.connect_superuser(app_db.dbname) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role_name)))
        conn.execute(sql.SQL("CREATE TABLE owned_by_app (id int)"))
        conn.execute(sql.SQL("ALTER TABLE owned_by_app OWNER TO {}").format(sql.Identifier(role_name)))
    with psycopg.connect(app_db.direct_url, autocommit=True) as conn, pytest.raises(
            roles.RoleRefused, match="owns 1 relation"):
        roles.provision_app_role(conn, AppRole(role_name, verifier), "public")
    with app_db.cluster.connect_superuser(app_db.dbname) as conn:
        conn.execute("DROP TABLE owned_by_app")
        conn.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(role_name)))
    with psycopg.connect(app_db.direct_url, autocommit=True) as conn, pytest.raises(
            roles.RoleRefused, match="member of pg_read_all_data"):
        roles.provision_app_role(conn, AppRole(role_name, verifier), "public")


def test_the_application_role_cannot_be_the_migration_role(app_db: AppDatabase) -> None:
    with psycopg.connect(app_db.direct_url, autocommit=True) as conn, pytest.raises(
            MigratorConfigError, match="the role the migration job logs in as"):
        roles.provision_app_role(conn, AppRole(app_db.owner, app_db.verifier), "public")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({APP_ROLE_ENV: "app"}, f"{APP_ROLE_VERIFIER_ENV} is not set"),
        ({APP_ROLE_VERIFIER_ENV: scram_verifier("x", APP_SALT)}, f"{APP_ROLE_ENV} is not set"),
        ({APP_ROLE_ENV: "app", APP_ROLE_VERIFIER_ENV: "a-plain-password"}, "not a SCRAM-SHA-256 verifier"),
        ({APP_ROLE_ENV: "Bad Name", APP_ROLE_VERIFIER_ENV: scram_verifier("x", APP_SALT)}, "lower-case Postgres name"),
        ({APP_ROLE_ENV: "rds_app", APP_ROLE_VERIFIER_ENV: scram_verifier("x", APP_SALT)}, "not starting with"),
    ],
)
def test_bad_role_configuration_is_refused_before_connecting(
    app_db: AppDatabase, tmp_path: Path, env: dict[str, str], message: str
) -> None:
    directory = write_migrations(tmp_path / "m", {"0001_t.sql": "CREATE TABLE t (id int);\n"})
    proc = run_cli(["--migrations-dir", str(directory)], {"DATABASE_URL_UNPOOLED": app_db.direct_url, **env},
                   [*secrets_of(app_db), "a-plain-password", *env.values()] if "a-plain" in str(env) else
                   secrets_of(app_db))
    assert proc.returncode == ExitCode.CONFIG
    assert message in proc.stderr


def test_no_role_configured_means_no_role_provisioned() -> None:
    assert app_role_from_env({}) is None
    assert app_role_from_env({APP_ROLE_ENV: " ", APP_ROLE_VERIFIER_ENV: ""}) is None


def test_the_migrators_verifier_check_agrees_with_pgbouncer_scram() -> None:
    # The migrator image carries only migrator/, so it has its own shape check: keep the two in step.
    good = scram_verifier(PASSWORD, APP_SALT)
    head, keys = good.rsplit("$", 1)
    stored_key, server_key = keys.split(":")
    samples = [good, scram_verifier("x", b"\x00", 1), scram_verifier("y", bytes(range(40)), 10000),
               good + "x", f"{head}${stored_key}", f"{head}${stored_key[:-4]}:{server_key}", "password",
               good.replace("$4096:", "$0:"), good.replace("$4096:", "$:"), "md5" + "a" * 32,
               good.replace("SCRAM-SHA-256", "SCRAM-SHA-1")]
    for sample in samples:
        try:
            AppRole("app", sample)
            accepted = True
        except MigratorConfigError:
            accepted = False
        assert accepted == is_verifier(sample), sample[:20]


def test_create_granted_to_public_or_the_role_is_taken_back(app_db: AppDatabase, role_name: str) -> None:
    verifier = scram_verifier(PASSWORD, APP_SALT)
    with app_db.cluster.connect_superuser(app_db.dbname) as conn:
        # What Postgres 14 and older grant by default, and a grant someone added by hand.
        conn.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role_name)))
        conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
            sql.Identifier(app_db.dbname), sql.Identifier(role_name)))
    with psycopg.connect(app_db.direct_url, autocommit=True) as conn:
        roles.provision_app_role(conn, AppRole(role_name, verifier), "public")
    with as_role(app_db, role_name, PASSWORD) as conn:
        for statement in ("CREATE TABLE t (id int)", "CREATE SCHEMA s"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_create_the_migration_role_cannot_take_back_is_refused(app_db: AppDatabase, role_name: str) -> None:
    verifier = scram_verifier(PASSWORD, APP_SALT)
    with app_db.cluster.connect_superuser(app_db.dbname) as conn:
        # A schema the superuser owns: the migration role cannot revoke what PUBLIC was given there.
        conn.execute("CREATE SCHEMA not_ours")
        conn.execute("GRANT USAGE, CREATE ON SCHEMA not_ours TO PUBLIC")
    try:
        with psycopg.connect(app_db.direct_url, autocommit=True) as conn, pytest.raises(
                roles.RoleRefused, match="could CREATE in schema not_ours"):
            roles.provision_app_role(conn, AppRole(role_name, verifier), "not_ours")
        assert stored(app_db, role_name) is None  # the whole provisioning rolled back
    finally:
        with app_db.cluster.connect_superuser(app_db.dbname) as conn:
            conn.execute("DROP SCHEMA not_ours")


def direct_grants(db: AppDatabase, role: str) -> int:
    """Rights held by ``role`` itself (not through a group): on relations, and as default privileges."""
    with db.cluster.connect_superuser(db.dbname) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a WHERE a.grantee = r.oid)"
            " + (SELECT count(*) FROM pg_default_acl d, aclexplode(d.defaclacl) a WHERE a.grantee = r.oid)"
            " FROM pg_roles r WHERE r.rolname = %s", (role,)).fetchone()
    assert row is not None
    return int(str(row[0]))


def test_two_login_roles_share_the_group_and_each_password_changes_alone(
    app_db: AppDatabase, tmp_path: Path, role_name: str
) -> None:
    directory = write_migrations(tmp_path / "m", {"0001_t.sql": "CREATE TABLE t (id bigserial PRIMARY KEY, v text);\n"})
    a, b, b2 = (scram_verifier(p, APP_SALT, 16) for p in ("pass-a", "pass-b", "pass-b-2"))
    secrets = [*secrets_of(app_db), a, b, b2]
    env = {**env_for(app_db, role_name, a), APP_ROLE_B_VERIFIER_ENV: b}
    proc = run_cli(["--migrations-dir", str(directory)], env, secrets)
    assert proc.returncode == ExitCode.OK, proc.stderr
    alternate, group = alternate_role(role_name), group_role(role_name)
    assert f"application role {alternate} created" in proc.stderr
    assert (stored(app_db, role_name), stored(app_db, alternate)) == (a, b)
    for login, password in ((role_name, "pass-a"), (alternate, "pass-b")):
        with as_role(app_db, login, password) as conn:
            conn.execute("INSERT INTO t (v) VALUES (current_user)")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("TRUNCATE t")
        assert direct_grants(app_db, login) == 0  # everything through the group
    with pytest.raises(psycopg.OperationalError):
        as_role(app_db, group, "")  # NOLOGIN
    # A rotation: only the login role the functions are not using gets a new verifier.
    proc = run_cli(["--migrations-dir", str(directory)], {**env, APP_ROLE_B_VERIFIER_ENV: b2}, secrets)
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert (stored(app_db, role_name), stored(app_db, alternate)) == (a, b2)
    with pytest.raises(psycopg.OperationalError):
        as_role(app_db, alternate, "pass-b")
    with as_role(app_db, alternate, "pass-b-2"), as_role(app_db, role_name, "pass-a"):
        pass


def test_the_grants_of_an_earlier_version_move_to_the_group(
    app_db: AppDatabase, tmp_path: Path, role_name: str
) -> None:
    verifier = scram_verifier(PASSWORD, APP_SALT)
    name = sql.Identifier(role_name)
    with psycopg.connect(app_db.direct_url, autocommit=True) as conn:
        # What the job did before the group existed: every right on the login role itself.
        conn.execute("CREATE TABLE earlier (id int)")
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOCREATEDB NOCREATEROLE PASSWORD {}").format(
            name, sql.Literal(verifier)))
        conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(name))
        conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE"
                             " ON TABLES TO {}").format(name))
    try:
        assert direct_grants(app_db, role_name) >= 2
        with psycopg.connect(app_db.direct_url, autocommit=True) as conn:
            roles.provision_app_role(conn, AppRole(role_name, verifier), "public")
            conn.execute("CREATE TABLE later (id int)")
        assert direct_grants(app_db, role_name) == 0
        assert stored(app_db, role_name) == verifier  # the functions' password did not change
        with as_role(app_db, role_name, PASSWORD) as conn:
            conn.execute("INSERT INTO earlier VALUES (1)")
            conn.execute("INSERT INTO later VALUES (1)")
    finally:
        with psycopg.connect(app_db.direct_url, autocommit=True) as conn:
            conn.execute("DROP TABLE earlier, later")


def test_a_login_role_under_the_groups_name_is_refused(app_db: AppDatabase, role_name: str) -> None:
    with app_db.cluster.connect_superuser(app_db.dbname) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(group_role(role_name))))
    with psycopg.connect(app_db.direct_url, autocommit=True) as conn, pytest.raises(
            roles.RoleRefused, match="may log in"):
        roles.provision_app_role(conn, AppRole(role_name, app_db.verifier), "public")
    assert stored(app_db, role_name) is None
