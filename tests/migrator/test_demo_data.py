"""#12.14: demo data stays out of production; the smoke test's org is in every stack."""

from __future__ import annotations

import pytest

from lifeguard.deploy.smoke import SMOKE_ORG_ID
from migrator.contract import DEMO_DATA_ENV
from migrator.errors import MigrationFileError
from migrator.files import load_migrations
from migrator.runner import DEFAULT_MIGRATIONS_DIR, migrate
from tests.migrator.support import query, recorded_versions
from tests.support import AppDatabase


def test_without_demo_data_only_the_smoke_org_is_created(app_db: AppDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEMO_DATA_ENV, "0")  # what a production stack's migration task gets
    migrate(app_db.direct_url)
    assert recorded_versions(app_db) == ["0001", "0002", "0004", "0005"]
    assert query(app_db, "SELECT id, name FROM orgs") == [(SMOKE_ORG_ID, "lifeguard-smoke")]
    assert query(app_db, "SELECT count(*) FROM invoices") == [(0,)]


def test_with_demo_data_the_sample_orgs_come_first(app_db: AppDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEMO_DATA_ENV, "1")
    migrate(app_db.direct_url)
    assert recorded_versions(app_db) == ["0001", "0002", "0003", "0004", "0005"]
    assert query(app_db, "SELECT id, name FROM orgs ORDER BY id") == [
        (1, "acme"), (2, "globex"), (SMOKE_ORG_ID, "lifeguard-smoke")]
    # New orgs still get ids from the identity sequence, below the smoke org's.
    assert query(app_db, "INSERT INTO orgs (name) VALUES ('new') RETURNING id") == [(3,)]


def test_a_bad_flag_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEMO_DATA_ENV, "maybe")
    with pytest.raises(MigrationFileError, match=f"{DEMO_DATA_ENV} must be 1 or 0"):
        load_migrations(DEFAULT_MIGRATIONS_DIR)
