"""Read PgBouncer's admin console: ``SHOW POOLS``, ``SHOW STATS`` and ``SHOW LISTS``.

One short connection per sample, closed at once: a held console session would count against
``max_client_conn`` and would break on every PgBouncer restart. The console speaks only the
simple query protocol (an extended-protocol message gets "extended query protocol not supported
by admin console"), so every query goes through a :class:`psycopg.ClientCursor`, which never
prepares and sends plain ``Query`` messages.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pgbouncer.contract import LISTEN_PORT

ADMIN_DB = "pgbouncer"
"""The console's virtual database; its own pool is bookkeeping, not traffic, and is left out."""


class Clock(Protocol):
    """What the reader needs of :mod:`time`; tests pass their own."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...


class ConsoleError(RuntimeError):
    """The console could not be read; the message holds no credentials."""


@dataclass(frozen=True)
class ConsoleTarget:
    """Where and as whom to reach the console.

    ``host`` follows libpq: a path (the ``unix_socket_dir``) means the Unix socket, whose file
    name carries ``port``; anything else is a TCP host, reached with ``sslmode`` (libpq ignores it
    on a socket). The user must be in ``stats_users`` (read-only) or ``admin_users``, and have a
    line in the ``auth_file``; the ``pgbouncer`` user needs no password over the socket when the
    reader runs under PgBouncer's own uid.
    """

    host: str
    port: int
    user: str
    password: str | None = field(default=None, repr=False)
    sslmode: str = "require"
    connect_timeout: int = 5
    sslrootcert: str | None = None
    """The CA file ``sslmode=verify-ca``/``verify-full`` checks the pooler's certificate against."""

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("console host is empty: give the unix_socket_dir (a path) or a host name")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"console port must be between 1 and 65535, got {self.port}")
        if not self.user:
            raise ValueError("console user is empty: give a user listed in stats_users")
        if self.connect_timeout < 1:
            raise ValueError(f"connect_timeout must be at least 1 second, got {self.connect_timeout}")

    @classmethod
    def from_url(cls, url: str) -> ConsoleTarget:
        """From a ``postgresql://`` URL or ``key=value`` conninfo; its database part is ignored
        (the console is always ``pgbouncer``), so a pooled URL of a stats user works as is.

        Its ``sslmode`` and ``sslrootcert`` are kept as written. Over TCP the URL must name an
        ``sslmode``: choosing one for it would either drop the check it meant (``verify-full``) or
        claim a protection it did not ask for."""
        try:
            parts = conninfo_to_dict(url)
        except psycopg.ProgrammingError:
            # The parser's message may quote the URL, password included.
            raise ValueError("the console URL is not a valid postgresql:// URL or conninfo string") from None
        host = str(parts.get("host") or "")
        try:
            port = int(str(parts.get("port") or LISTEN_PORT))
        except ValueError:
            raise ValueError("the console URL's port is not a number") from None
        password = parts.get("password")
        sslmode, sslrootcert = parts.get("sslmode"), parts.get("sslrootcert")
        if not sslmode and host and not host.startswith("/"):
            raise ValueError(
                "the console URL reaches PgBouncer over TCP but names no sslmode: add "
                "sslmode=verify-full&sslrootcert=<the pooler's CA file> (or sslmode=require to encrypt "
                "without checking which server answers)"
            )
        return cls(
            host=host,
            port=port,
            user=str(parts.get("user") or ""),
            password=None if password is None else str(password),
            sslmode=str(sslmode or cls.sslmode),
            sslrootcert=str(sslrootcert) if sslrootcert else None,
        )

    @property
    def where(self) -> str:
        """Safe to print: the socket or host and port, never the password."""
        if self.host.startswith("/"):
            return f"{self.host.rstrip('/')}/.s.PGSQL.{self.port}"
        return f"{self.host}:{self.port}"

    def connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": ADMIN_DB,
            "connect_timeout": self.connect_timeout,
        }
        if not self.host.startswith("/"):
            params["sslmode"] = self.sslmode
            if self.sslrootcert:
                params["sslrootcert"] = self.sslrootcert
        if self.password is not None:
            params["password"] = self.password
        return psycopg.connect(autocommit=True, prepare_threshold=None, cursor_factory=psycopg.ClientCursor, **params)


@dataclass(frozen=True)
class PoolFigures:
    """One (database, user) pool from ``SHOW POOLS``."""

    database: str
    user: str
    cl_active: int
    cl_waiting: int
    sv_active: int
    sv_idle: int
    sv_used: int
    sv_login: int
    maxwait_seconds: float
    """How long the oldest waiting client has waited (``maxwait`` + ``maxwait_us``)."""

    @property
    def name(self) -> str:
        return f"{self.database}/{self.user}"


@dataclass(frozen=True)
class DatabaseTotals:
    """One database from ``SHOW STATS`` (PgBouncer counts per database, not per pool)."""

    database: str
    xact_count: int
    query_count: int
    wait_time_us: int
    avg_xact_per_s: float
    """PgBouncer's own average over its last ``stats_period``: the fallback rate."""
    avg_query_per_s: float


@dataclass(frozen=True)
class ConsoleSample:
    monotonic: float
    """When the sample was taken, for rates (``time.monotonic``)."""
    wall: float
    """The same moment as Unix time, for metric timestamps."""
    pools: tuple[PoolFigures, ...]
    databases: tuple[DatabaseTotals, ...]
    lists: Mapping[str, int]

    @property
    def client_connections(self) -> int:
        """Client connections in use, without the sampling connection itself."""
        return max(self.lists.get("used_clients", 0) - 1, 0)

    @property
    def server_connections(self) -> int:
        return self.lists.get("used_servers", 0)


def _rows(cur: psycopg.Cursor[tuple[Any, ...]], command: str) -> list[dict[str, Any]]:
    cur.execute(command)
    if cur.description is None:
        raise ConsoleError(f"{command} returned no result set")
    names = [column.name for column in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _int(row: Mapping[str, Any], column: str, command: str) -> int:
    try:
        value = row[column]
    except KeyError:
        raise ConsoleError(
            f"{command} has no column {column!r}; this PgBouncer version is not one the reader knows"
        ) from None
    # SHOW STATS sends its 64-bit counters as numeric, which psycopg reads as Decimal.
    if isinstance(value, int | Decimal):
        return int(value)
    try:
        return int(str(value))
    except ValueError:
        raise ConsoleError(f"{command} column {column!r} is not a number") from None


def _float(row: Mapping[str, Any], column: str, command: str) -> float:
    value = row.get(column)
    if value is None:
        raise ConsoleError(
            f"{command} has no column {column!r}; this PgBouncer version is not one the reader knows"
        )
    return float(value)


def read_console(conn: psycopg.Connection[Any], clock: Clock = time) -> ConsoleSample:
    """Run the three SHOW commands on an open console connection.

    Always through a :class:`psycopg.ClientCursor`, whatever cursor factory ``conn`` has: any
    extended-protocol message (a prepared or binary query) is refused by the console.
    """
    with psycopg.ClientCursor(conn) as cur:
        pools = _rows(cur, "SHOW POOLS")
        stats = _rows(cur, "SHOW STATS")
        lists = _rows(cur, "SHOW LISTS")
        monotonic, wall = clock.monotonic(), clock.time()
    pool_figures = tuple(
        PoolFigures(
            database=str(row["database"]),
            user=str(row["user"]),
            cl_active=_int(row, "cl_active", "SHOW POOLS"),
            cl_waiting=_int(row, "cl_waiting", "SHOW POOLS"),
            sv_active=_int(row, "sv_active", "SHOW POOLS"),
            sv_idle=_int(row, "sv_idle", "SHOW POOLS"),
            sv_used=_int(row, "sv_used", "SHOW POOLS"),
            sv_login=_int(row, "sv_login", "SHOW POOLS"),
            maxwait_seconds=_int(row, "maxwait", "SHOW POOLS") + _int(row, "maxwait_us", "SHOW POOLS") / 1e6,
        )
        for row in pools
        if row.get("database") != ADMIN_DB
    )
    totals = tuple(
        DatabaseTotals(
            database=str(row["database"]),
            xact_count=_int(row, "total_xact_count", "SHOW STATS"),
            query_count=_int(row, "total_query_count", "SHOW STATS"),
            wait_time_us=_int(row, "total_wait_time", "SHOW STATS"),
            avg_xact_per_s=_float(row, "avg_xact_count", "SHOW STATS"),
            avg_query_per_s=_float(row, "avg_query_count", "SHOW STATS"),
        )
        for row in stats
        if row.get("database") != ADMIN_DB
    )
    list_values = {str(row["list"]): _int(row, "items", "SHOW LISTS") for row in lists}
    return ConsoleSample(monotonic, wall, pool_figures, totals, list_values)


def sample_console(target: ConsoleTarget, clock: Clock = time) -> ConsoleSample:
    """Connect, read, disconnect. Any failure becomes a :class:`ConsoleError` without secrets."""
    try:
        with target.connect() as conn:
            return read_console(conn, clock)
    except psycopg.Error as exc:
        # libpq's messages name the socket or host and the user, never the password.
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConsoleError(f"PgBouncer console at {target.where}: {detail}") from None
