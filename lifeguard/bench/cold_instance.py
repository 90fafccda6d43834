"""One cold function instance, in a process of its own: ``python -m lifeguard.bench.cold_instance MODE``.

Started by :mod:`lifeguard.bench.coldstart` (inside a CPU-capped cgroup where it could make one)
with ``DATABASE_URL`` in its environment, it prints one JSON line of timings (milliseconds) and
exits. Nothing but the standard library is imported before the clock starts, so the import of the
function's client (``lambdas.db``, with psycopg and libpq) is part of what is measured.

``client``: the sample functions' own client as they run it: import ``lambdas.db``, then the first
transaction of a new :class:`lambdas.db.Database` (connect, ``BEGIN READ ONLY; SET LOCAL``,
``SELECT 1``, first row). ``import_ms``, ``connect_ms`` (from the import's end to the first row)
and ``first_row_ms`` (from before the import).

``phases``: the same import and the same connection string (:meth:`lambdas.db.Database.conninfo`),
but libpq's connection state machine driven here (``PQconnectStart``/``PQconnectPoll``, as psycopg
itself drives it) so that each step is timed where libpq's status changes: ``tcp`` (until the
socket is writable), ``tls`` (SSLRequest and the handshake, until the startup packet goes out),
``scram`` (the startup packet and the SASL exchange, until AuthenticationOk), ``session`` (what
the server sends after that until ReadyForQuery: a new backend's start, direct), then ``query``
(``SELECT 1`` to its row, one round trip).
"""

from __future__ import annotations

import json
import selectors
import sys
import time
from typing import Any

QUERY = "SELECT 1"


def _client(started: float) -> dict[str, Any]:
    from lambdas import db

    imported = time.perf_counter()
    database = db.Database()
    with database.transaction(read_only=True) as conn:
        row = conn.execute(QUERY).fetchone()
    done = time.perf_counter()
    database.close()
    if row != (1,):
        raise RuntimeError(f"unexpected first row {row!r}")
    return {"import_ms": (imported - started) * 1000, "connect_ms": (done - imported) * 1000,
            "first_row_ms": (done - started) * 1000}


def _phases(started: float) -> dict[str, Any]:
    from lambdas import db  # what the function imports: psycopg, libpq, the client

    imported = time.perf_counter()
    import psycopg
    from psycopg import pq

    conninfo = db.Database().conninfo()
    before_auth = {pq.ConnStatus.STARTED, pq.ConnStatus.MADE, pq.ConnStatus.GSS_STARTUP, pq.ConnStatus.SSL_STARTUP}
    marks: dict[str, float] = {}
    t0 = time.perf_counter()
    pgconn = pq.PGconn.connect_start(conninfo.encode())
    poll: int = pq.PollingStatus.WRITING  # libpq: treat PQconnectStart as having returned WRITING
    with selectors.DefaultSelector() as selector:
        while poll != pq.PollingStatus.OK:
            if poll == pq.PollingStatus.FAILED or pgconn.status == pq.ConnStatus.BAD:
                raise RuntimeError("connection failed: " + pgconn.get_error_message()[:200])
            event = selectors.EVENT_READ if poll == pq.PollingStatus.READING else selectors.EVENT_WRITE
            selector.register(pgconn.socket, event)
            if not selector.select(timeout=30):
                raise RuntimeError("connection timed out")
            selector.unregister(pgconn.socket)
            marks.setdefault("tcp", time.perf_counter())
            poll = pgconn.connect_poll()
            now, status = time.perf_counter(), pgconn.status
            if status not in before_auth:
                marks.setdefault("tls", now)
            if status not in before_auth | {pq.ConnStatus.AWAITING_RESPONSE, pq.ConnStatus.AUTHENTICATING}:
                marks.setdefault("scram", now)
        connected = time.perf_counter()
        marks.setdefault("tls", connected)
        marks.setdefault("scram", connected)
    conn = psycopg.Connection(pgconn)
    try:
        conn.autocommit = True
        row = conn.execute(QUERY, prepare=False).fetchone()
        done = time.perf_counter()
        tls = pgconn.ssl_in_use
    finally:
        conn.close()
    if row != (1,):
        raise RuntimeError(f"unexpected first row {row!r}")
    return {
        "import_ms": (imported - started) * 1000,
        "tcp_ms": (marks["tcp"] - t0) * 1000,
        "tls_ms": (marks["tls"] - marks["tcp"]) * 1000,
        "scram_ms": (marks["scram"] - marks["tls"]) * 1000,
        "session_ms": (connected - marks["scram"]) * 1000,
        "query_ms": (done - connected) * 1000,
        "first_row_ms": (done - started) * 1000,
        "tls_in_use": tls,
    }


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    modes = {"client": _client, "phases": _phases}
    if len(argv) != 1 or argv[0] not in modes:
        print(f"usage: python -m lifeguard.bench.cold_instance {{{','.join(modes)}}}", file=sys.stderr)
        return 2
    try:
        result = modes[argv[0]](started)
    except Exception as exc:  # reported to the parent as a failed run; never the URL (not in these messages)
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:300]}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
