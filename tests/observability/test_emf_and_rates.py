"""EMF records and rate arithmetic on made-up samples: the spec's limits and the counter edge cases."""

from __future__ import annotations

import io
import json
import math
import socket
import threading
from typing import Any

import pytest

from pgbouncer.metrics import (
    ConsoleSample,
    ConsoleTarget,
    DatabaseTotals,
    PoolFigures,
    Publisher,
    PublisherConfig,
    PublisherConfigError,
    RateTracker,
    sample_records,
    task_identity,
)
from pgbouncer.metrics.emf import EmfError, Metric, record
from pgbouncer.settings import PoolerSettings, Upstream
from tests.observability.emf_check import dimension_sets, find, parse_emf


def totals(db: str, xacts: int, queries: int, avg: float = 7.0) -> DatabaseTotals:
    return DatabaseTotals(db, xacts, queries, 0, avg, avg * 2)


def sample(at: float, *dbs: DatabaseTotals, pools: tuple[PoolFigures, ...] = ()) -> ConsoleSample:
    return ConsoleSample(at, 1_800_000_000.0 + at, pools, dbs, {"used_clients": 5, "used_servers": 2})


def test_first_sample_uses_pgbouncers_average() -> None:
    rates = RateTracker().update(sample(0.0, totals("app", 100, 300)))
    assert (rates["app"].tps, rates["app"].qps, rates["app"].source) == (7.0, 14.0, "average")


def test_rate_is_the_difference_over_time() -> None:
    tracker = RateTracker()
    tracker.update(sample(10.0, totals("app", 100, 300)))
    rates = tracker.update(sample(12.0, totals("app", 150, 400)))
    assert (rates["app"].tps, rates["app"].qps, rates["app"].source) == (25.0, 50.0, "delta")


def test_counter_reset_falls_back_to_the_average_then_resumes() -> None:
    tracker = RateTracker()
    tracker.update(sample(10.0, totals("app", 1000, 3000)))
    after_restart = tracker.update(sample(12.0, totals("app", 20, 40, avg=3.0)))
    assert after_restart["app"].source == "average" and after_restart["app"].tps == 3.0
    resumed = tracker.update(sample(14.0, totals("app", 60, 140)))
    assert (resumed["app"].tps, resumed["app"].qps, resumed["app"].source) == (20.0, 50.0, "delta")


def test_samples_too_close_or_after_reset_use_the_average() -> None:
    tracker = RateTracker()
    tracker.update(sample(10.0, totals("app", 100, 100)))
    assert tracker.update(sample(10.01, totals("app", 200, 200)))["app"].source == "average"
    tracker.reset()
    assert tracker.update(sample(20.0, totals("app", 300, 300)))["app"].source == "average"


def test_new_and_vanished_databases() -> None:
    tracker = RateTracker()
    tracker.update(sample(0.0, totals("a", 10, 10)))
    rates = tracker.update(sample(1.0, totals("b", 10, 10)))
    assert set(rates) == {"b"} and rates["b"].source == "average"
    assert tracker.update(sample(2.0, totals("a", 50, 50)))["a"].source == "average"


POOL = PoolFigures("app", "app_user", 4, 2, 3, 1, 0, 0, 1.25)


def test_sample_records_shape() -> None:
    s = sample(5.0, totals("app", 1, 1), pools=(POOL, PoolFigures("app", "other", 1, 0, 0, 2, 0, 0, 0.0)))
    records = sample_records(s, RateTracker().update(s), namespace="NS/x", service="svc", task="t1")
    text = "".join(json.dumps(r) + "\n" for r in records)
    parsed = parse_emf(text)
    assert len(parsed) == 4  # two pools, one database, one task total
    assert all(r["_aws"]["Timestamp"] == 1_800_000_005_000 for r in parsed)
    pool = find(parsed, Pool="app/app_user")
    assert (pool["ClientsActive"], pool["ClientsWaiting"], pool["ServersActive"], pool["ServersIdle"]) == (4, 2, 3, 1)
    assert pool["MaxWait"] == 1.25
    total = find(parsed)
    assert total["ClientsWaiting"] == 2 and total["ClientsActive"] == 5 and total["MaxWait"] == 1.25
    assert total["ClientConnections"] == 4  # used_clients less the sampling connection
    assert total["ServerConnections"] == 2
    assert dimension_sets(total) == [["Service"], ["Service", "Task"]]


def test_idle_pgbouncer_still_reports_the_task_total() -> None:
    s = sample(1.0)
    records = sample_records(s, {}, namespace="NS", service="svc", task="t")
    assert len(records) == 1 and records[0]["ClientsWaiting"] == 0 and records[0]["MaxWait"] == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"namespace": "AWS/ECS"}, "must not start with 'AWS/'"),
        ({"namespace": ""}, "must be set"),
        ({"metrics": [Metric("X", 1, "Requests")]}, "not a CloudWatch unit"),
        ({"metrics": [Metric("X", math.nan, "Count")]}, "finite numbers"),
        ({"metrics": [Metric("X", math.inf, "Count")]}, "finite numbers"),
        ({"metrics": [Metric(f"M{i}", i, "Count") for i in range(101)]}, "1 to 100 metrics"),
        ({"metrics": []}, "1 to 100 metrics"),
        ({"metrics": [Metric("Service", 1, "Count")]}, "collides"),
        ({"dimension_sets": [["Service", "Nope"]]}, "'Nope' has no value"),
        ({"dimension_sets": [[f"D{i}" for i in range(31)]]}, "at most 30"),
        ({"dimensions": {"Service": ""}}, "needs a value"),
        ({"dimensions": {"Service": "x" * 1025}}, "needs a value"),
    ],
)
def test_record_refuses_what_cloudwatch_would_drop(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "namespace": "NS",
        "dimensions": {"Service": "svc"},
        "dimension_sets": [["Service"]],
        "metrics": [Metric("X", 1, "Count")],
        "timestamp_ms": 1_800_000_000_000,
    }
    args.update(kwargs)
    with pytest.raises(EmfError, match=message):
        record(**args)


def test_config_from_env_prefers_explicit_host_and_port_over_the_settings() -> None:
    settings = PoolerSettings(upstream=Upstream(host="db.example", dbname="app"), default_pool_size=5,
                              unix_socket_dir="/run/pgbouncer/socket", listen_port=6500)
    creds = json.dumps({"username": "stats", "password": "pw"})
    from_settings = PublisherConfig.from_env({"LIFEGUARD_PGBOUNCER_SETTINGS": settings.to_json(),
                                              "LIFEGUARD_METRICS_CREDENTIALS": creds})
    assert (from_settings.target.host, from_settings.target.port) == ("/run/pgbouncer/socket", 6500)
    assert from_settings.interval_s == 15.0 and from_settings.namespace == "Lifeguard/PgBouncer"
    explicit = PublisherConfig.from_env({"LIFEGUARD_PGBOUNCER_SETTINGS": settings.to_json(),
                                         "LIFEGUARD_METRICS_CREDENTIALS": creds,
                                         "LIFEGUARD_METRICS_HOST": "/other", "LIFEGUARD_METRICS_PORT": "7000",
                                         "LIFEGUARD_METRICS_INTERVAL": "2.5"})
    assert (explicit.target.host, explicit.target.port, explicit.interval_s) == ("/other", 7000, 2.5)
    defaults = PublisherConfig.from_env({"LIFEGUARD_METRICS_USER": "pgbouncer"})
    assert (defaults.target.host, defaults.target.port, defaults.target.password) == ("/tmp", 6432, None)
    no_socket = PoolerSettings(upstream=Upstream(host="db.example", dbname="app"), default_pool_size=5,
                               unix_socket_dir="")
    with pytest.raises(PublisherConfigError, match="no unix_socket_dir"):
        PublisherConfig.from_env({"LIFEGUARD_PGBOUNCER_SETTINGS": no_socket.to_json(), "LIFEGUARD_METRICS_USER": "x"})
    with pytest.raises(PublisherConfigError, match="not both"):
        PublisherConfig.from_env({"LIFEGUARD_METRICS_USER": "pgbouncer", "LIFEGUARD_METRICS_CREDENTIALS": creds})


def test_task_identity_falls_back_to_the_hostname(capsys: pytest.CaptureFixture[str]) -> None:
    assert task_identity({}) == socket.gethostname()
    # Nothing listens on the discard port: the metadata call fails, the hostname is used.
    unreachable = {"ECS_CONTAINER_METADATA_URI_V4": "http://127.0.0.1:9/v4/x"}
    assert task_identity(unreachable, timeout=0.5) == socket.gethostname()
    assert "no task id from the ECS metadata endpoint" in capsys.readouterr().err
    with pytest.raises(PublisherConfigError, match="not an http URL"):
        task_identity({"ECS_CONTAINER_METADATA_URI_V4": "file:///etc/passwd"})


def test_run_loop_keeps_going_while_the_console_is_missing(tmp_path: Any) -> None:
    target = ConsoleTarget(host=str(tmp_path), port=6432, user="stats", password="hunter2-secret")
    out, err = io.StringIO(), io.StringIO()
    pub = Publisher(PublisherConfig(target=target, namespace="NS", service="svc", interval_s=0.01), "t", out, err)
    pub.run(threading.Event(), max_samples=5)
    records = parse_emf(out.getvalue())
    assert [r["ConsoleUp"] for r in records] == [0, 0, 0, 0, 0]
    assert err.getvalue().count("cannot read the console") == 1
    assert pub.failures == 5
    assert "hunter2-secret" not in out.getvalue() + err.getvalue()


def test_run_stops_when_told() -> None:
    target = ConsoleTarget(host="/nonexistent", port=6432, user="stats")
    pub = Publisher(PublisherConfig(target=target, interval_s=3600), "t", io.StringIO(), io.StringIO())
    stop = threading.Event()
    loop = threading.Thread(target=pub.run, args=(stop,))
    loop.start()
    stop.set()
    loop.join(timeout=5)
    assert not loop.is_alive()
