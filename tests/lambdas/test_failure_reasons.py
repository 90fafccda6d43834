"""Every reason a function can answer 503 with, produced for real: the PgBouncer the suite runs (the
shipped release), a Postgres of this module's own that the tests stop, fill and lock.

The reason is what a caller acts on (``retryable``, the message), so each one is checked on the
wording the real pooler sends today, not on hand-typed strings: a Postgres stopped behind a running
PgBouncer (an RDS reboot or failover), a PgBouncer that never reached its database, a lock wait, a
full pool, a full Postgres.
"""

from __future__ import annotations

import ast
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lambdas import read_invoices
from lambdas.db import _MESSAGES, ClientSettings, Database, DatabaseUnavailable
from lifeguard.stack.pooler import PoolerProcess
from lifeguard.stack.postgres import PostgresCluster
from lifeguard.stack.system import free_port
from pgbouncer.settings import Upstream
from pgbouncer.versions import PgBouncerVersion
from tests.lambdas.support import Ledger, apply_migrations, body
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

TESTS = Path(__file__).resolve().parents[1]
# Small, so a handful of idle connections fills it (3 of them reserved for superusers).
MAX_CONNECTIONS = 12
# PgBouncer's interval after a failed server login in which it refuses new clients at once: long
# enough to outlast a queued call's query_wait_timeout (2 s) on a loaded machine.
LOGIN_RETRY_S = 10

# Where each reason a function can answer with is produced against the real pooler.
REASON_TESTS = {
    "unreachable": "lambdas/test_handlers.py::test_unreachable_database_is_503",
    "authentication_failed": "lambdas/test_handlers.py::test_wrong_password_is_503_not_retryable_and_never_echoed",
    "pool_timeout": "lambdas/test_handlers.py::test_pool_exhausted_past_query_wait_timeout_is_503_then_recovers",
    "overloaded": "lambdas/test_failure_reasons.py::test_full_pooler_is_overloaded",
    "database_unreachable": "lambdas/test_failure_reasons.py::test_postgres_stopped_behind_a_running_pgbouncer",
    "connection_lost": "lambdas/test_client.py::test_connection_lost_mid_transaction_is_not_retried",
    "statement_timeout": "lambdas/test_handlers.py::test_statement_timeout_is_set_locally_and_answers_503",
    "lock_timeout": "lambdas/test_failure_reasons.py::test_lock_wait_past_lock_timeout",
    "outcome_unknown": "lambdas/test_client.py::test_lost_commit_is_outcome_unknown_and_a_retry_charges_once",
}


def test_every_reason_has_a_test_against_the_real_pooler() -> None:
    assert set(REASON_TESTS) == set(_MESSAGES)
    for reason, where in REASON_TESTS.items():
        path, name = where.split("::")
        tree = ast.parse((TESTS / path).read_text())
        defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        assert name in defined, f"{reason}: no test {where}"


@pytest.fixture(scope="module")
def own_cluster(state_root: Path) -> Iterator[PostgresCluster]:
    """A Postgres only this module uses: the tests stop it and fill its slots."""
    with running_cluster(state_root / "reasons-postgres", max_connections=MAX_CONNECTIONS) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def own_db(own_cluster: PostgresCluster) -> AppDatabase:
    own_cluster.create_app_database(OWNER_USER, OWNER_PASSWORD, "reasons", createrole=True)
    db = AppDatabase(own_cluster, APP_USER, APP_PASSWORD, "reasons")
    db.provision()
    apply_migrations(db)
    return db


@pytest.fixture
def own_pooler(
    own_db: AppDatabase, own_cluster: PostgresCluster, state_root: Path, pgbouncer_binary: Path,
    pgbouncer_version: PgBouncerVersion,
) -> Iterator[Callable[..., RunningPooler]]:
    """Start PgBouncer (the suite's binary, on the shipped settings) in front of this module's Postgres."""
    started: list[PoolerProcess] = []

    def start(**overrides: Any) -> RunningPooler:
        root = state_root / f"reasons-pooler-{len(started) + 1}-{time.monotonic_ns()}"
        settings = pooler_settings(own_db, root, pgbouncer_version, overrides.pop("default_pool_size", 2),
                                   **overrides)
        process = PoolerProcess(root=root, settings=settings, binary=pgbouncer_binary)
        started.append(process)
        process.start({own_db.user: own_db.verifier})
        return RunningPooler(process, own_db)

    yield start
    for process in started:
        process.stop(signal.SIGQUIT, timeout=10)
    own_cluster.start()  # a test that stopped it leaves it running for the next


def _reason(instance: Database) -> tuple[str, bool]:
    response = read_invoices.handle({"org_id": 1}, instance)
    assert response["statusCode"] == 503, response
    payload = body(response)
    assert payload["error"] == "database_unavailable"
    return payload["reason"], payload["retryable"]


def _instance(url: str) -> Database:
    return Database(url=url, settings=ClientSettings(), env={})


def _until_served(instance: Database, timeout: float) -> float:
    """Seconds until a call is served again (each failing call answers 503 at once)."""
    started = time.monotonic()
    while read_invoices.handle({"org_id": 1}, instance)["statusCode"] == 503:
        assert time.monotonic() - started < timeout, "not served again"
        time.sleep(0.2)
    return time.monotonic() - started


def test_postgres_stopped_behind_a_running_pgbouncer(
    own_pooler: Callable[..., RunningPooler], own_cluster: PostgresCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """An RDS reboot or failover: PgBouncer is up, Postgres is not.

    A call already queued in PgBouncer when its server login fails waits out ``query_wait_timeout``
    (``pool_timeout``: all the client is told, on 1.24). After that failed login PgBouncer refuses new clients
    at once for ``server_login_retry`` seconds, quoting the cached error: ``database_unreachable``,
    retryable, not ``unreachable`` (which blames the pooler) nor ``authentication_failed`` (which
    says never to retry). Once Postgres is back, calls are served again without a restart.
    """
    pooler = own_pooler(query_wait_timeout=2, server_login_retry=LOGIN_RETRY_S)
    warm = _instance(pooler.url())
    assert read_invoices.handle({"org_id": 1}, warm)["statusCode"] == 200
    own_cluster.stop()
    # 1.24 keeps a queued client waiting after a failed connect (query_wait_timeout); a release that
    # fails queued clients fast would answer with the cached error instead. Retryable either way.
    assert _reason(warm) in {("pool_timeout", True), ("database_unreachable", True)}

    cold = _instance(pooler.url())
    caplog.clear()
    # Refused from the cached error (a queued call would have waited out query_wait_timeout instead).
    assert _reason(cold) == ("database_unreachable", True)
    # The pooler's words, as the function logs them: 1.18 said "cannot connect to server", later
    # releases quote the cached error ("server login has been failing, cached error: ...").
    assert "server login has been failing" in caplog.text or "cannot connect to server" in caplog.text

    own_cluster.start()
    _until_served(cold, timeout=LOGIN_RETRY_S + 30)
    assert read_invoices.handle({"org_id": 1}, warm)["statusCode"] == 200


def test_pgbouncer_that_never_reached_its_database(own_pooler: Callable[..., RunningPooler]) -> None:
    """A pooler pointed at a database that is not there: until it has logged in once it cannot finish
    a client's login, and says ``client_login_timeout (server down)`` once that timeout passes."""
    dead = Upstream(host="localhost", port=free_port(), dbname="reasons")
    pooler = own_pooler(upstream=dead, client_login_timeout=1)
    assert _reason(_instance(pooler.url())) == ("database_unreachable", True)
    assert "client_login_timeout" in pooler.process.log_text()


def test_full_pooler_is_overloaded(own_pooler: Callable[..., RunningPooler]) -> None:
    """Past ``max_client_conn`` PgBouncer refuses the login outright: ``overloaded``, retry with backoff."""
    pooler = own_pooler(max_client_conn=2)
    held = [psycopg.connect(pooler.url()) for _ in range(2)]
    try:
        assert _reason(_instance(pooler.url())) == ("overloaded", True)
    finally:
        for conn in held:
            conn.close()
    assert "no more connections allowed (max_client_conn)" in pooler.process.log_text()


def test_full_postgres_behind_pgbouncer_is_overloaded(
    own_pooler: Callable[..., RunningPooler], own_db: AppDatabase
) -> None:
    """Postgres out of slots (something else holds them all): PgBouncer passes the refusal on, first as
    Postgres' own FATAL and then as its cached login error; both are ``overloaded``."""
    pooler = own_pooler(default_pool_size=MAX_CONNECTIONS)
    hogs: list[psycopg.Connection[Any]] = []
    try:
        with pytest.raises(psycopg.OperationalError):
            while True:
                hogs.append(psycopg.connect(own_db.app_direct_url))
        assert _reason(_instance(pooler.url())) == ("overloaded", True)
        assert _reason(_instance(pooler.url())) == ("overloaded", True)  # within the retry interval
    finally:
        for conn in hogs:
            conn.close()


def test_lock_wait_past_lock_timeout(own_pooler: Callable[..., RunningPooler], own_db: AppDatabase) -> None:
    """A function that bounds its lock waits (``SET LOCAL lock_timeout``) and meets a row another
    transaction holds: ``lock_timeout``, retryable, nothing written, the connection kept."""
    pooler = own_pooler()
    ledger = Ledger(own_db)
    org = ledger.new_org(f"locked-{time.monotonic_ns()}", 100)
    instance = _instance(pooler.url())
    with ledger.connect() as holder, holder.transaction():
        holder.execute("SELECT 1 FROM orgs WHERE id = %s FOR UPDATE", (org,))
        with pytest.raises(DatabaseUnavailable) as info, instance.transaction() as conn:
            conn.execute("SET LOCAL lock_timeout = '200ms'")
            conn.execute("UPDATE orgs SET credits = 0 WHERE id = %s", (org,))
    assert (info.value.reason, info.value.retryable) == ("lock_timeout", True)
    assert str(info.value) == _MESSAGES["lock_timeout"][0]
    assert ledger.credits(org) == 100
    with instance.transaction() as conn:
        conn.execute("UPDATE orgs SET credits = 1 WHERE id = %s", (org,))
    assert ledger.credits(org) == 1 and instance.stats.connects == 1
