"""Apply ``migrator/migrations`` through the direct URL: once, in order, one transaction per file.

Why hand-written: no migration tool we tried or read (yoyo-migrations, alembic, dbmate, sqitch)
refuses to run through a pooler, where a session lock is silently broken. Of the rest,
only sqitch holds a session advisory lock (it needs Perl and psql, and does not stop on an edited
deployed script); yoyo's lock is a row that outlives a killed run and it hashes file names only;
alembic and dbmate have no lock (alembic: sqlalchemy/alembic#633; dbmate: none in its driver). So this module
is small and does exactly what the kit needs:

* it refuses a connection that goes through PgBouncer or any proxy (:mod:`migrator.guard`);
* it holds the migration lock for the whole run (:mod:`migrator.lock`: a lock only the migration
  role can take, on a second direct connection, ``lock_timeout`` bounding the wait) and reads what is
  applied only once it holds the lock, so a second run waits and then finds nothing to do, and a run
  that dies releases the lock with its sessions;
* each file and its bookkeeping row commit in one transaction: a failure leaves no trace of that
  file; ``-- lifeguard: no-transaction`` files run statement by statement and are recorded after;
* a sha256 per applied file: an applied file that was edited stops the run, naming it, and so
  does a pending file whose content is already applied under another number (a renamed file).

Bookkeeping lives in ``lifeguard_schema_migrations`` in the first schema of the search path
(``public`` normally), created on the first run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import errors, sql
from psycopg.pq import TransactionStatus

from migrator.bookkeeping import BookkeepingTable
from migrator.connection import bookkeeping_schema, direct_connection, pin_settings
from migrator.errors import ChecksumDrift, MigrationFailed, MigratorError
from migrator.files import NO_TRANSACTION, Migration, load_migrations
from migrator.lock import DEFAULT_LOCK_TIMEOUT_S, LOCK_VIEW, check_lock_timeout, grant_to_no_one, migration_lock
from migrator.roles import AppRole, provision_app_role
from migrator.sqlsplit import Statement
from redaction import Redactor

DEFAULT_MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
TABLE_NAME = "lifeguard_schema_migrations"

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
    """The migrations' direct connection (autocommit; transactions are opened explicitly)."""

    def __init__(self, conn: psycopg.Connection[Any], target: str, redactor: Redactor) -> None:
        self.conn = conn
        self.target = target
        self.redactor = redactor
        self.schema = bookkeeping_schema(conn)
        # Qualified once: a migration that changes search_path does not move the bookkeeping.
        self.table = sql.Identifier(self.schema, TABLE_NAME)

    # -- bookkeeping -------------------------------------------------------------------

    def table_exists(self) -> bool:
        row = self.conn.execute(
            "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL", (self.schema, TABLE_NAME)
        ).fetchone()
        return bool(row and row[0])

    def ensure_table(self) -> None:
        if self.table_exists():
            return
        # Created granted to no one but its owner, whatever default privileges say.
        with self.conn.transaction():
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
            grant_to_no_one(self.conn, self.table)
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

    # -- applying ----------------------------------------------------------------------

    def pin_settings(self) -> None:
        """Pin the session settings again: a previous file (or statement) may have changed them."""
        pin_settings(self.conn)

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


@contextmanager
def _open_session(url: str) -> Iterator[_Session]:
    with direct_connection(url) as direct:
        yield _Session(direct.conn, direct.target, direct.redactor)


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
    bookkeeping: Sequence[BookkeepingTable] = (),
    load: Callable[[Path], Sequence[Migration]] = load_migrations,
) -> MigrationReport:
    """Apply every pending migration in ``migrations_dir`` (default: the bundled ones) through ``url``.

    ``url`` must be the direct URL. Raises a :class:`migrator.errors.MigratorError` subclass on
    any failure; its message never contains the URL or password. A dry run checks the same
    things (pooler, files, drift) without taking the lock or changing anything. ``app_role``, when
    given, is provisioned under the lock before any migration (:mod:`migrator.roles`), with no privilege
    on the tools' bookkeeping tables nor on ``bookkeeping`` (:mod:`migrator.bookkeeping`). ``load``
    reads and checks the files (:func:`migrator.files.load_migrations`); whatever it lets through,
    applying checks again that a file did not end the migrator's transaction itself.
    """
    check_lock_timeout(lock_timeout_s)
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
        with migration_lock(url, lock_timeout_s, schema=session.schema) as lock:
            session.ensure_table()
            if app_role is not None:
                for secret in app_role.secrets:
                    session.redactor.add_secret(secret)
                provision_app_role(session.conn, app_role, session.schema,
                                   (session.table, sql.Identifier(session.schema, LOCK_VIEW)), bookkeeping=bookkeeping)
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
                lock.check_held()
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
