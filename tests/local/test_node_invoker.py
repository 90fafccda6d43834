"""The local invoker runs the Node.js function under real Node.js against the local stack: a spike of
instances through PgBouncer (all succeed, each keeps its one connection while warm) and straight at a
small Postgres (the refusals answer the Python function's 503 and carry the database's words)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lambdas.contract import READ_INVOICES, READ_INVOICES_NODE
from lambdas.example_events import example_event
from lifeguard.cli import main
from lifeguard.load.invoker import WorkerPool, worker_env
from lifeguard.load.spike import BackendMonitor, run_spike
from lifeguard.stack.stack import LocalStack, StackOptions
from tests.secrecy import assert_no_secret
from tests.support import NODE

MAX_CONNECTIONS = 30
INSTANCES = 60


@pytest.fixture
def node_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # The dev install's Node.js (the major Lambda runs the function on), never the machine's.
    monkeypatch.setenv("LIFEGUARD_NODE", str(NODE))


@pytest.mark.usefixtures("node_on_path")
def test_a_spike_of_node_instances_through_pgbouncer_and_straight_at_postgres(
    stack_dir: Path, ports: tuple[int, int]
) -> None:
    stack = LocalStack(stack_dir)
    config = stack.up(StackOptions(pg_port=ports[0], pooler_port=ports[1], max_connections=MAX_CONNECTIONS,
                                   durable=False))
    event = example_event(READ_INVOICES.name, "ok")
    monitor = BackendMonitor(stack.superuser_url(config))
    try:
        pooled = run_spike(label="pooled", url=stack.pooled_url(config), instances=INSTANCES, monitor=monitor,
                           event=event, workers=2, threads=16, function=READ_INVOICES_NODE.name,
                           client_env=stack.client_env(config))
        stack.restart_poolers(config)  # its idle server connections would take the direct run's slots
        monitor.wait_until_at_most(0, timeout=15)
        direct = run_spike(label="direct", url=stack.app_direct_url(config), instances=INSTANCES, monitor=monitor,
                           event=event, workers=2, threads=16, function=READ_INVOICES_NODE.name)
        # Churn: every invocation a new instance (a new connection), closed after it.
        churn_job = {"mode": "churn", "function": READ_INVOICES_NODE.name, "event": event, "threads": 4,
                     "duration_s": 1.0}
        env = worker_env(stack.pooled_url(config), READ_INVOICES_NODE.name, client=stack.client_env(config))
        with WorkerPool([churn_job], env) as pool:
            pool.send({"type": "go"})
            [churn] = pool.collect("churn", 60)
    finally:
        monitor.close()
    assert churn["ok"] == churn["done"] > 4 and churn["failed"] == 0, churn
    assert (pooled.ok, pooled.failed, pooled.warm_ok, pooled.warm_reconnects) == (INSTANCES, 0, INSTANCES, 0)
    assert pooled.peak_backends <= config.total_pool_size < INSTANCES
    # Straight at Postgres the slots run out: the same answer as the Python function, and the database's words.
    assert 0 < direct.ok < INSTANCES and direct.ok + direct.failed == INSTANCES
    assert set(direct.errors) == {"503 database_unavailable (overloaded)"}, direct.errors
    assert all("too many clients" in e or "reserved" in e for e in direct.db_errors), direct.db_errors
    assert_no_secret(stack.app_password(), repr(direct) + repr(pooled))


@pytest.mark.usefixtures("node_on_path")
def test_the_demo_spikes_the_node_function(
    stack_dir: Path, ports: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["demo", "--instances", "40", "--function", READ_INVOICES_NODE.name, "--json",
                 "--state-dir", str(stack_dir), "--pg-port", str(ports[0]), "--pooler-port", str(ports[1]),
                 "--max-connections", str(MAX_CONNECTIONS)])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    figures = json.loads(captured.out)
    assert figures["function"] == READ_INVOICES_NODE.name
    assert (figures["pooled"]["ok"], figures["pooled"]["failed"]) == (40, 0)
