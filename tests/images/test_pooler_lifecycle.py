"""Starting and stopping the pooler task as ECS does: the nofile ulimit check, and docker stop mid-transaction.

Each test runs its own task (after test_pooler_task's has been removed: one task holds the port).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable

import psycopg

from lifeguard.stack.ecs_run import TaskRun
from pgbouncer.contract import CONTAINER_NAME as POOLER_CONTAINER
from tests.images.support import RenderedStack, wait_for_pooler
from tests.images.test_pooler_task import pooled


def test_a_nofile_ulimit_below_max_client_conn_refuses_to_start(
    migrated: TaskRun, rendered: RenderedStack, start_task: Callable[..., TaskRun]
) -> None:
    definition = copy.deepcopy(rendered.task("pooler"))
    (pgbouncer,) = [c for c in definition["containerDefinitions"] if c["name"] == POOLER_CONTAINER]
    pgbouncer["ulimits"] = [{"name": "nofile", "softLimit": 1024, "hardLimit": 1024}]
    run = start_task("pooler", definition)
    assert run.wait(POOLER_CONTAINER, timeout=60) == 2
    assert "refusing to start: open-files limit 1024 is below" in run.logs(POOLER_CONTAINER)


def test_docker_stop_lets_an_in_flight_transaction_commit(
    migrated: TaskRun, rendered: RenderedStack, start_task: Callable[..., TaskRun]
) -> None:
    run = start_task("pooler")
    wait_for_pooler(run)
    stop_timeout = run.plan(POOLER_CONTAINER).stop_timeout_s
    assert stop_timeout is not None
    key = f"stop-{time.time_ns()}"
    inside = threading.Event()
    outcome: list[object] = []

    def charge_slowly() -> None:
        try:
            with pooled(rendered) as conn, conn.transaction():
                org = conn.execute("SELECT id FROM orgs WHERE name = 'acme'").fetchone()
                assert org is not None
                inside.set()
                conn.execute("SELECT pg_sleep(3)")
                conn.execute("INSERT INTO charges (org_id, amount, idempotency_key, balance_after) "
                             "VALUES (%s, 1, %s, 0)", (org[0], key))
            outcome.append("committed")
        except Exception as exc:  # reported by the assertion below
            outcome.append(exc)

    client = threading.Thread(target=charge_slowly)
    client.start()
    assert inside.wait(20), outcome
    started = time.monotonic()
    run.stop(POOLER_CONTAINER, timeout=stop_timeout + 30)
    elapsed = time.monotonic() - started
    client.join(30)
    assert outcome == ["committed"]
    state = run.state(POOLER_CONTAINER)
    # Exit 0 from PgBouncer's own shutdown, not 137 from the SIGKILL after stopTimeout.
    assert state["ExitCode"] == 0, run.logs(POOLER_CONTAINER)[-2000:]
    assert elapsed < stop_timeout
    with psycopg.connect(rendered.secret("DATABASE_URL_UNPOOLED").split("?")[0], hostaddr="127.0.0.1",
                         sslmode="require") as direct:
        assert direct.execute("SELECT count(*) FROM charges WHERE idempotency_key = %s", (key,)).fetchone() == (1,)
