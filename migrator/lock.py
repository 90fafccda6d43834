"""The migration lock: one run at a time per database, which the application role can neither take nor block.

What is locked: a view, ``lifeguard_migration_lock`` in the bookkeeping schema, that selects no table,
owned by the migration role, with no privilege granted to anyone, in ``EXCLUSIVE`` mode.

* **The application role cannot take it.** ``LOCK TABLE`` in that mode needs ``UPDATE``, ``DELETE``
  or ``TRUNCATE`` on the view, checked before the lock is requested. The view is created with every
  grant taken back (also what ``ALTER DEFAULT PRIVILEGES`` handed out), and provisioning the
  application role (:mod:`migrator.roles`) revokes again what ``GRANT ... ON ALL TABLES`` gives it.
  A session advisory lock, the migrator's earlier lock, has no privileges at all: any role could take
  its key, and through PgBouncer keep it on a pooled backend, so every migration timed out (#31.5).
* **Nor block it.** Every other statement that would lock the view (``SELECT``, ``INSERT``,
  ``COMMENT ON``) fails its privilege check and releases what it took with the error, even inside an
  open transaction; a plain read (``ACCESS SHARE``) does not conflict with ``EXCLUSIVE``.
* **Why a view and not the bookkeeping table.** A table lock lasts as long as a transaction, and the
  migrations' own connection cannot keep one open for the whole run (each file is its own transaction,
  some files none). So the lock is held by a second direct connection, the *lock session*, whose
  transaction stays open until the run ends. On the bookkeeping table, the issue's ``SHARE ROW
  EXCLUSIVE`` would then block the run's own ``INSERT`` of each bookkeeping row (the run would wait on
  itself), and the one mode that would not (``SHARE UPDATE EXCLUSIVE``) is the one ``VACUUM`` and
  ``ANALYZE`` take, so a migration running ``ANALYZE;`` would wait on its own run. Nothing but a
  ``LOCK`` ever locks this view.
* **The open transaction costs nothing.** ``READ COMMITTED``, no snapshot kept between statements and
  no transaction id: it holds back neither ``VACUUM`` nor ``CREATE INDEX CONCURRENTLY`` (which waits
  only for transactions holding a snapshot). ``idle_in_transaction_session_timeout`` (and, from
  Postgres 17, ``transaction_timeout``) is turned off for it, so a database default cannot end it
  mid-run.
* **A dead run lets go at once.** When the job dies, the lock session's backend sees its socket close,
  aborts the transaction and the lock is gone; nothing is left to break by hand.

:func:`migration_lock` is the one way to hold it: the runner holds it around its files, and a wrapper
around another migration tool can hold it on its own connection while the tool runs.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors, sql
from psycopg.pq import TransactionStatus

from migrator.connection import bookkeeping_schema, direct_connection
from migrator.errors import LockTimeout, MigratorConfigError, Unavailable

DEFAULT_LOCK_TIMEOUT_S = 300.0
MAX_LOCK_TIMEOUT_S = 2_147_483.0
"""Postgres' ``lock_timeout`` is an int of milliseconds."""
LOCK_VIEW = "lifeguard_migration_lock"
LOCK_MODE = "EXCLUSIVE"
"""Conflicts with itself and with every lock but ``ACCESS SHARE`` (a plain read)."""

log = logging.getLogger("migrator")


def lock_timeout_arg(text: str) -> float:
    """``--lock-timeout``'s argparse type: seconds, 0 to :data:`MAX_LOCK_TIMEOUT_S`."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(value) and 0 <= value <= MAX_LOCK_TIMEOUT_S):
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_LOCK_TIMEOUT_S:.0f} seconds")
    return value


def check_lock_timeout(lock_timeout_s: float) -> None:
    if not (math.isfinite(lock_timeout_s) and 0 <= lock_timeout_s <= MAX_LOCK_TIMEOUT_S):
        raise MigratorConfigError(f"lock timeout must be between 0 and {MAX_LOCK_TIMEOUT_S:.0f} seconds")


@dataclass(frozen=True)
class MigrationLock:
    """The held lock: its session, and the schema its view (and the bookkeeping) lives in."""

    conn: psycopg.Connection[Any]
    schema: str
    target: str

    def check_held(self) -> None:
        """Raise unless the lock session is still there with its transaction open (call before each step)."""
        try:
            self.conn.execute("SELECT 1")
            held = self.conn.info.transaction_status == TransactionStatus.INTRANS
        except psycopg.Error:
            held = False
        if not held:
            raise Unavailable(
                f"lost the migration lock's connection to {self.target}: stopped before applying anything "
                "more. Run again; what was applied is recorded"
            )


def _view_exists(conn: psycopg.Connection[Any], schema: str) -> bool:
    row = conn.execute(
        "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL", (schema, LOCK_VIEW)
    ).fetchone()
    return bool(row and row[0])


def ensure_lock_view(conn: psycopg.Connection[Any], schema: str) -> None:
    """Create the lock view if it is missing, granted to no one (``conn`` is autocommit)."""
    if _view_exists(conn, schema):
        return
    view = sql.Identifier(schema, LOCK_VIEW)
    try:
        with conn.transaction():
            conn.execute(
                sql.SQL("CREATE VIEW {} AS SELECT 'one lifeguard migration run at a time'::text AS purpose").format(
                    view
                )
            )
            grant_to_no_one(conn, view)
    except (errors.DuplicateTable, errors.UniqueViolation):
        # Another run's first run created it at the same moment: theirs is as good.
        if not _view_exists(conn, schema):
            raise
        return
    log.info("created the migration lock view %s.%s", schema, LOCK_VIEW)


def grant_to_no_one(conn: psycopg.Connection[Any], relation: sql.Identifier) -> None:
    """Take back every grant on a relation the migrator just created, except its owner's own.

    ``ALTER DEFAULT PRIVILEGES`` (which provisioning sets for the application role) grants DML on
    whatever the owner creates, views included: with it the application role could lock the view.
    """
    grantees = conn.execute(
        "SELECT DISTINCT (SELECT r.rolname FROM pg_roles r WHERE r.oid = a.grantee)"
        " FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = %s::regclass AND a.grantee <> c.relowner",
        (relation.as_string(conn),),
    ).fetchall()
    for (grantee,) in grantees:
        role = sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee)
        conn.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(relation, role))


def _holder(conn: psycopg.Connection[Any], schema: str) -> str:
    row = conn.execute(
        "SELECT l.pid, a.application_name, host(a.client_addr), now() - a.backend_start, a.backend_type"
        " FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'relation' AND l.granted AND l.mode <> 'AccessShareLock'"
        " AND l.pid <> pg_backend_pid()"
        " AND l.relation = (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        "                   WHERE n.nspname = %s AND c.relname = %s)"
        " ORDER BY a.backend_start LIMIT 1",
        (schema, LOCK_VIEW),
    ).fetchone()
    if row is None:
        return "a session that has just released it"
    pid, app, client, age, backend_type = row
    kind = f" ({backend_type})" if backend_type and backend_type != "client backend" else ""
    source = f" from {client}" if client else ""
    name = f" '{app}'" if app else ""
    since = f", connected {int(age.total_seconds())} s ago" if age is not None else ""
    return f"backend pid {pid}{kind}{name}{source}{since}"


def _lock(conn: psycopg.Connection[Any], view: sql.Composable, nowait: bool) -> None:
    # In a savepoint: a refused or timed-out attempt leaves the lock session's transaction usable.
    with conn.transaction():
        conn.execute(sql.SQL("LOCK TABLE {} IN {} MODE" + (" NOWAIT" if nowait else "")).format(
            view, sql.SQL(LOCK_MODE)))


@contextmanager
def migration_lock(
    url: str, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S, *, schema: str | None = None
) -> Iterator[MigrationLock]:
    """Hold the migration lock, on a direct connection of its own, for the ``with`` block.

    Waits at most ``timeout_s`` for another run (the wait is logged, naming the holder), then raises
    :class:`LockTimeout`. ``schema`` is where the view lives (default: the connection's
    ``current_schema()``, as the bookkeeping). The migrations themselves run on any other connection.
    """
    check_lock_timeout(timeout_s)
    with direct_connection(url) as direct:
        conn = direct.conn
        where = schema or bookkeeping_schema(conn)
        ensure_lock_view(conn, where)
        view = sql.Identifier(where, LOCK_VIEW)
        conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
        with conn.transaction():
            settings = ["idle_in_transaction_session_timeout"]
            if conn.info.server_version >= 170000:
                settings.append("transaction_timeout")
            for name in settings:
                conn.execute("SELECT set_config(%s, '0', true)", (name,))
            try:
                _lock(conn, view, nowait=True)
            except errors.LockNotAvailable:
                _wait(conn, view, where, timeout_s)
            yield MigrationLock(conn, where, direct.target)


def _wait(conn: psycopg.Connection[Any], view: sql.Composable, schema: str, timeout_s: float) -> None:
    holder = _holder(conn, schema)
    if timeout_s <= 0:
        raise LockTimeout(
            f"another migration run holds the migration lock ({holder}) and the lock timeout is 0: "
            "let that run finish, then run again, or allow a wait with --lock-timeout SECONDS"
        )
    log.info("another migration run holds the migration lock (%s); waiting up to %g s", holder, timeout_s)
    started = time.monotonic()
    conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{max(1, round(timeout_s * 1000))}ms",))
    try:
        _lock(conn, view, nowait=False)
    except (errors.LockNotAvailable, errors.QueryCanceled):
        raise LockTimeout(
            f"timed out after {timeout_s:g} s waiting for the migration lock, held by {holder}: "
            "another migration run is still going. Let it finish (or stop it) and run again, or "
            "raise --lock-timeout."
        ) from None
    conn.execute("SELECT set_config('lock_timeout', '0', true)")
    log.info("got the migration lock after %.1f s", time.monotonic() - started)

