"""Check 2: does a protocol-level prepared statement made in one transaction exist in the next?

Drivers prepare statements at the protocol level (Parse) and run them later by name (Bind). On a
transaction pooler the next transaction may run on another backend, where the name is unknown
unless the pooler carries prepared statements across backends (PgBouncer 1.21+ with
``max_prepared_statements``). To make the answer deterministic on a quiet pool, a second client
holds the backend the statement was made on while the first runs it: a transaction pooler must
then use another backend; a direct or session-pooled connection keeps its own.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq

from lifeguard.doctor.findings import NOTHING_TO_CHANGE, Finding, Status
from lifeguard.doctor.pooling import Pooling
from lifeguard.doctor.target import Target
from migrator.guard import ProbeError, connect_like, int_value, query_within, results_within

WAIT_S = 2.0
DRIVER_SETTINGS = (
    "turn off client-side prepared statements (psycopg prepare_threshold=None, Prisma pgbouncer=true, "
    "postgres.js prepare: false, asyncpg statement_cache_size=0), or run PgBouncer 1.21+ with "
    "max_prepared_statements > 0"
)


@dataclass(frozen=True)
class PreparedProbe:
    made_on: int
    """Backend pid of the transaction that prepared the statement."""
    ran_on: int
    """Backend pid of the next transaction, which executed it by name."""
    survived: bool
    error: str | None
    held_by_other: bool
    """The second client held ``made_on`` meanwhile (False: it got no backend within the wait)."""


def _must(results: list[pq.abc.PGresult] | None, what: str) -> list[pq.abc.PGresult]:
    if results is None:
        raise ProbeError(f"{what} got no backend within {WAIT_S:g} s")
    return results


def probe(conn: psycopg.Connection[Any]) -> PreparedProbe:
    """Prepare on ``conn``, hold that backend from a second connection, execute by name on ``conn``."""
    a = conn.pgconn
    name = f"lifeguard_doctor_{secrets.token_hex(4)}".encode()
    made_on = int_value(_must(query_within(a, b"BEGIN; SELECT pg_backend_pid()", WAIT_S), "BEGIN")[-1])
    a.send_prepare(name, b"SELECT 1")
    _must(results_within(a, WAIT_S), "prepare")
    _must(query_within(a, b"COMMIT", WAIT_S), "COMMIT")

    other = connect_like(conn)
    try:
        held = query_within(other, b"BEGIN; SELECT pg_backend_pid()", WAIT_S)
        # None: the second client's BEGIN is queued in the pooler (no server free); it holds nothing.
        other_in_transaction = held is not None
        held_by_other = held is not None and int_value(held[-1]) == made_on
        started = query_within(a, b"BEGIN; SELECT pg_backend_pid()", WAIT_S)
        if started is None:  # the other client holds the only server: let it go, then this one runs
            if other_in_transaction:
                _must(query_within(other, b"ROLLBACK", WAIT_S), "ROLLBACK")
                other_in_transaction = held_by_other = False
            started = _must(results_within(a, WAIT_S), "the next transaction")
        ran_on = int_value(started[-1])
        a.send_query_prepared(name, None)
        try:
            _must(results_within(a, WAIT_S), "execute")
            survived, error = True, None
        except ProbeError as exc:
            survived, error = False, str(exc)
        _must(query_within(a, b"ROLLBACK", WAIT_S), "ROLLBACK")
        if other_in_transaction:
            _must(query_within(other, b"ROLLBACK", WAIT_S), "ROLLBACK")
    finally:
        other.finish()  # a queued BEGIN goes with it
    a.send_close_prepared(name)  # best effort: through a pooler it may reach another backend
    with contextlib.suppress(ProbeError):
        results_within(a, WAIT_S)
    return PreparedProbe(made_on, ran_on, survived, error, held_by_other)


def finding(target: Target, pooling: Pooling, result: PreparedProbe) -> Finding:
    details: dict[str, Any] = {
        "made_on_backend": result.made_on,
        "ran_on_backend": result.ran_on,
        "survived": result.survived,
        "error": result.error,
    }
    moved = result.ran_on != result.made_on
    if result.survived and moved:
        return Finding(
            "prepared statements", target.name, Status.OK,
            f"a statement prepared on backend {result.made_on} ran by name on backend {result.ran_on}: the "
            "pooler carries prepared statements across backends, so driver defaults are safe",
            NOTHING_TO_CHANGE, details,
        )
    if not result.survived:
        return Finding(
            "prepared statements", target.name, Status.WARN,
            f"a statement prepared in one transaction was gone in the next ({result.error})",
            DRIVER_SETTINGS, details,
        )
    if pooling.kind == "transaction pooling":
        return Finding(
            "prepared statements", target.name, Status.WARN,
            f"inconclusive: the next transaction ran on the same backend {result.ran_on} (no second server "
            "was free), so the statement was there by chance",
            f"run doctor again when the pool has a free server; until then {DRIVER_SETTINGS}", details,
        )
    return Finding(
        "prepared statements", target.name, Status.OK,
        f"prepared statements persist: this connection keeps backend {result.ran_on} ({pooling.kind})",
        NOTHING_TO_CHANGE, details,
    )
