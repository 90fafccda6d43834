"""Check 3: does a session ``SET`` survive into the next transaction, or leak to another client?

The probe sets a placeholder setting (``lifeguard.doctor_probe``, a random token) in one
transaction, reads it from a second client (which a transaction pooler hands the same backend on a
quiet pool), then from the first client again. Each read clears the setting on the backend it ran
on, so nothing of the probe stays behind for the pooler's next client.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq

from database_urls import DIRECT_URL_ENV
from lifeguard.doctor.findings import NOTHING_TO_CHANGE, Finding, Status
from lifeguard.doctor.pooling import Pooling
from lifeguard.doctor.target import Target
from migrator.guard import ProbeError, connect_like, int_value, query_within

WAIT_S = 2.0
SETTING = "lifeguard.doctor_probe"
_READ_AND_CLEAR = (
    f"SELECT current_setting('{SETTING}', true), set_config('{SETTING}', '', false), pg_backend_pid()".encode()
)
ADVICE = (
    "do not rely on session state through this URL: SET LOCAL inside the transaction instead of SET, "
    f"pg_advisory_xact_lock instead of session advisory locks, no temp tables across transactions, and "
    f"LISTEN only on {DIRECT_URL_ENV}"
)


@dataclass(frozen=True)
class SessionProbe:
    set_on: int
    leaked_to_other: bool
    other_backend: int | None
    survived: bool
    next_backend: int


def _read(pgconn: pq.abc.PGconn, token: str) -> tuple[bool, int] | None:
    results = query_within(pgconn, _READ_AND_CLEAR, WAIT_S)
    if results is None:
        return None
    value = results[-1].get_value(0, 0)
    return (value is not None and value.decode() == token), int_value(results[-1], 2)


def probe(conn: psycopg.Connection[Any]) -> SessionProbe:
    token = secrets.token_hex(8)
    row = conn.execute(f"SELECT set_config('{SETTING}', %s, false), pg_backend_pid()", (token,)).fetchone()
    assert row is not None
    set_on = int(row[1])
    other = connect_like(conn)
    try:
        seen = _read(other, token)
    finally:
        other.finish()
    mine = _read(conn.pgconn, token)
    if mine is None:
        raise ProbeError(f"the next transaction got no backend within {WAIT_S:g} s")
    leaked, other_backend = seen if seen is not None else (False, None)
    return SessionProbe(set_on, leaked, other_backend, mine[0], mine[1])


def finding(target: Target, pooling: Pooling, result: SessionProbe) -> Finding:
    details: dict[str, Any] = {
        "set_on_backend": result.set_on,
        "leaked_to_other_client": result.leaked_to_other,
        "other_client_backend": result.other_backend,
        "survived_next_transaction": result.survived,
        "next_transaction_backend": result.next_backend,
    }
    seen: list[str] = []
    if result.leaked_to_other:
        seen.append(f"a session SET made by this client was seen by another client (backend {result.other_backend})")
    if result.leaked_to_other:
        pass  # the other client's read cleared it on that backend: whether it "survived" is moot
    elif not result.survived:
        seen.append(f"it was gone in this client's next transaction (backend {result.next_backend})")
    elif pooling.kind == "transaction pooling":
        seen.append("it survived into the next transaction only because the same backend came back")
    if pooling.kind == "transaction pooling" or seen:
        summary = "; ".join(seen) if seen else "session state is not kept per client"
        return Finding("session state", target.name, Status.WARN, f"{pooling.kind}: {summary}", ADVICE, details)
    return Finding(
        "session state", target.name, Status.OK,
        f"a session SET stayed with this connection and did not reach another client ({pooling.kind})",
        NOTHING_TO_CHANGE, details,
    )
