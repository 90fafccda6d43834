"""The launch-day spike: N function instances cold-start at once, straight at Postgres or through PgBouncer.

While it runs, a monitor polls ``pg_stat_activity`` over a superuser connection opened before the
spike (superusers keep ``superuser_reserved_connections`` slots, so the gauge still reads when
``max_connections`` is exhausted) and records backend connections over time.

Time to first row is measured from the moment the spike starts (every instance is invoked then)
to the moment its handler returned the rows, so it includes waiting for a cold-start slot and for
the connection: what the user whose request arrived with the spike waits.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from lambdas.contract import READ_INVOICES
from lifeguard.load.invoker import WorkerPool, split, worker_env

BACKENDS_SQL = (
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
)
DEFAULT_WORKERS = 2
DEFAULT_THREADS = 48
MAX_INSTANCES_PER_WORKER = 900
"""Keeps each worker's file descriptors below 1024, as in a Lambda process (which holds a handful):
code that watches sockets with ``select()`` cannot take a descriptor numbered 1024 or more. (The
functions' client once checked warm connections that way, and in a worker holding thousands of
connections every warm call reconnected.)"""


def plan_workers(instances: int, workers: int, threads: int) -> list[tuple[int, int]]:
    """(instances, threads) per worker: at least ``workers`` processes, at most
    :data:`MAX_INSTANCES_PER_WORKER` instances each, and ``workers * threads`` cold starts in
    flight in all however many processes that takes."""
    count = max(workers, math.ceil(instances / MAX_INSTANCES_PER_WORKER))
    in_flight = max(1, workers * threads)
    per_worker_threads = max(1, math.ceil(in_flight / count))
    return [(n, min(per_worker_threads, n)) for n in split(instances, count)]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class BackendMonitor:
    """Client backends over time, polled over one superuser connection opened up front."""

    def __init__(self, superuser_url: str, interval: float = 0.05) -> None:
        self.interval = interval
        self._conn = psycopg.connect(superuser_url, autocommit=True, connect_timeout=10,
                                     application_name="lifeguard-monitor")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._origin = time.perf_counter()
        self.samples: list[tuple[float, int]] = []
        self.current = self.read()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def read(self) -> int:
        with self._lock:
            row = self._conn.execute(BACKENDS_SQL).fetchone()
        assert row is not None
        return int(row[0])

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                count = self.read()
            except psycopg.Error:
                continue
            self.current = count
            with self._lock:
                self.samples.append((time.perf_counter() - self._origin, count))

    def restart_clock(self) -> None:
        """Forget earlier samples; times count from now."""
        with self._lock:
            self._origin = time.perf_counter()
            self.samples = [(0.0, self.current)]

    def window(self) -> list[tuple[float, int]]:
        with self._lock:
            return list(self.samples)

    def wait_until_at_most(self, count: int, timeout: float) -> int:
        """Wait for backends to drain (after a run) to ``count``; returns the last reading."""
        deadline = time.monotonic() + timeout
        current = self.read()
        while current > count and time.monotonic() < deadline:
            time.sleep(0.05)
            current = self.read()
        return current

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._conn.close()


@dataclass
class SpikeProgress:
    label: str
    phase: str
    """``cold`` (instances starting) or ``warm`` (each invoked once more)."""
    instances: int
    done: int
    ok: int
    failed: int
    backends: int
    peak_backends: int
    elapsed_s: float


@dataclass
class SpikeResult:
    label: str
    instances: int
    ok: int
    failed: int
    errors: dict[str, int]
    """What the callers got back, e.g. ``503 database_unavailable (overloaded)``, with counts."""
    db_errors: dict[str, int]
    """What the database said, from the functions' logs, e.g. ``FATAL: sorry, too many clients already``."""
    peak_backends: int
    baseline_backends: int
    p50_ms: float | None
    p99_ms: float | None
    instance_p50_ms: float | None
    """The cold invocation alone (connection + query), from when the instance started."""
    instance_p99_ms: float | None
    warm_ok: int
    """Instances that answered a second (warm) invocation on their kept connection."""
    warm_failed: int
    warm_reconnects: int
    """Connections opened by warm calls (0 when every warm instance reused its connection)."""
    wall_s: float
    samples: list[tuple[float, int]] = field(repr=False, default_factory=list)

    @property
    def top_error(self) -> str | None:
        if self.db_errors:
            return max(self.db_errors.items(), key=lambda kv: kv[1])[0]
        if self.errors:
            return max(self.errors.items(), key=lambda kv: kv[1])[0]
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "instances": self.instances,
            "ok": self.ok,
            "failed": self.failed,
            "error": self.top_error,
            "errors": self.errors,
            "db_errors": self.db_errors,
            "peak_backends": self.peak_backends,
            "baseline_backends": self.baseline_backends,
            "p50_ms": _round(self.p50_ms),
            "p99_ms": _round(self.p99_ms),
            "instance_p50_ms": _round(self.instance_p50_ms),
            "instance_p99_ms": _round(self.instance_p99_ms),
            "warm_ok": self.warm_ok,
            "warm_failed": self.warm_failed,
            "warm_reconnects": self.warm_reconnects,
            "wall_s": round(self.wall_s, 3),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


_Merged = tuple[int, int, list[float], list[float], Counter[str], Counter[str]]


def _merge(reports: Sequence[Mapping[str, Any]]) -> _Merged:
    ok = sum(int(r["ok"]) for r in reports)
    failed = sum(int(r["failed"]) for r in reports)
    latencies = [x for r in reports for x in r["latencies_ms"]]
    instance = [x for r in reports for x in r.get("instance_ms", [])]
    errors: Counter[str] = Counter()
    db_errors: Counter[str] = Counter()
    for r in reports:
        errors.update(r["errors"])
        db_errors.update(r["db_errors"])
    return ok, failed, latencies, instance, errors, db_errors


def run_spike(
    *,
    label: str,
    url: str,
    instances: int,
    monitor: BackendMonitor,
    function: str = READ_INVOICES.name,
    event: Mapping[str, Any],
    workers: int = DEFAULT_WORKERS,
    threads: int = DEFAULT_THREADS,
    warm: bool = True,
    hold_s: float = 0.5,
    progress: Callable[[SpikeProgress], None] | None = None,
    timeout_s: float = 900,
    client_env: Mapping[str, str] | None = None,
) -> SpikeResult:
    """Cold-start ``instances`` instances against ``url`` at once; all stay alive until every one is done.

    ``client_env`` is what the stack tells functions about their pooler (``LocalStack.client_env``).

    ``workers * threads`` bounds the cold starts in flight (like Lambda's scaling rate); the
    instances that are done keep their connections open, so at the end all ``instances`` hold
    one at the same time. Large spikes get more worker processes (see :func:`plan_workers`).
    """
    if instances < 1:
        raise ValueError("instances must be at least 1")
    jobs = [
        {"mode": "spike", "function": function, "event": dict(event), "instances": n, "threads": t}
        for n, t in plan_workers(instances, workers, threads)
    ]
    baseline = monitor.read()
    state: dict[int, tuple[int, int, int]] = {}
    phase = "cold"
    peak = baseline
    started = time.perf_counter()

    def report() -> None:
        nonlocal peak
        peak = max(peak, monitor.current)
        if progress is None:
            return
        done = sum(s[0] for s in state.values())
        ok = sum(s[1] for s in state.values())
        failed = sum(s[2] for s in state.values())
        progress(SpikeProgress(label, phase, instances, done, ok, failed, monitor.current, peak,
                               time.perf_counter() - started))

    def on_progress(index: int, message: dict[str, Any]) -> None:
        state[index] = (int(message["done"]), int(message["ok"]), int(message["failed"]))

    with WorkerPool(jobs, worker_env(url, function, client=client_env)) as pool:
        monitor.restart_clock()
        started = time.perf_counter()
        pool.send({"type": "go"})
        cold = pool.collect("cold", timeout_s, on_progress, report)
        for index, message in enumerate(cold):
            state[index] = (int(message["done"]), int(message["ok"]), int(message["failed"]))
        report()
        # All instances alive at once now; hold a moment so the gauge shows the plateau.
        hold_until = time.perf_counter() + hold_s
        while time.perf_counter() < hold_until:
            time.sleep(0.05)
            report()
        cold_wall = time.perf_counter() - started
        warm_reports: list[dict[str, Any]] = []
        if warm:
            phase = "warm"
            state.clear()
            pool.send({"type": "warm"})
            warm_reports = pool.collect("warm", timeout_s, on_progress, report)
            for index, message in enumerate(warm_reports):
                state[index] = (int(message["done"]), int(message["ok"]), int(message["failed"]))
            report()
        pool.send({"type": "release"})
        pool.collect("closed", 120)
    samples = monitor.window()
    peak = max([peak, *(count for _, count in samples)])
    ok, failed, latencies, instance_ms, errors, db_errors = _merge(cold)
    warm_ok, warm_failed, _, _, _, _ = _merge(warm_reports)
    result = SpikeResult(
        label=label, instances=instances, ok=ok, failed=failed,
        errors=dict(errors), db_errors=dict(db_errors),
        peak_backends=peak, baseline_backends=baseline,
        p50_ms=percentile(latencies, 50), p99_ms=percentile(latencies, 99),
        instance_p50_ms=percentile(instance_ms, 50), instance_p99_ms=percentile(instance_ms, 99),
        warm_ok=warm_ok, warm_failed=warm_failed,
        warm_reconnects=sum(int(r.get("reconnects", 0)) for r in warm_reports),
        wall_s=cold_wall, samples=samples,
    )
    return result
