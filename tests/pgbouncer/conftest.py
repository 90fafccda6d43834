"""Fixtures for the PgBouncer tests: both releases, extra login roles, poolers that serve several users.

The shared ``start_pooler`` fixture serves the app role only; the password tests need many
roles (one per special character) behind one PgBouncer, so they start :class:`PoolerProcess`
directly through :func:`multi_user_pooler`, which stops everything it started.
"""

from __future__ import annotations

import itertools
import signal
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from lifeguard.stack.pooler import PoolerProcess, installed_version, other_debian_pgbouncer
from lifeguard.stack.system import find_pgbouncer
from pgbouncer.versions import PgBouncerVersion
from tests.pgbouncer.support import MakeRoles, StartMultiUser
from tests.support import AppDatabase, pooler_settings


def _binaries() -> list[Path]:
    """The shipped release, and Debian's own PgBouncer when it is another release (12's 1.18)."""
    other = other_debian_pgbouncer()
    return [find_pgbouncer()] if other is None else [find_pgbouncer(), other]


_BINARIES = _binaries()


@pytest.fixture(scope="session", params=_BINARIES, ids=[f"pgbouncer-{installed_version(b)}" for b in _BINARIES])
def pgbouncer_binary(request: pytest.FixtureRequest) -> Path:
    """Every PgBouncer test here runs on the shipped release and on Debian 12's 1.18."""
    path: Path = request.param
    return path


_role_counter = itertools.count(1)
_pooler_counter = itertools.count(1)


@pytest.fixture
def make_roles(app_db: AppDatabase) -> Iterator[MakeRoles]:
    """Create login roles (``label -> password``); returns ``role name -> password``. Dropped after."""
    created: list[str] = []

    def make(passwords: Mapping[str, str]) -> dict[str, str]:
        roles: dict[str, str] = {}
        for password in passwords.values():
            name = f"lg_role_{next(_role_counter)}"
            # create_app_database only creates the role: the database exists already.
            app_db.cluster.create_app_database(name, password, app_db.dbname)
            created.append(name)
            roles[name] = password
        return roles

    yield make
    with app_db.cluster.connect_superuser() as conn:
        for name in created:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def multi_user_pooler(
    app_db: AppDatabase, state_root: Path, pgbouncer_binary: Path, pgbouncer_version: PgBouncerVersion
) -> Iterator[StartMultiUser]:
    """Start PgBouncer for ``app_db`` with a userlist holding ``credentials``; stopped after the test."""
    started: list[PoolerProcess] = []

    def start(credentials: Mapping[str, str], **overrides: Any) -> PoolerProcess:
        root = state_root / f"multi-pooler-{app_db.dbname}-{next(_pooler_counter)}"
        settings = pooler_settings(
            app_db, root, pgbouncer_version, overrides.pop("default_pool_size", 1), **overrides
        )
        process = PoolerProcess(root=root, settings=settings, binary=pgbouncer_binary)
        started.append(process)
        process.start(credentials)
        return process

    yield start
    for process in started:
        process.stop(signal.SIGQUIT, timeout=10)
