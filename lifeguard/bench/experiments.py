"""What the benchmark runs next to what the kit ships, to show what a choice costs.

Plain password in PgBouncer's auth_file. The kit ships the application role's SCRAM verifier
there (:mod:`pgbouncer.scram`): PgBouncer only checks each client's proof and logs in to
Postgres by pass-through. With the plain password instead (what the kit shipped before), PgBouncer
derives the SCRAM keys from it again for every client login (4096 PBKDF2-SHA-256 iterations in
its one thread; releases before 1.25 have no cache). This module swaps the file for the benchmark
and reloads PgBouncer; it is an experiment, not a mode of the local stack.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psycopg
from psycopg import sql

from lifeguard.stack.pooler import RELOAD_TIMEOUT_S, PoolerError, PoolerProcess
from lifeguard.stack.postgres import make_dsn
from lifeguard.stack.safe_paths import read_service_file
from lifeguard.stack.stack import LocalStack, StackConfig
from lifeguard.stack.system import service_uid, write_as_service
from pgbouncer.scram import scram_verifier
from pgbouncer.settings import render_userlist


class ExperimentError(RuntimeError):
    pass


def use_plain_password(stack: LocalStack, config: StackConfig) -> None:
    """Put the application role's plain password into every PgBouncer's auth_file and reload."""
    # The login role DATABASE_URL uses; the other one and the console user keep their lines.
    active = stack.active_login(config)
    userlist = render_userlist({**stack.pooler_credentials(config), active.name: stack.login_password(active)})
    for process in stack.poolers(config):
        _reload_with(process, userlist)
    # A login through the pooled URL proves the new file works.
    with psycopg.connect(stack.pooled_url(config), prepare_threshold=None, connect_timeout=5) as conn:
        conn.execute("SELECT 1")


def use_iterations(stack: LocalStack, config: StackConfig, iterations: int) -> None:
    """Give the application role a verifier with ``iterations`` (same password and salt) in Postgres and
    every PgBouncer's auth_file, in that order, and prove a pooled login with it.

    For the cold-start benchmark, which prices the count in one run; the stack's own count
    (``StackConfig.scram_iterations``) is what ``use_iterations(stack, config, config.scram_iterations)`` restores.
    """
    active = stack.active_login(config)
    verifier = scram_verifier(stack.login_password(active), active.salt(), iterations)
    with psycopg.connect(stack.superuser_url(config), autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(active.name), sql.Literal(verifier)))
    userlist = render_userlist({**stack.pooler_credentials(config), active.name: verifier})
    for process in stack.poolers(config):
        _reload_with(process, userlist)
    with psycopg.connect(stack.pooled_url(config), prepare_threshold=None, connect_timeout=10) as conn:
        conn.execute("SELECT 1")


def _reload_with(process: PoolerProcess, userlist: str) -> None:
    try:
        process.reload_auth_file(userlist)
    except PoolerError as exc:
        raise ExperimentError(str(exc)) from None


# First line of pg_hba.conf for the no-TLS rows: plain TCP from loopback, still SCRAM. The local
# cluster forces TLS like rds.force_ssl=1; only this experiment lifts that, to price server_tls.
# Both loopback families: PgBouncer 1.26.1's c-ares resolves localhost to ::1 first.
PLAIN_TCP_HBA_LINE = ("hostnossl all all 127.0.0.1/32 scram-sha-256  # lifeguard bench: server_tls experiment\n"
                      "hostnossl all all ::1/128 scram-sha-256  # lifeguard bench: server_tls experiment")


def allow_plain_tcp(stack: LocalStack, config: StackConfig) -> None:
    """Let PgBouncer log in to the local Postgres without TLS (for ``server_tls_sslmode=disable``)."""
    cluster = stack.cluster(config)
    hba = cluster.data_dir / "pg_hba.conf"
    # The service user's file, in its folder: read without following a link, written as that user.
    text = read_service_file(hba, service_uid())
    if PLAIN_TCP_HBA_LINE not in text:
        write_as_service(hba, PLAIN_TCP_HBA_LINE + "\n" + text)
    with cluster.connect_superuser() as conn:
        conn.execute("SELECT pg_reload_conf()")
    # The reload is asynchronous: wait until a plain-TCP login works.
    login = stack.active_login(config)
    plain = make_dsn("127.0.0.1", config.pg_port, login.name, stack.login_password(login), config.dbname,
                     sslmode="disable")
    deadline = time.monotonic() + RELOAD_TIMEOUT_S
    while True:
        try:
            with psycopg.connect(plain, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise ExperimentError(f"Postgres did not accept plain TCP after reloading pg_hba.conf: {exc}") from None
            time.sleep(0.1)


# Certificate key types to price the client TLS handshake (the shipped one is pgbouncer.tls's P-256).
# Made with the openssl command line: an experiment only, the kit's certificate code stays in one place.
KEY_TYPES = {"rsa2048": ["-newkey", "rsa:2048"], "ed25519": ["-newkey", "ed25519"],
             "p384": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"]}


def write_certificate(cert_file: Path, key_file: Path, key_type: str) -> None:
    """A self-signed certificate of ``key_type`` where PgBouncer's entrypoint would make its own.

    openssl follows links, so the folder must be new and ours: made here, refused if it is there.
    """
    if key_type not in KEY_TYPES:
        raise ExperimentError(f"unknown key type {key_type!r}; choose one of {', '.join(KEY_TYPES)}")
    cert_file.parent.mkdir(parents=True, mode=0o700)
    result = subprocess.run(
        ["openssl", "req", "-x509", *KEY_TYPES[key_type], "-nodes", "-days", "2", "-subj", "/CN=pgbouncer",
         "-keyout", str(key_file), "-out", str(cert_file)],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise ExperimentError(f"openssl could not make a {key_type} certificate: {result.stderr.strip()}")
    key_file.chmod(0o600)
