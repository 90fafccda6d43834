"""The benchmark: one run, one machine, pooled against direct.

0. The headline (:mod:`lifeguard.bench.capacity`): PgBouncer's own CPU per login and per warm
   query as shipped, beside the plain-password and no-TLS baselines and each lever tried.
   Then the function's side of a cold start (:mod:`lifeguard.bench.coldstart`): fresh processes
   capped at Lambda CPU shares, each SCRAM iteration count, pooled and direct.
1. Spike capacity: the largest number of concurrent instances (up to ``max_instances``) served
   with zero errors through PgBouncer while Postgres' backends stay at or below the pool size;
   direct for comparison.
2. Connection churn: every invocation a new instance (a cold start: new connection, SCRAM, TLS),
   throughput and p50/p99, with the CPU each side spent per connection.
3. Warm overhead: per-query latency (one client) and throughput (many) on reused connections.

Then the same spike and churn again with several PgBouncer processes sharing the port
(``so_reuseport``): the documented way to give PgBouncer more than one core; and the spike, churn
and warm figures again on the distribution's older PgBouncer (Debian 12's 1.18), beside the shipped
release in the same run. The prepared-statement gain is measured on warm calls through the shipped
release (which tracks them; 1.18 cannot).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from lambdas import read_invoices
from lambdas.contract import READ_INVOICES
from lambdas.db import ClientSettings
from lambdas.example_events import example_event
from lifeguard.bench import capacity as pooler_capacity
from lifeguard.bench import coldstart
from lifeguard.bench.capacity import CapacitySettings
from lifeguard.bench.cpu import ServerCpu
from lifeguard.bench.experiments import use_plain_password
from lifeguard.bench.machine import describe, load_average
from lifeguard.load.gauge import SpikeDisplay
from lifeguard.load.invoker import COMPARE_URL_ENV, WorkerPool, split, worker_env
from lifeguard.load.spike import BackendMonitor, SpikeResult, percentile, run_spike
from lifeguard.stack.pooler import installed_version, other_debian_pgbouncer
from lifeguard.stack.stack import LocalStack, StackConfig, StackOptions
from lifeguard.stack.system import free_port

Say = Callable[[str], None]
TARGET_INSTANCES = 10000
TARGET_CHURN_RATIO = 2.0
TARGET_WARM_OVERHEAD_MS = 0.05
WARM_SQL = "SELECT 1"


@dataclass(frozen=True)
class BenchSettings:
    levels: tuple[int, ...] = (1000, 2500, 5000, 10000)
    """Pooled spike sizes, tried in order until one fails; the last is the target."""
    direct_instances: int = 1000
    max_connections: int = 100
    workers: int = 2
    threads: int = 48
    """Cold starts in flight per worker during a spike."""
    churn_clients: int = 16
    churn_seconds: float = 15.0
    """Per path; split into ``churn_rounds`` alternating blocks."""
    churn_rounds: int = 3
    warm_seconds: float = 10.0
    warm_clients: int = 16
    reuseport_processes: int = 2
    """PgBouncer processes for the so_reuseport variant; 1 or less skips it."""
    compare_debian: bool = True
    """Also measure the distribution's PgBouncer when it is another release than the shipped one."""
    capacity: CapacitySettings = field(default_factory=CapacitySettings)
    """The headline: PgBouncer CPU per login and per warm query (:mod:`lifeguard.bench.capacity`)."""
    cold_start: coldstart.ColdStartSettings = field(default_factory=coldstart.ColdStartSettings)
    """The function's side of a cold start at Lambda CPU shares (:mod:`lifeguard.bench.coldstart`)."""

    def check(self) -> None:
        if not self.levels or any(n < 1 for n in self.levels) or list(self.levels) != sorted(self.levels):
            raise ValueError("--levels must be increasing positive numbers")
        if self.levels[-1] > 20000:
            raise ValueError("--levels above 20000 exceed the open-files limit PgBouncer runs with here")
        if self.churn_seconds <= 0 or self.warm_seconds <= 0:
            raise ValueError("--churn-seconds and --warm-seconds must be positive")
        if self.churn_rounds < 1:
            raise ValueError("--churn-rounds must be at least 1")
        self.capacity.check()
        self.cold_start.check()


@dataclass
class Variant:
    """One stack shape: Postgres plus ``pooler_processes`` PgBouncer processes."""

    name: str
    stack: LocalStack
    config: StackConfig
    org_id: int
    results: dict[str, Any] = field(default_factory=dict)


def _start(root: Path, name: str, settings: BenchSettings, processes: int, say: Say,
           pgbouncer: Path | None = None) -> Variant:
    stack = LocalStack(root / name)
    say(f"[{name}] starting Postgres (max_connections {settings.max_connections}) and {processes} PgBouncer "
        f"process(es)")
    pg_port = free_port()
    pooler_port = free_port()
    while pooler_port == pg_port:
        pooler_port = free_port()
    config = stack.up(
        StackOptions(
            pg_port=pg_port, pooler_port=pooler_port, max_connections=settings.max_connections,
            pooler_processes=processes, max_client_conn=settings.levels[-1] + 100, durable=False,
            pgbouncer=str(pgbouncer) if pgbouncer else None,
        ),
        migrate=True,
    )
    with psycopg.connect(stack.direct_url(config), connect_timeout=10) as conn:
        row = conn.execute("SELECT id FROM orgs WHERE name = 'acme'").fetchone()
    if row is None:
        raise RuntimeError("the migrations did not seed the 'acme' organisation")
    return Variant(name, stack, config, int(row[0]))


def _spike(variant: Variant, monitor: BackendMonitor, label: str, url: str, instances: int,
           settings: BenchSettings) -> SpikeResult:
    display = SpikeDisplay(variant.config.max_connections)
    try:
        return run_spike(label=label, url=url, instances=instances, monitor=monitor,
                         event=example_event(READ_INVOICES.name, "ok", org_id=variant.org_id),
                         workers=settings.workers, threads=settings.threads,
                         progress=display, hold_s=0.3)
    finally:
        display.finish()


def _spike_ok(result: SpikeResult, pool_size: int) -> bool:
    return result.failed == 0 and result.warm_failed == 0 and result.peak_backends <= pool_size


def capacity(variant: Variant, settings: BenchSettings, say: Say, levels: Sequence[int],
             with_direct: bool = True, prepare: Callable[[Variant], None] | None = None) -> dict[str, Any]:
    """Direct once, then pooled at each level until one fails.

    Before each pooled level PgBouncer is restarted (then ``prepare`` runs), so every run starts
    from an empty pool: the previous level's idle server connections would otherwise count.
    """
    config, stack = variant.config, variant.stack
    monitor = BackendMonitor(stack.superuser_url(config))
    out: dict[str, Any] = {"pool_size": config.total_pool_size, "max_connections": config.max_connections}
    try:
        if with_direct:
            direct = _spike(variant, monitor, "direct", stack.app_direct_url(config), settings.direct_instances,
                            settings)
            out["direct"] = {**direct.to_json(), "samples": direct.samples}
            # Straight at Postgres every live instance holds a backend: capacity is what got one.
            out["direct_capacity"] = direct.ok if direct.failed else direct.instances
            monitor.wait_until_at_most(direct.baseline_backends, timeout=30)
        runs = []
        best = 0
        for n in levels:
            stack.restart_poolers(config)
            if prepare is not None:
                prepare(variant)
            monitor.wait_until_at_most(0, timeout=30)
            result = _spike(variant, monitor, "pooled", stack.pooled_url(config), n, settings)
            passed = _spike_ok(result, config.total_pool_size)
            runs.append({**result.to_json(), "passed": passed, "samples": result.samples})
            say(f"[{variant.name}] {n} instances through PgBouncer: {result.ok} ok, {result.failed} failed, "
                f"peak {result.peak_backends} backends (pool {config.total_pool_size}), "
                f"first row p50 {result.p50_ms:.0f} ms p99 {result.p99_ms:.0f} ms" if result.p50_ms is not None
                else f"[{variant.name}] {n} instances through PgBouncer: {result.failed} failed")
            if not passed:
                break
            best = n
        out["pooled_runs"] = runs
        out["pooled_capacity"] = best
    finally:
        monitor.close()
    return out


def _pool_run(jobs: list[dict[str, Any]], url: str, function: str | None, kind: str,
              timeout: float) -> tuple[list[dict[str, Any]], float]:
    with WorkerPool(jobs, worker_env(url, function)) as pool:
        started = time.perf_counter()
        pool.send({"type": "go"})
        reports = pool.collect(kind, timeout)
        wall = time.perf_counter() - started
    return reports, wall


@dataclass
class _Churn:
    """Running totals of one path's churn blocks."""

    wall: float = 0.0
    ok: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    client_cpu: float = 0.0
    pgbouncer_cpu: float = 0.0
    postgres_cpu: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    def summary(self, label: str, clients: int) -> dict[str, Any]:
        per = max(self.ok + self.failed, 1)
        return {
            "label": label,
            "clients": clients,
            "seconds": round(self.wall, 2),
            "invocations": self.ok + self.failed,
            "ok": self.ok,
            "failed": self.failed,
            "errors": self.errors,
            "throughput_per_s": round(self.ok / self.wall, 1) if self.wall else 0.0,
            "p50_ms": _r(percentile(self.latencies, 50)),
            "p99_ms": _r(percentile(self.latencies, 99)),
            "cpu_ms_per_invocation": {
                "client": round(self.client_cpu * 1000 / per, 2),
                "pgbouncer": round(self.pgbouncer_cpu * 1000 / per, 2),
                "postgres": round(self.postgres_cpu * 1000 / per, 2),
            },
        }


def _churn_block(variant: Variant, url: str, seconds: float, settings: BenchSettings, into: _Churn) -> None:
    """New instance (new connection) per invocation, ``churn_clients`` at a time, for ``seconds``."""
    stack, config = variant.stack, variant.config
    cpu = ServerCpu.from_state(stack.cluster(config).postmaster_pid(),
                               [stack.pooler_pid(i) for i in range(1, config.pooler_processes + 1)])
    event = example_event(READ_INVOICES.name, "ok", org_id=variant.org_id)
    jobs = [{"mode": "churn", "function": READ_INVOICES.name, "event": event,
             "threads": n, "duration_s": seconds}
            for n in split(settings.churn_clients, settings.workers)]
    before = cpu.sample()
    reports, wall = _pool_run(jobs, url, READ_INVOICES.name, "churn", seconds + 120)
    after = cpu.sample()
    into.wall += wall
    into.ok += sum(int(r["ok"]) for r in reports)
    into.failed += sum(int(r["failed"]) for r in reports)
    into.latencies += [x for r in reports for x in r["latencies_ms"]]
    into.client_cpu += sum(float(r["cpu_s"]) for r in reports)
    into.pgbouncer_cpu += after.pgbouncer_s - before.pgbouncer_s
    into.postgres_cpu += after.postgres_s - before.postgres_s
    for r in reports:
        for k, v in r["errors"].items():
            into.errors[k] = into.errors.get(k, 0) + int(v)


def churn(variant: Variant, settings: BenchSettings) -> dict[str, Any]:
    """Direct and pooled churn in alternating blocks, so both paths share the machine's background load.

    ``churn_rounds`` rounds of one block each (``churn_seconds / churn_rounds``), the order
    flipping every round; the ratio compares the two paths over the same stretch of time.
    """
    stack, config = variant.stack, variant.config
    direct, pooled = _Churn(), _Churn()
    block = settings.churn_seconds / settings.churn_rounds
    paths = [(stack.app_direct_url(config), direct), (stack.pooled_url(config), pooled)]
    for round_ in range(settings.churn_rounds):
        for url, totals in paths if round_ % 2 == 0 else paths[::-1]:
            _churn_block(variant, url, block, settings, totals)
    out = {"direct": direct.summary("direct", settings.churn_clients),
           "pooled": pooled.summary("pooled", settings.churn_clients)}
    out["ratio"] = round(out["pooled"]["throughput_per_s"] / max(out["direct"]["throughput_per_s"], 0.001), 2)
    return out


def warm_latency(variant: Variant, settings: BenchSettings) -> dict[str, Any]:
    """Per-query latency on reused connections, direct and pooled queries alternating on one client."""
    stack, config = variant.stack, variant.config
    env = worker_env(stack.pooled_url(config), None)
    env[COMPARE_URL_ENV] = stack.app_direct_url(config)
    job = {"mode": "paired", "sql": WARM_SQL, "duration_s": settings.warm_seconds}
    with WorkerPool([job], env) as pool:
        pool.send({"type": "go"})
        report = pool.collect("paired", settings.warm_seconds + 120)[0]
    pooled, direct = report["first_ms"], report["second_ms"]
    return {
        "sql": WARM_SQL,
        "queries_each": len(direct),
        "direct": {"p50_ms": _r(percentile(direct, 50), 4), "p99_ms": _r(percentile(direct, 99), 4)},
        "pooled": {"p50_ms": _r(percentile(pooled, 50), 4), "p99_ms": _r(percentile(pooled, 99), 4)},
    }


def warm_throughput(variant: Variant, label: str, url: str, settings: BenchSettings) -> dict[str, Any]:
    """Queries per second on ``warm_clients`` reused connections."""
    many = [{"mode": "queries", "sql": WARM_SQL, "threads": n, "duration_s": settings.warm_seconds}
            for n in split(settings.warm_clients, settings.workers)]
    reports, wall = _pool_run(many, url, None, "queries", settings.warm_seconds + 120)
    queries = sum(int(r["ok"]) for r in reports)
    latencies = [x for r in reports for x in r["latencies_ms"]]
    return {
        "label": label,
        "clients": settings.warm_clients,
        "throughput_qps": round(queries / wall, 1),
        "throughput_p50_ms": _r(percentile(latencies, 50), 4),
    }


def warm(variant: Variant, settings: BenchSettings) -> dict[str, Any]:
    """Warm latency (paired) and throughput, direct and pooled."""
    latency = warm_latency(variant, settings)
    return {
        "sql": latency["sql"],
        "latency_queries_each": latency["queries_each"],
        "direct": {**latency["direct"],
                   **warm_throughput(variant, "direct", variant.stack.direct_url(variant.config), settings)},
        "pooled": {**latency["pooled"],
                   **warm_throughput(variant, "pooled", variant.stack.pooled_url(variant.config), settings)},
    }


def warm_prepared(variant: Variant, settings: BenchSettings) -> dict[str, Any]:
    """The ``read_invoices`` query on two warm pooled connections, unprepared and prepared, in alternating blocks.

    The prepared one uses the client's own ``prepare_threshold`` when the stack says the pooler
    tracks prepared statements (``LIFEGUARD_POOLER_PREPARED_STATEMENTS=1``).
    """
    stack, config = variant.stack, variant.config
    url = stack.pooled_url(config)
    env = worker_env(url, None)
    env[COMPARE_URL_ENV] = url
    threshold = ClientSettings.from_env(stack.client_env(config)).prepare_threshold
    if threshold is None:
        raise RuntimeError("the stack's pooler does not track prepared statements")
    # The function's own statement and parameters.
    job = {"mode": "paired", "sql": read_invoices._QUERY, "duration_s": settings.warm_seconds,
           "params": {"org_id": variant.org_id, "limit": read_invoices.MAX_INVOICES + 1},
           "prepare_thresholds": [None, threshold]}
    with WorkerPool([job], env) as pool:
        pool.send({"type": "go"})
        report = pool.collect("paired", settings.warm_seconds + 120)[0]
    plain, prepared = report["first_ms"], report["second_ms"]
    p50_plain, p50_prepared = percentile(plain, 50), percentile(prepared, 50)
    gain = (p50_plain - p50_prepared) / p50_plain * 100 if p50_plain and p50_prepared is not None else None
    return {
        "function": READ_INVOICES.name,
        "queries_each": len(plain),
        "prepare_threshold": threshold,
        "unprepared": {"p50_ms": _r(p50_plain, 4), "p99_ms": _r(percentile(plain, 99), 4)},
        "prepared": {"p50_ms": _r(p50_prepared, 4), "p99_ms": _r(percentile(prepared, 99), 4)},
        "p50_gain_percent": _r(gain, 1),
    }


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _watching_load(say: Say, machine: dict[str, Any]) -> Say:
    """``say``, noting the 1-minute load at every step: the report says when other work shared the machine."""
    machine["load_average_peak"] = machine["load_average_at_start"][0]

    def noted(message: str) -> None:
        machine["load_average_peak"] = max(machine["load_average_peak"], load_average()[0])
        say(message)

    return noted


def run_bench(settings: BenchSettings, state_root: Path, say: Say) -> dict[str, Any]:
    settings.check()
    started = time.time()
    results: dict[str, Any] = {
        "settings": asdict(settings),
        "machine": describe(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
    }
    say = _watching_load(say, results["machine"])
    one = _start(state_root, "one-pgbouncer", settings, 1, say)
    results["scram_iterations"] = one.config.scram_iterations  # the application role's verifier, as shipped
    try:
        say("[capacity] PgBouncer CPU per login and per warm query, as shipped and beside each lever")
        results["capacity"] = pooler_capacity.measure(one.stack, one.config, one.org_id, settings.capacity,
                                                      state_root / "capacity", say)
        say(capacity_line(results["capacity"]))
        say("[cold start] fresh processes at Lambda CPU shares, each verifier count, pooled and direct")
        results["cold_start"] = coldstart.measure(one.stack, one.config, settings.cold_start, say)
        say(coldstart.line(results["cold_start"]))
        say("[spike] direct, then through one PgBouncer process, growing until a level fails")
        results["spike"] = capacity(one, settings, say, settings.levels)
        # PgBouncer keeps the spike's server connections idle for server_idle_timeout; restart it
        # so the direct measurements get the whole of max_connections.
        one.stack.restart_poolers(one.config)
        say("[churn] a new connection per invocation")
        results["churn"] = churn(one, settings)
        say(_churn_line(results["churn"]))
        one.stack.restart_poolers(one.config)
        say("[warm] reused connections")
        results["warm"] = warm(one, settings)
        say(_warm_line(results["warm"]))
        say("[prepared] read_invoices on warm pooled connections, unprepared and prepared")
        results["prepared"] = warm_prepared(one, settings)
        p = results["prepared"]
        say(f"[prepared] p50 {p['unprepared']['p50_ms']} ms unprepared, {p['prepared']['p50_ms']} ms prepared "
            f"({p['p50_gain_percent']}% faster)")
        say("[experiment] the role's plain password in PgBouncer's auth_file instead of its SCRAM verifier")
        one.stack.restart_poolers(one.config)
        use_plain_password(one.stack, one.config)
        results["plain_password"] = {
            "churn": churn(one, settings),
            "spike": capacity(one, settings, say, [settings.levels[-1]], with_direct=False,
                              prepare=lambda v: use_plain_password(v.stack, v.config)),
        }
        say("[experiment] " + _churn_line(results["plain_password"]["churn"]))
    finally:
        one.stack.down(purge=True)
    if settings.reuseport_processes > 1:
        k = settings.reuseport_processes
        multi = _start(state_root, f"{k}-pgbouncers", settings, k, say)
        try:
            say(f"[so_reuseport] {k} PgBouncer processes on one port")
            top = [settings.levels[-1]]
            results["reuseport"] = {
                "processes": k,
                "spike": capacity(multi, settings, say, top, with_direct=False),
            }
            multi.stack.restart_poolers(multi.config)
            results["reuseport"]["churn"] = churn(multi, settings)
            say("[so_reuseport] " + _churn_line(results["reuseport"]["churn"]))
            multi.stack.restart_poolers(multi.config)
            use_plain_password(multi.stack, multi.config)
            results["reuseport"]["plain_password_churn"] = churn(multi, settings)
            say("[so_reuseport + plain password] " + _churn_line(results["reuseport"]["plain_password_churn"]))
        finally:
            multi.stack.down(purge=True)
    other = other_debian_pgbouncer() if settings.compare_debian else None
    if other is not None:
        version = str(installed_version(other))
        old = _start(state_root, f"pgbouncer-{version}", settings, 1, say, pgbouncer=other)
        try:
            say(f"[pgbouncer {version}] the same spike, churn and warm runs on the distribution's release")
            compare: dict[str, Any] = {
                "pgbouncer": version,
                "spike": capacity(old, settings, say, [settings.levels[-1]], with_direct=False),
            }
            old.stack.restart_poolers(old.config)
            compare["churn"] = churn(old, settings)
            say(f"[pgbouncer {version}] " + _churn_line(compare["churn"]))
            old.stack.restart_poolers(old.config)
            compare["warm"] = warm(old, settings)
            say(f"[pgbouncer {version}] " + _warm_line(compare["warm"]))
            old.stack.restart_poolers(old.config)
            use_plain_password(old.stack, old.config)
            compare["plain_password_churn"] = churn(old, settings)
            say(f"[pgbouncer {version} + plain password] " + _churn_line(compare["plain_password_churn"]))
            results["compare"] = compare
        finally:
            old.stack.down(purge=True)
    results["machine"]["load_average_at_end"] = load_average()
    results["duration_s"] = round(time.time() - started, 1)
    results["targets"] = evaluate(results)
    return results


def run_capacity(settings: BenchSettings, state_root: Path, say: Say) -> dict[str, Any]:
    """Only the headline (``lifeguard bench --only capacity``): a minute or two."""
    settings.check()
    one = _start(state_root, "capacity", settings, 1, say)
    try:
        result = pooler_capacity.measure(one.stack, one.config, one.org_id, settings.capacity,
                                         state_root / "capacity-variants", say)
    finally:
        one.stack.down(purge=True)
    if settings.capacity.images:
        from lifeguard.bench import image_cpu

        result["image"] = image_cpu.measure(state_root / "capacity-image", settings.max_connections,
                                            settings.capacity, say)
    result["machine"] = describe()
    say(capacity_line(result))
    return result


def run_cold_start(settings: BenchSettings, state_root: Path, say: Say) -> dict[str, Any]:
    """Only the cold-start section (``lifeguard bench --only cold-start``): a few minutes."""
    settings.check()
    machine = describe()
    one = _start(state_root, "cold-start", settings, 1, say)
    try:
        result = coldstart.measure(one.stack, one.config, settings.cold_start, say)
    finally:
        one.stack.down(purge=True)
    result["machine"] = {**machine, "load_average_at_end": load_average()}
    say(coldstart.line(result))
    return result


def capacity_line(c: dict[str, Any]) -> str:
    h = pooler_capacity.headline(pooler_capacity.summarize(c))
    return (f"[capacity] as shipped: {h['login_ms']:.3f} ms PgBouncer CPU per login ({h['cold_starts_per_vcpu']:,} "
            f"cold starts/s per vCPU), {h['query_us']:.1f} us per warm query ({h['queries_per_vcpu']:,} queries/s "
            "per vCPU)")


def _churn_line(c: dict[str, Any]) -> str:
    return (f"[churn] direct {c['direct']['throughput_per_s']}/s, pooled {c['pooled']['throughput_per_s']}/s "
            f"({c['ratio']}x; p50 {c['direct']['p50_ms']} vs {c['pooled']['p50_ms']} ms)")


def _warm_line(w: dict[str, Any]) -> str:
    return (f"[warm] p50 {w['direct']['p50_ms']} ms direct, {w['pooled']['p50_ms']} ms pooled; "
            f"{w['direct']['throughput_qps']} vs {w['pooled']['throughput_qps']} queries/s")


def evaluate(results: dict[str, Any]) -> dict[str, Any]:
    """Each target: what was asked, what the kit as shipped measured, and the best lift tried."""
    reuseport = results.get("reuseport") or {}
    plain = results.get("plain_password") or {}
    capacities = {"shipped": results["spike"]["pooled_capacity"]}
    if reuseport:
        capacities["so_reuseport"] = reuseport["spike"]["pooled_capacity"]
    if plain:
        capacities["plain_password"] = plain["spike"]["pooled_capacity"]
    # Each ratio against the direct blocks interleaved with it (same stretch of time).
    ratios = {"shipped": results["churn"]["ratio"]}
    if plain:
        ratios["plain_password"] = plain["churn"]["ratio"]
    if reuseport:
        ratios["so_reuseport"] = reuseport["churn"]["ratio"]
        ratios["so_reuseport+plain_password"] = reuseport["plain_password_churn"]["ratio"]
    w = results["warm"]
    overhead = (w["pooled"]["p50_ms"] or 0) - (w["direct"]["p50_ms"] or 0)
    best_capacity = max(capacities, key=lambda k: capacities[k])
    extra = capacity_targets(results["capacity"]) if "capacity" in results else {}
    best_ratio = max(ratios, key=lambda k: ratios[k])
    return {
        "spike_capacity": {
            "target": TARGET_INSTANCES, "measured": capacities["shipped"], "by_variant": capacities,
            "best_variant": best_capacity, "met": capacities["shipped"] >= TARGET_INSTANCES,
        },
        "churn_ratio": {
            "target": TARGET_CHURN_RATIO, "measured": ratios["shipped"], "by_variant": ratios,
            "best_variant": best_ratio, "met": ratios["shipped"] >= TARGET_CHURN_RATIO,
        },
        "warm_overhead_ms": {
            "target": TARGET_WARM_OVERHEAD_MS, "measured": round(overhead, 4),
            "met": overhead <= TARGET_WARM_OVERHEAD_MS,
        },
        **extra,
    }


def capacity_targets(capacity: dict[str, Any]) -> dict[str, Any]:
    """The headline's two targets, as shipped."""
    h = pooler_capacity.headline(pooler_capacity.summarize(capacity))
    return {
        "pgbouncer_cpu_per_login_ms": {"target": h["login_target_ms"], "measured": h["login_ms"],
                                       "met": h["login_met"]},
        "pgbouncer_cpu_per_warm_query_us": {"target": h["query_target_us"], "measured": h["query_us"],
                                            "met": h["query_met"]},
    }
