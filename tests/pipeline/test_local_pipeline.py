"""The pipeline after ``pulumi up``, for real on this machine: the migration job, then the smoke test.

ECS and Lambda are played locally (``local_aws.py``); what runs is real: ``python -m migrator`` on
the fixtures' Postgres over the direct URL, and the sample functions through PgBouncer over the
pooled URL. This is the contract between the pipeline and the code it deploys: if the migrator's
exit codes or the functions' answers change shape, these tests say so.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest

from lambdas import charge_credits, read_invoices
from lambdas.db import ClientSettings, Database
from lifeguard import cli
from lifeguard.deploy import aws
from lifeguard.deploy.migration import MigrationSettings, run_migration
from lifeguard.deploy.outputs import MigrationTarget, SmokeTarget
from lifeguard.deploy.smoke import SMOKE_ORG_ID, run_smoke
from migrator.contract import wrapped_command
from migrator.files import load_migrations
from tests.pipeline.local_aws import Handler, LocalFargate, LocalLambda
from tests.pipeline.support import REGION, MigrationStack
from tests.secrecy import assert_no_secret
from tests.support import AppDatabase, RunningPooler

READ = "lifeguard-dev-read-invoices"
CHARGE = "lifeguard-dev-charge-credits"
MIGRATIONS = Path(__file__).resolve().parents[2] / "migrator" / "migrations"
ALEMBIC_PROJECT = Path(__file__).resolve().parents[1] / "migrator" / "tools" / "alembic_project"


class Printed:
    def __init__(self) -> None:
        self.log_lines: list[str] = []
        self.status: list[str] = []

    def run(self) -> MigrationSettings:
        # The real clock, polling fast: a real process is running.
        return MigrationSettings(timeout=120, poll_interval=0.1, log_grace=0.1, clock=time,
                            on_log_line=self.log_lines.append, on_status=self.status.append)


@pytest.fixture
def migrate_with(
    migration_stack: MigrationStack, tmp_path: Path,
) -> Iterator[Callable[..., tuple[int, Printed]]]:
    target = MigrationTarget.from_outputs(migration_stack.outputs, "the test stack")
    fargates: list[LocalFargate] = []

    def migrate(url: str, command: list[str] | None = None) -> tuple[int, Printed]:
        ecs = boto3.client("ecs", region_name=REGION)
        logs = boto3.client("logs", region_name=REGION)
        fargates.append(LocalFargate(ecs, logs, target, url, tmp_path))
        printed = Printed()
        settings = printed.run()
        settings.command = command
        outcome = run_migration(ecs, logs, target, settings)
        printed.status.append(outcome.summary)
        return outcome.exit_code, printed

    yield migrate
    for fargate in fargates:
        fargate.close()


def test_migrate_then_smoke(
    migrate_with: Callable[..., tuple[int, Printed]], app_db: AppDatabase,
    start_pooler: Callable[..., RunningPooler],
) -> None:
    code, printed = migrate_with(app_db.direct_url)

    assert code == 0, "\n".join(printed.log_lines + printed.status)
    output = "\n".join(printed.log_lines)
    # The migrator's own lines came through CloudWatch, one per migration file, and no secret did.
    for migration in load_migrations(MIGRATIONS):
        assert migration.filename in output
    assert_no_secret(app_db.password, output + "\n".join(printed.status))
    with psycopg.connect(app_db.direct_url) as conn:
        assert conn.execute("SELECT name, credits FROM orgs ORDER BY id").fetchall() == [
            ("acme", 1000), ("globex", 50), ("lifeguard-smoke", 1_000_000_000)]

    pooler = start_pooler()
    client = boto3.client("lambda", region_name=REGION)
    database = Database(url=pooler.url(), settings=ClientSettings(), env={})
    try:
        functions = LocalLambda(client, {
            READ: lambda event: dict(read_invoices.handle(event, database)),
            CHARGE: lambda event: dict(charge_credits.handle(event, database)),
        })
        report = run_smoke(client, SmokeTarget(READ, CHARGE))
    finally:
        database.close()

    assert report.ok, "\n".join(check.line() for check in report.checks)
    assert [name for name, _ in functions.invocations] == [READ, CHARGE, CHARGE, READ]
    key = functions.invocations[1][1]["idempotency_key"]
    with psycopg.connect(app_db.direct_url) as conn:
        # The smoke test's own org paid, not a demo org.
        assert conn.execute("SELECT id, credits FROM orgs WHERE credits <> 1000 AND credits <> 50").fetchall() == [
            (SMOKE_ORG_ID, 999_999_999)]
        assert conn.execute("SELECT count(*) FROM charges WHERE idempotency_key = %s", (key,)).fetchone() == (1,)


def test_a_migration_that_fails_fails_the_pipeline_with_its_exit_code(
    migrate_with: Callable[..., tuple[int, Printed]], app_db: AppDatabase,
    start_pooler: Callable[..., RunningPooler],
) -> None:
    # The migrator refuses a pooled URL (DDL and its lock need a direct connection): a real
    # non-zero exit, which moto alone could never report.
    pooled = start_pooler().url()
    code, printed = migrate_with(pooled)

    assert code == 3, "\n".join(printed.log_lines + printed.status)
    assert "exited with code 3" in printed.status[-1]
    assert "pooler" in "\n".join(printed.log_lines), "the migrator's reason must reach the pipeline's output"
    assert_no_secret(app_db.password, "\n".join(printed.log_lines + printed.status))


def test_your_tool_through_the_pipeline_and_a_failing_revision_fails_the_step(
    migrate_with: Callable[..., tuple[int, Printed]], app_db: AppDatabase, tmp_path: Path,
) -> None:
    # What `lifeguard migrate --command 'alembic ...'` sends: the wrapper around Alembic, run for real.
    project = shutil.copytree(ALEMBIC_PROJECT, tmp_path / "alembic_project")
    alembic = wrapped_command(["python3", "-m", "alembic", "-c", str(project / "alembic.ini"), "upgrade", "head"])
    # The wrapper's own python3 is this interpreter; so must be Alembic's (the image's python3).
    alembic[5] = sys.executable
    code, printed = migrate_with(app_db.direct_url, alembic)
    assert code == 0, "\n".join(printed.log_lines + printed.status)
    assert "holding the migration lock" in "\n".join(printed.log_lines)
    with psycopg.connect(app_db.direct_url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]

    (project / "versions" / "0002_broken.py").write_text(
        'from alembic import op\n\nrevision = "0002"\ndown_revision = "0001"\n\n\n'
        'def upgrade() -> None:\n    op.execute("ALTER TABLE no_such_table ADD COLUMN x int")\n'
    )
    code, printed = migrate_with(app_db.direct_url, alembic)
    assert code == 1, "\n".join(printed.log_lines + printed.status)
    assert "exited with code 1" in printed.status[-1]
    assert "no_such_table" in "\n".join(printed.log_lines)
    assert_no_secret(app_db.owner_password, "\n".join(printed.log_lines + printed.status))


def test_smoke_a_users_own_function_through_the_pooler(
    migrate_with: Callable[..., tuple[int, Printed]], app_db: AppDatabase,
    start_pooler: Callable[..., RunningPooler], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # #24: a stack with sampleFunctions false. The function is the user's, written as one would be (psycopg
    # on the pooled URL, an API-Gateway-style answer), and really reads the migrated database through PgBouncer.
    code, printed = migrate_with(app_db.direct_url)
    assert code == 0, "\n".join(printed.log_lines + printed.status)
    pooler = start_pooler()

    def health(url: str) -> Handler:
        def handle(event: object) -> dict[str, Any]:
            assert event == {"rawPath": "/health"}
            try:
                # No prepared statements: PgBouncer in transaction mode (docs/functions.md).
                with psycopg.connect(url, connect_timeout=5, prepare_threshold=None) as conn:
                    row = conn.execute("SELECT count(*) FROM orgs WHERE name = 'lifeguard-smoke'").fetchone()
            except psycopg.OperationalError:
                return {"statusCode": 503, "body": json.dumps({"error": "database_unavailable",
                                                               "message": "the pooler refused the connection"})}
            return {"statusCode": 200, "headers": {"content-type": "application/json"},
                    "body": json.dumps({"status": "ok", "smoke_org": row[0] if row else None})}
        return handle

    def leaky(event: object) -> dict[str, Any]:
        # A careless handler: its exception quotes the URL, password and all.
        raise RuntimeError(f"cannot use {pooler.url()}")

    client = boto3.client("lambda", region_name=REGION)
    LocalLambda(client, {"acme-health": health(pooler.url()), "acme-health-bad-password": health(
        pooler.url(password="not-the-password")), "acme-leaky": leaky})
    monkeypatch.setattr(aws, "lambda_client", lambda region: client)

    def smoke(function: str, *expect: str) -> tuple[int, str]:
        code = cli.main(["smoke", "--function", function, "--payload", '{"rawPath": "/health"}', *expect])
        out, err = capsys.readouterr()
        assert_no_secret(app_db.password, out + err)
        return code, out

    code, out = smoke("acme-health", "--expect", "/body/status", '"ok"', "--expect", "/body/smoke_org", "1")
    assert code == 0, out
    assert out.splitlines()[1:] == ["ok    statusCode: 200 (expected 2xx)", 'ok    /body/status: "ok"',
                                    "ok    /body/smoke_org: 1", "smoke test passed: 4 checks"]
    code, out = smoke("acme-health", "--expect", "/body/smoke_org", "2")
    assert code == 1 and "FAIL  /body/smoke_org: 1, expected 2" in out
    code, out = smoke("acme-health-bad-password")
    assert code == 1
    assert "FAIL  statusCode: expected 2xx, got 503 (database_unavailable: the pooler refused the connection)" in out
    code, out = smoke("acme-leaky")
    assert code == 1 and "FAIL  invoke acme-leaky: acme-leaky failed (Unhandled): RuntimeError: cannot use" in out
