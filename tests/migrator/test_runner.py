"""The runner's API against the real local Postgres (and PgBouncer for the refusal)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from psycopg import sql

from migrator import lock
from migrator.errors import (
    ChecksumDrift,
    ExitCode,
    MigrationFailed,
    MigratorConfigError,
    MigratorError,
    PoolerRefused,
    Unavailable,
)
from migrator.files import Migration, load_migrations
from migrator.runner import migrate, status
from tests.migrator.support import (
    SAMPLE_FILES,
    assert_no_secret,
    query,
    recorded_versions,
    secrets_of,
    table_exists,
    write_migrations,
)
from tests.support import AppDatabase, RunningPooler


def test_applies_the_sample_migrations_once(app_db: AppDatabase, sample_dir: Path) -> None:
    report = migrate(app_db.direct_url, sample_dir)

    assert [a.filename for a in report.applied] == list(SAMPLE_FILES)
    assert report.already_applied == 0
    assert report.target == f"localhost:{app_db.cluster.port}/{app_db.dbname}"
    assert query(app_db, "SELECT name, credits FROM orgs ORDER BY name") == [("acme", 1000), ("globex", 50)]
    rows = query(app_db, "SELECT version, filename, checksum, transactional FROM lifeguard_schema_migrations")
    expected = {
        (name[:4], name, hashlib.sha256((sample_dir / name).read_bytes()).hexdigest(), True) for name in SAMPLE_FILES
    }
    assert set(rows) == expected

    again = migrate(app_db.direct_url, sample_dir)
    assert again.applied == ()
    assert again.already_applied == 3
    assert query(app_db, "SELECT count(*) FROM invoices") == [(3,)]  # the seed did not run twice


def test_failing_migration_leaves_no_trace(app_db: AppDatabase, tmp_path: Path) -> None:
    directory = write_migrations(
        tmp_path / "m",
        {
            "0001_first.sql": "CREATE TABLE first_table (id int);\n",
            "0002_broken.sql": "CREATE TABLE half_done (id int);\nINSERT INTO half_done VALUES (1);\n"
            "INSERT INTO no_such_table VALUES (1);\n",
            "0003_later.sql": "CREATE TABLE later_table (id int);\n",
        },
    )
    with pytest.raises(MigrationFailed) as failure:
        migrate(app_db.direct_url, directory)

    message = str(failure.value)
    assert "0002_broken.sql failed and was rolled back" in message
    assert "line 3:" in message and 'relation "no_such_table" does not exist' in message
    assert table_exists(app_db, "first_table")
    assert not table_exists(app_db, "half_done")
    assert not table_exists(app_db, "later_table")
    assert recorded_versions(app_db) == ["0001"]

    # Fixed (it was never recorded, so this is not drift), the next run picks up where it stopped.
    (directory / "0002_broken.sql").write_text("CREATE TABLE half_done (id int);\n")
    report = migrate(app_db.direct_url, directory)
    assert [a.version for a in report.applied] == ["0002", "0003"]


def test_edited_applied_file_stops_the_run(app_db: AppDatabase, sample_dir: Path) -> None:
    migrate(app_db.direct_url, sample_dir)
    edited = sample_dir / "0002_charges_balance_after.sql"
    edited.write_text(edited.read_text() + "\n-- a harmless-looking edit\n")
    write_migrations(sample_dir, {"0004_new.sql": "CREATE TABLE newer (id int);\n"})

    with pytest.raises(ChecksumDrift) as drift:
        migrate(app_db.direct_url, sample_dir)

    assert drift.value.filenames == ("0002_charges_balance_after.sql",)
    assert "0002_charges_balance_after.sql" in str(drift.value)
    assert not table_exists(app_db, "newer")
    states = {e.filename: e.state for e in status(app_db.direct_url, sample_dir).entries}
    assert states["0002_charges_balance_after.sql"] == "changed"
    assert states["0004_new.sql"] == "pending"


def test_crlf_checkout_is_not_drift(app_db: AppDatabase, sample_dir: Path) -> None:
    migrate(app_db.direct_url, sample_dir)
    for name in SAMPLE_FILES:
        path = sample_dir / name
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert migrate(app_db.direct_url, sample_dir).already_applied == 3


def test_no_transaction_file_runs_create_index_concurrently(app_db: AppDatabase, tmp_path: Path) -> None:
    directory = write_migrations(
        tmp_path / "m",
        {
            "0001_table.sql": "CREATE TABLE things (id int, name text);\n",
            "0002_indexes.sql": "-- lifeguard: no-transaction\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS things_id ON things (id);\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS things_name ON things (name);\n",
        },
    )
    report = migrate(app_db.direct_url, directory)

    assert [(a.version, a.transactional) for a in report.applied] == [("0001", True), ("0002", False)]
    indexes = query(
        app_db,
        "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = 'things'::regclass ORDER BY 1",
    )
    assert indexes == [("things_id", True), ("things_name", True)]
    assert query(app_db, "SELECT transactional FROM lifeguard_schema_migrations WHERE version = '0002'") == [
        (False,)
    ]


def test_concurrent_index_without_the_header_fails_with_a_hint(app_db: AppDatabase, tmp_path: Path) -> None:
    directory = write_migrations(
        tmp_path / "m",
        {
            "0001_table.sql": "CREATE TABLE things (id int);\n",
            "0002_index.sql": "CREATE INDEX CONCURRENTLY things_id ON things (id);\n",
        },
    )
    with pytest.raises(MigrationFailed) as failure:
        migrate(app_db.direct_url, directory)
    assert "cannot run inside a transaction block" in str(failure.value)
    assert "-- lifeguard: no-transaction" in str(failure.value)
    assert recorded_versions(app_db) == ["0001"]


def test_no_transaction_failure_keeps_earlier_statements(app_db: AppDatabase, tmp_path: Path) -> None:
    directory = write_migrations(
        tmp_path / "m",
        {
            "0001_table.sql": "CREATE TABLE things (id int);\n",
            "0002_indexes.sql": "-- lifeguard: no-transaction\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS things_id ON things (id);\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS things_missing ON things (missing_column);\n",
        },
    )
    with pytest.raises(MigrationFailed) as failure:
        migrate(app_db.direct_url, directory)

    message = str(failure.value)
    assert "failed at statement 2 of 2" in message
    assert "line 3:" in message
    assert "Statements 1-1 ran and stay applied" in message
    assert query(app_db, "SELECT count(*) FROM pg_indexes WHERE indexname = 'things_id'") == [(1,)]
    assert recorded_versions(app_db) == ["0001"]

    # Re-runnable as documented: fix the file, run again, the first statement is a no-op.
    (directory / "0002_indexes.sql").write_text(
        "-- lifeguard: no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS things_id ON things (id);\n"
    )
    assert [a.version for a in migrate(app_db.direct_url, directory).applied] == ["0002"]


def test_a_commit_the_file_check_misses_is_still_caught(app_db: AppDatabase, tmp_path: Path) -> None:
    # Simulate a gap in the static check, through the runner's loader: the file it checked has no
    # COMMIT, the SQL it hands on does. The runtime check must still refuse to record the file.
    directory = write_migrations(tmp_path / "m", {"0001_commits.sql": "CREATE TABLE t1 (id int);\n"})

    def load_missing_a_commit(path: Path) -> list[Migration]:
        return [dataclasses.replace(m, sql=m.sql + "COMMIT;\n") for m in load_migrations(path)]

    with pytest.raises(MigrationFailed) as failure:
        migrate(app_db.direct_url, directory, load=load_missing_a_commit)
    assert "ended the migrator's transaction" in str(failure.value)
    assert recorded_versions(app_db) == []


def test_status_names_every_state(app_db: AppDatabase, tmp_path: Path) -> None:
    directory = write_migrations(
        tmp_path / "m",
        {
            "0001_a.sql": "CREATE TABLE a (id int);\n",
            "0002_b.sql": "CREATE TABLE b (id int);\n",
            "0003_c.sql": "CREATE TABLE c (id int);\n",
        },
    )
    before = status(app_db.direct_url, directory)
    assert [e.state for e in before.entries] == ["pending"] * 3
    assert not table_exists(app_db, "lifeguard_schema_migrations")  # status creates nothing

    migrate(app_db.direct_url, directory)
    (directory / "0001_a.sql").write_text("CREATE TABLE a (id bigint);\n")
    (directory / "0003_c.sql").unlink()
    write_migrations(directory, {"0004_d.sql": "CREATE TABLE d (id int);\n"})

    after = status(app_db.direct_url, directory)
    assert [(e.filename, e.state) for e in after.entries] == [
        ("0001_a.sql", "changed"),
        ("0002_b.sql", "applied"),
        ("0003_c.sql", "missing"),
        ("0004_d.sql", "pending"),
    ]
    applied = after.having("applied")[0]
    assert applied.applied_at is not None and applied.duration_ms is not None


def test_dry_run_changes_nothing(app_db: AppDatabase, sample_dir: Path) -> None:
    report = migrate(app_db.direct_url, sample_dir, dry_run=True)
    assert report.dry_run and report.pending == SAMPLE_FILES and report.applied == ()
    assert not table_exists(app_db, "lifeguard_schema_migrations")
    assert not table_exists(app_db, "orgs")


def test_refuses_to_run_through_pgbouncer(
    app_db: AppDatabase, start_pooler: Callable[..., RunningPooler], sample_dir: Path
) -> None:
    pooler = start_pooler()
    for call in (lambda: migrate(pooler.url(), sample_dir), lambda: status(pooler.url(), sample_dir)):
        with pytest.raises(PoolerRefused) as refused:
            call()
        message = str(refused.value)
        assert "DATABASE_URL_UNPOOLED" in message
        assert f"127.0.0.1:{pooler.port}" in message and f"127.0.0.1:{app_db.cluster.port}" in message
        assert_no_secret(message, secrets_of(app_db))
    assert not table_exists(app_db, "lifeguard_schema_migrations")
    assert not table_exists(app_db, "orgs")


def test_unix_socket_direct_connection_is_accepted(app_db: AppDatabase, sample_dir: Path) -> None:
    cluster = app_db.cluster
    url = (
        f"postgresql://{quote(app_db.owner, safe='')}:{quote(app_db.owner_password, safe='')}@/{app_db.dbname}"
        f"?host={quote(str(cluster.root))}&port={cluster.port}"
    )
    report = migrate(url, sample_dir)
    assert len(report.applied) == 3
    assert report.target == f"{cluster.root}:{cluster.port}/{app_db.dbname}"


def test_connection_failures_never_show_the_password(app_db: AppDatabase, sample_dir: Path) -> None:
    wrong = app_db.cluster.dsn(app_db.user, "Wr0ng-pass:word@x", app_db.dbname)
    with pytest.raises(Unavailable) as unavailable:
        migrate(wrong, sample_dir)
    assert "password authentication failed" in str(unavailable.value)
    assert_no_secret(str(unavailable.value), ["Wr0ng-pass:word@x", quote("Wr0ng-pass:word@x", safe=""), wrong])

    # libpq quotes the offending token of a malformed URL: here, the password itself.
    malformed = f"postgresql://{app_db.user}:p%zzS3cretTok@localhost:{app_db.cluster.port}/{app_db.dbname}"
    with pytest.raises(MigratorConfigError) as bad_url:
        migrate(malformed, sample_dir)
    assert "percent-encode the user and password" in str(bad_url.value)
    assert_no_secret(str(bad_url.value), ["p%zzS3cretTok", "S3cretTok", malformed])


def test_lock_timeout_is_validated(app_db: AppDatabase, sample_dir: Path) -> None:
    for bad in (-1.0, float("nan"), float("inf"), lock.MAX_LOCK_TIMEOUT_S + 1):
        with pytest.raises(MigratorConfigError, match="lock timeout"):
            migrate(app_db.direct_url, sample_dir, lock_timeout_s=bad)


def test_renumbering_to_another_width_is_the_same_migration(app_db: AppDatabase, sample_dir: Path) -> None:
    migrate(app_db.direct_url, sample_dir)
    (sample_dir / "0003_seed_demo_orgs.sql").rename(sample_dir / "3_seed_demo_orgs.sql")
    assert migrate(app_db.direct_url, sample_dir).applied == ()
    assert [e.state for e in status(app_db.direct_url, sample_dir).entries] == ["applied"] * 3
    assert query(app_db, "SELECT count(*) FROM invoices") == [(3,)]


def test_foreign_rows_in_the_bookkeeping_table_are_reported(app_db: AppDatabase, sample_dir: Path) -> None:
    migrate(app_db.direct_url, sample_dir)
    query(
        app_db,
        "INSERT INTO lifeguard_schema_migrations (version, filename, checksum, transactional, duration_ms)"
        " VALUES ('v2_beta', 'x.sql', 'x', true, 0)",
    )
    with pytest.raises(MigratorError, match="holds version 'v2_beta'") as error:
        status(app_db.direct_url, sample_dir)
    assert error.value.exit_code == ExitCode.ERROR


def test_a_renumbered_applied_file_is_refused_not_run_again(app_db: AppDatabase, sample_dir: Path) -> None:
    migrate(app_db.direct_url, sample_dir)
    (sample_dir / "0003_seed_demo_orgs.sql").rename(sample_dir / "0004_seed_demo_orgs.sql")
    for dry_run in (True, False):
        with pytest.raises(ChecksumDrift) as refused:
            migrate(app_db.direct_url, sample_dir, dry_run=dry_run)
        message = str(refused.value)
        assert "0004_seed_demo_orgs.sql has the content of 0003_seed_demo_orgs.sql" in message
        assert "as version 0003" in message and "Nothing was applied" in message
        assert refused.value.exit_code == ExitCode.CHECKSUM_DRIFT
        assert refused.value.filenames == ("0004_seed_demo_orgs.sql",)
    assert query(app_db, "SELECT count(*) FROM invoices") == [(3,)]  # the seed did not run twice
    assert recorded_versions(app_db) == ["0001", "0002", "0003"]


def test_files_are_lexed_as_checked_even_if_the_database_turns_off_standard_strings(
    app_db: AppDatabase, tmp_path: Path
) -> None:
    # Under standard_conforming_strings=off, Postgres reads 'x\'' as a whole string and then sees a
    # COMMIT that the file check (standard rules) saw inside one string: half the file would commit.
    query(app_db, sql.SQL("ALTER DATABASE {} SET standard_conforming_strings = off").format(
        sql.Identifier(app_db.dbname)))
    directory = write_migrations(tmp_path / "m", {
        "0001_plain.sql": "CREATE TABLE kept (v text);\nINSERT INTO kept VALUES ('a\\b');\n",
        "0002_tricky.sql": "CREATE TABLE half (id int);\nSELECT 'x\\''; COMMIT; SELECT 'y\\'';\n",
    })
    with pytest.raises(MigrationFailed) as failure:
        migrate(app_db.direct_url, directory)
    assert "0002_tricky.sql failed and was rolled back" in str(failure.value)
    assert not table_exists(app_db, "half")
    assert recorded_versions(app_db) == ["0001"]
    assert query(app_db, "SELECT v FROM kept") == [("a\\b",)]  # the backslash as written, not an escape

    # A no-transaction file that turns the setting off for itself does not change how the next statement is read.
    (directory / "0002_tricky.sql").write_text(
        "-- lifeguard: no-transaction\nSET standard_conforming_strings = off;\nINSERT INTO kept VALUES ('c\\d');\n"
    )
    migrate(app_db.direct_url, directory)
    assert query(app_db, "SELECT v FROM kept ORDER BY v") == [("a\\b",), ("c\\d",)]
