"""What the migrator tests share: temp migration folders, the CLI as a subprocess, the lock, leak checks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

from migrator.lock import LOCK_VIEW, MigrationLock, migration_lock
from tests.support import AppDatabase

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_FILES = ("0001_orgs_invoices_charges.sql", "0002_charges_balance_after.sql", "0003_seed_demo_orgs.sql")


def secrets_of(db: AppDatabase) -> list[str]:
    """Every form in which a password could leak: raw, percent-encoded, the whole URL, the verifier."""
    return [form for password in (db.password, db.owner_password)
            for form in (password, quote(password, safe=""), quote(password))] + [db.direct_url, db.verifier]


def assert_no_secret(text: str, secrets: Iterable[str]) -> None:
    # Report which form leaked by index only: pytest would print a string operand verbatim.
    leaked = [index for index, secret in enumerate(secrets) if secret and secret in text]
    assert not leaked, f"secret form(s) {leaked} appeared in the output"


def write_migrations(directory: Path, files: Mapping[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def query(db: AppDatabase, statement: Any, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(db.direct_url, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def table_exists(db: AppDatabase, name: str) -> bool:
    return bool(query(db, "SELECT to_regclass(%s) IS NOT NULL", (name,))[0][0])


def recorded_versions(db: AppDatabase) -> list[str]:
    if not table_exists(db, "lifeguard_schema_migrations"):
        return []
    return [r[0] for r in query(db, "SELECT version FROM lifeguard_schema_migrations ORDER BY version")]


@contextmanager
def holding_the_lock(db: AppDatabase) -> Iterator[MigrationLock]:
    """Hold the migration lock from the test, as another run (or a wrapped migration tool) would."""
    with migration_lock(db.direct_url, 0) as lock:
        yield lock


LOCK_WAITERS = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'relation' AND NOT granted"
    f" AND relation = to_regclass('{LOCK_VIEW}')"
)


def lock_waiters(db: AppDatabase) -> int:
    """How many sessions wait for the migration lock."""
    return int(query(db, LOCK_WAITERS)[0][0])


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def cli_env(extra: Mapping[str, str]) -> dict[str, str]:
    """A clean environment: nothing of ours leaks in from the test runner's (no DATABASE_URL...)."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def migrator_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "migrator", *args]


@contextmanager
def started(argv: list[str], env: dict[str, str], count: int = 1) -> Iterator[list[subprocess.Popen[str]]]:
    """Start migrator processes; any still running when the block exits is killed."""
    procs = [
        subprocess.Popen(
            argv, env=cli_env(env), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(count)
    ]
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=30)


def run_cli(
    args: Sequence[str],
    env: Mapping[str, str],
    secrets: Iterable[str],
    cwd: Path = REPO_ROOT,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``python -m migrator ARGS``; fails the test if any secret shows up on stdout or stderr."""
    proc = subprocess.run(
        migrator_argv(*args), env=cli_env(env), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert_no_secret(proc.stdout + proc.stderr, secrets)
    return proc
