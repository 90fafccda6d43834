"""``python -m migrator`` as the image runs it: subprocesses, exit codes, concurrency, SIGKILL."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest

from lifeguard.aws.build_context import shared_packages
from lifeguard.stack.system import free_port
from migrator.errors import ExitCode
from tests.migrator.support import (
    REPO_ROOT,
    SAMPLE_FILES,
    assert_no_secret,
    cli_env,
    holding_the_lock,
    lock_waiters,
    migrator_argv,
    query,
    recorded_versions,
    run_cli,
    secrets_of,
    started,
    table_exists,
    wait_until,
    write_migrations,
)
from tests.support import AppDatabase, RunningPooler


def test_apply_status_and_exit_codes(app_db: AppDatabase, sample_dir: Path) -> None:
    env = {"DATABASE_URL_UNPOOLED": app_db.direct_url}
    secrets = secrets_of(app_db)
    folder = ["--migrations-dir", str(sample_dir)]

    dry = run_cli([*folder, "--dry-run"], env, secrets)
    assert dry.returncode == ExitCode.OK, dry.stderr
    assert "would apply 3" in dry.stdout and not table_exists(app_db, "orgs")

    applied = run_cli(folder, env, secrets)
    assert applied.returncode == ExitCode.OK, applied.stderr
    for name in SAMPLE_FILES:  # one line per migration, with its duration
        assert any(line.startswith(f"migrator: applied {name} in ") and line.endswith(" ms")
                   for line in applied.stderr.splitlines()), name
    assert f"localhost:{app_db.cluster.port}/{app_db.dbname}" in applied.stderr

    again = run_cli(folder, env, secrets)
    assert again.returncode == ExitCode.OK
    assert "nothing to apply: all 3 migration(s) are already applied" in again.stderr

    shown = run_cli(["status", *folder], env, secrets)
    assert shown.returncode == ExitCode.OK
    assert [line.split()[:2] for line in shown.stdout.splitlines()[1:]] == [["applied", n] for n in SAMPLE_FILES]

    edited = sample_dir / SAMPLE_FILES[1]
    edited.write_text(edited.read_text() + "-- edited\n")
    drift = run_cli(folder, env, secrets)
    assert drift.returncode == ExitCode.CHECKSUM_DRIFT
    assert SAMPLE_FILES[1] in drift.stderr
    drift_status = run_cli(["status", *folder], env, secrets)
    assert drift_status.returncode == ExitCode.CHECKSUM_DRIFT
    assert f"changed  {SAMPLE_FILES[1]}" in drift_status.stdout


def test_failed_migration_exit_code(app_db: AppDatabase, tmp_path: Path) -> None:
    directory = write_migrations(
        tmp_path / "m",
        {"0001_ok.sql": "CREATE TABLE ok_table (id int);\n", "0002_bad.sql": "CREATE TABLE bad (id int;\n"},
    )
    proc = run_cli(["--migrations-dir", str(directory)], {"DATABASE_URL_UNPOOLED": app_db.direct_url},
                   secrets_of(app_db))
    assert proc.returncode == ExitCode.MIGRATION_FAILED
    assert "0002_bad.sql failed and was rolled back" in proc.stderr
    assert recorded_versions(app_db) == ["0001"] and not table_exists(app_db, "bad")


def test_only_database_url_set_is_refused(app_db: AppDatabase, sample_dir: Path) -> None:
    # Even a perfectly good direct URL is not used when it comes in DATABASE_URL.
    proc = run_cli(["--migrations-dir", str(sample_dir)], {"DATABASE_URL": app_db.direct_url}, secrets_of(app_db))
    assert proc.returncode == ExitCode.CONFIG
    assert "DATABASE_URL is set, but the migrator never uses it" in proc.stderr
    assert "Set DATABASE_URL_UNPOOLED" in proc.stderr
    assert not table_exists(app_db, "lifeguard_schema_migrations")

    nothing = run_cli(["status"], {}, secrets_of(app_db))
    assert nothing.returncode == ExitCode.CONFIG and "no database URL" in nothing.stderr


def test_pooled_url_in_the_direct_variable_is_refused(
    app_db: AppDatabase, start_pooler: Callable[..., RunningPooler], sample_dir: Path
) -> None:
    pooler = start_pooler()
    proc = run_cli(["--migrations-dir", str(sample_dir)], {"DATABASE_URL_UNPOOLED": pooler.url()}, secrets_of(app_db))
    assert proc.returncode == ExitCode.REFUSED
    assert "refusing to migrate through a pooler" in proc.stderr
    assert "Use the direct URL, DATABASE_URL_UNPOOLED" in proc.stderr
    assert not table_exists(app_db, "lifeguard_schema_migrations")


def test_unreachable_database(app_db: AppDatabase, sample_dir: Path) -> None:
    url = app_db.cluster.dsn(app_db.user, app_db.password, app_db.dbname).replace(
        f":{app_db.cluster.port}/", f":{free_port()}/"
    )
    proc = run_cli(["--migrations-dir", str(sample_dir)], {"DATABASE_URL_UNPOOLED": url},
                   [*secrets_of(app_db), url])
    assert proc.returncode == ExitCode.UNAVAILABLE
    assert "cannot connect to localhost:" in proc.stderr


def test_bad_input_exit_code(app_db: AppDatabase, tmp_path: Path) -> None:
    env = {"DATABASE_URL_UNPOOLED": app_db.direct_url}
    directory = write_migrations(tmp_path / "m", {"1_ok.sql": "SELECT 1;\n", "002-bad.sql": "SELECT 2;\n"})
    files = run_cli(["--migrations-dir", str(directory)], env, secrets_of(app_db))
    assert files.returncode == ExitCode.CONFIG and "002-bad.sql: malformed name" in files.stderr

    timeout = run_cli(["--lock-timeout", "-1"], env, secrets_of(app_db))
    assert timeout.returncode == 2 and "--lock-timeout" in timeout.stderr
    combined = run_cli(["status", "--dry-run"], env, secrets_of(app_db))
    assert combined.returncode == 2 and "--dry-run goes with 'apply'" in combined.stderr


def test_concurrent_runs_apply_each_migration_once(app_db: AppDatabase, tmp_path: Path) -> None:
    directory = write_migrations(
        tmp_path / "m",
        {
            "0001_log.sql": "CREATE TABLE apply_log (version text NOT NULL);\nINSERT INTO apply_log VALUES ('0001');\n",
            "0002_slow.sql": "SELECT pg_sleep(1);\nINSERT INTO apply_log VALUES ('0002');\n",
            "0003_more.sql": "INSERT INTO apply_log VALUES ('0003');\n",
        },
    )
    argv = migrator_argv("--migrations-dir", str(directory), "--lock-timeout", "60")
    # The test holds the lock until both runs queue behind it, so they overlap for certain; the
    # slow migration then keeps the loser waiting while the winner applies.
    holder = ExitStack()
    holder.enter_context(holding_the_lock(app_db))
    with holder, started(argv, {"DATABASE_URL_UNPOOLED": app_db.direct_url}, 2) as procs:
        wait_until(lambda: lock_waiters(app_db) == 2, 30, "both runs to wait for the lock")
        holder.close()  # the test's "run" ends: one waiting run gets the lock, the other waits for it
        outputs = [proc.communicate(timeout=60) for proc in procs]
        codes = [proc.returncode for proc in procs]

    assert codes == [0, 0], [err for _, err in outputs]
    errs = sorted((err for _, err in outputs), key=lambda e: "nothing to apply" in e)
    assert "applied 3 migration(s)" in errs[0]
    assert "nothing to apply: all 3 migration(s) are already applied" in errs[1]
    assert all("waiting up to 60 s" in err for err in errs)
    assert query(app_db, "SELECT version FROM apply_log ORDER BY version") == [("0001",), ("0002",), ("0003",)]
    assert recorded_versions(app_db) == ["0001", "0002", "0003"]


def test_lock_timeout_gives_up_with_a_clear_message(app_db: AppDatabase, sample_dir: Path) -> None:
    env = {"DATABASE_URL_UNPOOLED": app_db.direct_url}
    with holding_the_lock(app_db):
        waited = run_cli(["--migrations-dir", str(sample_dir), "--lock-timeout", "0.5"], env, secrets_of(app_db))
        no_wait = run_cli(["--migrations-dir", str(sample_dir), "--lock-timeout", "0"], env, secrets_of(app_db))
    assert waited.returncode == ExitCode.LOCK_TIMEOUT
    assert "timed out after 0.5 s waiting for the migration lock" in waited.stderr
    assert "another migration run is still going" in waited.stderr
    assert no_wait.returncode == ExitCode.LOCK_TIMEOUT and "the lock timeout is 0" in no_wait.stderr
    assert not table_exists(app_db, "orgs")
    free = run_cli(["--migrations-dir", str(sample_dir), "--lock-timeout", "0"], env, secrets_of(app_db))
    assert free.returncode == ExitCode.OK  # the lock is free again: no wait needed


def test_sigkill_mid_migration_leaves_nothing_half_applied(app_db: AppDatabase, tmp_path: Path) -> None:
    directory = write_migrations(
        tmp_path / "m",
        {
            "0001_first.sql": "CREATE TABLE first_table (id int);\n",
            "0002_slow.sql": "CREATE TABLE half_applied (id int);\nSELECT pg_sleep(60);\n",
        },
    )
    env = {"DATABASE_URL_UNPOOLED": app_db.direct_url}
    sleeping = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lifeguard-migrator'"
        " AND state = 'active' AND query LIKE '%%pg_sleep(60)%%' AND datname = %s"
    )
    with started(migrator_argv("--migrations-dir", str(directory)), env) as (proc,):
        wait_until(lambda: query(app_db, sleeping, (app_db.dbname,))[0][0] == 1, 30, "the slow migration")
        proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == -9

    assert recorded_versions(app_db) == ["0001"]
    assert not table_exists(app_db, "half_applied")
    # Right away, a new run gets the lock: the dead run's backend noticed its client was gone and
    # rolled back (client_connection_check_interval) instead of sleeping out its 60 s holding the lock.
    (directory / "0002_slow.sql").write_text("CREATE TABLE half_applied (id int);\n")  # never recorded
    rerun = run_cli(["--migrations-dir", str(directory), "--lock-timeout", "20"], env, secrets_of(app_db))
    assert rerun.returncode == ExitCode.OK, rerun.stderr
    assert recorded_versions(app_db) == ["0001", "0002"]
    assert query(app_db, sleeping, (app_db.dbname,))[0][0] == 0


def test_runs_from_the_image_layout_without_the_rest_of_the_repo(app_db: AppDatabase, tmp_path: Path) -> None:
    """The image holds migrator/ and the shared packages under /app: run from such a copy, import nothing else."""
    app = tmp_path / "app"
    shutil.copytree(REPO_ROOT / "migrator", app / "migrator", ignore=shutil.ignore_patterns("__pycache__"))
    for shared in shared_packages():
        shutil.copytree(shared, app / shared.name, ignore=shutil.ignore_patterns("__pycache__"))
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['migrator']\n"
        "try:\n"
        "    runpy.run_module('migrator', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "ours = {'lifeguard', 'pgbouncer', 'lambdas', 'infra', 'tests'}\n"
        "print('FOREIGN', sorted(m for m in sys.modules if m.split('.')[0] in ours))\n"
        "print('FROM', *(sys.modules[m].__file__ for m in ('migrator', 'redaction', 'database_urls')))\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], env=cli_env({"DATABASE_URL_UNPOOLED": app_db.direct_url}), cwd=app,
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert_no_secret(proc.stdout + proc.stderr, secrets_of(app_db))
    assert proc.returncode == 0, proc.stderr
    assert "FOREIGN []" in proc.stdout
    from_app = " ".join(str(app / m / "__init__.py") for m in ("migrator", "redaction", "database_urls"))
    assert f"FROM {from_app}" in proc.stdout
    assert recorded_versions(app_db) == ["0001", "0002", "0003", "0004", "0005"]  # the bundled migrations


def test_help_lists_the_exit_codes() -> None:
    proc = subprocess.run(migrator_argv("--help"), env=cli_env({}), cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0
    assert "DATABASE_URL_UNPOOLED_SECRET_ARN" in proc.stdout and "4  timed out waiting" in proc.stdout


@pytest.mark.parametrize("command", [[], ["status"]])
def test_database_url_is_ignored_when_the_direct_one_is_set(
    app_db: AppDatabase, sample_dir: Path, command: list[str]
) -> None:
    bogus = f"postgresql://nobody:nothing@127.0.0.1:{free_port()}/nowhere"
    proc = run_cli([*command, "--migrations-dir", str(sample_dir)],
                   {"DATABASE_URL_UNPOOLED": app_db.direct_url, "DATABASE_URL": bogus}, secrets_of(app_db))
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert "direct URL from DATABASE_URL_UNPOOLED" in proc.stderr


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b"CREATE TABLE a (id int);\n-- \x00\nCREATE TABLE b (id int);\n", 2),
        (b"-- lifeguard: no-transaction\nCREATE TABLE a (id int);\nINSERT INTO a VALUES (1)\x00,(2),(3);\n", 3),
    ],
)
def test_nul_byte_is_refused_before_anything_runs(
    app_db: AppDatabase, tmp_path: Path, data: bytes, line: int
) -> None:
    # libpq would send only the text before the NUL, and the file would be recorded as applied.
    directory = tmp_path / "m"
    directory.mkdir()
    (directory / "0001_x.sql").write_bytes(data)
    env = {"DATABASE_URL_UNPOOLED": app_db.direct_url}
    proc = run_cli(["--migrations-dir", str(directory)], env, secrets_of(app_db))
    assert proc.returncode == ExitCode.CONFIG, proc.stderr
    assert f"0001_x.sql, line {line}: NUL byte at byte offset {data.index(0)}" in proc.stderr
    assert not table_exists(app_db, "a")
    assert recorded_versions(app_db) == []
