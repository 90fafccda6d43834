"""Why the client is built the way it is: what breaks through a transaction pooler, and that it doesn't.

Measured against the shipped PgBouncer (1.24.1) in transaction mode, with small pools so that
clients share server connections: with ``max_prepared_statements = 0`` (what 1.18 always is) plain
psycopg collides; with the shipped 200, PgBouncer tracks prepared statements and nothing fails.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from lambdas.db import Database
from tests.lambdas.support import POOL_SIZE, Ledger
from tests.support import AppDatabase, RunningPooler

MakeDb = Callable[..., Database]
QUERY = "SELECT credits FROM orgs WHERE id = %s"
INSTANCES = 40
RUNS = 10


def _psycopg_default(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    # Exactly what a function gets from plain psycopg: prepare_threshold=5 (the default).
    return psycopg.connect(url, autocommit=True)


def test_default_prepared_statements_collide_on_a_shared_server_connection(
    schema_db: AppDatabase, start_pooler: Callable[..., RunningPooler], make_db: MakeDb, ledger: Ledger
) -> None:
    # Both clients get the one server connection, and PgBouncer does not track prepares (as 1.18).
    pooler = start_pooler(default_pool_size=1, max_prepared_statements=0)
    acme = ledger.org_id("acme")
    with _psycopg_default(pooler.url()) as first:
        assert first.prepare_threshold == 5
        for _ in range(RUNS):
            first.execute(QUERY, (acme,))  # prepared as _pg3_0 on the server connection
    collision = pytest.raises(psycopg.errors.DuplicatePreparedStatement, match='"_pg3_0" already exists')
    with _psycopg_default(pooler.url()) as second, collision:
        for _ in range(RUNS):
            second.execute(QUERY, (acme,))
    # The same sequence with the kit's client: never prepares, never collides.
    for _ in range(2):
        instance = make_db(pooler.url())
        for _ in range(RUNS):
            with instance.transaction() as conn:
                assert conn.execute(QUERY, (acme,)).fetchone() == (1000,)
        instance.close()


def _concurrently(work: Callable[[int], None]) -> list[BaseException]:
    """Run ``work(i)`` for every instance at once; the exceptions they raised."""
    barrier = threading.Barrier(INSTANCES)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        try:
            barrier.wait(30)
            work(i)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(INSTANCES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads)
    return errors


def test_concurrent_clients_fail_with_default_prepare_threshold_not_with_ours(
    schema_db: AppDatabase, start_pooler: Callable[..., RunningPooler], make_db: MakeDb, ledger: Ledger,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pooler = start_pooler(default_pool_size=POOL_SIZE, max_prepared_statements=0)
    assert not pooler.process.settings.tracks_prepared_statements
    acme = ledger.org_id("acme")
    url = pooler.url()

    def plain(i: int) -> None:
        with _psycopg_default(url) as conn:
            for _ in range(RUNS):
                conn.execute(QUERY, (acme,))

    failed = _concurrently(plain)
    kinds = {type(e).__name__ for e in failed}
    assert failed, "expected prepared-statement collisions through the pooler"
    assert kinds <= {"DuplicatePreparedStatement", "InvalidSqlStatementName"}, kinds

    instances = [make_db(url) for _ in range(INSTANCES)]

    def ours(i: int) -> None:
        for _ in range(RUNS):
            with instances[i].transaction(read_only=True) as conn:
                conn.execute(QUERY, (acme,)).fetchone()

    ours_failed = _concurrently(ours)
    assert ours_failed == []
    assert all(d.stats.connects == 1 for d in instances)  # one connection per instance, kept warm
    with capsys.disabled():
        pool = pooler.process.settings.default_pool_size
        print(f"\n  {INSTANCES} concurrent clients x {RUNS} queries, pool of {pool}: "
              f"psycopg default prepare_threshold=5: {len(failed)} failed ({', '.join(sorted(kinds))}); "
              f"lifeguard client: {len(ours_failed)} failed")


def test_with_the_shipped_settings_forty_clients_prepare_without_a_failure(
    pooler: RunningPooler, make_db: MakeDb, ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    """PgBouncer 1.24.1 with max_prepared_statements 200: psycopg's default prepare_threshold is safe."""
    settings = pooler.process.settings
    assert settings.tracks_prepared_statements and settings.max_prepared_statements == 200
    acme = ledger.org_id("acme")
    url = pooler.url()

    def plain(i: int) -> None:
        with _psycopg_default(url) as conn:
            for _ in range(RUNS):
                assert conn.execute(QUERY, (acme,)).fetchone() == (1000,)

    plain_failed = _concurrently(plain)
    assert [type(e).__name__ for e in plain_failed] == []

    # The kit's client, told by the stack that its pooler tracks prepared statements.
    instances = [make_db(url, pooler_prepared_statements=settings.tracks_prepared_statements)
                 for _ in range(INSTANCES)]
    assert instances[0].resolve()[1].prepare_threshold == 5

    def ours(i: int) -> None:
        for _ in range(RUNS):
            with instances[i].transaction(read_only=True) as conn:
                assert conn.execute(QUERY, (acme,)).fetchone() == (1000,)

    ours_failed = _concurrently(ours)
    assert [type(e).__name__ for e in ours_failed] == []
    # Prepared for real: the server connections hold PgBouncer's renamed statements.
    with instances[0].transaction(read_only=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'PGBOUNCER_%'").fetchone()
    assert row is not None and row[0] >= 1
    with capsys.disabled():
        print(f"\n  {INSTANCES} concurrent clients x {RUNS} queries, pool of {settings.default_pool_size}, "
              f"PgBouncer {settings.version} max_prepared_statements {settings.max_prepared_statements}: "
              f"psycopg default prepare_threshold=5: {len(plain_failed)} failed; "
              f"lifeguard client with prepared statements: {len(ours_failed)} failed")


def test_set_local_stays_in_its_transaction_but_a_session_set_leaks(
    schema_db: AppDatabase, start_pooler: Callable[..., RunningPooler], make_db: MakeDb
) -> None:
    pooler = start_pooler(default_pool_size=1)  # every client lands on the same server connection
    with_timeout = make_db(pooler.url(), statement_timeout_ms=1234)
    plain = make_db(pooler.url(), statement_timeout_ms=0)
    with with_timeout.transaction() as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("1234ms",)
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()
    with plain.transaction() as conn:
        assert conn.execute("SELECT pg_backend_pid()").fetchone() == backend
        assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)
    # What the client never does: a session SET outlives its transaction and reaches the next
    # client of that server connection.
    with psycopg.connect(pooler.url(), autocommit=True, prepare_threshold=None) as careless:
        careless.execute("SET statement_timeout = '4321ms'")
    with plain.transaction() as conn:
        assert conn.execute("SELECT pg_backend_pid()").fetchone() == backend
        assert conn.execute("SHOW statement_timeout").fetchone() == ("4321ms",)


def test_session_advisory_locks_are_shared_but_transaction_locks_are_not(
    schema_db: AppDatabase, start_pooler: Callable[..., RunningPooler], make_db: MakeDb
) -> None:
    pooler = start_pooler(default_pool_size=1)
    lock = "SELECT pg_try_advisory_lock(42), pg_backend_pid()"
    with psycopg.connect(pooler.url(), autocommit=True, prepare_threshold=None) as a, \
         psycopg.connect(pooler.url(), autocommit=True, prepare_threshold=None) as b:
        got_a, got_b = a.execute(lock).fetchone(), b.execute(lock).fetchone()
        assert got_a is not None and got_b is not None
        # Two different clients both "hold" the same exclusive lock: it belongs to the backend.
        assert got_a[0] is True and got_b[0] is True and got_a[1] == got_b[1]
        a.execute("SELECT pg_advisory_unlock_all()")
    # Transaction-scoped locks live and die with the transaction the pooler keeps on one backend.
    # Three servers: a login role may hold all but one (PoolerSettings.max_user_connections), so two here.
    pooler2 = start_pooler(default_pool_size=3)
    first, second = make_db(pooler2.url()), make_db(pooler2.url())
    xact = "SELECT pg_try_advisory_xact_lock(42)"
    with first.transaction() as conn_a:
        assert conn_a.execute(xact).fetchone() == (True,)
        with second.transaction() as conn_b:
            assert conn_b.execute(xact).fetchone() == (False,)
    with second.transaction() as conn_b:
        assert conn_b.execute(xact).fetchone() == (True,)
