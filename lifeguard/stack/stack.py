"""The local stack: Postgres standing in for RDS, PgBouncer on the image's rendered config, migrations.

What only the user reads lives in the state directory (``--state-dir``, ``LIFEGUARD_STATE_DIR``, or
``.lifeguard/`` in the working directory; 0700, and refused unless it is the user's own)::

    stack.json        ports, sizes and names (no secret)
    app.password      the application role's generated password (0600)
    app.scram-salt    the salt of its SCRAM verifier (kept, so the verifier stays the same; its
                      iteration count is ``scram_iterations`` in stack.json, fixed when the stack is made)
    app_b.password    the same for the second login role, which rotations alternate with (lifeguard.stack.rotation)
    app_b.scram-salt
    rotation.json     which of the two DATABASE_URL logs in as, after how many rotations (no secret)
    pooled.url        DATABASE_URL (0600): the functions' secret, which a rotation switches last
    owner.password    the owner role's generated password (0600)
    tls/              the pooler's CA (pooler-ca.crt: DATABASE_URL's sslrootcert; pooler-ca.key, 0600)

What Postgres and PgBouncer must reach lives in the service directory (:attr:`LocalStack.service_dir`):
the state directory itself when we are not root (the services then run as us), and as root, when
they run as the ``postgres`` user, ``/var/lib/lifeguard/<uid>-<hash of the state directory>/``: root's,
0711, under a root-owned 0711 parent, so it works from a clone in ``/root`` or a 0750 home without
widening either, and no other user can plant anything on the way::

    postgres/         the cluster (PostgresCluster: data, TLS, superuser password, log), the service user's
    pgbouncer-1/ ...  one directory per PgBouncer process (ini, auth_file, socket), made afresh by each start
    pgbouncer-1.pid   the identity of that PgBouncer (pid, start time, executable, command line) and
    pgbouncer-1.log   its log, beside its directory so that only we can write them

Postgres and PgBouncer run detached, so the stack outlives the command that started it; ``down``
stops both. Two roles, exactly as on AWS (:mod:`lifeguard.stack.roles`): ``DATABASE_URL``
(PgBouncer, ``sslmode=verify-full`` against the stack's pooler CA) logs in as the DML-only
application role, which the migration job provisions; ``DATABASE_URL_UNPOOLED`` (Postgres,
``sslmode=verify-full`` against the local CA) as the owner of the database. Nothing in this
module prints or raises with a URL.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import psycopg

from database_urls import DIRECT_URL_ENV, DIRECT_URL_SECRET_ARN_ENV, POOLED_URL_ENV, POOLED_URL_SECRET_ARN_ENV
from lambdas.contract import NODE_CA_ENV, PREPARED_ENV
from lifeguard.rotation import RotationState
from lifeguard.stack.pooler import PoolerError, PoolerProcess, installed_version, local_settings, pid_record_file
from lifeguard.stack.pooler_ca import authority_pair, ensure_authority, server_certificate
from lifeguard.stack.postgres import SUPERUSER, PostgresCluster, PostgresError, make_dsn
from lifeguard.stack.procs import is_running, read_identity
from lifeguard.stack.roles import (
    FIRST_LOGIN_FILE,
    OWNER_USER,
    ROTATION_FILE,
    LoginRole,
    RotationStateError,
    ensure_secret,
    load_rotation,
    login_roles,
    provisioning_env,
)
from lifeguard.stack.safe_paths import (
    UnsafePathError,
    check_owned_dir,
    check_trusted_executable,
    owned_dir,
    read_owned,
)
from lifeguard.stack.system import (
    LocalSetupError,
    find_pgbouncer,
    find_postgres_bin,
    port_in_use,
    running_as_root,
)
from pgbouncer.contract import STATS_USER
from pgbouncer.entrypoint import StartupError
from pgbouncer.private_file import write_file, write_private
from pgbouncer.scram import APP_ITERATIONS, ITERATIONS, VerifierError, check_app_iterations
from pgbouncer.settings import PoolerSettings, SettingsError
from pgbouncer.sizing import PoolBudget, SizingError
from redaction import Redactor

STATE_DIR_ENV = "LIFEGUARD_STATE_DIR"
SERVICE_PARENT = Path("/var/lib/lifeguard")
"""Root's parent of the service directories (root's, 0711: the ``postgres`` user may pass, not list or write)."""
DEFAULT_STATE_DIR = ".lifeguard"
# Next to, not on, 5432/6432: Debian's postgresql and pgbouncer packages start system services there.
DEFAULT_PG_PORT = 55432
DEFAULT_POOLER_PORT = 56432
APP_USER = "lifeguard_app"
APP_DB = "lifeguard"
CONFIG_VERSION = 2
"""2: the owner role runs the migrations; the application role only DML (version 1: one role)."""
MIGRATE_TIMEOUT_S = 600
MAX_SOCKET_PATH_BYTES = 107
"""``sun_path`` holds 108 bytes with the closing NUL; PgBouncer cuts a longer socket path short silently."""

# Every variable that could point a migration at another database, or at the pooler.
_URL_ENV_NAMES = (POOLED_URL_ENV, DIRECT_URL_ENV, POOLED_URL_SECRET_ARN_ENV, DIRECT_URL_SECRET_ARN_ENV)
_LIBPQ_ENV = re.compile(r"^PG[A-Z]+$")


class StackError(RuntimeError):
    """The local stack cannot do what was asked; the message says what to change."""


# The errors that mean "tell the user and stop", all with messages written for people.
STACK_ERRORS: tuple[type[Exception], ...] = (
    StackError, LocalSetupError, PostgresError, PoolerError, StartupError, SettingsError, SizingError,
    UnsafePathError, RotationStateError,
)


def resolve_state_dir(explicit: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Path:
    """``--state-dir``, else ``$LIFEGUARD_STATE_DIR``, else ``.lifeguard/`` in the working directory."""
    env = os.environ if env is None else env
    chosen = explicit or env.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR
    return Path(chosen).expanduser().absolute()


@dataclass(frozen=True)
class StackOptions:
    """What ``up`` may choose; ``None`` keeps the stored value (or the default on the first ``up``)."""

    pg_port: int | None = None
    pooler_port: int | None = None
    max_connections: int | None = None
    pooler_processes: int | None = None
    max_client_conn: int | None = None
    durable: bool | None = None
    pgbouncer: str | None = None
    scram_iterations: int | None = None


@dataclass(frozen=True)
class StackConfig:
    """The stack's shape, stored in ``stack.json`` on the first ``up`` (no secrets)."""

    pg_port: int = DEFAULT_PG_PORT
    pooler_port: int = DEFAULT_POOLER_PORT
    max_connections: int = 100
    superuser_reserved_connections: int = 3
    pooler_processes: int = 1
    """PgBouncer processes sharing the port with ``so_reuseport`` (one core each)."""
    pool_size: int = 0
    """``default_pool_size`` of each process, from :class:`PoolBudget`; 0 until derived."""
    max_client_conn: int = 10000
    durable: bool = True
    dbname: str = APP_DB
    user: str = APP_USER
    """The application role: ``DATABASE_URL``'s login, DML only."""
    owner: str = OWNER_USER
    """The database's owner: ``DATABASE_URL_UNPOOLED``'s login (the RDS master user's stand-in)."""
    version: int = CONFIG_VERSION
    pgbouncer: str = ""
    """The PgBouncer executable; empty: the shipped release's local build (``find_pgbouncer``)."""
    scram_iterations: int = APP_ITERATIONS
    """The application role's SCRAM verifier's iteration count (for its generated password only;
    :data:`pgbouncer.scram.APP_ITERATIONS`). Fixed with the stack: PgBouncer's auth_file and
    ``pg_authid`` must hold the same verifier, so a new count means a new stack."""

    @property
    def total_pool_size(self) -> int:
        """Server connections all PgBouncer processes together may open."""
        return self.pool_size * self.pooler_processes

    @classmethod
    def create(cls, options: StackOptions) -> StackConfig:
        given = {k: v for k, v in asdict(options).items() if v is not None}
        config = cls(**given)
        config.check()
        budget = PoolBudget(
            max_connections=config.max_connections,
            reserved_connections=config.superuser_reserved_connections,
            max_tasks=config.pooler_processes,
        )
        return cls(**{**asdict(config), "pool_size": budget.default_pool_size()})

    def check(self) -> None:
        for name, port in (("--pg-port", self.pg_port), ("--pooler-port", self.pooler_port)):
            if not 1024 <= port <= 65535:
                raise StackError(f"{name} must be between 1024 and 65535, got {port}")
        if self.pg_port == self.pooler_port:
            raise StackError("--pg-port and --pooler-port must differ")
        if not 10 <= self.max_connections <= 10000:
            raise StackError(f"--max-connections must be between 10 and 10000, got {self.max_connections}")
        if not 1 <= self.pooler_processes <= 16:
            raise StackError(f"--pooler-processes must be between 1 and 16, got {self.pooler_processes}")
        if self.max_client_conn < 1:
            raise StackError(f"--max-client-conn must be at least 1, got {self.max_client_conn}")
        try:
            check_app_iterations(self.scram_iterations, "--scram-iterations")
        except VerifierError as exc:
            raise StackError(str(exc)) from None
        if self.pgbouncer and not (Path(self.pgbouncer).is_file() and os.access(self.pgbouncer, os.X_OK)):
            raise StackError(f"--pgbouncer {self.pgbouncer} is not an executable file; give a pgbouncer binary")

    def conflicts(self, options: StackOptions) -> list[str]:
        """Options given to ``up`` that differ from the stored stack."""
        return [
            f"--{name.replace('_', '-')} {value} (the stack has {getattr(self, name)})"
            for name, value in asdict(options).items()
            if value is not None and value != getattr(self, name)
        ]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: Path) -> StackConfig:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError:
            raise StackError(
                f"{where} is not valid JSON; run `lifeguard local down --purge` and `lifeguard local up`"
            ) from None
        known = {f.name for f in fields(cls)}
        if not isinstance(raw, dict) or set(raw) - known or raw.get("version") != CONFIG_VERSION:
            raise StackError(
                f"{where} was written by another version of lifeguard; run `lifeguard local down --purge` "
                "and `lifeguard local up` again"
            )
        # A stack made before the count was a setting has Postgres' 4096 in both copies of its verifier,
        # and keeps it: changing one copy alone would fail every pooled login.
        raw.setdefault("scram_iterations", ITERATIONS)
        config = cls(**raw)
        if config.pgbouncer:
            check_trusted_executable(Path(config.pgbouncer))
        return config


@dataclass(frozen=True)
class StackStatus:
    state_dir: Path
    config: StackConfig | None
    postgres_running: bool
    poolers_running: int
    backends: int | None = None

    @property
    def up(self) -> bool:
        return (
            self.config is not None
            and self.postgres_running
            and self.poolers_running == self.config.pooler_processes
        )

    @property
    def anything_running(self) -> bool:
        return self.postgres_running or self.poolers_running > 0


@dataclass(frozen=True)
class MigrationRun:
    returncode: int
    output: str
    """The migrator's stdout and stderr (it never prints the URL), with any secret removed anyway."""


Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


class LocalStack:
    """Bring up, inspect and tear down the stack kept in one state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    # -- paths and stored state ----------------------------------------------------------

    @property
    def config_file(self) -> Path:
        return self.state_dir / "stack.json"

    @property
    def password_file(self) -> Path:
        """The application role's (the first login role's) password; see :meth:`logins`."""
        return self.state_dir / FIRST_LOGIN_FILE

    @property
    def rotation_file(self) -> Path:
        return self.state_dir / ROTATION_FILE

    @property
    def pooled_secret_file(self) -> Path:
        """``DATABASE_URL`` as the functions' secret holds it (0600): what a rotation switches, last."""
        return self.state_dir / "pooled.url"

    @property
    def stats_password_file(self) -> Path:
        return self.state_dir / "stats.password"

    @property
    def owner_password_file(self) -> Path:
        return self.state_dir / "owner.password"

    @property
    def service_dir(self) -> Path:
        """Where Postgres and PgBouncer keep their files (see the module's docstring)."""
        if not running_as_root() or self._has_legacy_layout():
            return self.state_dir
        digest = hashlib.sha256(os.fsencode(os.path.realpath(self.state_dir))).hexdigest()[:16]
        return SERVICE_PARENT / f"{os.geteuid()}-{digest}"

    def _has_legacy_layout(self) -> bool:
        """A stack made as root by lifeguard before the service directory: its cluster is in the state directory."""
        try:
            return stat.S_ISDIR((self.state_dir / "postgres").lstat().st_mode)
        except OSError:
            return False

    def check_state_dir(self) -> None:
        """Before anything in it is read: the state directory must be ours alone (or not there yet).

        Root would otherwise trust a ``stack.json`` (and the binary it names), a CA or passwords that
        another user planted in a folder they made first.
        """
        if os.path.lexists(self.state_dir):
            check_owned_dir(self.state_dir)

    def load_config(self) -> StackConfig | None:
        self.check_state_dir()
        if not os.path.lexists(self.config_file):
            return None
        return StackConfig.from_json(read_owned(self.config_file), self.config_file)

    def require_config(self) -> StackConfig:
        config = self.load_config()
        if config is None:
            raise StackError(f"no local stack in {self.state_dir}: run `lifeguard local up` first")
        return config

    def logins(self, config: StackConfig) -> tuple[LoginRole, LoginRole]:
        """The two login roles ``DATABASE_URL`` alternates between (members of the role holding the DML grants)."""
        return login_roles(self.state_dir, config.user)

    def rotation_state(self) -> RotationState:
        return load_rotation(self.rotation_file)

    def active_login(self, config: StackConfig | None = None) -> LoginRole:
        """The login role ``DATABASE_URL`` uses now; the other one is what the next rotation changes."""
        config = config or self.require_config()
        return self.logins(config)[self.rotation_state().active]

    def app_password(self) -> str:
        """The password of the login role ``DATABASE_URL`` uses now (:meth:`active_login`)."""
        return self.login_password(self.active_login())

    def login_password(self, login: LoginRole) -> str:
        try:
            return login.password()
        except FileNotFoundError:
            raise StackError(
                f"{login.password_file} is missing; run `lifeguard local up` again (or `lifeguard local down "
                "--purge` and `lifeguard local up` to start over)"
            ) from None

    def owner_password(self) -> str:
        try:
            return self.owner_password_file.read_text().strip()
        except FileNotFoundError:
            raise StackError(f"{self.owner_password_file} is missing; run `lifeguard local up` again") from None

    def app_verifier(self, config: StackConfig | None = None) -> str:
        """The active login role's SCRAM verifier: PgBouncer's auth_file and pg_authid hold this."""
        config = config or self.require_config()
        return self.login_verifier(config, self.active_login(config))

    def login_verifier(self, config: StackConfig, login: LoginRole) -> str:
        self.login_password(login)  # a clear error when the file is gone
        return login.verifier(config.scram_iterations)

    def pooler_credentials(self, config: StackConfig) -> dict[str, str]:
        """PgBouncer's auth_file: both login roles' SCRAM verifiers (as shipped: not their passwords), and the
        console user. Both, so that ``DATABASE_URL`` can switch from one to the other with no reload between."""
        return {**{login.name: self.login_verifier(config, login) for login in self.logins(config)},
                STATS_USER: self.stats_password()}

    def write_pooled_secret(self, config: StackConfig) -> None:
        """Store ``DATABASE_URL`` for the active login role in :attr:`pooled_secret_file` (atomically)."""
        write_private(self.pooled_secret_file, self.pooled_url(config) + "\n", atomic=True)

    def stats_password(self) -> str:
        try:
            return self.stats_password_file.read_text().strip()
        except FileNotFoundError:
            raise StackError(f"{self.stats_password_file} is missing; run `lifeguard local up` again") from None

    def cluster(self, config: StackConfig) -> PostgresCluster:
        return PostgresCluster(
            root=self.service_dir / "postgres",
            port=config.pg_port,
            max_connections=config.max_connections,
            superuser_reserved_connections=config.superuser_reserved_connections,
            durable=config.durable,
        )

    def pooler_settings(self, config: StackConfig, index: int) -> PoolerSettings:
        root = self.pooler_root(index)
        reuseport = config.pooler_processes > 1
        return local_settings(
            root,
            upstream_port=config.pg_port,
            upstream_ca_file=self.cluster(config).ca_file,
            dbname=config.dbname,
            listen_port=config.pooler_port,
            default_pool_size=config.pool_size,
            version=installed_version(self.pgbouncer_binary(config)),
            max_client_conn=config.max_client_conn,
            so_reuseport=reuseport,
            stats_users=(STATS_USER,),
        )

    @staticmethod
    def pgbouncer_binary(config: StackConfig) -> Path:
        if not config.pgbouncer:
            return find_pgbouncer()
        binary = Path(config.pgbouncer)
        check_trusted_executable(binary)  # root runs it (`--version`) before the service user does
        return binary

    def pooler_root(self, index: int) -> Path:
        return self.service_dir / f"pgbouncer-{index}"

    def poolers(self, config: StackConfig) -> list[PoolerProcess]:
        """Handles on the PgBouncer processes (running or not); stopping needs only the pid file."""
        return [
            PoolerProcess(root=self.pooler_root(i), settings=self.pooler_settings(config, i),
                          binary=self.pgbouncer_binary(config))
            for i in range(1, config.pooler_processes + 1)
        ]

    def pooler_pid(self, index: int) -> int | None:
        """PgBouncer ``index``'s pid, while the process its pid record names is still that process."""
        identity = read_identity(pid_record_file(self.pooler_root(index)))
        return identity.pid if identity is not None and is_running(identity) else None

    def _running_poolers(self, config: StackConfig) -> list[Path]:
        """Pooler directories whose PgBouncer is alive (see :meth:`pooler_pid`)."""
        return [
            self.pooler_root(i) for i in range(1, config.pooler_processes + 1) if self.pooler_pid(i) is not None
        ]

    # -- URLs (secrets: returned, never printed here) ---------------------------------------

    @property
    def pooler_ca_file(self) -> Path:
        """The CA PgBouncer's certificate chains to: ``DATABASE_URL``'s ``sslrootcert``."""
        return authority_pair(self.state_dir).cert_file

    def pooled_url(self, config: StackConfig | None = None) -> str:
        """``DATABASE_URL``: through PgBouncer, TLS verified against the stack's CA (what the functions get)."""
        config = config or self.require_config()
        login = self.active_login(config)
        return make_dsn("127.0.0.1", config.pooler_port, login.name, self.login_password(login), config.dbname,
                        sslmode="verify-full", sslrootcert=str(self.pooler_ca_file))

    def direct_url(self, config: StackConfig | None = None) -> str:
        """``DATABASE_URL_UNPOOLED``: the owner, straight to Postgres, TLS verified (what the migration job gets)."""
        config = config or self.require_config()
        return self.cluster(config).dsn(config.owner, self.owner_password(), config.dbname)

    def app_direct_url(self, config: StackConfig | None = None) -> str:
        """The application role straight to Postgres: what functions without a pooler would use (comparisons)."""
        config = config or self.require_config()
        login = self.active_login(config)
        return self.cluster(config).dsn(login.name, self.login_password(login), config.dbname)

    def client_env(self, config: StackConfig | None = None) -> dict[str, str]:
        """What the stack tells functions about their pooler, besides the URL (as infra does on AWS)."""
        config = config or self.require_config()
        tracks = self.pooler_settings(config, 1).tracks_prepared_statements
        # The CA file DATABASE_URL names, for Node.js clients that read no sslrootcert (infra: the layer's).
        return {PREPARED_ENV: "1" if tracks else "0", NODE_CA_ENV: str(self.pooler_ca_file)}

    def superuser_url(self, config: StackConfig | None = None) -> str:
        config = config or self.require_config()
        return self.cluster(config).superuser_dsn(config.dbname)

    # -- lifecycle ----------------------------------------------------------------------------

    def up(
        self,
        options: StackOptions = StackOptions(),
        *,
        migrate: bool = True,
        progress: Progress = _quiet,
        migrate_command: Sequence[str] | None = None,
        images: bool = False,
    ) -> StackConfig:
        """Start whatever is not running; a second ``up`` changes nothing.

        Options apply when the stack is first created; afterwards they must match what is stored.
        ``images``: run PgBouncer and the migration job from the built images (lifeguard.stack.containers).
        """
        find_postgres_bin()
        if images:
            from lifeguard.stack import containers

            containers.check_prerequisites()
        if self.load_config() is None:
            # Checked before the state directory is made: bad options leave nothing behind.
            self._check_socket_paths(StackConfig.create(options))
        self._prepare_state_dir()
        with self.exclusive(progress):
            config = self._config_for(options)
            self._check_socket_paths(config)
            # A missing or foreign binary fails here, not midway.
            installed_version(self.pgbouncer_binary(config))
            if not os.path.lexists(self.config_file):
                write_file(self.config_file, config.to_json(), 0o644, atomic=True)
            for secret_file in (*(login.password_file for login in self.logins(config)), self.owner_password_file,
                                self.stats_password_file):
                ensure_secret(secret_file)
            self._start_all(config, progress, images=images)
            if migrate:
                self._migrate_on_up(config, progress, migrate_command, images=images)
            self.write_pooled_secret(config)
        return config

    def _config_for(self, options: StackOptions) -> StackConfig:
        """The stored stack's shape (options must match it), or a new one from the options."""
        config = self.load_config()
        if config is None:
            return StackConfig.create(options)
        conflicts = config.conflicts(options)
        if conflicts:
            raise StackError(
                f"the stack in {self.state_dir} already exists with other settings: "
                + "; ".join(conflicts)
                + ". Run `lifeguard local down --purge` to start over with new settings, or drop the options."
            )
        return config

    def _check_socket_paths(self, config: StackConfig) -> None:
        """Refuse a service directory too deep for the Unix sockets in it (PgBouncer would truncate the name)."""
        sockets = [self.cluster(config).root / f".s.PGSQL.{config.pg_port}"]
        sockets += [
            self.pooler_root(i) / f".s.PGSQL.{config.pooler_port}" for i in range(1, config.pooler_processes + 1)
        ]
        longest = max(sockets, key=lambda path: len(os.fsencode(path)))
        size = len(os.fsencode(longest))
        if size > MAX_SOCKET_PATH_BYTES:
            excess = size - MAX_SOCKET_PATH_BYTES
            if self.service_dir == self.state_dir:
                advice = (f"Choose a state directory at most {len(os.fsencode(self.state_dir)) - excess} bytes long "
                          f"(--state-dir DIR, or {STATE_DIR_ENV}), in a folder of your own")
            else:
                advice = f"{SERVICE_PARENT} must be at most {len(os.fsencode(SERVICE_PARENT)) - excess} bytes long"
            raise StackError(
                f"the service directory {self.service_dir} is too deep: the Unix socket {longest} would be {size} "
                f"bytes long, and a Unix socket path holds at most {MAX_SOCKET_PATH_BYTES} bytes. {advice}"
            )

    @contextmanager
    def exclusive(self, progress: Progress) -> Iterator[None]:
        """Hold the state directory's lock: one ``up``, ``down`` or ``rotate`` at a time works on a stack."""
        fd = os.open(self.state_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                progress(f"another `lifeguard local up` or `down` is working on {self.state_dir}; waiting for it")
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _start_all(self, config: StackConfig, progress: Progress, *, images: bool = False) -> None:
        """Start Postgres and PgBouncer; if that fails, stop again whatever this call started.

        ``images``: PgBouncer runs from the built pooler image (lifeguard.stack.containers).
        """
        started: list[Callable[[], None]] = []
        try:
            self._start_postgres(config, progress, started)
            if images:
                from lifeguard.stack import containers

                containers.start_stack_pooler(self, config, progress)
            else:
                self._start_poolers(config, progress, started)
        except BaseException:
            if started:
                progress("stopping what this `up` started")
            for undo in reversed(started):
                with suppress(Exception):
                    undo()
            raise

    def _migrate_on_up(self, config: StackConfig, progress: Progress, migrate_command: Sequence[str] | None,
                       *, images: bool = False) -> None:
        if images:
            from lifeguard.stack import containers

            run = containers.migrate_stack(self, config, MIGRATE_TIMEOUT_S)
        else:
            run = self.migrate(config, command=migrate_command)
        for line in run.output.splitlines():
            progress(f"  migrator: {line}")
        if run.returncode != 0:
            raise StackError(
                f"the migration job failed (exit code {run.returncode}); its output is above. The stack "
                "is running: fix the migration and run `lifeguard local up` again"
            )

    def _prepare_state_dir(self) -> None:
        """Make the state directory (0700) and the service directory, or accept them only as our own."""
        owned_dir(self.state_dir, 0o700)
        if self.service_dir == self.state_dir:
            if running_as_root():
                raise StackError(
                    f"{self.state_dir} holds a stack made by an earlier lifeguard, with its cluster inside the state "
                    "directory; run `lifeguard local down --purge` and then `lifeguard local up` to make it anew"
                )
            return
        # The postgres user passes through both (0711) to its own folders; it can list and write neither.
        owned_dir(SERVICE_PARENT, 0o711, owner=0)
        owned_dir(self.service_dir, 0o711, parents=False)
        write_file(self.service_dir / "state-dir", f"{self.state_dir}\n", 0o644)  # whose it is, for people

    def _start_postgres(self, config: StackConfig, progress: Progress, started: list[Callable[[], None]]) -> None:
        cluster = self.cluster(config)
        # pg_ctl says "running" while the pid in postmaster.pid exists, even as a zombie or in crash recovery.
        if cluster.running() and cluster.wait_until_ready(progress):
            progress(f"Postgres already running on 127.0.0.1:{config.pg_port}")
        else:
            if port_in_use(config.pg_port):
                raise StackError(_port_message(config.pg_port, "Postgres", "--pg-port"))
            if not cluster.initialized():
                progress(f"creating a Postgres cluster (max_connections {config.max_connections}, SCRAM, TLS only)")
                cluster.init()
            progress(f"starting Postgres on 127.0.0.1:{config.pg_port}")
            started.append(cluster.stop)
            cluster.start()
        # Idempotent: creates the owner and database, or resets its password to the stored one. The
        # application role is the migration job's to provision.
        try:
            cluster.create_app_database(config.owner, self.owner_password(), config.dbname, createrole=True)
        except psycopg.OperationalError as exc:
            # libpq's words name host and port, never the password.
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StackError(
                f"Postgres on 127.0.0.1:{config.pg_port} does not accept connections ({reason}); see "
                f"{cluster.log_file}, then run `lifeguard local down` and `lifeguard local up`"
            ) from None

    def _start_poolers(self, config: StackConfig, progress: Progress, started: list[Callable[[], None]]) -> None:
        running = {p.resolve() for p in self._running_poolers(config)}
        if len(running) == config.pooler_processes:
            progress(f"PgBouncer already running on 127.0.0.1:{config.pooler_port}")
            return
        if not running and port_in_use(config.pooler_port):
            raise StackError(_port_message(config.pooler_port, "PgBouncer", "--pooler-port"))
        # As shipped: the application role's SCRAM verifier, not its password.
        credentials = self.pooler_credentials(config)
        ensure_authority(self.state_dir)
        for process in self.poolers(config):
            if process.root.resolve() in running:
                continue
            progress(
                f"starting PgBouncer {process.settings.version} on 127.0.0.1:{config.pooler_port} "
                f"(transaction mode, default_pool_size {config.pool_size})"
            )
            started.append(functools.partial(process.stop, signal.SIGQUIT, 5))
            process.start(credentials, detach=True, certificate=server_certificate(self.state_dir))
            self._wait_for_admin_socket(process)

    @staticmethod
    def _wait_for_admin_socket(process: PoolerProcess, timeout: float = 10) -> None:
        # With so_reuseport the TCP port answers as soon as the first process listens; each
        # process's own unix socket tells that this one is up.
        sock = Path(process.settings.unix_socket_dir) / f".s.PGSQL.{process.settings.listen_port}"
        deadline = time.monotonic() + timeout
        while not sock.exists():
            if time.monotonic() > deadline or process.pid() is None:
                process.stop(signal.SIGQUIT, timeout=5)
                raise StackError(f"PgBouncer in {process.root} did not start:\n{process.log_tail()}")
            time.sleep(0.05)

    def restart_poolers(self, config: StackConfig | None = None, progress: Progress = _quiet, *,
                        rolling: bool = False) -> None:
        """Stop PgBouncer (SIGINT: in-flight transactions finish) and start it again.

        Releases every server connection it kept idle (``server_idle_timeout`` holds them for
        minutes), so the next measurement starts from an empty Postgres. ``rolling``: one process
        after the other, as ECS replaces tasks, so that with several processes the port keeps answering.
        """
        config = config or self.require_config()
        for root in self._running_poolers(config):
            PoolerProcess(root=root, settings=self.pooler_settings(config, _pooler_index(root))).stop(
                signal.SIGINT, timeout=15
            )
            if rolling:
                self._start_poolers(config, progress, [])
        self._start_poolers(config, progress, [])

    def migrate(self, config: StackConfig | None = None, command: Sequence[str] | None = None) -> MigrationRun:
        """Run the migration job with only ``DATABASE_URL_UNPOOLED`` and the application role's verifier.

        The job is a separate process, as on AWS (an ECS task given only the direct secret and the
        verifier): no ``DATABASE_URL``, no libpq ``PG*`` variable that could send it elsewhere.
        """
        config = config or self.require_config()
        direct = self.direct_url(config)
        first, second = (self.login_verifier(config, login) for login in self.logins(config))
        argv = list(command) if command is not None else [sys.executable, "-m", "migrator"]
        env = {**migration_env(direct), **provisioning_env(config.user, first, second)}
        try:
            result = subprocess.run(
                argv, env=env, capture_output=True, text=True,
                timeout=MIGRATE_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise StackError(f"the migration job did not finish within {MIGRATE_TIMEOUT_S} s") from None
        return self.migration_run(result.returncode, result.stdout + result.stderr, direct, first, second)

    def migration_run(self, returncode: int, output: str, direct: str, *verifiers: str) -> MigrationRun:
        """The migration job's result (a process or the migrator image's container), its output masked:
        the direct URL, the stack's passwords and the verifiers it was given never show."""
        config = self.require_config()
        passwords = [self.login_password(login) for login in self.logins(config) if login.password_file.exists()]
        redactor = Redactor([direct], [*passwords, self.owner_password(), *verifiers])
        return MigrationRun(returncode, redactor(output.strip()))

    def status(self) -> StackStatus:
        config = self.load_config()
        if config is None:
            return StackStatus(self.state_dir, None, postgres_running=False, poolers_running=0)
        cluster = self.cluster(config)
        postgres = cluster.running()
        poolers = len(self._running_poolers(config))
        backends = None
        if postgres:
            try:
                backends = cluster.backend_count()
            except (psycopg.Error, OSError):
                # Status reports a half-broken stack (e.g. a superuser password file gone) rather than failing.
                backends = None
        return StackStatus(self.state_dir, config, postgres, poolers, backends)

    def down(self, *, purge: bool = False, progress: Progress = _quiet) -> None:
        """Stop PgBouncer (SIGINT: in-flight transactions finish), then Postgres; ``purge`` deletes the state."""
        if not os.path.lexists(self.state_dir):
            return
        self.check_state_dir()
        with self.exclusive(progress):
            self._down(purge=purge, progress=progress)

    def _down(self, *, purge: bool, progress: Progress) -> None:
        config = self.load_config()
        from lifeguard.stack.containers import stop_stack_containers

        stop_stack_containers(self.state_dir, progress)
        if config is not None:
            for root in self._running_poolers(config):
                progress(f"stopping PgBouncer ({root.name})")
                PoolerProcess(root=root, settings=self.pooler_settings(config, _pooler_index(root))).stop(
                    signal.SIGINT, timeout=15
                )
            cluster = self.cluster(config)
            if cluster.running():
                progress("stopping Postgres")
                cluster.stop()
        if purge and self.state_dir.exists():
            if config is None and not self.password_file.exists() and any(self.state_dir.iterdir()):
                raise StackError(
                    f"{self.state_dir} does not look like a lifeguard state directory; not deleting it"
                )
            if self.service_dir != self.state_dir and os.path.lexists(self.service_dir):
                check_owned_dir(self.service_dir)
                progress(f"deleting {self.service_dir}")
                shutil.rmtree(self.service_dir)
            progress(f"deleting {self.state_dir}")
            shutil.rmtree(self.state_dir)


def migration_env(direct_url: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The migration job's environment: ours without any database variable, plus the direct URL."""
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if k not in _URL_ENV_NAMES and not _LIBPQ_ENV.match(k)}
    env[DIRECT_URL_ENV] = direct_url
    return env


def _port_message(port: int, what: str, option: str) -> str:
    return (
        f"port {port} on 127.0.0.1 is already in use, so {what} cannot listen there. Stop the program using it "
        f"(`ss -ltnp 'sport = :{port}'` shows which), or choose another port with {option} PORT "
        "(on a new stack, or after `lifeguard local down --purge`)"
    )


def _pooler_index(root: Path) -> int:
    return int(root.name.rsplit("-", 1)[1])




__all__ = [
    "APP_DB",
    "APP_USER",
    "DEFAULT_PG_PORT",
    "DEFAULT_POOLER_PORT",
    "OWNER_USER",
    "SERVICE_PARENT",
    "STACK_ERRORS",
    "STATE_DIR_ENV",
    "SUPERUSER",
    "LocalStack",
    "MigrationRun",
    "StackConfig",
    "StackError",
    "StackOptions",
    "StackStatus",
    "migration_env",
    "resolve_state_dir",
]
