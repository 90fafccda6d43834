"""A throwaway or long-lived local Postgres cluster standing in for RDS.

Same shape as the RDS side of the stack: SCRAM passwords only, TLS forced (``hostssl`` only,
like ``rds.force_ssl=1``), an explicit ``max_connections``, loopback only. Used by the tests
and by ``lifeguard local``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from lifeguard.stack.procs import command_name, parent_pid, process_state
from lifeguard.stack.safe_paths import UnsafePathError, read_service_file
from lifeguard.stack.system import find_postgres_bin, own_for_service, service_argv, service_uid, write_as_service
from pgbouncer.private_file import write_private
from pgbouncer.settings import double_quote
from pgbouncer.tls import CertPair, write_self_signed

SUPERUSER = "postgres"
READY_TIMEOUT_S = 30
"""How long ``up`` waits for a running Postgres (in crash recovery, say) to accept connections."""


class PostgresError(RuntimeError):
    pass


def make_dsn(
    host: str, port: int, user: str, password: str, dbname: str, **params: str | int | None
) -> str:
    """A ``postgresql://`` URL with user and password percent-encoded (any printable character works)."""
    query = "&".join(f"{k}={quote(str(v), safe='/')}" for k, v in params.items() if v is not None)
    url = f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{quote(dbname, safe='')}"
    return f"{url}?{query}" if query else url


def conf_quote(value: str) -> str:
    """``value`` as a quoted string in ``postgresql.conf``: quotes doubled, backslashes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


@dataclass
class PostgresCluster:
    root: Path
    """State directory: ``data/``, ``tls/``, ``postgres.log`` and the superuser password file."""
    port: int
    max_connections: int = 100
    superuser_reserved_connections: int = 3
    durable: bool = True
    """False turns off fsync for throwaway test clusters (faster, unsafe on a crash)."""
    _superuser_password: str = field(default="", repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    @property
    def tls(self) -> CertPair:
        return CertPair(self.root / "tls" / "server.crt", self.root / "tls" / "server.key")

    @property
    def ca_file(self) -> Path:
        """The self-signed server certificate doubles as the CA clients verify against."""
        return self.tls.cert_file

    @property
    def superuser_password(self) -> str:
        if not self._superuser_password:
            # In the service user's folder: read without following a link it could have put there.
            self._superuser_password = read_service_file(self.root / "superuser.password", service_uid()).strip()
        return self._superuser_password

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """``initdb`` with SCRAM auth and a TLS certificate; refuses to touch an existing cluster."""
        if self.initialized():
            raise PostgresError(f"{self.data_dir} already holds a cluster")
        # A fresh folder of ours: one left by an earlier, failed init belongs to the service user, who
        # could have planted links in it for root's writes below to follow. (initdb removes a data
        # folder it fails to fill; one with files but no PG_VERSION is not ours to delete.)
        if os.path.lexists(self.root):
            if os.path.lexists(self.data_dir) and not _is_empty_folder(self.data_dir):
                raise PostgresError(
                    f"{self.data_dir} holds files but no cluster (no PG_VERSION); move it away, or delete "
                    f"{self.root} if nothing in it is needed, then run again"
                )
            shutil.rmtree(self.root)  # removes relative to folder descriptors: links are not followed
        self.root.mkdir(parents=True, mode=0o700)
        self.root.chmod(0o700)
        password = secrets.token_urlsafe(24)
        pwfile = self.root / "superuser.password"
        write_private(pwfile, password + "\n")
        self._superuser_password = password
        # localhost is the name clients verify (verify-full); 127.0.0.1 covers IP-only clients.
        write_self_signed(self.root / "tls", names=("localhost", "127.0.0.1"))
        own_for_service(self.root)
        bindir = find_postgres_bin()
        result = subprocess.run(
            service_argv(
                [
                    str(bindir / "initdb"),
                    "-D", str(self.data_dir),
                    "-U", SUPERUSER,
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "-E", "UTF8",
                    "--locale=C",
                ]
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise PostgresError(f"initdb failed: {result.stderr.strip()[-2000:]}")
        conf = [
            # Both loopback families by address, not 'localhost' (which follows /etc/hosts, often
            # 127.0.0.1 only): the shipped PgBouncer's c-ares (1.34) resolves localhost to ::1 first.
            "listen_addresses = '127.0.0.1,::1'",
            f"port = {self.port}",
            f"max_connections = {self.max_connections}",
            f"superuser_reserved_connections = {self.superuser_reserved_connections}",
            # A list of folders: double quotes keep a comma or space in the path part of one folder.
            f"unix_socket_directories = {conf_quote(double_quote(str(self.root)))}",
            "password_encryption = 'scram-sha-256'",
            "ssl = on",
            f"ssl_cert_file = {conf_quote(str(self.tls.cert_file))}",
            f"ssl_key_file = {conf_quote(str(self.tls.key_file))}",
            "log_min_messages = warning",
            "log_connections = off",
        ]
        if not self.durable:
            conf += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        # initdb made data/ as the service user: that user writes its own configuration, root does not.
        write_as_service(self.data_dir / "postgresql.conf", "\n# lifeguard\n" + "\n".join(conf) + "\n", append=True)
        # TLS is forced like rds.force_ssl=1: no plain TCP login at all.
        write_as_service(
            self.data_dir / "pg_hba.conf",
            "local all all scram-sha-256\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
            "hostssl all all ::1/128 scram-sha-256\n"
            "hostnossl all all 0.0.0.0/0 reject\n"
            "hostnossl all all ::/0 reject\n",
        )

    def start(self, timeout: float = 60) -> None:
        if self.running():
            return
        bindir = find_postgres_bin()
        result = subprocess.run(
            service_argv(
                [str(bindir / "pg_ctl"), "start", "-w", "-t", str(int(timeout)), "-D", str(self.data_dir),
                 "-l", str(self.log_file)],
                nofile=4096,
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            tail = self.log_tail() or result.stderr
            raise PostgresError(f"Postgres did not start on port {self.port}: {tail.strip()}")

    def log_tail(self, size: int = 2000) -> str:
        """The end of the server log (the service user's file, read without following a link)."""
        try:
            return read_service_file(self.log_file, service_uid(), limit=size)
        except (OSError, UnsafePathError):
            return ""

    def postmaster_pid(self) -> int | None:
        """The pid in ``postmaster.pid`` (whatever state that process is in), if the file names one."""
        try:
            return int(read_service_file(self.data_dir / "postmaster.pid", service_uid()).split()[0])
        except (OSError, ValueError, IndexError, UnsafePathError):
            return None

    def wait_until_ready(self, progress: Callable[[str], None], timeout: float = READY_TIMEOUT_S) -> bool:
        """Wait for a Postgres that ``pg_ctl status`` calls running to accept connections.

        True once it does; False when its postmaster has gone in the meantime (start it again).
        Raises :class:`PostgresError`, saying what to do, for a killed postmaster its parent has
        not reaped (a zombie: Postgres cannot start while that pid exists) and for one that never
        answers (crash recovery longer than ``timeout``, a hung server).
        """
        deadline = time.monotonic() + timeout
        said = False
        while True:
            pid = self.postmaster_pid()
            state = process_state(pid) if pid is not None else None
            if pid is None or state is None:
                return False
            if state == "Z":
                parent = parent_pid(pid)
                raise PostgresError(
                    f"Postgres was killed: its postmaster (pid {pid}) is a zombie that its parent process "
                    f"(pid {parent}, {command_name(parent) if parent else '?'}) has not reaped, and Postgres cannot "
                    "start again while that pid exists. Stop or restart that parent (in a container, run it with "
                    "an init that reaps orphans, e.g. `docker run --init`), then run `lifeguard local up` again"
                )
            if self._accepts_connections():
                return True
            if time.monotonic() > deadline:
                raise PostgresError(
                    f"Postgres (pid {pid}) is running but has not accepted connections for {timeout:.0f} s; see "
                    f"{self.log_file}. Run `lifeguard local down` and `lifeguard local up` to restart it"
                )
            if not said:
                progress(f"Postgres (pid {pid}) is not accepting connections yet (recovering?); waiting")
                said = True
            time.sleep(0.5)

    def _accepts_connections(self) -> bool:
        try:
            with psycopg.connect(self.superuser_dsn(), autocommit=True, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def running(self) -> bool:
        if not self.initialized():
            return False
        bindir = find_postgres_bin()
        result = subprocess.run(
            service_argv([str(bindir / "pg_ctl"), "status", "-D", str(self.data_dir)]),
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def stop(self, timeout: float = 60) -> None:
        if not self.running():
            return
        bindir = find_postgres_bin()
        subprocess.run(
            service_argv([str(bindir / "pg_ctl"), "stop", "-w", "-t", str(int(timeout)), "-m", "fast",
                          "-D", str(self.data_dir)]),
            capture_output=True,
            check=False,
        )
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() > deadline:
                raise PostgresError(f"Postgres in {self.data_dir} did not stop")
            time.sleep(0.1)

    # -- connection strings ------------------------------------------------------------

    def dsn(self, user: str, password: str, dbname: str, **params: str | int | None) -> str:
        """Direct URL, verified TLS against the local CA, like the direct URL on RDS."""
        return make_dsn(
            "localhost", self.port, user, password, dbname,
            sslmode="verify-full", sslrootcert=str(self.ca_file), **params,
        )

    def superuser_dsn(self, dbname: str = "postgres") -> str:
        return self.dsn(SUPERUSER, self.superuser_password, dbname)

    def connect_superuser(self, dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.superuser_dsn(dbname), autocommit=True, connect_timeout=10)

    def create_app_database(self, user: str, password: str, dbname: str, *, createrole: bool = False) -> None:
        """Create (or reset the password of) a login role owning ``dbname``.

        The SCRAM verifier is computed client-side by libpq, so the plain password never
        travels in a statement that Postgres could log. ``createrole`` makes it like the RDS
        master user: no superuser, but allowed to create (and so provision) other roles.
        """
        with self.connect_superuser() as conn:
            verifier = conn.pgconn.encrypt_password(
                password.encode(), user.encode(), b"scram-sha-256"
            ).decode()
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            attributes = " CREATEROLE" if createrole else ""
            conn.execute(
                sql.SQL(verb + " ROLE {} LOGIN" + attributes + " PASSWORD {}").format(
                    sql.Identifier(user), sql.Literal(verifier))
            )
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
                create = sql.SQL("CREATE DATABASE {} OWNER {}")
                conn.execute(create.format(sql.Identifier(dbname), sql.Identifier(user)))

    def drop_database(self, dbname: str) -> None:
        with self.connect_superuser() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))

    def backend_count(self, dbname: str | None = None) -> int:
        """Client backends right now (what ``max_connections`` limits)."""
        with self.connect_superuser() as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                " AND (%s::text IS NULL OR datname = %s) AND pid <> pg_backend_pid()",
                (dbname, dbname),
            ).fetchone()
        assert row is not None
        return int(str(row[0]))


def _is_empty_folder(path: Path) -> bool:
    """A real folder (not a link) with nothing in it."""
    if not stat.S_ISDIR(path.lstat().st_mode):
        return False
    with os.scandir(path) as entries:
        return next(entries, None) is None
