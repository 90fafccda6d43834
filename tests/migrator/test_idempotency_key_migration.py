"""#31.6: 0005 makes a charge's idempotency key unique per organisation, keeping every existing charge."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from migrator.runner import DEFAULT_MIGRATIONS_DIR, migrate
from tests.migrator.support import query, recorded_versions
from tests.support import AppDatabase

PER_ORG = "0005_charges_idempotency_key_per_org.sql"


def test_keys_become_unique_per_org_and_existing_charges_stay(app_db: AppDatabase, tmp_path: Path) -> None:
    before = tmp_path / "before"
    before.mkdir()
    for path in sorted(DEFAULT_MIGRATIONS_DIR.glob("*.sql")):
        if path.name < PER_ORG:
            shutil.copy(path, before)
    migrate(app_db.direct_url, before)
    charges = [(1, 10, "k-1", 990), (1, 20, "k-2", 970), (2, 5, "k-3", 45)]
    with psycopg.connect(app_db.direct_url, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO charges (org_id, amount, idempotency_key, balance_after) VALUES (%s, %s, %s, %s)", charges)

    migrate(app_db.direct_url)
    assert recorded_versions(app_db)[-1] == PER_ORG[:4]
    kept = "SELECT org_id, amount, idempotency_key, balance_after FROM charges ORDER BY id"
    assert query(app_db, kept) == charges
    with psycopg.connect(app_db.direct_url, autocommit=True) as conn:
        # Another org may use the same key; the same org may not.
        conn.execute("INSERT INTO charges (org_id, amount, idempotency_key, balance_after) VALUES (2, 1, 'k-1', 44)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO charges (org_id, amount, idempotency_key, balance_after) VALUES (1, 1, 'k-1', 1)")
        # What the function's ON CONFLICT names must be a unique index.
        conn.execute("INSERT INTO charges (org_id, amount, idempotency_key, balance_after) VALUES (1, 1, 'k-1', 1)"
                     " ON CONFLICT (org_id, idempotency_key) DO NOTHING")
    assert query(app_db, "SELECT count(*) FROM charges") == [(4,)]
