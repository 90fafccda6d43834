"""``lifeguard demo``: the launch-day spike, straight at Postgres and then through PgBouncer.

Brings the local stack up, runs the migration job over the direct URL, calls both sample
functions through the pooled URL, then cold-starts ``--instances`` function instances at once
twice: with ``DATABASE_URL`` pointing straight at Postgres, then at PgBouncer. Shows a live gauge
of backends against ``max_connections``, then a summary (``--json``: one JSON object) and a PNG
chart of backends over time. Stops the stack afterwards unless ``--keep`` (a stack that was
already running is left running).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg

from lambdas.contract import CHARGE_CREDITS, READ_INVOICES, READ_INVOICES_NODE
from lambdas.example_events import example_event
from lifeguard.cli.local import add_stack_options, add_state_dir_argument, stack_options
from lifeguard.deploy.workflow_commands import neutralise
from lifeguard.load.chart import Series, backends_chart
from lifeguard.load.gauge import SpikeDisplay
from lifeguard.load.invoker import InvokerError
from lifeguard.load.spike import DEFAULT_THREADS, DEFAULT_WORKERS, BackendMonitor, SpikeResult, run_spike
from lifeguard.stack.stack import STACK_ERRORS, LocalStack, StackConfig, resolve_state_dir
from lifeguard.stack.top import PoolPeaks, stack_sources

MAX_INSTANCES = 20000
_ERRORS: tuple[type[Exception], ...] = (*STACK_ERRORS, InvokerError, psycopg.Error)
DEMO_ORG = "acme"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n", 1)[1] if __doc__ else None
    parser.add_argument("--instances", type=int, default=500, metavar="N",
                        help="concurrent function instances in the spike (default 500)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object on stdout")
    parser.add_argument("--chart", type=Path, metavar="PATH",
                        help="where to write the PNG chart (default: demo-backends.png in the state directory)")
    parser.add_argument("--keep", action="store_true", help="leave the local stack running afterwards")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, metavar="N",
                        help=f"worker processes hosting the instances (default {DEFAULT_WORKERS})")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, metavar="N",
                        help=f"cold starts in flight per worker (default {DEFAULT_THREADS})")
    parser.add_argument("--function", choices=(READ_INVOICES.name, READ_INVOICES_NODE.name), default=READ_INVOICES.name,
                        help="the function the spike's instances run: read_invoices in Python (default), or its "
                        "Node.js twin under real Node.js (the install's own Node.js 24, as on Lambda, "
                        "or $LIFEGUARD_NODE)")
    add_state_dir_argument(parser)
    add_stack_options(parser)
    parser.set_defaults(func=run)


def _say(message: str = "") -> None:
    # Progress relays the migration job's output, which carries what the database wrote.
    print(neutralise(message), file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.instances <= MAX_INSTANCES:
        _say(f"lifeguard demo: error: --instances must be between 1 and {MAX_INSTANCES}, got {args.instances}")
        return 2
    if not 1 <= args.workers <= 64 or not 1 <= args.threads <= 1024:
        _say("lifeguard demo: error: --workers must be 1..64 and --threads 1..1024")
        return 2
    stack = LocalStack(resolve_state_dir(args.state_dir))
    try:
        was_up = stack.status().up
        try:
            figures = _demo(stack, args)
        finally:
            if args.keep or was_up:
                _say("the local stack keeps running (`lifeguard local down` stops it)")
            elif stack.status().anything_running:
                _say("stopping the local stack (--keep leaves it running)")
                stack.down()
    except _ERRORS as exc:
        _say(f"lifeguard demo: error: {exc}")
        return 1
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(format_summary(figures))
    return 0


def _demo(stack: LocalStack, args: argparse.Namespace) -> dict[str, Any]:
    _say("1. local stack: Postgres standing in for RDS, PgBouncer on the image's rendered config")
    config = stack.up(stack_options(args), migrate=False, progress=lambda m: _say(f"   {m}"))

    _say("2. migration job, given only DATABASE_URL_UNPOOLED (direct to Postgres) and the app role's verifier")
    migration = stack.migrate(config)
    for line in migration.output.splitlines():
        _say(f"   {line}")
    if migration.returncode != 0:
        raise InvokerError(f"the migration job failed with exit code {migration.returncode} (output above)")

    _say("3. the sample functions through DATABASE_URL (PgBouncer)")
    org_id = _org_id(stack, config)
    for line in call_samples(stack.pooled_url(config), org_id):
        _say(f"   {line}")

    _say(f"4. the spike: {args.instances} instances cold-start at once, each holding its connection")
    event = example_event(READ_INVOICES.name, "ok", org_id=org_id)
    display = SpikeDisplay(config.max_connections)
    monitor = BackendMonitor(stack.superuser_url(config))
    if monitor.read() > config.total_pool_size // 4:
        # A kept stack's PgBouncer holds idle server connections for minutes; they would take
        # slots from the direct run. Start both runs from an (almost) empty Postgres.
        _say("   restarting PgBouncer to release its idle server connections")
        stack.restart_poolers(config)
        monitor.wait_until_at_most(0, timeout=10)
    try:
        # Straight to Postgres as the same application role: what the functions would do without PgBouncer.
        direct = run_spike(label="direct", url=stack.app_direct_url(config), instances=args.instances,
                           monitor=monitor, event=event, workers=args.workers, threads=args.threads,
                           progress=display, function=args.function)
        display.finish()
        monitor.wait_until_at_most(direct.baseline_backends, timeout=15)
        # The figures the AWS alarms watch (SHOW POOLS), sampled while the pooled spike runs.
        with PoolPeaks(stack_sources(stack).console) as pool_peaks:
            pooled = run_spike(label="pooled", url=stack.pooled_url(config), instances=args.instances,
                               monitor=monitor, event=event, workers=args.workers, threads=args.threads,
                               progress=display, client_env=stack.client_env(config), function=args.function)
        display.finish()
    finally:
        monitor.close()

    chart = args.chart or stack.state_dir / "demo-backends.png"
    backends_chart(
        chart,
        [Series(f"direct ({direct.failed} of {direct.instances} failed)", direct.samples, "#d32f2f"),
         Series(f"through PgBouncer ({pooled.failed} failed)", pooled.samples, "#2e7d32")],
        max_connections=config.max_connections,
        pool_size=config.total_pool_size,
        title=f"Launch-day spike: {args.instances} function instances, backend connections",
    )
    _say(f"chart: {chart}")
    figures = demo_figures(config, args.instances, direct, pooled, chart)
    figures["pooled"]["pooler"] = pool_peaks.to_json()
    figures["function"] = args.function
    return figures


def _org_id(stack: LocalStack, config: StackConfig) -> int:
    with psycopg.connect(stack.direct_url(config), connect_timeout=10) as conn:
        row = conn.execute("SELECT id FROM orgs WHERE name = %s", (DEMO_ORG,)).fetchone()
    if row is None:
        raise InvokerError(f"the migrations did not create the demo organisation {DEMO_ORG!r}")
    return int(row[0])


def call_samples(pooled_url: str, org_id: int) -> list[str]:
    """Invoke each sample function once, as one instance; lines describing what they answered."""
    from lambdas import charge_credits, read_invoices
    from lambdas.db import Database

    database = Database(url=pooled_url, env={})
    try:
        read = read_invoices.handle(example_event(READ_INVOICES.name, "ok", org_id=org_id), database)
        charge = charge_credits.handle(
            example_event(CHARGE_CREDITS.name, "ok", org_id=org_id, idempotency_key=f"demo-{uuid.uuid4()}"), database
        )
    finally:
        database.close()
    lines = []
    body = json.loads(read["body"])
    if read["statusCode"] == 200:
        lines.append(f"{READ_INVOICES.name:<14} -> 200: {body['org']['name']} has {body['org']['credits']} credits and "
                     f"{len(body['invoices'])} invoice(s)")
    else:
        raise InvokerError(f"{READ_INVOICES.name} answered {read['statusCode']}: {body.get('message', '')}")
    body = json.loads(charge["body"])
    if charge["statusCode"] == 200:
        lines.append(f"{CHARGE_CREDITS.name:<14} -> 200: charged {body['amount']} credit, "
                     f"balance now {body['balance_after']}")
    else:
        # 402 once the demo has used up the org's credits: still a correct answer from the function.
        lines.append(f"{CHARGE_CREDITS.name:<14} -> {charge['statusCode']}: "
                     f"{body.get('message', body.get('error', ''))}")
    return lines


def demo_figures(
    config: StackConfig, instances: int, direct: SpikeResult, pooled: SpikeResult, chart: Path
) -> dict[str, Any]:
    return {
        "instances": instances,
        "max_connections": config.max_connections,
        "pool_size": config.total_pool_size,
        "pooler_processes": config.pooler_processes,
        "direct": direct.to_json(),
        "pooled": pooled.to_json(),
        "chart": str(chart),
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def format_summary(figures: dict[str, Any]) -> str:
    d, p = figures["direct"], figures["pooled"]
    n, limit, pool = figures["instances"], figures["max_connections"], figures["pool_size"]
    rows = [
        ("instances ok", f"{d['ok']} of {n}", f"{p['ok']} of {n}"),
        ("instances failed", str(d["failed"]), str(p["failed"])),
        ("peak backends", f"{d['peak_backends']} / {limit}", f"{p['peak_backends']} / {limit} (pool {pool})"),
        ("time to first row p50", _ms(d["p50_ms"]), _ms(p["p50_ms"])),
        ("time to first row p99", _ms(d["p99_ms"]), _ms(p["p99_ms"])),
        ("warm calls ok", f"{d['warm_ok']} of {n}", f"{p['warm_ok']} of {n}"),
    ]
    width = max(len(r[0]) for r in rows) + 2
    col = max(22, *(len(r[1]) + 2 for r in rows))
    out = [
        "",
        f"Launch-day spike: {n} instances, max_connections {limit}, PgBouncer pool {pool}",
        "",
        f"  {'':<{width}}{'straight at Postgres':<{col}}through PgBouncer",
    ]
    out += [f"  {label:<{width}}{a:<{col}}{b}" for label, a, b in rows]
    peaks = p.get("pooler")
    if peaks:
        out += [
            "",
            "  PgBouncer during the pooled run (SHOW POOLS, what the AWS alarms watch):",
            f"    peak clients active {peaks['peak_clients_active']}, waiting {peaks['peak_clients_waiting']}; "
            f"peak servers active {peaks['peak_servers_active']}; longest wait {peaks['peak_maxwait_s']:.2f} s; "
            f"peak {peaks['peak_tps']:,.0f} transactions/s",
        ]
    for name, figures_ in (("straight at Postgres", d), ("through PgBouncer", p)):
        if figures_["failed"]:
            out.append("")
            out.append(f"  what users got, {name}:")
            out += [f"    {count:>6} x {error}" for error, count in _by_count(figures_["errors"])]
            if figures_["db_errors"]:
                out.append("  what the database said (function logs):")
                out += [f"    {count:>6} x {error}" for error, count in _by_count(figures_["db_errors"])]
    out += ["", "  Time to first row counts from the spike's start: it includes waiting for a cold-start slot.",
            f"  Chart: {figures['chart']}"]
    return "\n".join(out)


def _by_count(counts: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: -kv[1])
