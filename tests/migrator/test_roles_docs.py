"""docs/roles.md's read-only analytics role, run as written against a real Postgres."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import psycopg
import pytest

from migrator.runner import DEFAULT_MIGRATIONS_DIR, migrate
from tests.migrator.support import REPO_ROOT, write_migrations
from tests.support import AppDatabase

DOC = REPO_ROOT / "docs" / "roles.md"
MARKER = "-- migrator/migrations/0006_analytics_reader.sql"


def documented_migration() -> str:
    blocks: list[str] = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    [block] = [b for b in blocks if b.startswith(MARKER)]
    return str(block)


def test_the_documented_analytics_role_reads_and_cannot_write(app_db: AppDatabase, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(DEFAULT_MIGRATIONS_DIR, directory)
    write_migrations(directory, {"0006_analytics_reader.sql": documented_migration()})
    migrate(app_db.direct_url, directory)
    migrate(app_db.direct_url, directory)  # idempotent: nothing to apply the second time
    with psycopg.connect(app_db.direct_url, autocommit=True) as owner:
        owner.execute("CREATE ROLE lg_alice LOGIN PASSWORD 'alice-pw' IN ROLE analytics_reader")
        try:
            owner.execute("CREATE TABLE later_table (id int)")  # a later migration's table
            owner.execute("INSERT INTO later_table VALUES (1)")
            with psycopg.connect(app_db.cluster.dsn("lg_alice", "alice-pw", app_db.dbname), autocommit=True) as alice:
                assert alice.execute("SELECT count(*) > 0 FROM orgs").fetchone() == (True,)
                assert alice.execute("SELECT id FROM later_table").fetchall() == [(1,)]
                for forbidden in ("INSERT INTO orgs (name, credits) VALUES ('x', 1)", "DELETE FROM charges",
                                  "SELECT * FROM lifeguard_schema_migrations", "CREATE TABLE t (id int)"):
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        alice.execute(forbidden)
        finally:
            with app_db.cluster.connect_superuser(app_db.dbname) as superuser:
                superuser.execute("DROP ROLE lg_alice")
                superuser.execute("DROP OWNED BY analytics_reader")
                superuser.execute("DROP ROLE analytics_reader")
