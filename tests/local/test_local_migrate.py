"""Your own migration tool on the local stack (#25.5): ``lifeguard local up --migrate-command`` and
``lifeguard local migrate -- CMD`` run Alembic for real through the migration wrapper, and the functions'
pooled URL (through PgBouncer, as the application role) can use what it created."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

import psycopg
import pytest

from lifeguard.cli import main
from lifeguard.stack.stack import LocalStack
from tests.secrecy import assert_no_secret

ALEMBIC_PROJECT = Path(__file__).resolve().parents[1] / "migrator" / "tools" / "alembic_project"
GIZMOS = '''from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.execute("CREATE TABLE gizmos (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text)")
'''
BROKEN = '''from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.execute("ALTER TABLE no_such_table ADD COLUMN x int")
'''


def test_up_and_migrate_run_your_tool_and_the_pooled_role_uses_its_tables(
    stack_dir: Path, ports: tuple[int, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = shutil.copytree(ALEMBIC_PROJECT, tmp_path / "alembic_project")
    alembic = [sys.executable, "-m", "alembic", "-c", str(project / "alembic.ini"), "upgrade", "head"]
    state = ["--state-dir", str(stack_dir)]
    assert main(["local", "up", *state, "--pg-port", str(ports[0]), "--pooler-port", str(ports[1]),
                 "--migrate-command", shlex.join(alembic)]) == 0
    stack = LocalStack(stack_dir)
    secrets = [stack.app_password(), stack.owner_password(), stack.direct_url()]
    err = capsys.readouterr().err
    for secret in secrets:
        assert_no_secret(secret, err)
    assert "holding the migration lock" in err and "the command exited with 0" in err
    with psycopg.connect(stack.pooled_url(), autocommit=True, prepare_threshold=None) as app:
        app.execute("INSERT INTO widgets (name) VALUES ('through PgBouncer')")
        # The sample migrations were not applied: your tool replaced them.
        assert app.execute("SELECT to_regclass('orgs')").fetchone() == (None,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("UPDATE alembic_version SET version_num = 'forged'")

    (project / "versions" / "0002_gizmos.py").write_text(GIZMOS)
    assert main(["local", "migrate", *state, "--", *alembic]) == 0
    with psycopg.connect(stack.pooled_url(), autocommit=True, prepare_threshold=None) as app:
        app.execute("INSERT INTO gizmos (name) VALUES ('a later migration, granted')")

    (project / "versions" / "0003_broken.py").write_text(BROKEN)
    assert main(["local", "migrate", *state, "--", *alembic]) == 1
    err = capsys.readouterr().err
    for secret in secrets:
        assert_no_secret(secret, err)
    assert "no_such_table" in err and "the migration job failed (exit code 1)" in err


def test_migrate_command_goes_with_a_migration_on_this_machine(
    stack_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for extra in ("--no-migrate", "--images"):
        assert main(["local", "up", "--state-dir", str(stack_dir), "--migrate-command", "alembic upgrade head",
                     extra]) == 1
        assert f"leave out {extra}" in capsys.readouterr().err
    assert not stack_dir.exists()
    assert main(["local", "migrate", "--state-dir", str(stack_dir), "--", "true"]) == 1
    assert "is not running" in capsys.readouterr().err
