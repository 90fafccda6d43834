"""The migration task, run from the task definition the program renders, against the RDS stand-in."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from lifeguard.stack.docker_engine import DockerEngine
from lifeguard.stack.ecs_run import TaskRun
from lifeguard.stack.postgres import PostgresCluster
from migrator.contract import CONTAINER_NAME as MIGRATOR_CONTAINER
from migrator.contract import ROTATION_ENV, ROTATION_PARAMETER_ENV
from migrator.errors import ExitCode
from tests.images.conftest import NOT_RECORDED
from tests.images.support import RenderedStack
from tests.infra.infra_harness import MOCK_PASSWORD


def direct_arn(rendered: RenderedStack) -> str:
    """The ARN the migration task reads DATABASE_URL_UNPOOLED from."""
    (container,) = rendered.task("migration")["containerDefinitions"]
    (secret,) = [s for s in container["secrets"] if s["name"] == "DATABASE_URL_UNPOOLED"]
    return str(secret["valueFrom"])


def test_applies_the_migrations_over_the_direct_url_as_the_image_user(
    migrated: TaskRun, rds: PostgresCluster, rendered: RenderedStack, engine: DockerEngine
) -> None:
    migrator = migrated.plan(MIGRATOR_CONTAINER).docker_name
    assert engine.docker("inspect", "--format", "{{.Config.User}}", migrator).stdout.strip() == "10001:10001"
    with psycopg.connect(host="127.0.0.1", port=rds.port, user=rendered.db_user, password=MOCK_PASSWORD,
                         dbname=rendered.db_name, sslmode="require") as conn:
        names = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"orgs", "invoices", "charges"} <= names
        assert conn.execute("SELECT count(*) FROM orgs WHERE name = 'acme'").fetchone() == (1,)
    # The application role, provisioned by the task with the very verifier the pooler's secret holds
    # (the task got it as the secret's "password" key), and DML only.
    pooler_credentials = json.loads(rendered.secret("POOLER_CREDENTIALS"))
    assert pooler_credentials["username"] == rendered.app_role
    with rds.connect_superuser() as conn:
        role = conn.execute("SELECT rolpassword, rolsuper, rolcreaterole, rolcreatedb FROM pg_authid "
                            "WHERE rolname = %s", (rendered.app_role,)).fetchone()
    assert role == (pooler_credentials["password"], False, False, False)
    # The CA bundle the direct URL names (sslrootcert) is in the image, and is what verified "RDS".
    query = parse_qs(urlsplit(rendered.secret("DATABASE_URL_UNPOOLED")).query)
    assert query["sslmode"] == ["verify-full"]
    copied = subprocess.run([engine.client, "cp", f"{migrator}:{query['sslrootcert'][0]}", "-"], env=engine.env,
                            capture_output=True, check=True, timeout=60).stdout
    assert (rds.tls.cert_file.read_bytes()).strip() in copied


def test_the_task_records_the_rotation_it_set_through_its_role(
    migrated: TaskRun, rendered: RenderedStack, task_role_aws: tuple[dict[str, str], Any]
) -> None:
    """The image's migrator writes the stack's rotation parameter after its successful run (docs/roles.md)."""
    (container,) = rendered.task("migration")["containerDefinitions"]
    environment = {v["name"]: v["value"] for v in container["environment"]}
    value = task_role_aws[1].get_parameter(Name=environment[ROTATION_PARAMETER_ENV])["Parameter"]["Value"]
    assert value == environment[ROTATION_ENV] != NOT_RECORDED
    assert f"Postgres holds password rotation {value}'s verifiers" in migrated.logs(MIGRATOR_CONTAINER)


def test_a_second_run_applies_nothing_and_succeeds(migrated: TaskRun, start_task: Callable[..., TaskRun]) -> None:
    run = start_task("migration")
    assert run.wait(MIGRATOR_CONTAINER) == ExitCode.OK, run.logs(MIGRATOR_CONTAINER)


@pytest.mark.parametrize(
    ("url", "code", "message"),
    [
        ("not a database url", ExitCode.CONFIG, "DATABASE_URL_UNPOOLED"),
        # The RDS name, on a port where nothing listens: the database is unreachable.
        ("postgresql://u:p@{rds}:1/app?sslmode=verify-full&sslrootcert=/etc/ssl/certs/rds-global-bundle.pem",
         ExitCode.UNAVAILABLE, ""),
    ],
)
def test_documented_exit_codes(
    migrated: TaskRun, rendered: RenderedStack, start_task: Callable[..., TaskRun], url: str, code: ExitCode,
    message: str,
) -> None:
    secrets = {**rendered.secrets, direct_arn(rendered): url.format(rds=rendered.rds_address)}
    run = start_task("migration", secrets=secrets)
    assert run.wait(MIGRATOR_CONTAINER) == code, run.logs(MIGRATOR_CONTAINER)
    assert message in run.logs(MIGRATOR_CONTAINER)
