"""``lifeguard demo`` end to end at a small spike: 150 instances against max_connections=100."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lifeguard.cli import main
from lifeguard.stack.stack import LocalStack
from tests.secrecy import assert_no_secret

INSTANCES = 150
MAX_CONNECTIONS = 100


def test_demo_direct_fails_pooled_does_not(
    stack_dir: Path, ports: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    chart = stack_dir.parent / f"{stack_dir.name}-chart.png"
    code = main([
        "demo", "--instances", str(INSTANCES), "--json", "--chart", str(chart),
        "--state-dir", str(stack_dir), "--pg-port", str(ports[0]), "--pooler-port", str(ports[1]),
        "--max-connections", str(MAX_CONNECTIONS),
    ])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    figures = json.loads(captured.out)  # stdout is the JSON object and nothing else

    assert figures["instances"] == INSTANCES
    assert figures["max_connections"] == MAX_CONNECTIONS
    pool_size = figures["pool_size"]
    assert 1 <= pool_size < MAX_CONNECTIONS
    for run in ("direct", "pooled"):
        for key in ("ok", "failed", "peak_backends", "p50_ms", "p99_ms", "error", "errors", "db_errors"):
            assert key in figures[run], (run, key)
        assert figures[run]["ok"] + figures[run]["failed"] == INSTANCES

    direct, pooled = figures["direct"], figures["pooled"]
    # Straight at Postgres: every instance holds a backend, so those past the limit are refused.
    assert direct["failed"] > 0
    assert direct["ok"] <= MAX_CONNECTIONS
    assert "too many clients" in json.dumps(direct["db_errors"]) or "reserved" in json.dumps(direct["db_errors"])
    # What each refused instance's caller got: the retryable overloaded reason, and nothing else.
    assert direct["errors"] == {"503 database_unavailable (overloaded)": direct["failed"]}
    assert direct["peak_backends"] <= MAX_CONNECTIONS
    # Through PgBouncer: everyone served, and Postgres never sees more than the pool.
    assert pooled["failed"] == 0 and pooled["error"] is None
    assert pooled["warm_ok"] == INSTANCES
    assert pooled["warm_reconnects"] == 0  # warm instances reused their connections
    assert pooled["peak_backends"] <= pool_size
    assert pooled["p50_ms"] is not None and pooled["p50_ms"] <= pooled["p99_ms"]
    # The pool figures the AWS alarms watch, read from PgBouncer's console during the pooled run.
    peaks = pooled["pooler"]
    assert peaks["samples"] >= 2
    assert 0 < peaks["peak_clients_active"] <= INSTANCES + 1
    assert 0 <= peaks["peak_servers_active"] <= pool_size
    assert peaks["peak_clients_waiting"] >= 0 and peaks["peak_maxwait_s"] >= 0

    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert figures["chart"] == str(chart)

    # Progress and the gauge went to stderr; no URL or password anywhere in the output.
    assert "cold starts" in captured.err and "backends [" in captured.err
    password = LocalStack(stack_dir).app_password()
    for text in (captured.out, captured.err):
        assert_no_secret(password, text)
        assert "postgresql://" not in text
    # The demo stopped the stack it started.
    assert not LocalStack(stack_dir).status().anything_running


def test_demo_summary_table(stack_dir: Path, ports: tuple[int, int], capsys: pytest.CaptureFixture[str]) -> None:
    code = main([
        "demo", "--instances", "20", "--keep", "--workers", "1", "--threads", "8",
        "--state-dir", str(stack_dir), "--pg-port", str(ports[0]), "--pooler-port", str(ports[1]),
    ])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    assert "straight at Postgres" in captured.out and "through PgBouncer" in captured.out
    assert "instances ok           20 of 20" in captured.out
    assert "PgBouncer during the pooled run" in captured.out
    # --keep leaves it running for `lifeguard local env` and friends.
    assert LocalStack(stack_dir).status().up
    assert (stack_dir / "demo-backends.png").exists()


def test_demo_rejects_bad_instance_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--instances", "0"]) == 2
    assert "--instances must be between 1 and" in capsys.readouterr().err
