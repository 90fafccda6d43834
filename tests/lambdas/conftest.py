"""Fixtures for the functions: the sample schema, a small transaction-mode pool, function instances."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lambdas.api import Response
from lambdas.db import ClientSettings, Database
from tests.lambdas.proxy import FaultyProxy
from tests.support import AppDatabase, RunningPooler

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrator" / "migrations"
# Small on purpose: many instances share few server connections, as in production.
POOL_SIZE = 4


@pytest.fixture
def schema_db(app_db: AppDatabase) -> AppDatabase:
    """``app_db`` with the migrations applied in order over the direct URL, one transaction each.

    (The migrator's own runner is tested with the migrator; here the SQL files are all we need.)
    """
    files = sorted(MIGRATIONS.glob("*.sql"))
    assert files, f"no migrations in {MIGRATIONS}"
    with psycopg.connect(app_db.direct_url, autocommit=True) as conn:
        for path in files:
            with conn.transaction():
                conn.execute(path.read_text())
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


class Ledger:
    """Direct (unpooled) access to the sample tables, to set up and check what the functions did."""

    def __init__(self, db: AppDatabase) -> None:
        self.url = db.direct_url

    def connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.url, autocommit=True)

    def new_org(self, name: str, credits: int) -> int:
        with self.connect() as conn:
            row = conn.execute(
                "INSERT INTO orgs (name, credits) VALUES (%s, %s) RETURNING id", (name, credits)
            ).fetchone()
        assert row is not None
        return int(row[0])

    def org_id(self, name: str) -> int:
        with self.connect() as conn:
            row = conn.execute("SELECT id FROM orgs WHERE name = %s", (name,)).fetchone()
        assert row is not None, f"no org {name}"
        return int(row[0])

    def credits(self, org_id: int) -> int:
        with self.connect() as conn:
            row = conn.execute("SELECT credits FROM orgs WHERE id = %s", (org_id,)).fetchone()
        assert row is not None
        return int(row[0])

    def set_credits(self, org_id: int, credits: int) -> None:
        with self.connect() as conn:
            conn.execute("UPDATE orgs SET credits = %s WHERE id = %s", (credits, org_id))

    def charges(self, org_id: int | None = None) -> list[dict[str, Any]]:
        with self.connect() as conn:
            cur = conn.cursor(row_factory=psycopg.rows.dict_row)
            return cur.execute(
                "SELECT id, org_id, amount, idempotency_key, balance_after FROM charges"
                " WHERE %(org)s::bigint IS NULL OR org_id = %(org)s ORDER BY id",
                {"org": org_id},
            ).fetchall()

    def snapshot(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Every org balance and every charge row: compare before/after to prove nothing was written."""
        with self.connect() as conn:
            orgs = conn.execute("SELECT id, credits FROM orgs ORDER BY id").fetchall()
            charges = conn.execute("SELECT * FROM charges ORDER BY id").fetchall()
        return orgs, charges


@pytest.fixture
def ledger(schema_db: AppDatabase) -> Ledger:
    return Ledger(schema_db)


def body(response: Response) -> dict[str, Any]:
    parsed = json.loads(response["body"])
    assert isinstance(parsed, dict)
    return parsed
