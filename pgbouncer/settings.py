"""The typed PgBouncer settings object and its renderer.

This is the single source of PgBouncer configuration: the image's entrypoint renders it at
container start on AWS, and the local stack and the tests render it for the real 1.18 here.
Every default below carries the reason it is the default for serverless clients.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pgbouncer import scram
from pgbouncer.contract import IMAGE_RUN_DIR, LISTEN_PORT
from pgbouncer.versions import PINNED, PgBouncerVersion

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# The NLB silently drops TCP flows idle for 350 s; PgBouncer must close idle clients first.
NLB_IDLE_TIMEOUT_S = 350
# Used with fullmatch only: '$' would let a trailing newline through, and a name or host is
# written into pgbouncer.ini, where a newline starts a new line.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,62}")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-.]{0,251}[A-Za-z0-9])?|/[^\s'\\]+")
# PgBouncer reads this shape in userlist.txt as an md5 hash, which SCRAM logins cannot use.
_LOOKS_MD5 = re.compile(r"^md5[0-9a-f]{32}$")
# PgBouncer 1.18 cuts longer auth_file passwords silently (or logs "password too long in auth file")
# and the user then fails SASL: measured, 1024 bytes log in and 1025 do not. 1.26 allows 65535.
MAX_PASSWORD_BYTES = 1024


# The auth_type values a pooler behind an NLB may use with an auth_file. PgBouncer also knows
# trust and any (no password at all), plain (cleartext passwords), cert (client certificates,
# which client_tls_sslmode=require never asks for) and, depending on the build, pam and ldap:
# refused, since each skips the check, cannot work here, or is not in every build.
AUTH_TYPES = ("scram-sha-256", "md5", "hba")
_WEAK_AUTH_TYPES = {
    "trust": "lets anyone who reaches the pooler log in as any user in auth_file without a password",
    "any": "lets anyone who reaches the pooler log in as any user without a password",
    "plain": "has clients send their password in clear text",
}
# Linux's limits for the keepalive socket options (setsockopt fails above them).
_MAX_KEEPALIVE_S = 32767
_MAX_KEEPCNT = 127
_UNBOUNDED = 2**31 - 1
# Real bounds of the typed numbers: (minimum, maximum, what the minimum means to PgBouncer). A
# negative timeout makes PgBouncer refuse its config file (a crash loop on ECS); the minimums
# above 0 are where 0 would break the service rather than the config file.
_BOUNDS: dict[str, tuple[int, int, str]] = {
    "listen_backlog": (1, 65535, "a backlog of 0 refuses connection bursts"),
    "reserve_pool_size": (0, _UNBOUNDED, ""),
    "max_db_connections": (0, _UNBOUNDED, "0 means the pool size"),
    # 0 means "never": idle clients would outlive the NLB's idle timeout and be dropped silently.
    "client_idle_timeout": (1, NLB_IDLE_TIMEOUT_S - 1, "0 would never close idle clients, and the NLB drops "
                            f"flows idle for {NLB_IDLE_TIMEOUT_S} s first"),
    "idle_transaction_timeout": (0, _UNBOUNDED, "0 turns it off"),
    "query_wait_timeout": (0, _UNBOUNDED, "0 waits forever"),
    "query_wait_notify": (0, _UNBOUNDED, "0 turns the notice off"),
    "client_login_timeout": (0, _UNBOUNDED, "0 turns it off"),
    "server_login_retry": (0, _UNBOUNDED, ""),
    "server_connect_timeout": (1, _UNBOUNDED, "0 fails every server login at once"),
    "server_idle_timeout": (0, _UNBOUNDED, "0 turns it off"),
    "server_lifetime": (0, _UNBOUNDED, "0 turns it off"),
    "dns_max_ttl": (0, _UNBOUNDED, ""),
    "tcp_keepidle": (0, _MAX_KEEPALIVE_S, "0 means the kernel default"),
    "tcp_keepintvl": (0, _MAX_KEEPALIVE_S, "0 means the kernel default"),
    "tcp_keepcnt": (0, _MAX_KEEPCNT, "0 means the kernel default"),
    "stats_period": (1, _UNBOUNDED, ""),
    "max_prepared_statements": (0, _UNBOUNDED, "0 turns prepared-statement tracking off"),
}


class SettingsError(ValueError):
    """A setting is invalid; the message says which one and what to change."""


@dataclass(frozen=True)
class Upstream:
    """The Postgres server PgBouncer connects to."""

    host: str
    """With ``server_tls_sslmode=verify-full`` this must be the name on the certificate (the RDS
    endpoint), not an IP: PgBouncer only checks the name and sends SNI in that mode."""
    dbname: str
    port: int = 5432
    alias: str = ""
    """The database name clients connect to; the real name when empty (same URL path as direct)."""

    @property
    def client_dbname(self) -> str:
        return self.alias or self.dbname


@dataclass(frozen=True)
class PoolerSettings:
    upstream: Upstream
    default_pool_size: int
    """Server connections per task; derive it with :class:`pgbouncer.sizing.PoolBudget`."""
    version: str = PINNED
    """The PgBouncer release the ini is for: keys it would reject are never written."""

    listen_addr: str = "0.0.0.0"  # noqa: S104 - the NLB reaches the task's ENI over IPv4
    listen_port: int = LISTEN_PORT
    unix_socket_dir: str = "/tmp"  # noqa: S108 - the admin console and health checks over a local socket
    auth_file: str = f"{IMAGE_RUN_DIR}/userlist.txt"  # auth_query cannot read pg_authid on RDS
    auth_type: str = "scram-sha-256"  # RDS stores SCRAM; refuse md5 clients explicitly
    admin_users: tuple[str, ...] = ()  # none by default: the socket's `pgbouncer` user suffices
    stats_users: tuple[str, ...] = ()  # read-only console users for the metrics publisher
    pool_mode: str = "transaction"  # the point of the kit: a backend only for a transaction
    max_client_conn: int = 10000  # Lambda fan-out: thousands of idle warm instances per task
    reserve_pool_size: int = 0  # keep the connection budget deterministic
    max_db_connections: int = 0
    """Hard per-task cap on server connections; 0 means "the pool size" (protects the budget)."""
    listen_backlog: int = 4096  # the default 128 drops connection bursts on cold starts
    client_idle_timeout: int = 300  # below the NLB's 350 s, so PgBouncer closes clients cleanly
    idle_transaction_timeout: int = 60  # frees a backend held by a frozen or timed-out function
    query_wait_timeout: int = 20  # a queued client gets a pooler error before the function times out
    query_wait_notify: int = 5
    """1.25+: a client queued this long for a server gets a NOTICE its driver can log, well before
    ``query_wait_timeout``'s error: a slow function's log then says it waited for the pool."""
    client_login_timeout: int = 15  # frees slots held by half-open logins during cold-start storms
    server_login_retry: int = 3  # the default 15 s turns a brief failover into 15 s of errors
    server_connect_timeout: int = 5  # fail fast when the database is unreachable
    server_idle_timeout: int = 300  # give idle backends back to Postgres after a burst
    server_lifetime: int = 3600  # rotate backends to pick up DNS and certificate changes
    dns_max_ttl: int = 15  # find the new primary within 15 s of a Multi-AZ failover
    tcp_keepalive: bool = True  # detect vanished function instances (the OS default is 2 hours)
    tcp_keepidle: int = 60  # probe well inside the NLB's 350 s idle window
    tcp_keepintvl: int = 10  # then every 10 s ...
    tcp_keepcnt: int = 6  # ... and give up after a minute of silence
    server_tls_sslmode: str = "verify-full"  # encrypt and authenticate the database
    server_tls_ca_file: str = "/etc/pgbouncer/rds-ca-bundle.pem"  # the RDS CA bundle in the image
    client_tls_sslmode: str = "require"  # encrypt clients; verify-* would demand client certs
    # The entrypoint generates a self-signed pair here when none is mounted (clients don't verify).
    client_tls_cert_file: str = f"{IMAGE_RUN_DIR}/tls/server.crt"
    client_tls_key_file: str = f"{IMAGE_RUN_DIR}/tls/server.key"
    # JDBC and lib/pq send extra_float_digits; postgres.js sends every URL parameter it does not know as
    # one, and sslrootcert (a client-side file, meaningless to a server) is in DATABASE_URL.
    ignore_startup_parameters: tuple[str, ...] = ("extra_float_digits", "sslrootcert")
    log_connections: bool = False  # Lambda churn would flood the logs
    log_disconnections: bool = False  # likewise
    log_pooler_errors: bool = True  # auth, TLS and limit errors are what operators debug
    log_stats: bool = True  # one throughput line per period, no agent needed
    stats_period: int = 60  # one stats line a minute matches CloudWatch's 1-minute resolution
    max_prepared_statements: int = 200
    """1.21+: PgBouncer tracks protocol-level prepared statements per client in transaction mode.
    200 is 1.24's own default, and twice psycopg's ``prepared_max`` (100 per connection): every
    statement one client keeps prepared fits a server connection's cache without evictions, at
    a bounded cost (at most 200 plans per server connection in Postgres)."""
    so_reuseport: bool = False  # several processes on one port (one core each)
    pidfile: str = ""  # none in the container (PID 1); the local stack sets one per process
    logfile: str = ""  # empty: log to stderr, which the container runtime collects
    extra: Mapping[str, str] = field(default_factory=dict)
    """Further ``[pgbouncer]`` keys; each must be one the target version accepts."""

    def __post_init__(self) -> None:
        self.validate()

    @property
    def parsed_version(self) -> PgBouncerVersion:
        return PgBouncerVersion.parse(self.version)

    def validate(self) -> None:
        try:
            version = self.parsed_version
        except ValueError as exc:
            raise SettingsError(f"version: {exc}") from None
        if not _NAME.fullmatch(self.upstream.dbname) or not _NAME.fullmatch(self.upstream.client_dbname):
            raise SettingsError(
                f"database name {self.upstream.client_dbname!r} must be letters, digits, '_' or '-'"
            )
        if not _HOST.fullmatch(self.upstream.host):
            raise SettingsError(f"upstream host {self.upstream.host!r} is not a host name, IP or socket dir")
        for name, port in (("listen_port", self.listen_port), ("upstream port", self.upstream.port)):
            if not 1 <= port <= 65535:
                raise SettingsError(f"{name} must be between 1 and 65535, got {port}")
        if self.default_pool_size < 1:
            raise SettingsError(
                f"default_pool_size must be at least 1, got {self.default_pool_size} "
                "(0 would mean 'unlimited' from 1.24 on)"
            )
        if self.max_client_conn < 1:
            raise SettingsError(f"max_client_conn must be at least 1, got {self.max_client_conn}")
        if self.tcp_keepalive and not 1 <= self.tcp_keepidle < NLB_IDLE_TIMEOUT_S:
            raise SettingsError(
                f"tcp_keepidle must be between 1 and {NLB_IDLE_TIMEOUT_S - 1} with tcp_keepalive on "
                f"(got {self.tcp_keepidle}) to keep NLB flows alive: the NLB drops flows idle for "
                f"{NLB_IDLE_TIMEOUT_S} s, and 0 means the kernel's 2-hour default"
            )
        for name, (low, high, meaning) in _BOUNDS.items():
            _check_bounds(name, getattr(self, name), low, high, meaning)
        if self.auth_type in _WEAK_AUTH_TYPES:
            raise SettingsError(
                f"auth_type {self.auth_type} {_WEAK_AUTH_TYPES[self.auth_type]}; use scram-sha-256"
            )
        if self.auth_type not in AUTH_TYPES:
            raise SettingsError(f"auth_type must be one of {', '.join(AUTH_TYPES)}, not {self.auth_type!r}")
        if self.auth_type == "hba" and "auth_hba_file" not in self.extra:
            raise SettingsError("auth_type hba needs extra={'auth_hba_file': PATH}; PgBouncer refuses hba without it")
        if self.max_db_connections and self.max_db_connections < self.default_pool_size:
            raise SettingsError("max_db_connections must be 0 or at least default_pool_size")
        if self.pool_mode not in ("session", "transaction", "statement"):
            raise SettingsError(f"pool_mode must be session, transaction or statement, not {self.pool_mode!r}")
        for side, mode in (("server", self.server_tls_sslmode), ("client", self.client_tls_sslmode)):
            if mode not in SSL_MODES:
                raise SettingsError(f"{side}_tls_sslmode must be one of {', '.join(SSL_MODES)}, not {mode!r}")
        if self.server_tls_sslmode.startswith("verify") and not self.server_tls_ca_file:
            raise SettingsError(f"server_tls_sslmode={self.server_tls_sslmode} needs server_tls_ca_file")
        if self.client_tls_sslmode.startswith("verify"):
            raise SettingsError(
                "client_tls_sslmode verify-ca/verify-full would demand client certificates from every "
                "function; use 'require'"
            )
        if self.client_tls_sslmode != "disable" and not (self.client_tls_cert_file and self.client_tls_key_file):
            raise SettingsError("client TLS needs client_tls_cert_file and client_tls_key_file")
        for users in (self.admin_users, self.stats_users):
            for user in users:
                if not _NAME.fullmatch(user):
                    raise SettingsError(f"console user name {user!r} must be letters, digits, '_' or '-'")
        for key in self.extra:
            if key in _rendered_keys():
                raise SettingsError(f"extra key {key!r} is a typed setting; set the field instead")
            if not version.accepts(key):
                raise SettingsError(f"PgBouncer {version} does not know the setting {key!r}; it would refuse to start")
        _check_value(f"[databases] entry {self.upstream.client_dbname!r}", self._database_line())
        for key, value in self._pairs(version):
            _check_value(key, value)

    @property
    def tracks_prepared_statements(self) -> bool:
        """Whether clients may prepare statements through this pooler (tells the functions so)."""
        return self.parsed_version.accepts("max_prepared_statements") and self.max_prepared_statements > 0

    @property
    def effective_max_db_connections(self) -> int:
        return self.max_db_connections or self.default_pool_size + self.reserve_pool_size

    @property
    def max_user_connections(self) -> int:
        """One below the database's cap, for each login role: a slot the other role can always get.

        A password rotation (docs/roles.md) switches ``DATABASE_URL`` between two login roles, each
        with its own pool, both under ``max_db_connections``. PgBouncer makes room for a pool only by
        closing *idle* servers of another, so with the active role's clients queued on every server the
        other role could not log in at all. The task's total stays ``max_db_connections``.
        """
        return max(1, self.effective_max_db_connections - 1)

    def required_open_files(self, pools: int = 1) -> int:
        """File descriptors PgBouncer may need: every client, every server, plus listeners and logs.

        PgBouncer only logs its own estimate at start, then fails ``accept()`` with EMFILE under
        load; the entrypoint refuses to start below this number instead.
        """
        return self.max_client_conn + self.effective_max_db_connections * max(pools, 1) + 32

    # -- rendering -------------------------------------------------------------------------

    def _pairs(self, version: PgBouncerVersion) -> list[tuple[str, str]]:
        def b(flag: bool) -> str:
            return "1" if flag else "0"

        pairs: list[tuple[str, str]] = [
            ("listen_addr", self.listen_addr),
            ("listen_port", str(self.listen_port)),
            ("unix_socket_dir", self.unix_socket_dir),
            ("auth_type", self.auth_type),
            ("auth_file", self.auth_file),
            ("admin_users", ",".join(self.admin_users)),
            ("stats_users", ",".join(self.stats_users)),
            ("pool_mode", self.pool_mode),
            ("max_client_conn", str(self.max_client_conn)),
            ("default_pool_size", str(self.default_pool_size)),
            ("reserve_pool_size", str(self.reserve_pool_size)),
            ("max_db_connections", str(self.effective_max_db_connections)),
            ("max_user_connections", str(self.max_user_connections)),
            ("listen_backlog", str(self.listen_backlog)),
            ("client_idle_timeout", str(self.client_idle_timeout)),
            ("idle_transaction_timeout", str(self.idle_transaction_timeout)),
            ("query_wait_timeout", str(self.query_wait_timeout)),
            ("query_wait_notify", str(self.query_wait_notify)),
            ("client_login_timeout", str(self.client_login_timeout)),
            ("server_login_retry", str(self.server_login_retry)),
            ("server_connect_timeout", str(self.server_connect_timeout)),
            ("server_idle_timeout", str(self.server_idle_timeout)),
            ("server_lifetime", str(self.server_lifetime)),
            ("dns_max_ttl", str(self.dns_max_ttl)),
            ("tcp_keepalive", b(self.tcp_keepalive)),
            ("tcp_keepidle", str(self.tcp_keepidle)),
            ("tcp_keepintvl", str(self.tcp_keepintvl)),
            ("tcp_keepcnt", str(self.tcp_keepcnt)),
            ("server_tls_sslmode", self.server_tls_sslmode),
            # "secure" = TLS 1.2 and 1.3 only; stated for audits though it is the default.
            ("server_tls_protocols", "secure"),
            ("client_tls_sslmode", self.client_tls_sslmode),
            ("client_tls_protocols", "secure"),
            ("ignore_startup_parameters", ",".join(self.ignore_startup_parameters)),
            ("log_connections", b(self.log_connections)),
            ("log_disconnections", b(self.log_disconnections)),
            ("log_pooler_errors", b(self.log_pooler_errors)),
            ("log_stats", b(self.log_stats)),
            ("stats_period", str(self.stats_period)),
            ("so_reuseport", b(self.so_reuseport)),
        ]
        if self.server_tls_sslmode != "disable" and self.server_tls_ca_file:
            pairs.append(("server_tls_ca_file", self.server_tls_ca_file))
        if self.client_tls_sslmode != "disable":
            pairs += [
                ("client_tls_cert_file", self.client_tls_cert_file),
                ("client_tls_key_file", self.client_tls_key_file),
            ]
        if self.pidfile:
            pairs.append(("pidfile", self.pidfile))
        if self.logfile:
            pairs.append(("logfile", self.logfile))
        if version.accepts("max_prepared_statements"):
            pairs.append(("max_prepared_statements", str(self.max_prepared_statements)))
        pairs += sorted(self.extra.items())
        # Only keys the target release accepts: PgBouncer refuses to start on any other.
        return [(key, value) for key, value in pairs if version.accepts(key)]

    def _database_line(self) -> str:
        up = self.upstream
        return f"{up.client_dbname} = host={up.host} port={up.port} dbname={up.dbname}"

    def render_ini(self) -> str:
        """``pgbouncer.ini`` for :attr:`version`. Holds no secret: passwords live in ``auth_file``."""
        version = self.parsed_version
        lines = [
            f"; Rendered by lifeguard for PgBouncer {version}. Do not edit: change the settings instead.",
            "[databases]",
            self._database_line(),
            "",
            "[pgbouncer]",
        ]
        lines += [f"{key} = {value}" for key, value in self._pairs(version)]
        return "\n".join(lines) + "\n"

    # -- transport to the container ------------------------------------------------------

    def to_json(self) -> str:
        """The settings as JSON, for the image's ``LIFEGUARD_PGBOUNCER_SETTINGS`` environment variable."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PoolerSettings:
        try:
            raw: object = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"pooler settings are not valid JSON: {exc.msg}") from None
        if not isinstance(raw, dict):
            raise SettingsError("pooler settings must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise SettingsError(f"unknown pooler settings: {', '.join(unknown)}")
        if "upstream" not in raw or "default_pool_size" not in raw:
            raise SettingsError("pooler settings need 'upstream' and 'default_pool_size'")
        # Check JSON types here: a string where a number belongs would otherwise surface as a
        # TypeError deep inside validate() instead of naming the setting.
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {
            name: _from_json_value(name, hints[name], value) for name, value in raw.items() if name != "upstream"
        }
        values["upstream"] = _upstream_from_json(raw["upstream"])
        return cls(**values)


def _upstream_from_json(raw: object) -> Upstream:
    if not isinstance(raw, dict):
        raise SettingsError("pooler setting upstream must be an object with host, dbname and port")
    hints = typing.get_type_hints(Upstream)
    unknown = sorted(set(raw) - set(hints))
    if unknown:
        raise SettingsError(f"unknown upstream settings: {', '.join(unknown)}")
    missing = [name for name in ("host", "dbname") if name not in raw]
    if missing:
        raise SettingsError(f"upstream needs {' and '.join(missing)}")
    return Upstream(**{name: _from_json_value(f"upstream.{name}", hints[name], v) for name, v in raw.items()})


def _from_json_value(name: str, hint: object, value: object) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        ok = isinstance(value, bool)
        expected = "true or false"
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        expected = "a whole number"
    elif hint is str:
        ok = isinstance(value, str)
        expected = "a string"
    elif origin is tuple and args[-1] is Ellipsis:
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        expected = "a list of strings"
        value = tuple(value) if ok else value  # type: ignore[arg-type]
    elif origin is Mapping:
        ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
        expected = "an object of string values"
    else:  # pragma: no cover - a new field type needs a branch above
        raise TypeError(f"no JSON reading for setting {name} of type {hint}")
    if not ok:
        raise SettingsError(f"pooler setting {name} must be {expected}, got {type(value).__name__}")
    return value


def _rendered_keys() -> frozenset[str]:
    return frozenset(
        {f.name for f in dataclasses.fields(PoolerSettings)} - {"upstream", "version", "extra"}
        | {"server_tls_protocols", "client_tls_protocols", "max_user_connections"}
    )


def _check_bounds(name: str, value: int, low: int, high: int, meaning: str) -> None:
    if low <= value <= high:
        return
    if high != _UNBOUNDED:
        allowed = f"between {low} and {high}"
    else:
        allowed = f"at least {low}" if value < low else f"at most {high} (PgBouncer reads a 32-bit number)"
    raise SettingsError(f"{name} must be {allowed}, got {value}" + (f" ({meaning})" if meaning else ""))


def _check_value(key: str, value: str) -> None:
    # PgBouncer's ini parser has no escapes: a newline would start a new setting.
    if any(ch in value for ch in "\r\n\0"):
        raise SettingsError(f"setting {key} contains a line break; remove it")


def render_userlist(credentials: Mapping[str, str]) -> str:
    """``userlist.txt``, one ``"user" "secret"`` line each: a SCRAM verifier or a plain password.

    The application role's line holds its SCRAM-SHA-256 verifier (:mod:`pgbouncer.scram`):
    PgBouncer checks clients without a PBKDF2 run per login and logs in to Postgres by SCRAM
    pass-through, which needs the verifier byte-identical to the one in ``pg_authid`` (the stack
    computes it once for both). Console-only users (``stats_users``) may hold plain passwords.
    Refused: md5 hashes (useless for SCRAM), and text that starts like a verifier but is not one
    PgBouncer can parse. Inside the quotes PgBouncer reads ``""`` as one ``"``.
    """
    if not credentials:
        raise SettingsError("the pooler needs at least one user in its credentials")
    lines: list[str] = []
    for user, password in credentials.items():
        if not user:
            raise SettingsError("a pooler user name is empty")
        for what, text in (("user name", user), ("password", password)):
            if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
                raise SettingsError(
                    f"the {what} for pooler user #{len(lines) + 1} contains a line break or control "
                    "character, which userlist.txt cannot hold; choose one without"
                )
        if not password:
            raise SettingsError(f"the password for pooler user {user!r} is empty")
        for what, text in (("user name", user), ("password", password)):
            try:
                text.encode()
            except UnicodeEncodeError:
                raise SettingsError(
                    f"the {what} for pooler user #{len(lines) + 1} is not valid Unicode (a lone surrogate)"
                ) from None
        if len(password.encode()) > MAX_PASSWORD_BYTES:
            raise SettingsError(
                f"the password for pooler user {user!r} is longer than {MAX_PASSWORD_BYTES} bytes, "
                "which PgBouncer cannot read from userlist.txt; choose a shorter one"
            )
        if _LOOKS_MD5.match(password):
            raise SettingsError(
                f"the password for pooler user {user!r} looks like an md5 hash, which PgBouncer cannot "
                "use for SCRAM logins; give the role's SCRAM-SHA-256 verifier or a plain password"
            )
        if password.startswith(scram.PREFIX):
            try:
                scram.parse_verifier(password)
            except scram.VerifierError as exc:
                raise SettingsError(
                    f"the SCRAM verifier for pooler user {user!r} is malformed ({exc}); give the verifier "
                    "exactly as Postgres stores it (pgbouncer.scram.scram_verifier computes it)"
                ) from None
        lines.append(f"{double_quote(user)} {double_quote(password)}")
    return "\n".join(lines) + "\n"


def double_quote(text: str) -> str:
    """``text`` in double quotes, each ``"`` doubled: a userlist field, and an item of a Postgres list setting."""
    return '"' + text.replace('"', '""') + '"'
