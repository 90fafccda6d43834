"""The pooler guard against a PgBouncer it cannot tell from Postgres by address.

A PgBouncer listening only on a Unix socket with Postgres's own port number, and reaching Postgres
over Postgres's socket, looks direct to the address check (the server says: a Unix socket, that
port); only its behaviour (two client connections on one backend) gives it away.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from lifeguard.stack.pooler import PoolerProcess, local_settings
from migrator.errors import PoolerRefused
from migrator.guard import address_check, check_direct, probe_pooling
from migrator.runner import migrate
from pgbouncer.settings import Upstream
from pgbouncer.versions import PgBouncerVersion
from tests.migrator.support import run_cli, secrets_of, table_exists
from tests.support import AppDatabase


def socket_url(db: AppDatabase, socket_dir: Path, port: int) -> str:
    user, password = quote(db.user, safe=""), quote(db.password, safe="")
    return f"postgresql://{user}:{password}@/{db.dbname}?host={quote(str(socket_dir))}&port={port}&connect_timeout=10"


@pytest.fixture
def socket_pooler(app_db: AppDatabase, state_root: Path, pgbouncer_version: PgBouncerVersion) -> Iterator[Path]:
    """PgBouncer (transaction mode) on a Unix socket only, with Postgres's port; returns its socket folder."""
    cluster = app_db.cluster
    root = state_root / f"socket-pooler-{app_db.dbname}"
    settings = local_settings(
        root,
        upstream_port=cluster.port,
        upstream_ca_file=cluster.ca_file,
        dbname=app_db.dbname,
        listen_port=cluster.port,
        default_pool_size=2,
        version=pgbouncer_version,
        listen_addr="",  # no TCP listener: Postgres holds that port
        upstream=Upstream(host=str(cluster.root), port=cluster.port, dbname=app_db.dbname),
        server_tls_sslmode="disable",  # no TLS over a Unix socket
        client_tls_sslmode="disable",
    )
    process = PoolerProcess(root=root, settings=settings)
    try:
        process.start({app_db.user: app_db.password})
        socket_file = root / f".s.PGSQL.{cluster.port}"
        deadline = time.monotonic() + 10
        while not socket_file.exists():  # start() waited on the TCP port, which Postgres answers
            assert time.monotonic() < deadline, f"PgBouncer made no socket:\n{process.log_tail()}"
            time.sleep(0.05)
        process.refresh_pid_file()  # the pid file may name runuser: it was written before PgBouncer forked
        yield root
    finally:
        process.stop(signal.SIGQUIT, timeout=10)


def test_socket_pooler_passes_the_address_check_but_not_the_behaviour_check(
    app_db: AppDatabase, socket_pooler: Path
) -> None:
    with psycopg.connect(socket_url(app_db, socket_pooler, app_db.cluster.port), autocommit=True) as conn:
        assert not address_check(conn).proxied  # the blind spot: addresses alone cannot tell
        probe = probe_pooling(conn)
        assert probe.multiplexed, probe
        with pytest.raises(PoolerRefused) as refused:
            check_direct(conn)
    message = str(refused.value)
    assert "transaction pooler" in message and "DATABASE_URL_UNPOOLED" in message
    assert app_db.password not in message


def test_migration_through_a_socket_pooler_is_refused(
    app_db: AppDatabase, socket_pooler: Path, sample_dir: Path
) -> None:
    with pytest.raises(PoolerRefused):
        migrate(socket_url(app_db, socket_pooler, app_db.cluster.port), sample_dir)
    assert not table_exists(app_db, "lifeguard_schema_migrations")


def test_migrator_cli_exits_3_through_a_socket_pooler(
    app_db: AppDatabase, socket_pooler: Path, sample_dir: Path
) -> None:
    url = socket_url(app_db, socket_pooler, app_db.cluster.port)
    proc = run_cli(["--migrations-dir", str(sample_dir)], {"DATABASE_URL_UNPOOLED": url}, [*secrets_of(app_db), url])
    assert proc.returncode == 3, proc.stderr
    assert "refusing to migrate through a transaction pooler" in proc.stderr
    assert not table_exists(app_db, "lifeguard_schema_migrations")


def test_direct_connections_are_not_multiplexed(app_db: AppDatabase) -> None:
    for url in (app_db.direct_url, socket_url(app_db, app_db.cluster.root, app_db.cluster.port)):
        with psycopg.connect(url, autocommit=True) as conn:
            probe = probe_pooling(conn)
            assert not probe.multiplexed and probe.first == probe.second and probe.other not in (None, probe.first)
            check_direct(conn)
