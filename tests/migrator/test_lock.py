"""The migration lock (#31.5): the application role can neither take nor block it, directly or through
PgBouncer; runs still serialise, and the lock session outlives what the migrations do on theirs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from migrator.errors import ExitCode, LockTimeout
from migrator.lock import LOCK_VIEW, migration_lock
from migrator.roles import AppRole
from migrator.runner import migrate
from tests.migrator.support import (
    holding_the_lock,
    migrator_argv,
    query,
    recorded_versions,
    run_cli,
    secrets_of,
    started,
    write_migrations,
)
from tests.support import AppDatabase, RunningPooler

FORMER_ADVISORY_KEY = 0x6C69666567756172
"""The key of the session advisory lock the migrator used to take, which any role could take too."""
LOCK_MODES = ("ACCESS SHARE", "ROW SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE",
              "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE")
FIRST = {"0001_first.sql": "CREATE TABLE first_table (id int);\n"}
SECOND = {"0002_second.sql": "CREATE TABLE second_table (id int);\n"}


@contextmanager
def app_session(app_db: AppDatabase, start_pooler: Callable[..., RunningPooler], via: str
                ) -> Iterator[psycopg.Connection[Any]]:
    """The application role, straight to Postgres or through PgBouncer as the functions connect."""
    url = app_db.app_direct_url if via == "direct" else start_pooler().url()
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
        yield conn


def refused(conn: psycopg.Connection[Any], statement: str) -> None:
    """Run ``statement`` in a transaction the application leaves open: it must fail, whatever it locked."""
    if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        conn.execute("BEGIN")
    conn.execute("SAVEPOINT attempt")
    with pytest.raises(psycopg.Error):
        conn.execute(statement)
    conn.execute("ROLLBACK TO SAVEPOINT attempt")


@pytest.mark.parametrize("via", ["direct", "pgbouncer"])
def test_the_application_role_cannot_take_the_lock(
    app_db: AppDatabase, start_pooler: Callable[..., RunningPooler], tmp_path: Path, via: str
) -> None:
    # app_db granted the application role DML on every table (views too) the owner creates later:
    # the view is created with those grants taken back, and provisioning takes them back again.
    migrate(app_db.direct_url, write_migrations(tmp_path / "m", FIRST))
    with app_session(app_db, start_pooler, via) as app:
        for mode in LOCK_MODES:
            with pytest.raises(psycopg.errors.InsufficientPrivilege), app.transaction():
                app.execute(f"LOCK TABLE {LOCK_VIEW} IN {mode} MODE NOWAIT")
    migrate(app_db.direct_url, tmp_path / "m", app_role=AppRole(app_db.user, app_db.verifier))
    privileges = query(app_db, "SELECT p FROM unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE',"
                               "'REFERENCES','TRIGGER']) p WHERE has_table_privilege(%s, %s, p)",
                       (app_db.user, LOCK_VIEW))
    assert privileges == []


@pytest.mark.parametrize("via", ["direct", "pgbouncer"])
def test_the_application_role_cannot_block_a_migration(
    app_db: AppDatabase, start_pooler: Callable[..., RunningPooler], tmp_path: Path, via: str
) -> None:
    directory = write_migrations(tmp_path / "m", FIRST)
    migrate(app_db.direct_url, directory)
    with app_session(app_db, start_pooler, via) as app:
        # The old lock, held on the pooled backend (or the direct session) for as long as the app likes.
        assert app.execute("SELECT pg_try_advisory_lock(%s)", (FORMER_ADVISORY_KEY,)).fetchone() == (True,)
        # Every statement that would lock the view, each in the transaction the app then leaves open.
        refused(app, f"SELECT * FROM {LOCK_VIEW}")
        refused(app, f"INSERT INTO {LOCK_VIEW} VALUES ('mine')")
        refused(app, f"UPDATE {LOCK_VIEW} SET purpose = 'mine'")
        refused(app, f"COMMENT ON VIEW {LOCK_VIEW} IS 'mine'")
        refused(app, f"ALTER VIEW {LOCK_VIEW} RENAME TO mine")
        refused(app, f"LOCK TABLE {LOCK_VIEW} IN ACCESS EXCLUSIVE MODE")
        refused(app, f"SELECT * FROM {LOCK_VIEW} FOR UPDATE")
        refused(app, f"DROP VIEW {LOCK_VIEW}")
        refused(app, f"CREATE RULE mine AS ON INSERT TO {LOCK_VIEW} DO INSTEAD NOTHING")
        refused(app, f"GRANT UPDATE ON {LOCK_VIEW} TO PUBLIC")
        refused(app, "LOCK TABLE lifeguard_schema_migrations IN ACCESS EXCLUSIVE MODE")
        # Skipped with a warning, not an error: whatever ANALYZE locked on the way is let go at once.
        app.execute(f"ANALYZE {LOCK_VIEW}")
        assert app.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        # Not a second of waiting allowed: the run must find the lock free.
        report = migrate(app_db.direct_url, write_migrations(directory, SECOND), lock_timeout_s=0)
    assert [a.version for a in report.applied] == ["0002"]


def test_runs_serialise_and_a_wait_ends_in_a_clear_error(app_db: AppDatabase, sample_dir: Path) -> None:
    with holding_the_lock(app_db) as held:
        with pytest.raises(LockTimeout) as timed_out:
            migrate(app_db.direct_url, sample_dir, lock_timeout_s=0.3)
        assert held.schema == "public"
    message = str(timed_out.value)
    assert "timed out after 0.3 s waiting for the migration lock, held by backend pid" in message
    assert "'lifeguard-migrator'" in message and "raise --lock-timeout" in message
    assert recorded_versions(app_db) == []
    # A wrapper holds the same lock around another tool: nothing else gets it meanwhile.
    with (migration_lock(app_db.direct_url, 0), pytest.raises(LockTimeout, match="the lock timeout is 0"),
          migration_lock(app_db.direct_url, 0)):
        pass
    assert len(migrate(app_db.direct_url, sample_dir, lock_timeout_s=0).applied) == 3


def test_the_lock_session_outlives_what_the_migrations_do(app_db: AppDatabase, tmp_path: Path) -> None:
    # Database defaults that would end or pin an open transaction; the migrations' own connection
    # runs CREATE INDEX CONCURRENTLY (which waits for transactions holding a snapshot) and a
    # database-wide ANALYZE and VACUUM (which lock every table they visit).
    for setting, value in (("idle_in_transaction_session_timeout", "1s"),
                           ("default_transaction_isolation", "repeatable read")):
        query(app_db, f"ALTER DATABASE {app_db.dbname} SET {setting} = '{value}'")
    directory = write_migrations(tmp_path / "m", {
        "0001_table.sql": "CREATE TABLE things (id int);\nSELECT pg_sleep(2);\n",
        "0002_index.sql": "-- lifeguard: no-transaction\nCREATE INDEX CONCURRENTLY things_id ON things (id);\n"
                          "ANALYZE;\nVACUUM;\n",
        "0003_more.sql": "ANALYZE;\nCREATE TABLE more_things (id int);\n",
    })
    proc = run_cli(["--migrations-dir", str(directory), "--lock-timeout", "0"],
                   {"DATABASE_URL_UNPOOLED": app_db.direct_url}, secrets_of(app_db), timeout=60)
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert recorded_versions(app_db) == ["0001", "0002", "0003"]


def test_a_run_whose_lock_session_is_gone_stops_before_the_next_file(app_db: AppDatabase, tmp_path: Path) -> None:
    directory = write_migrations(tmp_path / "m", {
        # Ends the run's own lock session, as a lost connection would.
        "0001_cut.sql": "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE granted AND mode = 'ExclusiveLock'"
                        f" AND relation = '{LOCK_VIEW}'::regclass;\n",
        "0002_after.sql": "CREATE TABLE after_the_cut (id int);\n",
    })
    proc = run_cli(["--migrations-dir", str(directory)], {"DATABASE_URL_UNPOOLED": app_db.direct_url},
                   secrets_of(app_db))
    assert proc.returncode == ExitCode.UNAVAILABLE, proc.stderr
    assert "lost the migration lock's connection" in proc.stderr
    assert recorded_versions(app_db) == ["0001"]


def test_first_runs_started_together_both_succeed(app_db: AppDatabase, sample_dir: Path) -> None:
    # Neither the view nor the bookkeeping table exists yet: both runs create the view at once.
    argv = migrator_argv("--migrations-dir", str(sample_dir), "--lock-timeout", "30")
    with started(argv, {"DATABASE_URL_UNPOOLED": app_db.direct_url}, 2) as procs:
        results = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err for _, err in results]
    assert recorded_versions(app_db) == ["0001", "0002", "0003"]
