"""Apply ``migrator/migrations`` through the direct URL: once, in order, one transaction per file.

Why hand-written: no migration tool we tried or read (yoyo-migrations, alembic, dbmate, sqitch)
refuses to run through a pooler, where a session advisory lock is silently broken. Of the rest,
only sqitch holds a session advisory lock (it needs Perl and psql, and does not stop on an edited
deployed script); yoyo's lock is a row that outlives a killed run and it hashes file names only;
alembic and dbmate have no lock (alembic: sqlalchemy/alembic#633; dbmate: none in its driver). So this module
is small and does exactly what the kit needs:

* it refuses a connection that goes through PgBouncer or any proxy (:mod:`migrator.guard`);
* it takes one session advisory lock for the whole run (``pg_advisory_lock`` with a fixed key,
  ``lock_timeout`` bounding the wait) and reads what is applied only once it holds the lock, so a
  second run waits and then finds nothing to do, and a run that dies releases the lock with its
  session;
* each file and its bookkeeping row commit in one transaction: a failure leaves no trace of that
  file; ``-- lifeguard: no-transaction`` files run statement by statement and are recorded after;
* a sha256 per applied file: an applied file that was edited stops the run, naming it, and so
  does a pending file whose content is already applied under another number (a renamed file).

Bookkeeping lives in ``lifeguard_schema_migrations`` in the first schema of the search path
(``public`` normally), created on the first run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from migrator.errors import (
    ChecksumDrift,
    LockTimeout,
    MigrationFailed,
    MigratorConfigError,
    MigratorError,
    Unavailable,
)
from migrator.files import NO_TRANSACTION, Migration, load_migrations
from migrator.guard import check_direct
from migrator.roles import AppRole, provision_app_role
from migrator.source import describe_target
from migrator.sqlsplit import Statement
from redaction import Redactor

DEFAULT_MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DEFAULT_LOCK_TIMEOUT_S = 300.0
MAX_LOCK_TIMEOUT_S = 2_147_483.0
"""Postgres' ``lock_timeout`` is an int of milliseconds."""
LOCK_KEY = 0x6C69666567756172
"""``pg_advisory_lock`` key: the ASCII bytes of "lifeguar", unlikely to collide with an app's keys."""
TABLE_NAME = "lifeguard_schema_migrations"
APPLICATION_NAME = "lifeguard-migrator"
CONNECT_TIMEOUT_S = 10
CONNECTION_CHECK_INTERVAL_MS = 1000
"""If the migrator dies mid-statement, its backend notices within this and rolls back (PG 14+)."""
PINNED_SETTINGS = (("standard_conforming_strings", "on"), ("client_encoding", "UTF8"))
"""Session settings the file check assumes: :mod:`migrator.sqlsplit` lexes strings with backslash as
a plain character, and the files are UTF-8. A database or role default of
``standard_conforming_strings=off`` would make Postgres see a ``COMMIT`` the check saw inside a string."""

log = logging.getLogger("migrator")

State = Literal["applied", "pending", "changed", "missing"]


@dataclass(frozen=True)
class AppliedMigration:
    version: str
    filename: str
    duration_ms: int
    transactional: bool


@dataclass(frozen=True)
class MigrationReport:
    target: str
    """``host:port/dbname`` the run reached (no credentials)."""
    applied: tuple[AppliedMigration, ...]
    """What this run applied, in order (empty on a dry run)."""
    already_applied: int
    pending: tuple[str, ...]
    """File names a dry run would apply (empty after a real run: it applies them all or fails)."""
    dry_run: bool


@dataclass(frozen=True)
class MigrationState:
    version: str
    filename: str
    """The file's name, or the name recorded when it was applied (for ``missing``)."""
    state: State
    transactional: bool
    applied_at: datetime | None
    duration_ms: int | None


@dataclass(frozen=True)
class StatusReport:
    target: str
    entries: tuple[MigrationState, ...]

    def having(self, state: State) -> tuple[MigrationState, ...]:
        return tuple(e for e in self.entries if e.state == state)


@dataclass(frozen=True)
class _Recorded:
    version: str
    filename: str
    checksum: str
    transactional: bool
    applied_at: datetime
    duration_ms: int


class _FileEndedTransaction(Exception):
    pass


def _check_lock_timeout(lock_timeout_s: float) -> None:
    if not (math.isfinite(lock_timeout_s) and 0 <= lock_timeout_s <= MAX_LOCK_TIMEOUT_S):
        raise MigratorConfigError(f"lock timeout must be between 0 and {MAX_LOCK_TIMEOUT_S:.0f} seconds")


def _position_line(exc: psycopg.Error, text: str, first_line: int) -> int | None:
    """The file line Postgres' error position points at (positions count characters, from 1)."""
    position = exc.diag.statement_position
    if not position or not position.isdigit():
        return None
    return first_line + text.count("\n", 0, max(int(position) - 1, 0))


def _describe_error(exc: psycopg.Error, text: str, first_line: int, default_line: int | None = None) -> str:
    diag = exc.diag
    message = diag.message_primary or str(exc).strip() or type(exc).__name__
    line = _position_line(exc, text, first_line) or default_line
    parts = [f"{message} (SQLSTATE {diag.sqlstate})" if diag.sqlstate else message]
    if line is not None:
        parts.insert(0, f"line {line}:")
    if diag.message_detail:
        parts.append(f"DETAIL: {diag.message_detail}")
    if diag.message_hint:
        parts.append(f"HINT: {diag.message_hint}")
    if isinstance(exc, errors.ActiveSqlTransaction):
        parts.append(
            f"This statement cannot run inside a transaction: move it to its own file whose first line "
            f"is '-- lifeguard: {NO_TRANSACTION}' (see docs/migrations.md for what a failure then leaves)."
        )
    if isinstance(exc, psycopg.OperationalError):
        parts.append("The connection broke: run 'python -m migrator status' to see what was recorded.")
    return " ".join(parts)


class _Session:
    """The migrator's one direct connection (autocommit; transactions are opened explicitly)."""

    def __init__(self, conn: psycopg.Connection[Any], target: str, redactor: Redactor) -> None:
        self.conn = conn
        self.target = target
        self.redactor = redactor
        schema = conn.execute("SELECT current_schema()").fetchone()
        if schema is None or schema[0] is None:
            raise MigratorConfigError(
                "no schema of the search_path exists in this database, so there is nowhere to keep "
                f"{TABLE_NAME}: create the schema or fix the role's search_path"
            )
        self.schema = str(schema[0])
        # Qualified once: a migration that changes search_path does not move the bookkeeping.
        self.table = sql.Identifier(self.schema, TABLE_NAME)
        self.locked = False

    # -- bookkeeping -------------------------------------------------------------------

    def table_exists(self) -> bool:
        row = self.conn.execute(
            "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL", (self.schema, TABLE_NAME)
        ).fetchone()
        return bool(row and row[0])

    def ensure_table(self) -> None:
        if self.table_exists():
            return
        self.conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " version text PRIMARY KEY,"
                " filename text NOT NULL,"
                " checksum text NOT NULL,"
                " transactional boolean NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now(),"
                " duration_ms integer NOT NULL)"
            ).format(self.table)
        )
        log.info("created bookkeeping table %s.%s", self.schema, TABLE_NAME)

    def read_applied(self) -> dict[int, _Recorded]:
        """Applied migrations by number: a file renumbered from 0002 to 002 is still the same one."""
        if not self.table_exists():
            return {}
        rows = self.conn.execute(
            sql.SQL(
                "SELECT version, filename, checksum, transactional, applied_at, duration_ms FROM {}"
            ).format(self.table)
        ).fetchall()
        recorded: dict[int, _Recorded] = {}
        for version, filename, digest, transactional, applied_at, duration_ms in rows:
            if not str(version).isdigit():
                raise MigratorError(
                    f"{self.schema}.{TABLE_NAME} holds version {str(version)!r}, which no NNNN_name.sql file "
                    "can have: the table was written by something else; fix or remove that row"
                )
            recorded[int(version)] = _Recorded(
                str(version), str(filename), str(digest), bool(transactional), applied_at, int(duration_ms)
            )
        return recorded

    def _record(self, migration: Migration, duration_ms: int) -> None:
        self.conn.execute(
            sql.SQL(
                "INSERT INTO {} (version, filename, checksum, transactional, duration_ms)"
                " VALUES (%s, %s, %s, %s, %s)"
            ).format(self.table),
            (migration.version, migration.filename, migration.checksum, migration.transactional, duration_ms),
        )

    # -- the lock ----------------------------------------------------------------------

    def _lock_holder(self) -> str:
        row = self.conn.execute(
            "SELECT l.pid, a.application_name, host(a.client_addr), now() - a.backend_start"
            " FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND l.classid::bigint = %s AND l.objid::bigint = %s",
            (LOCK_KEY >> 32, LOCK_KEY & 0xFFFFFFFF),
        ).fetchone()
        if row is None:
            return "a session that has just released it"
        pid, app, client, age = row
        source = f" from {client}" if client else ""
        name = f" '{app}'" if app else ""
        since = f", connected {int(age.total_seconds())} s ago" if age is not None else ""
        return f"backend pid {pid}{name}{source}{since}"

    def acquire_lock(self, timeout_s: float) -> None:
        """Take the migration lock, waiting at most ``timeout_s`` (the wait is logged)."""
        row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
        if row is not None and row[0]:
            self.locked = True
            return
        holder = self._lock_holder()
        if timeout_s <= 0:
            raise LockTimeout(
                f"another migration run holds the migration lock ({holder}) and the lock timeout is 0: "
                "let that run finish, then run again, or allow a wait with --lock-timeout SECONDS"
            )
        log.info("another migration run holds the migration lock (%s); waiting up to %g s", holder, timeout_s)
        started = time.monotonic()
        self.conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{max(1, round(timeout_s * 1000))}ms",))
        try:
            self.conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        except (errors.LockNotAvailable, errors.QueryCanceled):
            raise LockTimeout(
                f"timed out after {timeout_s:g} s waiting for the migration lock, held by {holder}: "
                "another migration run is still going. Let it finish (or stop it) and run again, or "
                "raise --lock-timeout."
            ) from None
        finally:
            self.conn.execute("RESET lock_timeout")
        self.locked = True
        log.info("got the migration lock after %.1f s", time.monotonic() - started)

    def release_lock(self) -> None:
        if not self.locked or self.conn.closed:
            return
        self.locked = False
        try:
            if self.conn.info.transaction_status == TransactionStatus.INERROR:
                self.conn.rollback()
            self.conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        except psycopg.Error:
            pass  # the lock goes with the session, which closes next

    # -- applying ----------------------------------------------------------------------

    def pin_settings(self) -> None:
        """Set :data:`PINNED_SETTINGS` again: a previous file (or statement) may have changed them."""
        _pin_settings(self.conn)

    def apply(self, migration: Migration) -> AppliedMigration:
        mode = "" if migration.transactional else " (no transaction)"
        log.info("applying %s%s", migration.filename, mode)
        self.pin_settings()
        started = time.monotonic()
        if migration.transactional:
            duration_ms = self._apply_in_transaction(migration, started)
        else:
            duration_ms = self._apply_statements(migration, started)
        log.info("applied %s in %d ms%s", migration.filename, duration_ms, mode)
        return AppliedMigration(migration.version, migration.filename, duration_ms, migration.transactional)

    def _failed(self, message: str) -> MigrationFailed:
        return MigrationFailed(self.redactor(message))

    def _apply_in_transaction(self, migration: Migration, started: float) -> int:
        try:
            with self.conn.transaction():
                # The file is sent as written: without parameters psycopg uses the simple query
                # protocol, so one round trip runs all its statements inside this transaction.
                self.conn.execute(migration.sql)
                if self.conn.info.transaction_status != TransactionStatus.INTRANS:
                    raise _FileEndedTransaction
                duration_ms = round((time.monotonic() - started) * 1000)
                self._record(migration, duration_ms)
        except _FileEndedTransaction:
            raise self._failed(
                f"{migration.filename} ended the migrator's transaction itself (COMMIT/ROLLBACK in a form "
                "the file check did not recognise), so part of it may be committed without a bookkeeping "
                "row. Check the database by hand, remove the transaction control from the file, and run again."
            ) from None
        except psycopg.Error as exc:
            raise self._failed(
                f"{migration.filename} failed and was rolled back (nothing from it is applied): "
                f"{_describe_error(exc, migration.sql, 1)}"
            ) from None
        return duration_ms

    def _apply_statements(self, migration: Migration, started: float) -> int:
        statements: Sequence[Statement] = migration.statements
        for index, statement in enumerate(statements, start=1):
            try:
                if index > 1:
                    self.pin_settings()
                self.conn.execute(statement.text)
            except psycopg.Error as exc:
                error = _describe_error(exc, statement.text, statement.line, statement.line)
                ran = (
                    f"Statements 1-{index - 1} ran and stay applied (there is no transaction to roll back)"
                    if index > 1
                    else "Nothing before it ran"
                )
                raise self._failed(
                    f"{migration.filename} (no transaction) failed at statement {index} of {len(statements)}, "
                    f"{error} {ran}; the file is not recorded, "
                    "so the next run starts it again from the top. Make every statement safe to repeat "
                    "(IF NOT EXISTS / IF EXISTS); a failed CREATE INDEX CONCURRENTLY leaves an INVALID index: "
                    "drop it (DROP INDEX CONCURRENTLY IF EXISTS) before the create."
                ) from None
        duration_ms = round((time.monotonic() - started) * 1000)
        try:
            self._record(migration, duration_ms)
        except psycopg.Error as exc:
            raise self._failed(
                f"{migration.filename} (no transaction) ran, but recording it failed: "
                f"{_describe_error(exc, '', 1)} The next run will run the file again."
            ) from None
        return duration_ms


def _pin_settings(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "SELECT " + ", ".join("set_config(%s, %s, false)" for _ in PINNED_SETTINGS),
        [value for pair in PINNED_SETTINGS for value in pair],
    )


def _log_notice(diag: psycopg.errors.Diagnostic) -> None:
    log.info("postgres %s: %s", (diag.severity or "notice").lower(), diag.message_primary)


@contextmanager
def _open_session(url: str) -> Iterator[_Session]:
    redactor = Redactor([url])
    target = describe_target(url, redactor)
    # The URL's own connect_timeout wins; application_name is ours, so a waiting run can name the holder.
    timeout = conninfo_to_dict(url).get("connect_timeout") or CONNECT_TIMEOUT_S
    try:
        conn = psycopg.connect(url, autocommit=True, application_name=APPLICATION_NAME, connect_timeout=timeout)
    except psycopg.Error as exc:
        raise Unavailable(f"cannot connect to {target}: {redactor(str(exc).strip())}") from None
    try:
        check_direct(conn)
        _pin_settings(conn)
        if conn.info.server_version >= 140000:
            conn.execute(
                "SELECT set_config('client_connection_check_interval', %s, false)",
                (str(CONNECTION_CHECK_INTERVAL_MS),),
            )
        conn.add_notice_handler(_log_notice)
        session = _Session(conn, target, redactor)
        try:
            yield session
        finally:
            session.release_lock()
    except psycopg.OperationalError as exc:
        raise Unavailable(f"lost the connection to {target}: {redactor(str(exc).strip())}") from None
    except psycopg.Error as exc:
        # Failures outside a migration: bookkeeping, lock queries (a migration's own become MigrationFailed).
        raise MigratorError(f"database error on {target}: {redactor(str(exc).strip())}") from None
    finally:
        conn.close()


def _compare(migrations: Sequence[Migration], recorded: dict[int, _Recorded]) -> list[MigrationState]:
    states: list[MigrationState] = []
    for m in migrations:
        r = recorded.get(m.number)
        if r is None:
            states.append(MigrationState(m.version, m.filename, "pending", m.transactional, None, None))
        else:
            state: State = "applied" if r.checksum == m.checksum else "changed"
            states.append(MigrationState(m.version, m.filename, state, m.transactional, r.applied_at, r.duration_ms))
    numbers = {m.number for m in migrations}
    for number, r in recorded.items():
        if number not in numbers:
            states.append(
                MigrationState(r.version, r.filename, "missing", r.transactional, r.applied_at, r.duration_ms)
            )
    return sorted(states, key=lambda s: int(s.version))


def _refuse_drift(states: Sequence[MigrationState]) -> None:
    changed = [s for s in states if s.state == "changed"]
    if changed:
        names = ", ".join(s.filename for s in changed)
        raise ChecksumDrift(
            f"{len(changed)} applied migration(s) changed since they were applied: {names}. Nothing was "
            "applied. An applied migration must stay as it was: restore the file (its checksum is in "
            f"{TABLE_NAME}) and put the change in a new migration.",
            tuple(s.filename for s in changed),
        )


def _refuse_renumbered(migrations: Sequence[Migration], recorded: dict[int, _Recorded]) -> None:
    """A pending file whose exact content is already applied under another number: a renamed file.

    Running it would apply the same statements a second time (a seed's rows twice), so the run
    stops before applying anything.
    """
    by_checksum = {r.checksum: r for r in recorded.values()}
    clashes = [
        (m, by_checksum[m.checksum]) for m in migrations if m.number not in recorded and m.checksum in by_checksum
    ]
    if clashes:
        details = "; ".join(
            f"{m.filename} has the content of {r.filename}, applied {r.applied_at:%Y-%m-%d} as version {r.version}"
            for m, r in clashes
        )
        raise ChecksumDrift(
            f"{details}. Nothing was applied. A renumbered file would run its statements a second time: "
            "give the file back its applied name, or, if the same SQL must really run again, put it in a "
            "new migration whose content differs (a comment saying why is enough).",
            tuple(m.filename for m, _ in clashes),
        )


def _warn_missing(states: Sequence[MigrationState]) -> None:
    for s in states:
        if s.state == "missing":
            log.warning("%s is recorded as applied but its file is missing (an older image?)", s.filename)


def migrate(
    url: str,
    migrations_dir: Path | None = None,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    *,
    dry_run: bool = False,
    app_role: AppRole | None = None,
    load: Callable[[Path], Sequence[Migration]] = load_migrations,
) -> MigrationReport:
    """Apply every pending migration in ``migrations_dir`` (default: the bundled ones) through ``url``.

    ``url`` must be the direct URL. Raises a :class:`migrator.errors.MigratorError` subclass on
    any failure; its message never contains the URL or password. A dry run checks the same
    things (pooler, files, drift) without taking the lock or changing anything. ``app_role``, when
    given, is provisioned under the lock before any migration (:mod:`migrator.roles`). ``load``
    reads and checks the files (:func:`migrator.files.load_migrations`); whatever it lets through,
    applying checks again that a file did not end the migrator's transaction itself.
    """
    _check_lock_timeout(lock_timeout_s)
    directory = migrations_dir or DEFAULT_MIGRATIONS_DIR
    migrations = load(directory)
    with _open_session(url) as session:
        log.info("database %s: %d migration file(s) in %s", session.target, len(migrations), directory)
        if dry_run:
            recorded = session.read_applied()
            states = _compare(migrations, recorded)
            _refuse_drift(states)
            _refuse_renumbered(migrations, recorded)
            _warn_missing(states)
            pending = tuple(s.filename for s in states if s.state == "pending")
            applied_count = sum(1 for s in states if s.state == "applied")
            return MigrationReport(session.target, (), applied_count, pending, True)
        session.acquire_lock(lock_timeout_s)
        session.ensure_table()
        if app_role is not None:
            session.redactor.add_secret(app_role.verifier)
            provision_app_role(session.conn, app_role, session.schema, session.table)
        # Read only now, under the lock: whatever a run we waited for applied is seen as applied.
        recorded = session.read_applied()
        states = _compare(migrations, recorded)
        _refuse_drift(states)
        _refuse_renumbered(migrations, recorded)
        _warn_missing(states)
        pending_migrations = [m for m in migrations if m.number not in recorded]
        newest = max(recorded, default=-1)
        applied: list[AppliedMigration] = []
        for migration in pending_migrations:
            if migration.number < newest:
                log.warning("%s is older than applied migrations: applying it out of order", migration.filename)
            applied.append(session.apply(migration))
        already = len(migrations) - len(pending_migrations)
        if applied:
            total = sum(a.duration_ms for a in applied)
            log.info("applied %d migration(s) in %d ms; %d were already applied", len(applied), total, already)
        else:
            log.info("nothing to apply: all %d migration(s) are already applied", already)
        return MigrationReport(session.target, tuple(applied), already, (), False)


def status(url: str, migrations_dir: Path | None = None) -> StatusReport:
    """Which migrations are applied, pending, changed since applied, or applied but missing."""
    migrations = load_migrations(migrations_dir or DEFAULT_MIGRATIONS_DIR)
    with _open_session(url) as session:
        recorded = session.read_applied()
        return StatusReport(session.target, tuple(_compare(migrations, recorded)))
