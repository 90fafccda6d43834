"""``lifeguard bench``: spike capacity, connection churn and warm overhead, pooled against direct.

Starts its own throwaway stacks in a temporary state directory on free ports, runs every
measurement in one go on this machine, stops everything, and writes ``benchmarks.json``,
``benchmarks.md`` and ``benchmarks-spike.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import psycopg

from lifeguard.bench import report
from lifeguard.bench.experiments import ExperimentError
from lifeguard.bench.runner import BenchSettings, run_bench
from lifeguard.local.invoker import InvokerError
from lifeguard.local.stack import STACK_ERRORS

_ERRORS: tuple[type[Exception], ...] = (*STACK_ERRORS, InvokerError, ExperimentError, psycopg.Error, ValueError)


def _levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--levels must be comma-separated whole numbers, got {text!r}") from None
    if not levels:
        raise argparse.ArgumentTypeError("--levels needs at least one number")
    return levels


def configure(parser: argparse.ArgumentParser) -> None:
    defaults = BenchSettings()
    parser.description = __doc__.split("\n\n", 1)[1] if __doc__ else None
    parser.add_argument("--out", type=Path, default=Path("docs"), metavar="DIR",
                        help="where to write benchmarks.json/.md and the chart (default: docs)")
    parser.add_argument("--levels", type=_levels, default=defaults.levels, metavar="N,N,...",
                        help="pooled spike sizes, tried in order until one fails (default: "
                        + ",".join(str(n) for n in defaults.levels) + ")")
    parser.add_argument("--direct-instances", type=int, default=defaults.direct_instances, metavar="N",
                        help=f"spike size straight at Postgres (default {defaults.direct_instances})")
    parser.add_argument("--max-connections", type=int, default=defaults.max_connections, metavar="N",
                        help=f"Postgres max_connections (default {defaults.max_connections})")
    parser.add_argument("--workers", type=int, default=defaults.workers, metavar="N",
                        help=f"worker processes hosting instances (default {defaults.workers})")
    parser.add_argument("--threads", type=int, default=defaults.threads, metavar="N",
                        help=f"cold starts in flight per worker (default {defaults.threads})")
    parser.add_argument("--churn-clients", type=int, default=defaults.churn_clients, metavar="N")
    parser.add_argument("--churn-seconds", type=float, default=defaults.churn_seconds, metavar="S",
                        help=f"churn time per path (default {defaults.churn_seconds:g})")
    parser.add_argument("--churn-rounds", type=int, default=defaults.churn_rounds, metavar="N",
                        help=f"alternating direct/pooled blocks the churn time is split into "
                        f"(default {defaults.churn_rounds})")
    parser.add_argument("--warm-clients", type=int, default=defaults.warm_clients, metavar="N")
    parser.add_argument("--warm-seconds", type=float, default=defaults.warm_seconds, metavar="S")
    parser.add_argument("--reuseport-processes", type=int, default=defaults.reuseport_processes, metavar="N",
                        help="PgBouncer processes for the so_reuseport variant; 1 skips it "
                        f"(default {defaults.reuseport_processes})")
    parser.add_argument("--no-compare", action="store_true",
                        help="skip the runs on the distribution's own PgBouncer (Debian 12: 1.18)")
    parser.add_argument("--state-dir", type=Path, metavar="DIR",
                        help="parent directory for the throwaway stacks (default: a new temporary one)")
    parser.set_defaults(func=run)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    settings = BenchSettings(
        levels=args.levels, direct_instances=args.direct_instances, max_connections=args.max_connections,
        workers=args.workers, threads=args.threads, churn_clients=args.churn_clients,
        churn_seconds=args.churn_seconds, churn_rounds=args.churn_rounds,
        warm_clients=args.warm_clients, warm_seconds=args.warm_seconds,
        reuseport_processes=args.reuseport_processes, compare_debian=not args.no_compare,
    )
    if args.state_dir is not None:
        root = args.state_dir.absolute()
        root.mkdir(parents=True, exist_ok=True)
        cleanup = False
    else:
        # Under /var/tmp, not the cwd: the postgres user must be able to reach it.
        root = Path(tempfile.mkdtemp(prefix="lifeguard-bench-", dir="/var/tmp"))
        cleanup = True
    root.chmod(0o755)
    try:
        results = run_bench(settings, root, _say)
    except _ERRORS as exc:
        _say(f"lifeguard bench: error: {exc}")
        return 1
    finally:
        if cleanup:
            shutil.rmtree(root, ignore_errors=True)
    command = "lifeguard bench" + _non_default_args(args)
    written = report.write(results, args.out, command=command)
    for kind, path in written.items():
        _say(f"{kind}: {path}")
    targets = results["targets"]
    _say("targets: " + ", ".join(f"{name} {'met' if t['met'] else 'missed'}" for name, t in targets.items()))
    return 0


def _non_default_args(args: argparse.Namespace) -> str:
    defaults = BenchSettings()
    parts = [f"--out {args.out}"]
    for name in ("direct_instances", "max_connections", "workers", "threads", "churn_clients", "churn_seconds",
                 "churn_rounds", "warm_clients", "warm_seconds", "reuseport_processes"):
        if getattr(args, name) != getattr(defaults, name):
            parts.append(f"--{name.replace('_', '-')} {getattr(args, name)}")
    if tuple(args.levels) != defaults.levels:
        parts.append("--levels " + ",".join(str(n) for n in args.levels))
    return " " + " ".join(parts)
