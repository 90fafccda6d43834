"""Fixtures: a throwaway Postgres cluster and PgBouncer processes on our rendered config.

Both run for real (Debian's Postgres 15, and the PgBouncer binary the image ships, installed by
scripts/install-pgbouncer.sh) as the ``postgres`` user with a raised
open-files limit, and are always stopped: on failure, on Ctrl-C, and on SIGTERM.
``tests/pgbouncer`` runs its tests on Debian 12's PgBouncer 1.18 as well.
"""

from __future__ import annotations

import itertools
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from lifeguard.stack.pooler import PoolerProcess, installed_version
from lifeguard.stack.postgres import PostgresCluster
from lifeguard.stack.system import find_pgbouncer
from pgbouncer.sizing import PoolBudget
from pgbouncer.tls import ServerCertificate
from pgbouncer.versions import PgBouncerVersion
from tests.support import (
    APP_PASSWORD,
    APP_USER,
    OWNER_PASSWORD,
    OWNER_USER,
    AppDatabase,
    RunningPooler,
    pooler_settings,
    running_cluster,
)


def _interrupt_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # pytest runs fixture finalizers on KeyboardInterrupt, not on a bare SIGTERM.
    raise KeyboardInterrupt(f"signal {signum}")


signal.signal(signal.SIGTERM, _interrupt_on_sigterm)

# ci_skips: under CI=true a skip outside its allowlist fails the run. pytester: tests/test_ci_skips.py.
pytest_plugins = ("tests.ci_skips", "pytester")


@pytest.fixture(scope="session")
def state_root() -> Iterator[Path]:
    # Not pytest's tmp_path: its parents are 0700 root, which the postgres user cannot traverse.
    root = Path(tempfile.mkdtemp(prefix="lifeguard-test-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster(state_root: Path) -> Iterator[PostgresCluster]:
    with running_cluster(state_root / "postgres", max_connections=100) as cluster:
        yield cluster


_db_counter = itertools.count(1)


@pytest.fixture
def app_db(pg_cluster: PostgresCluster) -> Iterator[AppDatabase]:
    """A fresh database owned by the owner role, the application role provisioned; dropped after the test."""
    dbname = f"app_{next(_db_counter)}"
    pg_cluster.create_app_database(OWNER_USER, OWNER_PASSWORD, dbname, createrole=True)
    db = AppDatabase(pg_cluster, APP_USER, APP_PASSWORD, dbname)
    db.provision()
    yield db
    pg_cluster.drop_database(dbname)


@pytest.fixture(scope="session")
def pgbouncer_binary() -> Path:
    """The PgBouncer the poolers run: the shipped release (overridden in tests/pgbouncer)."""
    return find_pgbouncer()


@pytest.fixture
def pgbouncer_version(pgbouncer_binary: Path) -> PgBouncerVersion:
    # Per test, not per session: a session-wide value would outlive tests/pgbouncer's switch of
    # binaries (installed_version caches the subprocess call per binary anyway).
    return installed_version(pgbouncer_binary)


@pytest.fixture
def start_pooler(
    app_db: AppDatabase, state_root: Path, pgbouncer_binary: Path, pgbouncer_version: PgBouncerVersion
) -> Iterator[Callable[..., RunningPooler]]:
    """Start PgBouncer on our rendered config for ``app_db``; overrides go to the settings."""
    started: list[PoolerProcess] = []
    counter = itertools.count(1)

    def start(nofile: int = 20000, certificate: ServerCertificate | None = None, **overrides: Any) -> RunningPooler:
        root = state_root / f"pooler-{app_db.dbname}-{next(counter)}"
        pool = PoolBudget(max_connections=app_db.cluster.max_connections).default_pool_size()
        settings = pooler_settings(
            app_db, root, pgbouncer_version, overrides.pop("default_pool_size", pool), **overrides
        )
        process = PoolerProcess(root=root, settings=settings, nofile=nofile, binary=pgbouncer_binary)
        started.append(process)
        # As shipped: the application role's SCRAM verifier in auth_file, not its password.
        process.start({app_db.user: app_db.verifier}, certificate=certificate)
        return RunningPooler(process, app_db)

    yield start
    for process in started:
        process.stop(signal.SIGQUIT, timeout=10)
