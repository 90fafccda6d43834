"""``lifeguard local top``: the pool figures the AWS dashboard shows, live against the local stack.

Per pool: clients active and waiting, servers active and idle, the longest wait, and transactions
and queries per second; below them, Postgres' backends against ``max_connections``. The
figures come from the same console reader the metrics sidecar uses on AWS
(:mod:`pgbouncer.metrics`), so what ``top`` shows locally is what CloudWatch gets.

:func:`snapshot` is the one-shot form, for ``lifeguard demo``'s summary and for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

import psycopg

from database_urls import DIRECT_URL_ENV
from lifeguard.cli.arguments import SECRET_URL_HELP, STDIN, url_from_stdin
from lifeguard.stack.stack import LocalStack
from pgbouncer.contract import STATS_USER
from pgbouncer.metrics.console import ConsoleError, ConsoleTarget, sample_console
from pgbouncer.metrics.rates import RateTracker
from redaction import Redactor, url_problem

ENV_CONSOLE_URL = "LIFEGUARD_POOLER_CONSOLE_URL"
"""A ``postgresql://`` URL of a ``stats_users`` user (host may be the socket dir: ``?host=/dir``)."""


class TopError(RuntimeError):
    """``top`` cannot run; the message says what to set. Never holds a URL."""


@dataclass(frozen=True)
class TopSources:
    console: ConsoleTarget
    direct_url: str | None = None
    """``DATABASE_URL_UNPOOLED``, for the backend count; None leaves the Postgres line out."""


Resolver = Callable[[], TopSources]
"""How the local stack hands ``top`` its console and direct URL when no flag or variable does."""


def postgres_figures(direct_url: str) -> dict[str, int]:
    """Backends on the whole server against ``max_connections``.

    Counted as RDS counts ``DatabaseConnections`` (the sum of ``pg_stat_database.numbackends``),
    which any role may read: ``pg_stat_activity`` hides other roles' rows' details from the app role.
    Our own connection is left out.
    """
    problem = url_problem(direct_url)
    if problem is not None:
        raise TopError(f"{DIRECT_URL_ENV} cannot be used as written: {problem}")
    try:
        with psycopg.connect(direct_url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT (SELECT coalesce(sum(numbackends), 0) FROM pg_stat_database)::int - 1,"
                " current_setting('max_connections')::int,"
                " current_setting('superuser_reserved_connections')::int"
            ).fetchone()
    except psycopg.Error as exc:
        # libpq names the host and port, never the password; the URL itself is not repeated.
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TopError(f"cannot reach Postgres with {DIRECT_URL_ENV}: {Redactor([direct_url])(detail)}") from None
    assert row is not None
    backends, max_connections, reserved = (int(value) for value in row)
    return {"backends": backends, "max_connections": max_connections, "superuser_reserved": reserved}


def snapshot(
    console: ConsoleTarget, direct_url: str | None = None, tracker: RateTracker | None = None
) -> dict[str, Any]:
    """The pool figures now, as plain JSON-ready data.

    Rates are measured against the previous call with the same ``tracker``; without one (or on
    the first call) they are PgBouncer's own average over its last ``stats_period``
    (``rate_source`` says which). Raises :class:`pgbouncer.metrics.ConsoleError` or
    :class:`TopError` when the console or Postgres cannot be read.
    """
    sample = sample_console(console)
    rates = (tracker or RateTracker()).update(sample)
    pools = []
    for pool in sample.pools:
        rate = rates.get(pool.database)
        pools.append({
            "pool": pool.name,
            "database": pool.database,
            "user": pool.user,
            "cl_active": pool.cl_active,
            "cl_waiting": pool.cl_waiting,
            "sv_active": pool.sv_active,
            "sv_idle": pool.sv_idle,
            "sv_used": pool.sv_used,
            "maxwait_s": round(pool.maxwait_seconds, 3),
            # SHOW STATS counts per database: every pool of a database shows that database's rate.
            "tps": round(rate.tps, 1) if rate else 0.0,
            "qps": round(rate.qps, 1) if rate else 0.0,
            "rate_source": rate.source if rate else "average",
        })
    return {
        "time": round(sample.wall, 3),
        "console": console.where,
        "pools": pools,
        "totals": {
            "cl_active": sum(p.cl_active for p in sample.pools),
            "cl_waiting": sum(p.cl_waiting for p in sample.pools),
            "sv_active": sum(p.sv_active for p in sample.pools),
            "sv_idle": sum(p.sv_idle for p in sample.pools),
            "maxwait_s": round(max((p.maxwait_seconds for p in sample.pools), default=0.0), 3),
            "tps": round(sum(r.tps for r in rates.values()), 1),
            "qps": round(sum(r.qps for r in rates.values()), 1),
            "client_connections": sample.client_connections,
            "server_connections": sample.server_connections,
        },
        "postgres": postgres_figures(direct_url) if direct_url else None,
    }


def stack_sources(stack: LocalStack) -> TopSources:
    """The running local stack's console (its stats user over the first process's Unix socket: read-only,
    never leaves the machine) and a superuser URL, which sees every backend in ``pg_stat_activity``."""
    config = stack.require_config()
    console = ConsoleTarget(
        host=str(stack.pooler_root(1)), port=config.pooler_port, user=STATS_USER, password=stack.stats_password()
    )
    return TopSources(console, stack.superuser_url(config))


def format_table(snap: Mapping[str, Any]) -> str:
    """The snapshot as the fixed-width table ``top`` refreshes."""
    columns = ("pool", "cl_active", "cl_waiting", "sv_active", "sv_idle", "maxwait_s", "tps", "qps")
    rows = [[str(pool[c]) for c in columns] for pool in snap["pools"]]
    totals = snap["totals"]
    rows.append(["(all)", *(str(totals[c]) for c in columns[1:])])
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]

    def line(cells: list[str] | tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(cell.rjust(w) for cell, w in zip(cells[1:], widths[1:], strict=True))])

    stamp = time.strftime("%H:%M:%S", time.localtime(snap["time"]))
    out = [f"PgBouncer {snap['console']}  {stamp}", line(columns), *(line(r) for r in rows)]
    out.append(
        f"clients connected {totals['client_connections']}, server connections {totals['server_connections']}"
    )
    pg = snap.get("postgres")
    if pg:
        used = pg["backends"]
        limit = pg["max_connections"]
        out.append(
            f"Postgres backends {used} / max_connections {limit} ({100 * used / limit:.0f}%), "
            f"{pg['superuser_reserved']} reserved for superusers"
        )
    return "\n".join(out)


def resolve_sources(args: argparse.Namespace, env: Mapping[str, str], resolver: Resolver | None) -> TopSources:
    """Flags first, then environment variables, then the local stack (``resolver``)."""
    try:
        console_url = url_from_stdin(args.console_url, "--console-url", sys.stdin) or env.get(ENV_CONSOLE_URL)
        direct_url = url_from_stdin(args.direct_url, "--direct-url", sys.stdin) or env.get(DIRECT_URL_ENV)
    except ValueError as exc:
        raise TopError(str(exc)) from None
    if console_url:
        problem = url_problem(console_url)
        if problem is not None:
            # libpq would misread it, and the host it shows would carry pieces of the password.
            raise TopError(f"{ENV_CONSOLE_URL} / --console-url cannot be used as written: {problem}")
        try:
            console = ConsoleTarget.from_url(console_url)
        except ValueError as exc:
            raise TopError(f"{ENV_CONSOLE_URL} / --console-url: {exc}") from None
        return TopSources(console, direct_url)
    if resolver is not None:
        local = resolver()
        return TopSources(local.console, direct_url or local.direct_url)
    raise TopError(
        f"no PgBouncer console to read: start the local stack (lifeguard local up), or set "
        f"{ENV_CONSOLE_URL} to a postgresql:// URL of a stats_users user"
    )


def run_top(
    args: argparse.Namespace,
    resolver: Resolver | None = None,
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        sources = resolve_sources(args, os.environ if env is None else env, resolver)
    except TopError as exc:
        print(f"lifeguard local top: {exc}", file=err)
        return 2
    if args.interval <= 0:
        print("lifeguard local top: --interval must be a positive number of seconds", file=err)
        return 2
    tracker = RateTracker()
    live = not args.once and not args.json and out.isatty()
    try:
        while True:
            try:
                snap = snapshot(sources.console, sources.direct_url, tracker)
            except (ConsoleError, TopError) as exc:
                if args.once:
                    print(f"lifeguard local top: {exc}", file=err)
                    return 1
                tracker.reset()
                print(f"lifeguard local top: {exc} (retrying)", file=err, flush=True)
            else:
                if args.json:
                    out.write(json.dumps(snap, sort_keys=True) + "\n")
                else:
                    # Clear the screen and home the cursor: a refreshing table, no curses needed.
                    out.write(("\x1b[H\x1b[2J" if live else "") + format_table(snap) + "\n" + ("" if live else "\n"))
                out.flush()
                if args.once:
                    return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0


def add_top_command(
    local_subparsers: argparse._SubParsersAction[argparse.ArgumentParser], resolver: Resolver | None = None
) -> argparse.ArgumentParser:
    """Add ``top`` under ``lifeguard local``; ``resolver`` finds the running local stack."""
    parser = local_subparsers.add_parser(
        "top",
        help="live pool figures: clients active/waiting, servers, max wait, tps/qps, backends",
        description=(
            "Show PgBouncer's pools (SHOW POOLS/STATS/LISTS) and Postgres' backends against "
            "max_connections, refreshed every --interval seconds. The same figures the metrics "
            f"sidecar publishes to CloudWatch on AWS. {SECRET_URL_HELP}."
        ),
    )
    parser.add_argument("--once", action="store_true", help="print one snapshot and exit")
    parser.add_argument("--json", action="store_true", help="JSON, one object per line (with --once: one)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default 2)")
    parser.add_argument(
        "--console-url",
        help=f"postgresql:// URL of a stats_users user (default ${ENV_CONSOLE_URL}, else the local stack; "
             f"{STDIN}: read it from stdin)",
    )
    parser.add_argument(
        "--direct-url",
        help=f"direct Postgres URL for the backend count (default ${DIRECT_URL_ENV}; {STDIN}: read it from stdin)",
    )
    parser.set_defaults(func=lambda args: run_top(args, resolver))
    return parser


class PoolPeaks:
    """Samples the pool figures in the background while a spike runs and keeps the peaks.

    The demo's summary shows them next to its own counts: what the AWS alarms would have seen
    (clients waiting, the longest wait) during the pooled run. Each sample is a short console
    session, like the sidecar's, so the watcher never holds a client slot.
    """

    FIELDS = ("cl_active", "cl_waiting", "sv_active", "maxwait_s", "tps")

    def __init__(self, console: ConsoleTarget, interval: float = 0.25) -> None:
        self.console = console
        self.interval = interval
        self.peaks: dict[str, float] = dict.fromkeys(self.FIELDS, 0)
        self.samples = 0
        self.errors = 0
        self._tracker = RateTracker()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pool-peaks", daemon=True)

    def sample(self) -> None:
        try:
            totals = snapshot(self.console, tracker=self._tracker)["totals"]
        except (ConsoleError, psycopg.Error):
            self.errors += 1
            return
        self.samples += 1
        for field in self.FIELDS:
            self.peaks[field] = max(self.peaks[field], totals[field])

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> PoolPeaks:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()

    def to_json(self) -> dict[str, Any]:
        return {
            "peak_clients_active": int(self.peaks["cl_active"]),
            "peak_clients_waiting": int(self.peaks["cl_waiting"]),
            "peak_servers_active": int(self.peaks["sv_active"]),
            "peak_maxwait_s": self.peaks["maxwait_s"],
            "peak_tps": self.peaks["tps"],
            "samples": self.samples,
        }
