"""``python -m migrator run -- COMMAND``: any migration command behind the guard, the lock and the role (#25.1)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from migrator.contract import APP_ROLE_B_VERIFIER_ENV, APP_ROLE_ENV, APP_ROLE_VERIFIER_ENV, alternate_role
from migrator.errors import ExitCode
from pgbouncer.scram import scram_verifier
from tests.migrator.support import (
    REPO_ROOT,
    cli_env,
    holding_the_lock,
    lock_waiters,
    migrator_argv,
    query,
    run_cli,
    secrets_of,
    started,
    wait_until,
)
from tests.support import APP_SALT, AppDatabase, RunningPooler

# What the command (a stand-in tool, in Python) reports about itself, read back by the tests.
TOOL = textwrap.dedent("""\
    import os, sys, psycopg
    env = os.environ
    print("same url:", env["DATABASE_URL"] == env["DATABASE_URL_UNPOOLED"])
    print("verifier passed on:", "LIFEGUARD_APP_ROLE_VERIFIER" in env or "LIFEGUARD_APP_ROLE_B_VERIFIER" in env)
    print("the url:", env["DATABASE_URL"])  # a tool that quotes its URL: the wrapper masks it
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("CREATE TABLE widgets (id bigserial PRIMARY KEY, name text)")
        conn.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
    # Mid-run, as the application role: the tool's bookkeeping table is not granted, even now.
    with psycopg.connect(env["APP_URL"], autocommit=True) as app:
        try:
            app.execute("INSERT INTO alembic_version VALUES ('forged')")
            print("mid-run bookkeeping write: allowed")
        except psycopg.errors.InsufficientPrivilege:
            print("mid-run bookkeeping write: refused")
    sys.exit(int(env.get("TOOL_EXIT", "0")))
""")


def role_env(db: AppDatabase, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL_UNPOOLED": db.direct_url, APP_ROLE_ENV: db.user, APP_ROLE_VERIFIER_ENV: db.verifier,
            **extra}


def tool(tmp_path: Path) -> list[str]:
    script = tmp_path / "tool.py"
    script.write_text(TOOL)
    return [sys.executable, str(script)]


def test_the_command_gets_the_direct_url_and_the_role_its_new_tables_but_not_the_bookkeeping(
    app_db: AppDatabase, tmp_path: Path
) -> None:
    # With the second login role of a rotation too: neither verifier reaches the tool.
    second = scram_verifier("second-login-role", APP_SALT, 16)
    env = role_env(app_db, APP_URL=app_db.app_direct_url, **{APP_ROLE_B_VERIFIER_ENV: second})
    try:
        proc = run_cli(["run", "--", *tool(tmp_path)], env, [*secrets_of(app_db), second])
    finally:
        with app_db.cluster.connect_superuser(app_db.dbname) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {0}; DROP ROLE IF EXISTS {0}").format(
                sql.Identifier(alternate_role(app_db.user))))
    assert proc.returncode == 0, proc.stderr
    assert f"application role {alternate_role(app_db.user)} created" in proc.stderr
    assert "same url: True" in proc.stdout and "verifier passed on: False" in proc.stdout
    assert "the url: ***" in proc.stdout  # the whole URL masked
    assert "mid-run bookkeeping write: refused" in proc.stdout
    assert "holding the migration lock" in proc.stderr and "the command exited with 0" in proc.stderr
    with psycopg.connect(app_db.app_direct_url, autocommit=True) as app:
        app.execute("INSERT INTO widgets (name) VALUES ('new table, granted after the run')")
        for statement in ("SELECT * FROM alembic_version", "INSERT INTO alembic_version VALUES ('x')",
                          "UPDATE alembic_version SET version_num = 'x'", "DELETE FROM alembic_version"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute(statement)
    # The default privileges are back: a table the owner makes later is usable at once.
    query(app_db, "CREATE TABLE later (id int)")
    with psycopg.connect(app_db.app_direct_url, autocommit=True) as app:
        app.execute("INSERT INTO later VALUES (1)")


@pytest.mark.parametrize("code", [1, 5, 42])
def test_the_command_exit_code_is_passed_through_and_the_role_is_provisioned_anyway(
    app_db: AppDatabase, tmp_path: Path, code: int
) -> None:
    env = role_env(app_db, APP_URL=app_db.app_direct_url, TOOL_EXIT=str(code))
    proc = run_cli(["run", "--", *tool(tmp_path)], env, secrets_of(app_db))
    assert proc.returncode == code, proc.stderr
    # The tool failed after creating a table: provisioned again all the same.
    with psycopg.connect(app_db.app_direct_url, autocommit=True) as app:
        app.execute("INSERT INTO widgets (name) VALUES ('x')")


def test_a_pooled_url_is_refused_before_the_command_runs(
    app_db: AppDatabase, start_pooler: Callable[..., RunningPooler], tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    pooled = start_pooler().url()
    proc = run_cli(["run", "--", "touch", str(marker)], {"DATABASE_URL_UNPOOLED": pooled},
                   [*secrets_of(app_db), pooled])
    assert proc.returncode == ExitCode.REFUSED, proc.stderr
    assert "refusing to migrate through a pooler" in proc.stderr
    assert not marker.exists()


def test_a_second_run_waits_bounded_then_stops_without_running(app_db: AppDatabase, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with holding_the_lock(app_db):
        proc = run_cli(["run", "--lock-timeout", "0.5", "--", "touch", str(marker)],
                       {"DATABASE_URL_UNPOOLED": app_db.direct_url}, secrets_of(app_db))
    assert proc.returncode == ExitCode.LOCK_TIMEOUT, proc.stderr
    assert "timed out after 0.5 s waiting for the migration lock" in proc.stderr
    assert not marker.exists()


def test_two_runs_serialise(app_db: AppDatabase, tmp_path: Path) -> None:
    log, gate = tmp_path / "log", tmp_path / "gate"
    script = tmp_path / "gated.py"
    # The command holds its run until the test opens the gate, once the other run waits for the lock.
    script.write_text(textwrap.dedent(f"""\
        import os, time
        with open({str(log)!r}, "a") as f: f.write("start\\n")
        deadline = time.monotonic() + 60
        while not os.path.exists({str(gate)!r}) and time.monotonic() < deadline:
            time.sleep(0.05)
        with open({str(log)!r}, "a") as f: f.write("end\\n")
    """))
    argv = migrator_argv("run", "--lock-timeout", "60", "--", sys.executable, str(script))
    with started(argv, {"DATABASE_URL_UNPOOLED": app_db.direct_url}, 2) as procs:
        wait_until(lambda: lock_waiters(app_db) == 1, 30, "the second run to wait for the lock")
        gate.touch()
        results = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err for _, err in results]
    assert log.read_text().split() == ["start", "end", "start", "end"]


def test_signals_are_forwarded_and_the_command_decides_the_exit_code(app_db: AppDatabase, tmp_path: Path) -> None:
    script = tmp_path / "trap.py"
    ready = tmp_path / "ready"
    script.write_text(textwrap.dedent(f"""\
        import pathlib, signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: (print("tool: got SIGTERM, rolling back", flush=True), sys.exit(9)))
        pathlib.Path({str(ready)!r}).touch()
        time.sleep(60)
    """))
    proc = subprocess.Popen(migrator_argv("run", "--", sys.executable, str(script)),
                            env=cli_env({"DATABASE_URL_UNPOOLED": app_db.direct_url}), cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(ready.exists, 30, "the command to start")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 9, err
    assert "got SIGTERM, rolling back" in out and "got signal 15" in err


def test_a_command_ended_by_a_signal_exits_128_plus_its_number(app_db: AppDatabase) -> None:
    proc = run_cli(["run", "--", sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"],
                   {"DATABASE_URL_UNPOOLED": app_db.direct_url}, secrets_of(app_db))
    assert proc.returncode == 128 + signal.SIGKILL, proc.stderr


def test_a_missing_command_and_no_command(app_db: AppDatabase) -> None:
    env = {"DATABASE_URL_UNPOOLED": app_db.direct_url}
    missing = run_cli(["run", "--", "no-such-migration-tool", "up"], env, secrets_of(app_db))
    assert missing.returncode == 127 and "command not found: no-such-migration-tool" in missing.stderr
    empty = run_cli(["run"], env, secrets_of(app_db))
    assert empty.returncode == 2 and "no command to run" in empty.stderr


def test_the_pooled_url_alone_is_refused_by_name(tmp_path: Path) -> None:
    proc = run_cli(["run", "--", "true"], {"DATABASE_URL": "postgresql://app:pw-secret@127.0.0.1:1/db"},
                   ["pw-secret"])
    assert proc.returncode == ExitCode.CONFIG
    assert "DATABASE_URL is set, but the migrator never uses it" in proc.stderr



def test_a_lost_lock_stops_the_command(app_db: AppDatabase, tmp_path: Path) -> None:
    # The command cuts the wrapper's lock session, as a lost connection would, then keeps running.
    script = tmp_path / "cut.py"
    script.write_text(textwrap.dedent("""\
        import os, time, psycopg
        with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE granted AND mode = 'ExclusiveLock'"
                         " AND relation = 'lifeguard_migration_lock'::regclass")
        print("cut the lock session", flush=True)
        time.sleep(60)
        print("still running after a minute", flush=True)
    """))
    proc = run_cli(["run", "--", sys.executable, str(script)], role_env(app_db), secrets_of(app_db))
    assert proc.returncode == ExitCode.UNAVAILABLE, proc.stderr
    assert "cut the lock session" in proc.stdout and "still running" not in proc.stdout
    assert "lost the migration lock's connection: stopping the command" in proc.stderr
