"""The EMF publisher against the real PgBouncer (the shipped release): saturation, restarts, the sidecar command."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import psycopg
import pytest

from pgbouncer.contract import STATS_USER
from pgbouncer.metrics import ConsoleTarget, Publisher, PublisherConfig, RateTracker, sample_console
from tests.observability.emf_check import dimension_sets, find, parse_emf, units
from tests.observability.support import STATS_PASSWORD, StatsPooler
from tests.secrecy import assert_no_secret

NAMESPACE = "Test/PgBouncer"
SERVICE = "pooler-test"
REPO = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def publisher(target: ConsoleTarget, interval: float = 15.0) -> tuple[Publisher, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    config = PublisherConfig(target=target, namespace=NAMESPACE, service=SERVICE, interval_s=interval)
    return Publisher(config, task="task-1", out=out, err=err), out, err


@contextmanager
def saturated(pooler: StatsPooler, waiters: int) -> Iterator[None]:
    """One client holds the only server connection in an open transaction; ``waiters`` queue behind it."""
    holder = psycopg.connect(pooler.url(), prepare_threshold=None)
    holder.execute("SELECT 1")  # opens the transaction: the server connection stays linked
    errors: list[BaseException] = []

    def wait_for_server() -> None:
        try:
            with psycopg.connect(pooler.url(), prepare_threshold=None, autocommit=True) as conn:
                conn.execute("SELECT 1")
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=wait_for_server) for _ in range(waiters)]
    try:
        for thread in threads:
            thread.start()
        yield
    finally:
        holder.commit()
        holder.close()
        for thread in threads:
            thread.join(timeout=30)
    assert not errors, [type(e).__name__ for e in errors]


def test_saturated_pool_shows_waiting_clients_and_max_wait(stats_pooler: Callable[..., StatsPooler]) -> None:
    pooler = stats_pooler(default_pool_size=1)
    target = pooler.console()
    pub, out, _err = publisher(target)
    pool_name = f"{pooler.db.dbname}/{pooler.db.user}"

    assert pub.publish_once()
    with saturated(pooler, waiters=3):
        wait_until(lambda: sample_console(target).pools[0].cl_waiting == 3, 15, "3 clients waiting")
        time.sleep(0.3)  # let the oldest waiter age measurably
        before = len(out.getvalue().splitlines())
        assert pub.publish_once()
        busy = parse_emf("\n".join(out.getvalue().splitlines()[before:]))
    pool = find(busy, Pool=pool_name)
    assert pool["ClientsWaiting"] == 3
    assert pool["ClientsActive"] == 1 and pool["ServersActive"] == 1
    assert 0.3 <= pool["MaxWait"] < 15
    assert (pool["Service"], pool["Task"]) == (SERVICE, "task-1")
    assert dimension_sets(pool) == [["Service", "Pool"], ["Service", "Task", "Pool"]]
    assert units(pool) == {
        "ClientsActive": "Count", "ClientsWaiting": "Count", "ServersActive": "Count",
        "ServersIdle": "Count", "MaxWait": "Seconds",
    }
    total = find(busy)
    assert dimension_sets(total) == [["Service"], ["Service", "Task"]]
    assert total["ClientsWaiting"] == 3 and total["MaxWait"] == pool["MaxWait"]
    assert total["ConsoleUp"] == 1
    assert total["ClientConnections"] == 4  # holder + 3 waiters; the sampler is not counted
    assert total["ServerConnections"] >= 1
    assert all(rec["_aws"]["CloudWatchMetrics"][0]["Namespace"] == NAMESPACE for rec in busy)

    # Released: nobody waits any more.
    before = len(out.getvalue().splitlines())
    assert pub.publish_once()
    calm = parse_emf("\n".join(out.getvalue().splitlines()[before:]))
    assert find(calm, Pool=pool_name)["ClientsWaiting"] == 0
    assert find(calm, Pool=pool_name)["MaxWait"] == 0
    rates = find(calm, Database=pooler.db.dbname)
    assert units(rates) == {"TransactionsPerSecond": "Count/Second", "QueriesPerSecond": "Count/Second"}
    assert rates["TransactionsPerSecond"] >= 0 and rates["QueriesPerSecond"] >= 0
    assert dimension_sets(rates) == [["Service", "Database"], ["Service", "Task", "Database"]]


def test_rates_come_from_the_live_totals_between_samples(stats_pooler: Callable[..., StatsPooler]) -> None:
    pooler = stats_pooler()
    target = pooler.console()
    tracker = RateTracker()
    with psycopg.connect(pooler.url(), prepare_threshold=None) as conn:
        conn.execute("SELECT 1")
        conn.commit()
        first = sample_console(target)
        assert tracker.update(first)[pooler.db.dbname].source == "average"  # nothing to compare with yet
        time.sleep(0.2)
        for _ in range(20):  # 20 transactions; psycopg sends BEGIN and COMMIT as queries too: 4 each
            conn.execute("SELECT 1")
            conn.execute("SELECT 2")
            conn.commit()
        second = sample_console(target)
    rates = tracker.update(second)[pooler.db.dbname]
    elapsed = second.monotonic - first.monotonic
    assert rates.source == "delta"
    assert rates.tps * elapsed == pytest.approx(20)
    assert rates.qps * elapsed == pytest.approx(80)


def test_publisher_survives_a_pgbouncer_restart(stats_pooler: Callable[..., StatsPooler]) -> None:
    pooler = stats_pooler()
    pub, out, err = publisher(pooler.console(), interval=0.2)
    stop = threading.Event()
    loop = threading.Thread(target=pub.run, args=(stop,), daemon=True)

    def console_up() -> list[float]:
        return [rec["ConsoleUp"] for rec in parse_emf(out.getvalue()) if "ConsoleUp" in rec]

    loop.start()
    try:
        with psycopg.connect(pooler.url(), prepare_threshold=None, autocommit=True) as conn:
            for _ in range(50):
                conn.execute("SELECT 1")
        wait_until(lambda: console_up().count(1) >= 3, 10, "samples before the restart")
        pooler.process.stop()
        wait_until(lambda: console_up()[-3:] == [0, 0, 0], 10, "three failed samples")
        failures = [line for line in err.getvalue().splitlines() if "cannot read the console" in line]
        assert len(failures) == 1, "an outage is logged once, not every interval"
        assert_no_secret(STATS_PASSWORD, err.getvalue())
        pooler.start()
        wait_until(lambda: console_up()[-2:] == [1, 1], 15, "samples after the restart")
        assert loop.is_alive()
        assert "answers again after" in err.getvalue()
    finally:
        stop.set()
        loop.join(timeout=10)
    assert not loop.is_alive()
    records = parse_emf(out.getvalue())
    # Counters restarted from zero: no rate may go negative across the restart.
    assert all(rec.get("TransactionsPerSecond", 0) >= 0 and rec.get("QueriesPerSecond", 0) >= 0 for rec in records)
    assert_no_secret(STATS_PASSWORD, out.getvalue())


class _Metadata(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/v4/abc/task":
            self.send_error(404)
            return
        body = json.dumps({
            "Cluster": "arn:aws:ecs:eu-west-1:123456789012:cluster/lifeguard",
            "TaskARN": "arn:aws:ecs:eu-west-1:123456789012:task/lifeguard/0123456789abcdef0123456789abcdef",
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def metadata_endpoint() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Metadata)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v4/abc"
    finally:
        server.shutdown()
        server.server_close()


def run_sidecar(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LIFEGUARD_", "ECS_"))}
    return subprocess.run(
        [sys.executable, "-m", "pgbouncer.metrics", *args],
        env={**clean, "PYTHONPATH": str(REPO), **env}, cwd=REPO, capture_output=True, text=True, timeout=60,
    )


def test_sidecar_command_reads_settings_and_secret_from_env(stats_pooler: Callable[..., StatsPooler]) -> None:
    pooler = stats_pooler()
    with metadata_endpoint() as uri:
        result = run_sidecar({
            # The very settings JSON the pooler container gets: socket dir and port come from it.
            "LIFEGUARD_PGBOUNCER_SETTINGS": pooler.process.settings.to_json(),
            "LIFEGUARD_METRICS_CREDENTIALS": json.dumps({"username": STATS_USER, "password": STATS_PASSWORD}),
            "LIFEGUARD_METRICS_SERVICE": SERVICE,
            "ECS_CONTAINER_METADATA_URI_V4": uri,
        }, "--once")
    assert result.returncode == 0, result.stderr
    records = parse_emf(result.stdout)
    total = find(records)
    assert total["Task"] == "0123456789abcdef0123456789abcdef"
    assert total["Service"] == SERVICE
    assert total["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Lifeguard/PgBouncer"
    assert_no_secret(STATS_PASSWORD, result.stdout + result.stderr)


def test_sidecar_without_metadata_endpoint_uses_the_hostname(stats_pooler: Callable[..., StatsPooler]) -> None:
    pooler = stats_pooler()
    result = run_sidecar({
        "LIFEGUARD_METRICS_HOST": pooler.socket_dir,
        "LIFEGUARD_METRICS_PORT": str(pooler.port),
        "LIFEGUARD_METRICS_CREDENTIALS": json.dumps({"username": STATS_USER, "password": STATS_PASSWORD}),
    }, "--once")
    assert result.returncode == 0, result.stderr
    import socket

    assert find(parse_emf(result.stdout))["Task"] == socket.gethostname()


def test_sidecar_once_fails_cleanly_when_pgbouncer_is_down(stats_pooler: Callable[..., StatsPooler]) -> None:
    pooler = stats_pooler()
    pooler.process.stop()
    result = run_sidecar({
        "LIFEGUARD_METRICS_HOST": pooler.socket_dir,
        "LIFEGUARD_METRICS_PORT": str(pooler.port),
        "LIFEGUARD_METRICS_CREDENTIALS": json.dumps({"username": STATS_USER, "password": STATS_PASSWORD}),
    }, "--once")
    assert result.returncode == 1
    assert find(parse_emf(result.stdout))["ConsoleUp"] == 0
    assert "cannot read the console" in result.stderr
    assert_no_secret(STATS_PASSWORD, result.stdout + result.stderr)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sidecar_stops_cleanly_on_the_stop_signal(stats_pooler: Callable[..., StatsPooler], sig: int) -> None:
    """ECS sends the image's STOPSIGNAL (SIGINT in the pooler image) or SIGTERM; both end the loop with 0."""
    pooler = stats_pooler()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LIFEGUARD_", "ECS_"))}
    env = {
        **clean, "PYTHONPATH": str(REPO), "LIFEGUARD_METRICS_INTERVAL": "0.2",
        "LIFEGUARD_METRICS_HOST": pooler.socket_dir, "LIFEGUARD_METRICS_PORT": str(pooler.port),
        "LIFEGUARD_METRICS_CREDENTIALS": json.dumps({"username": STATS_USER, "password": STATS_PASSWORD}),
    }
    proc = subprocess.Popen([sys.executable, "-m", "pgbouncer.metrics"], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the loop is running once a record is out
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert parse_emf(first + out)
    assert "publishing Lifeguard/PgBouncer" in err
    assert_no_secret(STATS_PASSWORD, err)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "set LIFEGUARD_METRICS_CREDENTIALS"),
        ({"LIFEGUARD_METRICS_CREDENTIALS": "{not json " + STATS_PASSWORD}, "is not JSON"),
        ({"LIFEGUARD_METRICS_CREDENTIALS": json.dumps({"username": STATS_USER})}, "non-empty 'username' and"),
        ({"LIFEGUARD_METRICS_USER": "pgbouncer", "LIFEGUARD_METRICS_INTERVAL": "0"}, "positive number"),
        ({"LIFEGUARD_METRICS_USER": "pgbouncer", "LIFEGUARD_METRICS_PORT": "six"}, "LIFEGUARD_METRICS_PORT"),
        ({"LIFEGUARD_METRICS_USER": "pgbouncer", "LIFEGUARD_METRICS_NAMESPACE": "AWS/ECS"}, "AWS/"),
        ({"LIFEGUARD_METRICS_USER": "pgbouncer", "LIFEGUARD_PGBOUNCER_SETTINGS": "[]"}, "LIFEGUARD_PGBOUNCER_SETTINGS"),
    ],
)
def test_sidecar_config_errors_name_the_variable(env: dict[str, str], message: str) -> None:
    result = run_sidecar(env)
    assert result.returncode == 2
    assert message in result.stderr
    assert_no_secret(STATS_PASSWORD, result.stderr)


def certificate_valid_for(days: int) -> str:
    """A PEM certificate (self-signed, EC P-256) that expires ``days`` from now."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lifeguard pooler")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=days)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_sidecar_publishes_the_days_left_on_pgbouncers_certificate(stats_pooler: Callable[..., StatsPooler]) -> None:
    # #27.9: the certificate PgBouncer serves (POOLER_TLS_CERT, as the task gives both containers).
    pooler = stats_pooler()
    result = run_sidecar({
        "LIFEGUARD_PGBOUNCER_SETTINGS": pooler.process.settings.to_json(),
        "LIFEGUARD_METRICS_CREDENTIALS": json.dumps({"username": STATS_USER, "password": STATS_PASSWORD}),
        "LIFEGUARD_METRICS_SERVICE": SERVICE,
        "POOLER_TLS_CERT": certificate_valid_for(days=40),
    }, "--once")
    assert result.returncode == 0, result.stderr
    records = parse_emf(result.stdout)
    (days,) = [record for record in records if "CertificateDaysLeft" in record]
    assert 39.9 < days["CertificateDaysLeft"] <= 40
    assert dimension_sets(days) == [["Service"], ["Service", "Task"]] and days["Service"] == SERVICE
    assert units(days) == {"CertificateDaysLeft": "None"}
    # The pool figures are unchanged beside it.
    (total,) = [record for record in records if "ConsoleUp" in record]
    assert total["ConsoleUp"] == 1
