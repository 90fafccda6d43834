"""Fixtures for the functions: the sample schema, a small transaction-mode pool, function instances."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from lambdas.db import ClientSettings, Database
from tests.infra.infra_harness import REPO_ROOT
from tests.lambdas.proxy import FaultyProxy
from tests.lambdas.support import POOL_SIZE, REGION, Ledger, apply_migrations
from tests.support import AppDatabase, RunningPooler


@pytest.fixture
def schema_db(app_db: AppDatabase) -> AppDatabase:
    """``app_db`` with the migrations applied."""
    apply_migrations(app_db)
    return app_db


@pytest.fixture
def pooler(schema_db: AppDatabase, start_pooler: Callable[..., RunningPooler]) -> RunningPooler:
    return start_pooler(default_pool_size=POOL_SIZE)


@pytest.fixture
def make_db() -> Iterator[Callable[..., Database]]:
    """Function instances: each call is a new :class:`Database` (its own connection), closed afterwards."""
    made: list[Database] = []

    def make(url: str, **settings: Any) -> Database:
        database = Database(url=url, settings=ClientSettings(**settings), env={})
        made.append(database)
        return database

    yield make
    for database in made:
        database.close()


@pytest.fixture
def proxies() -> Iterator[Callable[[int], FaultyProxy]]:
    started: list[FaultyProxy] = []

    def start(upstream_port: int) -> FaultyProxy:
        proxy = FaultyProxy(upstream_port)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.close()


@pytest.fixture
def ledger(schema_db: AppDatabase) -> Ledger:
    return Ledger(schema_db)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A moto Secrets Manager (and the rest of AWS) in :data:`REGION`, with throwaway credentials."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_SESSION_TOKEN", "testing"), ("AWS_DEFAULT_REGION", REGION)):
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


@pytest.fixture(scope="session")
def node_function() -> Path:
    """``lambdas-node/`` installed from its lock with ``npm ci`` (dev dependencies too: the AWS SDK the
    Lambda runtime provides), with the dev install's Node.js."""
    from lifeguard.aws.npm import NpmError, install
    from lifeguard.stack.pgbouncer_install import cache_dir
    from tests.support import NODE

    try:
        return install(REPO_ROOT / "lambdas-node", cache_dir() / "node-function", NODE, omit_dev=False)
    except NpmError as exc:
        pytest.fail(str(exc))
