"""The database client the functions share: one lazily opened connection per instance.

A Lambda instance serves one invocation at a time and lives for many of them, so each instance
holds exactly one connection, opened on the first invocation and reused while warm; the pooler
(PgBouncer in transaction mode) does the pooling. That shapes everything here:

* No prepared statements unless the stack says the pooler tracks them (PgBouncer >= 1.21 with
  ``max_prepared_statements``; ``LIFEGUARD_POOLER_PREPARED_STATEMENTS=1``, which infra and the local
  stack set from the pooler's settings): psycopg's default ``prepare_threshold=5`` names statements
  ``_pg3_0``, ``_pg3_1``, ... per client, and through a transaction pooler two clients meet on
  one server connection and collide (``prepared statement "_pg3_0" already exists``).
* No session state: consecutive transactions of one client run on different server connections,
  and a session ``SET`` would leak to whichever client gets that server next. Timeouts are set
  with ``SET LOCAL`` inside the transaction.
* A warm instance may find its connection dead (the pooler closed it after
  ``client_idle_timeout``, was restarted, or the network path lost the flow while the instance
  was frozen). It then reconnects once, but only while nothing of the invocation has run yet: a
  transaction whose ``COMMIT`` was sent and not answered has an unknown outcome and is reported,
  never re-run.

The URL comes from ``DATABASE_URL`` (local) or from the Secrets Manager secret named by
``DATABASE_URL_SECRET_ARN`` (AWS, fetched once per instance, and once more when the pooler rejects
its credentials: a changed password rolls the pooler, and a warm instance would otherwise keep
failing with the old URL until Lambda recycles it). It never appears in a log line or an exception
message.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow

from database_urls import POOLED_URL_ENV, POOLED_URL_SECRET_ARN_ENV
from lambdas.contract import CONNECT_TIMEOUT_ENV, PREPARED_ENV, STATEMENT_TIMEOUT_ENV
from redaction import Redactor, redact, url_problem

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

logger = logging.getLogger(__name__)

MIN_CONNECT_TIMEOUT_S = 2
MAX_CONNECT_TIMEOUT_S = 900
"""Lambda's longest timeout: a connection attempt cannot usefully wait longer."""
MAX_STATEMENT_TIMEOUT_MS = 2**31 - 1
"""Postgres' ``statement_timeout`` is an int of milliseconds."""

Connection = psycopg.Connection[TupleRow]
SecretsClientFactory = Callable[[str], "SecretsManagerClient"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigurationError(RuntimeError):
    """The function is set up wrongly (environment, secret); the message says what to change."""


class DatabaseUnavailable(RuntimeError):
    """The database could not serve this invocation; safe to show to the caller.

    ``reason`` is a stable code, ``str()`` a fixed sentence the caller can act on (never the
    driver's text, which names hosts and users), ``retryable`` whether trying again later can help.
    """

    def __init__(self, reason: str, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.retryable = retryable


class OutcomeUnknown(DatabaseUnavailable):
    """The connection was lost after ``COMMIT`` was sent: the transaction may or may not have committed."""


class TransactionAborted(RuntimeError):
    """The transaction body swallowed a database error; the transaction was rolled back, not committed."""


# Fixed messages per failure reason: what happened and what the caller can do about it.
_MESSAGES: dict[str, tuple[str, bool]] = {
    "unreachable": (
        "could not connect to the database (connection refused or timed out); retry later, and check "
        "that the pooler is running and reachable from the function",
        True,
    ),
    "authentication_failed": (
        f"the database rejected the function's credentials; check the {POOLED_URL_ENV} secret",
        False,
    ),
    "pool_timeout": (
        "all pooled database connections stayed busy longer than the pooler's query_wait_timeout; "
        "retry with backoff, or raise the pool size",
        True,
    ),
    "overloaded": (
        "the pooler or the database refused more connections; retry with backoff",
        True,
    ),
    "database_unreachable": (
        "the pooler could not reach the database server; retry later",
        True,
    ),
    "connection_lost": (
        "the database connection was lost before the transaction committed; nothing was written, "
        "retry the call",
        True,
    ),
    "statement_timeout": (
        "a database statement ran longer than the statement timeout and was cancelled; nothing was "
        "written, retry later",
        True,
    ),
    "lock_timeout": (
        "timed out waiting for a database lock; nothing was written, retry later",
        True,
    ),
    "outcome_unknown": (
        "the database connection was lost while committing, so the outcome is unknown; retry with "
        "the same idempotency key, which applies the change at most once",
        True,
    ),
}


def unavailable(reason: str) -> DatabaseUnavailable:
    message, retryable = _MESSAGES[reason]
    cls = OutcomeUnknown if reason == "outcome_unknown" else DatabaseUnavailable
    return cls(reason, message, retryable=retryable)


def _overloaded(state: str, text: str) -> bool:
    # 53300 arrives as "too many clients already", or as "remaining connection slots are reserved
    # ..." once only superuser slots are left: the same condition to a caller. PgBouncer's own limit
    # is "no more connections allowed (max_client_conn)".
    return (
        state == "53300"
        or "no more connections allowed" in text
        or "too many clients" in text
        or "remaining connection slots are reserved" in text
    )


def _classify(exc: psycopg.Error, *, default: str) -> str:
    """Map a driver or pooler error to a reason code, from its SQLSTATE or the pooler's message.

    PgBouncer reports its own conditions as 08P01 with the condition as the message, and a
    failed login arrives without SQLSTATE and with the server's message in the text.
    """
    state = exc.sqlstate or ""
    text = (exc.diag.message_primary or str(exc)).lower()
    if "query_wait_timeout" in text:
        return "pool_timeout"
    # PgBouncer could not log in to Postgres (stopped, rebooting, failing over, full) and refuses
    # clients for server_login_retry seconds, quoting the cached error: "server login has been
    # failing, cached error: connect failed (server_login_retry)" since 1.2x, "pgbouncer cannot
    # connect to server" before. A login that waited for a server it never got ends in
    # "client_login_timeout (server down)". The caller's credentials were accepted, so a cached
    # "authentication failed" is the pooler's own login, not a reason to stop retrying.
    if "server_login_retry" in text or "server login has been failing" in text:
        return "overloaded" if _overloaded("", text) else "database_unreachable"
    if "cannot connect to server" in text or "(server down)" in text:
        return "database_unreachable"
    if _overloaded(state, text):
        return "overloaded"
    if state.startswith("28") or "authentication failed" in text:
        return "authentication_failed"
    if state == "57014":
        return "statement_timeout"
    if state == "55P03":
        return "lock_timeout"
    return default


def _lost_in_transit(exc: psycopg.Error) -> bool:
    """True when a statement failed because the connection had died, not because it was refused.

    Transport losses carry no SQLSTATE; 57P01/57P02 is a server shutdown or a terminated backend;
    ``client_idle_timeout`` is PgBouncer closing an idle client. Anything else (notably
    ``query_wait_timeout``, which took a full queue wait to arrive) is not retried.
    """
    state = exc.sqlstate
    if state is None or state in ("57P01", "57P02"):
        return True
    return state == "08P01" and (exc.diag.message_primary or "") == "client_idle_timeout"


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be 1 or 0 (true/false), got {value!r}")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    # Bounded before int(): Python refuses to parse more than 4300 digits with a ValueError of its own.
    if len(raw) > 20:
        raise ConfigurationError(f"{name} must be from {minimum} to {maximum}, got {len(raw)} characters")
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigurationError(f"{name} must be from {minimum} to {maximum}, got {value}")
    return value


@dataclass(frozen=True)
class ClientSettings:
    """How the client connects; every default is chosen for a function behind the NLB and PgBouncer."""

    pooler_prepared_statements: bool = False
    """Trust the pooler to track protocol-level prepared statements (PgBouncer >= 1.21 with
    ``max_prepared_statements`` > 0). Off: psycopg never prepares (``prepare_threshold=None``)."""
    connect_timeout: int = 5
    """Seconds per connection attempt (libpq's minimum is 2): fail well inside the function timeout."""
    statement_timeout_ms: int = 10_000
    """``SET LOCAL statement_timeout`` in every transaction; 0 leaves the server's setting alone."""
    keepalives_idle: int = 60
    """TCP keepalive after 60 s idle: far below the NLB's 350 s, so idle warm flows are not dropped."""
    keepalives_interval: int = 10
    keepalives_count: int = 6
    application_name: str = "lifeguard"

    def __post_init__(self) -> None:
        # Checked here, when the configuration is read: a value Postgres or libpq refuses would
        # otherwise fail every call later, looking like a lost connection (503, retryable).
        if not MIN_CONNECT_TIMEOUT_S <= self.connect_timeout <= MAX_CONNECT_TIMEOUT_S:
            raise ConfigurationError(
                f"{CONNECT_TIMEOUT_ENV} must be from {MIN_CONNECT_TIMEOUT_S} (libpq's minimum) to "
                f"{MAX_CONNECT_TIMEOUT_S} seconds (a function's longest run), got {self.connect_timeout}"
            )
        if not 0 <= self.statement_timeout_ms <= MAX_STATEMENT_TIMEOUT_MS:
            raise ConfigurationError(
                f"{STATEMENT_TIMEOUT_ENV} must be 0 (off) or a number of ms up to {MAX_STATEMENT_TIMEOUT_MS} "
                f"(Postgres' largest statement_timeout), got {self.statement_timeout_ms}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ClientSettings:
        return cls(
            pooler_prepared_statements=_flag(env, PREPARED_ENV),
            connect_timeout=_int(
                env, CONNECT_TIMEOUT_ENV, cls.connect_timeout, MIN_CONNECT_TIMEOUT_S, MAX_CONNECT_TIMEOUT_S
            ),
            statement_timeout_ms=_int(
                env, STATEMENT_TIMEOUT_ENV, cls.statement_timeout_ms, 0, MAX_STATEMENT_TIMEOUT_MS
            ),
            # Lambda names the function; it shows in pg_stat_activity and the pooler's SHOW CLIENTS.
            application_name=env.get("AWS_LAMBDA_FUNCTION_NAME", cls.application_name)[:63],
        )

    @property
    def prepare_threshold(self) -> int | None:
        return 5 if self.pooler_prepared_statements else None

    def libpq_defaults(self) -> dict[str, str | int]:
        """Connection parameters applied unless the URL sets them itself."""
        return {
            "connect_timeout": self.connect_timeout,
            "keepalives": 1,
            "keepalives_idle": self.keepalives_idle,
            "keepalives_interval": self.keepalives_interval,
            "keepalives_count": self.keepalives_count,
            "application_name": self.application_name,
        }


def _default_secrets_client(region: str) -> SecretsManagerClient:
    import boto3  # only on AWS; local runs never need it
    from botocore.config import Config

    config = Config(connect_timeout=5, read_timeout=5, retries={"max_attempts": 3, "mode": "standard"})
    return boto3.client("secretsmanager", region_name=region, config=config)


def _check_url(url: str, source: str) -> dict[str, Any]:
    """Parse the connection string; on failure say where it came from, never what it contains."""
    if not url.strip():
        raise ConfigurationError(f"{source} is empty; it must hold a postgresql:// URL")
    problem = url_problem(url)
    if problem is not None:
        # libpq would misread it and then quote the pieces (password included) in its errors.
        raise ConfigurationError(f"{source} cannot be used as written: {problem}")
    try:
        return dict(conninfo_to_dict(url))
    except psycopg.Error:
        # libpq's parse errors quote fragments of the string, which may include the password.
        raise ConfigurationError(
            f"{source} is not a valid PostgreSQL connection URL (expected "
            "postgresql://USER:PASSWORD@HOST:PORT/DBNAME?sslmode=require)"
        ) from None


def fetch_secret_url(arn: str, client_factory: SecretsClientFactory = _default_secrets_client) -> str:
    """The URL stored as the SecretString of ``arn`` (the client is created in the ARN's region)."""
    parts = arn.split(":")
    if len(parts) < 7 or parts[0] != "arn" or parts[2] != "secretsmanager" or not parts[3]:
        raise ConfigurationError(
            f"{POOLED_URL_SECRET_ARN_ENV} must be a Secrets Manager secret ARN "
            f"(arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME), got {arn!r}"
        )
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = client_factory(parts[3]).get_secret_value(SecretId=arn)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise ConfigurationError(
            f"could not read the database secret {arn} ({code}); check that the function's role "
            "may call secretsmanager:GetSecretValue on it"
        ) from None
    except BotoCoreError as exc:
        raise ConfigurationError(
            f"could not reach Secrets Manager for {arn} ({type(exc).__name__}); a function in private "
            "subnets needs a Secrets Manager VPC endpoint or a NAT route"
        ) from None
    secret = response.get("SecretString")
    if not secret:
        raise ConfigurationError(f"the secret {arn} has no SecretString; store the URL as the secret's text")
    return secret


@dataclass
class DatabaseStats:
    connects: int = 0
    """Connections opened by this instance (1 on the cold start, +1 per reconnect)."""
    reconnects: int = 0
    """Warm connections found dead and replaced before the invocation ran anything."""
    secret_fetches: int = 0


@dataclass
class Database:
    """One function instance's database access: a lazily opened connection, reused while warm.

    Give every concurrent instance its own ``Database``: one serves one invocation at a time, as
    a Lambda instance does. With no ``url``, the URL is resolved from ``env`` (default
    ``os.environ``) on first use, then kept for the life of the instance.
    """

    url: str | None = field(default=None, repr=False)
    settings: ClientSettings | None = None
    env: Mapping[str, str] | None = field(default=None, repr=False)
    secrets_client_factory: SecretsClientFactory = field(default=_default_secrets_client, repr=False)
    stats: DatabaseStats = field(default_factory=DatabaseStats)
    _resolved: tuple[str, ClientSettings] | None = field(default=None, init=False, repr=False)
    _from_secret: bool = field(default=False, init=False, repr=False)
    _conn: Connection | None = field(default=None, init=False, repr=False)
    _busy: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    # -- configuration ----------------------------------------------------------------------

    def resolve(self) -> tuple[str, ClientSettings]:
        """The URL and settings, read once per instance (one Secrets Manager call at most)."""
        if self._resolved is None:
            env = os.environ if self.env is None else self.env
            settings = self.settings or ClientSettings.from_env(env)
            if self.url is not None:
                url, source = self.url, "the database URL"
            else:
                url, source = self._url_from_env(env)
            _check_url(url, source)
            self._resolved = (url, settings)
        return self._resolved

    def _url_from_env(self, env: Mapping[str, str]) -> tuple[str, str]:
        plain, arn = env.get(POOLED_URL_ENV, "").strip(), env.get(POOLED_URL_SECRET_ARN_ENV, "").strip()
        if plain and arn:
            raise ConfigurationError(
                f"both {POOLED_URL_ENV} and {POOLED_URL_SECRET_ARN_ENV} are set; set only one "
                f"({POOLED_URL_ENV} locally, {POOLED_URL_SECRET_ARN_ENV} on AWS)"
            )
        if arn:
            url = fetch_secret_url(arn, self.secrets_client_factory)
            self.stats.secret_fetches += 1
            self._from_secret = True
            return url, f"the secret {arn}"
        if plain:
            return plain, POOLED_URL_ENV
        raise ConfigurationError(
            f"no database configured: set {POOLED_URL_ENV} (a postgresql:// URL) or {POOLED_URL_SECRET_ARN_ENV} "
            "(the ARN of a Secrets Manager secret holding it)"
        )

    # -- connections ------------------------------------------------------------------------

    def _connect(self) -> Connection:
        """Open a connection; after an authentication failure, re-read the secret once and try again."""
        try:
            return self._open()
        except DatabaseUnavailable as exc:
            if exc.reason != "authentication_failed" or not self._from_secret:
                raise
        # The credentials may have changed since this instance read them: one fresh read, one more try.
        logger.info("the database rejected the credentials; reading the secret again")
        self._resolved = None
        return self._open()

    def conninfo(self) -> str:
        """What libpq is given: the URL, plus :meth:`ClientSettings.libpq_defaults` it does not set itself."""
        url, settings = self.resolve()
        in_url = _check_url(url, "the database URL")
        defaults = {k: v for k, v in settings.libpq_defaults().items() if k not in in_url}
        return make_conninfo(url, **defaults)

    def _open(self) -> Connection:
        _, settings = self.resolve()
        try:
            conn = psycopg.connect(self.conninfo(), autocommit=True, prepare_threshold=settings.prepare_threshold)
        except psycopg.Error as exc:
            reason = _classify(exc, default="unreachable")
            logger.warning("database connect failed: %s (%s)", reason, self._redact(_summary(exc)),
                           extra={"outcome": "connect_failed", "reason": reason})
            raise unavailable(reason) from None
        self.stats.connects += 1
        return conn

    def _warm_connection(self) -> Connection | None:
        """The kept connection if it still looks alive, without a round trip.

        An idle client connection has nothing to read. Readable data means the pooler or server
        spoke unasked, which in practice is an error followed by a close (``client_idle_timeout``,
        a restart, a terminated backend) or a bare EOF: drop it and let the caller reconnect.
        """
        conn = self._conn
        if conn is None:
            return None
        if not conn.closed and conn.pgconn.transaction_status == pq.TransactionStatus.IDLE:
            try:
                readable = _readable(conn.pgconn.socket)
            except (OSError, ValueError, psycopg.OperationalError):
                readable = True
            if not readable:
                return conn
        logger.info("the kept connection was closed while idle; reconnecting", extra={"outcome": "idle_closed"})
        self._discard()
        return None

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(psycopg.Error):
                conn.close()

    def _begin(self, read_only: bool) -> Connection:
        """Open the transaction: ``BEGIN`` and ``SET LOCAL`` in one round trip.

        That round trip doubles as the liveness check of a warm connection: if the connection
        turns out to be dead, nothing of the invocation has run (BEGIN changes nothing), so it is
        the one place where reconnecting and trying again is safe.
        """
        _, settings = self.resolve()
        start = "BEGIN READ ONLY" if read_only else "BEGIN"
        if settings.statement_timeout_ms:
            # An int from validated settings: no quoting concerns, and one simple-protocol message.
            start += f"; SET LOCAL statement_timeout = {int(settings.statement_timeout_ms)}"
        conn = self._warm_connection()
        warm = conn is not None
        while True:
            if conn is None:
                if self.stats.connects:
                    self.stats.reconnects += 1
                conn = self._connect()
                self._conn = conn
            try:
                conn.execute(start, prepare=False)
                return conn
            except psycopg.Error as exc:
                dead = conn.closed
                self._discard()
                if not (warm and dead and _lost_in_transit(exc)):
                    reason = _classify(exc, default="connection_lost")
                    logger.warning("could not start a transaction: %s (%s)", reason, self._redact(_summary(exc)),
                                   extra={"outcome": "begin_failed", "reason": reason})
                    raise unavailable(reason) from None
                logger.info("warm connection was dead (%s); reconnecting once", self._redact(_summary(exc)),
                            extra={"outcome": "warm_dead"})
                conn, warm = None, False  # a fresh connection gets no second chance

    @contextmanager
    def transaction(self, *, read_only: bool = False) -> Iterator[Connection]:
        """Run the block in one transaction: committed if it returns, rolled back if it raises.

        Database failures surface as :class:`DatabaseUnavailable` (with a message safe to return
        to the caller) or :class:`OutcomeUnknown` when the ``COMMIT`` itself went unanswered.
        Errors in the SQL itself (constraint violations and the like) propagate unchanged.
        """
        if not self._busy.acquire(blocking=False):
            raise RuntimeError(
                "this Database is already serving an invocation; give each concurrent instance its own"
            )
        try:
            conn = self._begin(read_only)
            try:
                yield conn
            except BaseException as exc:
                self._rollback(conn)
                if isinstance(exc, psycopg.Error) and (conn.closed or _classify(exc, default="") != ""):
                    reason = _classify(exc, default="connection_lost")
                    logger.warning("transaction failed: %s (%s)", reason, self._redact(_summary(exc)),
                                   extra={"outcome": "transaction_failed", "reason": reason})
                    raise unavailable(reason) from exc
                raise
            self._commit(conn, read_only)
        finally:
            self._busy.release()

    def _rollback(self, conn: Connection) -> None:
        if conn.closed:
            self._discard()
            return
        try:
            conn.execute("ROLLBACK", prepare=False)
        except psycopg.Error:
            self._discard()

    def _commit(self, conn: Connection, read_only: bool) -> None:
        if conn.pgconn.transaction_status == pq.TransactionStatus.INERROR:
            # COMMIT would silently roll back; say so instead of reporting success.
            self._rollback(conn)
            raise TransactionAborted("a statement in the transaction failed and its error was caught; rolled back")
        try:
            conn.execute("COMMIT", prepare=False)
        except psycopg.Error as exc:
            if conn.closed:
                self._discard()
                if read_only:
                    # Nothing to commit: what the block read stands; the next invocation reconnects.
                    logger.info("connection lost after a read-only transaction (%s)", self._redact(_summary(exc)),
                                extra={"outcome": "lost_after_read"})
                    return
                logger.error("connection lost during COMMIT: outcome unknown (%s)", self._redact(_summary(exc)),
                             extra={"outcome": "commit_unknown"})
                raise unavailable("outcome_unknown") from None
            # A deferred constraint or serialization failure at commit: rolled back, report as is.
            self._rollback(conn)
            raise

    def close(self) -> None:
        """Close the connection (the next transaction opens a new one)."""
        self._discard()

    def reset(self) -> None:
        """Close, forget the resolved URL and settings, and zero the stats (tests, env changes)."""
        self._discard()
        self._resolved = None
        self.stats = DatabaseStats()

    # -- secrets hygiene --------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        """Remove the URL and password from driver text before it is logged (belt and braces)."""
        if self._resolved is None:
            return redact(text)
        return Redactor([self._resolved[0]])(text)


def _readable(fd: int) -> bool:
    """Whether ``fd`` has data or EOF waiting, without blocking.

    ``poll`` rather than ``select``: a process hosting thousands of instances (the local invoker)
    has descriptors above select's limit of 1024.
    """
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    ready, _, _ = select.select([fd], [], [], 0)  # platforms without poll (Windows)
    return bool(ready)


def _summary(exc: psycopg.Error) -> str:
    state = exc.sqlstate or "no sqlstate"
    first_line = (exc.diag.message_primary or str(exc)).strip().splitlines()
    return f"{type(exc).__name__} [{state}]: {first_line[0] if first_line else ''}"


default = Database()
"""The instance's database when running as a Lambda function: configured from the environment."""


def reset() -> None:
    """Forget the default instance's connection and configuration (tests; a new env takes effect)."""
    default.reset()
