"""``lifeguard bench``: PgBouncer CPU per login and per warm query, then spike, churn and warm, pooled against direct.

Starts its own throwaway stacks in a temporary state directory on free ports, runs every
measurement in one go on this machine, stops everything, and writes ``benchmarks.json``,
``benchmarks.md`` and ``benchmarks-spike.png`` to ``--out``. ``--only capacity`` measures just the
headline (PgBouncer's CPU as shipped and beside each lever, a minute or two) and puts it into the
report already in ``--out``; ``--only cold-start`` likewise measures just the function's side of a
cold start (fresh processes at Lambda CPU shares, each SCRAM iteration count, pooled and direct).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import psycopg

from lifeguard.bench import coldstart, report
from lifeguard.bench.capacity import VARIANT_KEYS, CapacitySettings, variants_from_text
from lifeguard.bench.experiments import ExperimentError
from lifeguard.bench.runner import (
    BenchSettings,
    capacity_line,
    capacity_targets,
    run_bench,
    run_capacity,
    run_cold_start,
)
from lifeguard.load.invoker import InvokerError
from lifeguard.stack.safe_paths import UnsafePathError, owned_dir
from lifeguard.stack.stack import STACK_ERRORS

_ERRORS: tuple[type[Exception], ...] = (*STACK_ERRORS, InvokerError, ExperimentError, psycopg.Error, ValueError)


def _levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--levels must be comma-separated whole numbers, got {text!r}") from None
    if not levels:
        raise argparse.ArgumentTypeError("--levels needs at least one number")
    return levels


def _numbers(flag: str) -> Callable[[str], tuple[int, ...]]:
    """A parser of ``N,N,...`` for ``flag``."""
    def parse(text: str) -> tuple[int, ...]:
        try:
            numbers = tuple(int(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be comma-separated whole numbers, got {text!r}") from None
        if not numbers:
            raise argparse.ArgumentTypeError(f"{flag} needs at least one number")
        return numbers
    return parse


def _add_number(
    parser: argparse.ArgumentParser, flag: str, kind: type[int | float], default: float, help: str | None = None
) -> None:
    """``--FLAG N`` (``int``: a count) or ``--FLAG S`` (``float``: seconds); its help names the default."""
    parser.add_argument(flag, type=kind, default=default, metavar="N" if kind is int else "S",
                        help=None if help is None else f"{help} (default {default:g})")


def configure(parser: argparse.ArgumentParser) -> None:
    defaults = BenchSettings()
    parser.description = __doc__.split("\n\n", 1)[1] if __doc__ else None
    parser.add_argument("--out", type=Path, default=Path("docs"), metavar="DIR",
                        help="where to write benchmarks.json/.md and the chart (default: docs)")
    parser.add_argument("--levels", type=_levels, default=defaults.levels, metavar="N,N,...",
                        help="pooled spike sizes, tried in order until one fails (default: "
                        + ",".join(str(n) for n in defaults.levels) + ")")
    _add_number(parser, "--direct-instances", int, defaults.direct_instances, "spike size straight at Postgres")
    _add_number(parser, "--max-connections", int, defaults.max_connections, "Postgres max_connections")
    _add_number(parser, "--workers", int, defaults.workers, "worker processes hosting instances")
    _add_number(parser, "--threads", int, defaults.threads, "cold starts in flight per worker")
    _add_number(parser, "--churn-clients", int, defaults.churn_clients)
    _add_number(parser, "--churn-seconds", float, defaults.churn_seconds, "churn time per path")
    _add_number(parser, "--churn-rounds", int, defaults.churn_rounds,
                "alternating direct/pooled blocks the churn time is split into")
    _add_number(parser, "--warm-clients", int, defaults.warm_clients)
    _add_number(parser, "--warm-seconds", float, defaults.warm_seconds)
    _add_number(parser, "--reuseport-processes", int, defaults.reuseport_processes,
                "PgBouncer processes for the so_reuseport variant; 1 skips it")
    parser.add_argument("--no-compare", action="store_true",
                        help="skip the runs on the distribution's own PgBouncer (Debian 12: 1.18)")
    cap = defaults.capacity
    parser.add_argument("--only", choices=("all", "capacity", "cold-start"), default="all",
                        help="capacity: only the headline (PgBouncer CPU per login and per warm query); cold-start: "
                        "only the function's side of a cold start; either merged into the report in --out "
                        "(default: all)")
    _add_number(parser, "--capacity-rounds", int, cap.rounds, "repetitions of every capacity variant")
    _add_number(parser, "--capacity-login-seconds", float, cap.login_seconds, "cold starts per variant and round")
    _add_number(parser, "--capacity-warm-seconds", float, cap.warm_seconds, "warm queries per variant and round")
    parser.add_argument("--capacity-variants", type=variants_from_text, default=cap.variants, metavar="K,K,...",
                        help="capacity variants to measure besides 'shipped', or 'all': " + ", ".join(VARIANT_KEYS))
    parser.add_argument("--images", action="store_true",
                        help="with --only capacity: also measure the shipped pooler image as its task runs it "
                             "(root: starts a private Docker engine)")
    cold = defaults.cold_start
    _add_number(parser, "--cold-start-runs", int, cold.runs,
                "cold instances per memory size, path, iteration count and mode")
    parser.add_argument("--cold-start-memory", type=_numbers("--cold-start-memory"), default=cold.memory_mb,
                        metavar="MB,MB,...", help="Lambda memory sizes whose CPU share caps each cold instance "
                        "(1769 MB = 1 vCPU; default " + ",".join(str(n) for n in cold.memory_mb) + ")")
    parser.add_argument("--cold-start-periods", type=_numbers("--cold-start-periods"), default=cold.periods_ms,
                        metavar="MS,MS,...", help="CFS periods the cap slices time in (default "
                        + ",".join(str(n) for n in cold.periods_ms) + ")")
    parser.add_argument("--cold-start-iterations", type=_numbers("--cold-start-iterations"), default=cold.iterations,
                        metavar="BASE,OTHER", help="the two SCRAM iteration counts compared (default "
                        + ",".join(str(n) for n in cold.iterations) + ")")
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
        capacity=CapacitySettings(rounds=args.capacity_rounds, login_seconds=args.capacity_login_seconds,
                                  warm_seconds=args.capacity_warm_seconds, variants=tuple(args.capacity_variants),
                                  images=args.images),
        cold_start=coldstart.ColdStartSettings(runs=args.cold_start_runs, memory_mb=tuple(args.cold_start_memory),
                                               iterations=tuple(args.cold_start_iterations),
                                               periods_ms=tuple(args.cold_start_periods)),
    )
    if args.state_dir is not None:
        root = args.state_dir.absolute()
        try:
            # Ours alone, or made now: root must not work in (or chmod) a folder another user made first.
            # 0711: the capacity variants' PgBouncer runs in a folder below it as the postgres user.
            owned_dir(root, 0o711)
        except UnsafePathError as exc:
            _say(f"lifeguard bench: error: {exc}")
            return 1
        cleanup = False
    else:
        # Under /var/tmp, not the cwd: the postgres user must be able to reach it. mkdtemp's name is
        # unpredictable and the folder is ours, so no other user can have made it first.
        root = Path(tempfile.mkdtemp(prefix="lifeguard-bench-", dir="/var/tmp"))
        cleanup = True
    root.chmod(0o711)
    try:
        only = {"capacity": run_capacity, "cold-start": run_cold_start}.get(args.only, run_bench)
        results = only(settings, root, _say)
    except _ERRORS as exc:
        _say(f"lifeguard bench: error: {exc}")
        return 1
    finally:
        if cleanup:
            shutil.rmtree(root, ignore_errors=True)
    command = "lifeguard bench" + _non_default_args(args)
    if args.only == "capacity":
        return _write_capacity(results, args.out, command)
    if args.only == "cold-start":
        return _merge(results, "cold_start", {}, coldstart.line(results), args.out, command)
    written = report.write(results, args.out, command=command)
    for kind, path in written.items():
        _say(f"{kind}: {path}")
    targets = results["targets"]
    _say("targets: " + ", ".join(f"{name} {'met' if t['met'] else 'missed'}" for name, t in targets.items()))
    return 0


def _write_capacity(capacity: dict[str, object], out: Path, command: str) -> int:
    return _merge(capacity, "capacity", capacity_targets(capacity), capacity_line(capacity), out, command)


def _merge(section: dict[str, object], key: str, targets: dict[str, object], summary: str, out: Path,
           command: str) -> int:
    """Put a one-section run into the full report already in ``out`` (its other sections stay as measured)."""
    previous = out / "benchmarks.json"
    if not previous.exists():
        _say(f"lifeguard bench: error: --only {key.replace('_', '-')} adds to {previous}, which does not exist; run "
             "the full `lifeguard bench` first")
        return 1
    results = json.loads(previous.read_text())
    section["command"] = command
    results[key] = section
    results["targets"] = {**results.get("targets", {}), **targets}
    try:
        text = report.render_markdown(results, results.get("chart", "benchmarks-spike.png"))
    except KeyError as exc:
        _say(f"lifeguard bench: error: {previous} is from an older `lifeguard bench` (no {exc} in it); run the "
             "full `lifeguard bench` instead")
        return 1
    previous.write_text(json.dumps(results, indent=2) + "\n")
    markdown = out / "benchmarks.md"
    markdown.write_text(text)
    _say(f"json: {previous}\nmarkdown: {markdown}")
    _say(summary)
    return 0


def _non_default_args(args: argparse.Namespace) -> str:
    defaults = BenchSettings()
    parts = [f"--out {args.out}"]
    if args.only != "all":
        parts.append(f"--only {args.only}")
    if args.images:
        parts.append("--images")
    cap = defaults.capacity
    for name in ("rounds", "login_seconds", "warm_seconds"):
        if getattr(args, f"capacity_{name}") != getattr(cap, name):
            parts.append(f"--capacity-{name.replace('_', '-')} {getattr(args, f'capacity_{name}')}")
    if tuple(args.capacity_variants) == VARIANT_KEYS:
        parts.append("--capacity-variants all")
    elif tuple(args.capacity_variants) != cap.variants:
        parts.append("--capacity-variants " + ",".join(args.capacity_variants))
    cold = defaults.cold_start
    if args.cold_start_runs != cold.runs:
        parts.append(f"--cold-start-runs {args.cold_start_runs}")
    for name, field in (("memory", "memory_mb"), ("periods", "periods_ms"), ("iterations", "iterations")):
        value = tuple(getattr(args, f"cold_start_{name}"))
        if value != getattr(cold, field):
            parts.append(f"--cold-start-{name} " + ",".join(str(n) for n in value))
    for name in ("direct_instances", "max_connections", "workers", "threads", "churn_clients", "churn_seconds",
                 "churn_rounds", "warm_clients", "warm_seconds", "reuseport_processes"):
        if getattr(args, name) != getattr(defaults, name):
            parts.append(f"--{name.replace('_', '-')} {getattr(args, name)}")
    if tuple(args.levels) != defaults.levels:
        parts.append("--levels " + ",".join(str(n) for n in args.levels))
    return " " + " ".join(parts)
