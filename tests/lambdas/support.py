"""What the functions' tests share besides fixtures: the pool size, a counting Secrets Manager client, direct
access to the sample tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import psycopg
import psycopg.rows

from lambdas.api import Response
from tests.support import AppDatabase

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrator" / "migrations"

# Small on purpose: many instances share few server connections, as in production.
POOL_SIZE = 4
REGION = "eu-west-1"
"""The region of the moto Secrets Manager the ``aws`` fixture stands up."""


def apply_migrations(db: AppDatabase) -> None:
    """The migrations in order over the direct URL, one transaction each (the migrator's own runner is
    tested with the migrator; here the SQL files are all we need)."""
    files = sorted(MIGRATIONS.glob("*.sql"))
    assert files, f"no migrations in {MIGRATIONS}"
    with psycopg.connect(db.direct_url, autocommit=True) as conn:
        for path in files:
            with conn.transaction():
                conn.execute(path.read_text())


class CountingSecrets:
    """A real boto3 client (against moto) that counts GetSecretValue calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.regions: list[str] = []

    def __call__(self, region: str) -> Any:
        self.regions.append(region)
        client = boto3.client("secretsmanager", region_name=region)
        client.meta.events.register("before-call.secretsmanager.GetSecretValue", self._count)
        return client

    def _count(self, **_: Any) -> None:
        self.calls += 1


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


def body(response: Response) -> dict[str, Any]:
    parsed = json.loads(response["body"])
    assert isinstance(parsed, dict)
    return parsed
