"""The pooler task, run from the task definition the program renders: PgBouncer and its sidecar."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import psycopg

from lifeguard.stack.docker_engine import DockerEngine
from lifeguard.stack.ecs_run import TaskRun
from migrator.contract import CONTAINER_NAME as MIGRATOR_CONTAINER
from migrator.errors import ExitCode
from pgbouncer.contract import CONTAINER_NAME as POOLER_CONTAINER
from pgbouncer.contract import METRICS_CONTAINER_NAME as METRICS_CONTAINER
from pgbouncer.versions import PINNED
from tests.images.support import RenderedStack
from tests.images.test_migration_task import direct_arn
from tests.infra.infra_harness import MOCK_PASSWORD
from tests.observability.emf_check import parse_emf


def pooled(rendered: RenderedStack, **params: Any) -> psycopg.Connection[tuple[Any, ...]]:
    """A client with the functions' DATABASE_URL (the NLB's name, verify-full against the stack's CA as
    the layer ships it), dialling the task on loopback."""
    return psycopg.connect(rendered.secret("DATABASE_URL"), hostaddr="127.0.0.1", connect_timeout=10,
                           **{"sslrootcert": str(rendered.pooled_ca_here()), **params})


def test_clients_log_in_over_tls_through_the_task(pooler_task: TaskRun, rendered: RenderedStack) -> None:
    with pooled(rendered) as conn:
        assert conn.info.pgconn.ssl_in_use
        # As the application role (the migration task set its verifier; PgBouncer logged in with it), not the master.
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (
            rendered.app_role, rendered.db_name)
        # PgBouncer reached Postgres over verify-full TLS, under the RDS endpoint's name.
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)
    # TLS is required: the pooler refuses a plain-text login.
    try:
        pooled(rendered, sslmode="disable").close()
    except psycopg.OperationalError as exc:
        assert "SSL" in str(exc) or "ssl" in str(exc)
    else:
        raise AssertionError("a plain-text login went through")


def test_pgbouncer_is_pid_1_as_the_image_user(pooler_task: TaskRun, engine: DockerEngine) -> None:
    name = pooler_task.plan(POOLER_CONTAINER).docker_name
    top = engine.docker("top", name, "-o", "pid,uid,args").stdout.splitlines()[1:]
    assert len(top) == 1, top  # exec'd: no Python parent left
    _pid, uid, args = top[0].split(None, 2)
    assert uid == "10001" and args.startswith("pgbouncer /run/pgbouncer/pgbouncer.ini")
    assert f"starting PgBouncer {PINNED}" in pooler_task.logs(POOLER_CONTAINER)
    # The secrets were written to the auth file and removed from PgBouncer's environment.
    environ = engine.docker("exec", name, "cat", "/proc/1/environ").stdout.split("\0")
    assert not any(line.startswith(("POOLER_CREDENTIALS=", "POOLER_STATS_CREDENTIALS=")) for line in environ)


def test_metrics_sidecar_prints_emf_read_over_the_shared_socket(pooler_task: TaskRun) -> None:
    deadline = time.monotonic() + 60
    while True:
        lines = [line for line in pooler_task.logs(METRICS_CONTAINER).splitlines() if line.startswith("{")]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    records = parse_emf("\n".join(lines))
    assert records, pooler_task.logs(METRICS_CONTAINER)[-2000:]
    up = [record for record in records if "ConsoleUp" in record]
    # ConsoleUp 1: the sidecar reached PgBouncer's console through the socket in the task volume.
    assert up and all(record["ConsoleUp"] == 1 for record in up), up
    assert {record.get("Service") for record in records} == {_metrics_service(pooler_task)}


def _metrics_service(run: TaskRun) -> str:
    return run.plan(METRICS_CONTAINER).env["LIFEGUARD_METRICS_SERVICE"]


def test_the_task_definition_settings_reach_pgbouncer(pooler_task: TaskRun, rendered: RenderedStack) -> None:
    settings = json.loads(pooler_task.plan(POOLER_CONTAINER).env["LIFEGUARD_PGBOUNCER_SETTINGS"])
    stats = json.loads(rendered.secret("POOLER_STATS_CREDENTIALS"))
    console = rendered.secret("DATABASE_URL").split("?")[0].rsplit("/", 1)[0]
    # The console as the stats user: read-only SHOW works, with the task's own settings in it.
    with psycopg.connect(f"{console}/pgbouncer", user=stats["username"], password=stats["password"],
                         hostaddr="127.0.0.1", sslmode="require", autocommit=True,
                         prepare_threshold=None) as conn:
        config = {row[0]: row[1] for row in conn.execute("SHOW CONFIG").fetchall()}
    assert config["max_client_conn"] == str(settings["max_client_conn"])
    assert config["default_pool_size"] == str(settings["default_pool_size"])
    assert config["server_tls_sslmode"] == "verify-full"


def test_the_migration_task_refuses_the_pooled_url(
    pooler_task: TaskRun, rendered: RenderedStack, start_task: Callable[..., TaskRun]
) -> None:
    """The migration task given DATABASE_URL (through this running PgBouncer) instead of the direct URL.

    The pooled URL's CA lives in the functions' layer, which the migration image does not have, so
    here it asks for TLS without verifying: the guard, not a missing CA file, must stop the job.
    """
    pooled_url = re.sub(r"sslmode=verify-full&sslrootcert=[^&]*", "sslmode=require", rendered.secret("DATABASE_URL"))
    assert pooled_url != rendered.secret("DATABASE_URL")
    secrets = {**rendered.secrets, direct_arn(rendered): pooled_url}
    run = start_task("migration", secrets=secrets)
    assert run.wait(MIGRATOR_CONTAINER) == ExitCode.REFUSED, run.logs(MIGRATOR_CONTAINER)
    assert "pooler" in run.logs(MIGRATOR_CONTAINER).lower()
    assert MOCK_PASSWORD not in run.logs(MIGRATOR_CONTAINER)
