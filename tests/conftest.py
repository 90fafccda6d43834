"""Fixtures: a throwaway Postgres cluster and PgBouncer processes on our rendered config.

Both run for real (Debian's Postgres 15, and the PgBouncer release the image ships, built from
Debian 13's source by scripts/build-pgbouncer.sh) as the ``postgres`` user with a raised
open-files limit, and are always stopped: on failure, on Ctrl-C, and on SIGTERM.
``tests/pgbouncer`` runs its tests on Debian 12's PgBouncer 1.18 as well.
"""

from __future__ import annotations

import itertools
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg
import pytest

from lifeguard.local.pooler import PoolerProcess, installed_version, local_settings
from lifeguard.local.postgres import PostgresCluster, make_dsn
from lifeguard.local.system import find_pgbouncer, free_port
from migrator.roles import AppRole, provision_app_role
from pgbouncer.scram import scram_verifier
from pgbouncer.settings import PoolerSettings
from pgbouncer.sizing import PoolBudget
from pgbouncer.tls import ServerCertificate
from pgbouncer.versions import PgBouncerVersion

# Every printable ASCII class that broke other images' rendering: quotes, spaces, @ : % # ; $ *.
APP_PASSWORD = "s3cr\"et' pa@ss:w%rd#;$*&\\=?/x"
APP_USER = "lifeguard_app"
# The schema owner the migrations run as (the RDS master user's stand-in): CREATEROLE, not superuser.
OWNER_USER = "lifeguard_owner"
OWNER_PASSWORD = "0wn#er 'p@ss\"w:rd%/?&="
# A fixed salt: the verifier is stable, as the stack's is while the password stays the same.
APP_SALT = bytes.fromhex("6c69666567756172642d746573747321")


def _interrupt_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # pytest runs fixture finalizers on KeyboardInterrupt, not on a bare SIGTERM.
    raise KeyboardInterrupt(f"signal {signum}")


signal.signal(signal.SIGTERM, _interrupt_on_sigterm)


@pytest.fixture(scope="session")
def state_root() -> Iterator[Path]:
    # Not pytest's tmp_path: its parents are 0700 root, which the postgres user cannot traverse.
    root = Path(tempfile.mkdtemp(prefix="lifeguard-test-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster(state_root: Path) -> Iterator[PostgresCluster]:
    cluster = PostgresCluster(root=state_root / "postgres", port=free_port(), max_connections=100, durable=False)
    cluster.init()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@dataclass(frozen=True)
class AppDatabase:
    """A database owned by :data:`OWNER_USER`, with the DML-only application role provisioned in it."""

    cluster: PostgresCluster
    user: str
    """The application role (what ``DATABASE_URL`` logs in as)."""
    password: str = field(repr=False)  # pytest prints fixture values when a test fails
    dbname: str
    owner: str = OWNER_USER
    owner_password: str = field(default=OWNER_PASSWORD, repr=False)

    @property
    def direct_url(self) -> str:
        """``DATABASE_URL_UNPOOLED``: the schema owner, straight to Postgres (what the migration job gets)."""
        return self.cluster.dsn(self.owner, self.owner_password, self.dbname)

    @property
    def app_direct_url(self) -> str:
        """The application role straight to Postgres (no function gets this; for checks)."""
        return self.cluster.dsn(self.user, self.password, self.dbname)

    @property
    def verifier(self) -> str:
        """The application role's SCRAM verifier: what the pooler's secret and ``pg_authid`` hold."""
        return scram_verifier(self.password, APP_SALT)

    def provision(self) -> None:
        """What the migration job does before migrating: the application role and its grants."""
        with psycopg.connect(self.direct_url, autocommit=True) as conn:
            provision_app_role(conn, AppRole(self.user, self.verifier), "public")


def pooler_settings(
    db: AppDatabase, root: Path, version: PgBouncerVersion, default_pool_size: int, **overrides: Any
) -> PoolerSettings:
    """The shipped settings for a PgBouncer in front of ``db`` on a free port (``local_settings``)."""
    return local_settings(
        root,
        upstream_port=db.cluster.port,
        upstream_ca_file=db.cluster.ca_file,
        dbname=db.dbname,
        listen_port=free_port(),
        default_pool_size=default_pool_size,
        version=version,
        **overrides,
    )


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


@dataclass
class RunningPooler:
    process: PoolerProcess
    db: AppDatabase

    @property
    def port(self) -> int:
        return self.process.settings.listen_port

    def url(self, user: str | None = None, password: str | None = None, **params: Any) -> str:
        """The pooled URL, TLS required, not verified (``sslmode=require``: these poolers serve a
        self-signed certificate unless started with the stack's)."""
        return make_dsn(
            "127.0.0.1", self.port, user or self.db.user,
            self.db.password if password is None else password, self.db.dbname,
            **{"sslmode": "require", **params},
        )


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
