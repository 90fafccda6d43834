"""The function's side of a cold start, at the CPU a Lambda function of each memory size gets.

Every run is a fresh process (:mod:`lifeguard.bench.cold_instance`), one cold function instance,
in a cgroup capped at the CPU share Lambda gives a function of that memory
(:mod:`lifeguard.bench.cpucap`; 128 MB is 0.072 of a vCPU), through the pooled URL as shipped
(TLS to PgBouncer, ``verify-full``) and straight at Postgres as the same application role. Each
run times the function's own client from its import to its first row (``client``), and a twin run
times libpq's steps of the same login (``phases``: TCP, TLS, SCRAM, session start, first query).

The application role's verifier is switched between the iteration counts compared
(:func:`lifeguard.bench.experiments.use_iterations`: Postgres and PgBouncer together) in
alternating blocks, every round flipping the order, so each count sees the same stretch of the
machine's background load; the stack's own count is restored at the end. Only the client is capped:
PgBouncer and Postgres run on the machine's cores, as on AWS they run on their own.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from lambdas.contract import READ_INVOICES
from lifeguard.bench.cpucap import LAMBDA_MB_PER_VCPU, MIN_QUOTA_US, PERIOD_US, CpuCap, cpu_share, make_caps
from lifeguard.bench.experiments import use_iterations
from lifeguard.load.invoker import worker_env
from lifeguard.stack.stack import LocalStack, StackConfig
from pgbouncer.scram import APP_ITERATIONS, ITERATIONS, VerifierError, check_app_iterations
from redaction import Redactor

Say = Callable[[str], None]
MODES = ("client", "phases")
PATHS = ("pooled", "direct")
PHASES = ("tcp", "tls", "scram", "session", "query")
RUN_TIMEOUT_S = 120
UNCAPPED = 0
"""The memory label of runs on a whole core, when no cgroup could be made."""
MIN_MEMORY_MB, MAX_MEMORY_MB = 128, 10240
"""Lambda's memory range."""


@dataclass(frozen=True)
class ColdStartSettings:
    runs: int = 7
    """Cold instances per memory size, path, iteration count and mode."""
    memory_mb: tuple[int, ...] = (128, 512, LAMBDA_MB_PER_VCPU)
    iterations: tuple[int, ...] = (ITERATIONS, APP_ITERATIONS)
    """Verifier iteration counts compared; the first is the baseline of the ratio."""
    periods_ms: tuple[int, ...] = (PERIOD_US // 1000, 20)
    """CFS periods the cap slices time in: the kernel's default 100 ms, where a step that overruns the
    quota waits out the period (coarse), and 20 ms (near the 14 ms floor a 0.072 share allows). How
    Lambda slices is not published; the two bracket it."""

    def check(self) -> None:
        if self.runs < 1:
            raise ValueError("--cold-start-runs must be at least 1")
        if not self.memory_mb or any(not MIN_MEMORY_MB <= mb <= MAX_MEMORY_MB for mb in self.memory_mb):
            raise ValueError(f"--cold-start-memory must be Lambda memory sizes from {MIN_MEMORY_MB} to "
                             f"{MAX_MEMORY_MB} MB")
        smallest = min(self.memory_mb, default=MIN_MEMORY_MB)
        if not self.periods_ms or any(cpu_share(smallest) * p * 1000 < MIN_QUOTA_US or p > 1000
                                      for p in self.periods_ms):
            raise ValueError(f"--cold-start-periods must be ms from the one that gives {smallest} MB's share a "
                             f"quota of at least {MIN_QUOTA_US // 1000} ms (the kernel's floor) up to 1000")
        if len(self.iterations) != 2 or len(set(self.iterations)) != 2:
            raise ValueError("--cold-start-iterations must be two different counts: the baseline, then the other")
        for count in self.iterations:
            try:
                check_app_iterations(count, "--cold-start-iterations")
            except VerifierError as exc:
                raise ValueError(str(exc)) from None


def _run_one(url: str, client_env: dict[str, str], mode: str, cap: CpuCap | None,
             redact: Redactor) -> dict[str, Any]:
    env = worker_env(url, READ_INVOICES.name, client=client_env)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "lifeguard.bench.cold_instance", mode], env=env, capture_output=True, text=True,
            timeout=RUN_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL,
            # Joins the cgroup between fork and exec; the bench runs no other threads that could hold a lock then.
            preexec_fn=cap.join if cap else None,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"no first row within {RUN_TIMEOUT_S} s"}
    lines = result.stdout.strip().splitlines()
    try:
        report: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        report = {}
    if result.returncode != 0 or "first_row_ms" not in report:
        report = {"error": redact(str(report.get("error") or result.stderr.strip()[-300:] or
                                      f"exit code {result.returncode}"))}
    return report


def _spread(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "median": None, "min": None, "max": None}
    return {"n": len(values), "median": round(statistics.median(values), 2), "min": round(min(values), 2),
            "max": round(max(values), 2)}


def measure(stack: LocalStack, config: StackConfig, settings: ColdStartSettings, say: Say) -> dict[str, Any]:
    settings.check()
    shapes = [(mb, period) for period in settings.periods_ms for mb in settings.memory_mb]
    caps, uncapped_why = make_caps([(cpu_share(mb), period * 1000) for mb, period in shapes],
                                   f"lifeguard-bench-{os.getpid()}")
    sizes: list[tuple[int, int, CpuCap | None]] = (
        [(mb, period, cap) for (mb, period), cap in zip(shapes, caps, strict=True)] if caps
        else [(UNCAPPED, 0, None)])
    if uncapped_why:
        say(f"[cold start] {uncapped_why}")
    urls = {"pooled": stack.pooled_url(config), "direct": stack.app_direct_url(config)}
    client_env = stack.client_env(config)
    redact = Redactor(list(urls.values()), [stack.app_password(), stack.owner_password()])
    runs: dict[str, list[dict[str, Any]]] = {}
    try:
        for round_ in range(settings.runs):
            counts = settings.iterations if round_ % 2 == 0 else settings.iterations[::-1]
            for count in counts:
                use_iterations(stack, config, count)
                for mb, period, cap in sizes:
                    for path, url in urls.items():
                        # The pool keeps server connections: as in steady state, a pooled cold start
                        # finds one idle and pays only its own login. One untimed login fills it.
                        with psycopg.connect(url, prepare_threshold=None, connect_timeout=10) as conn:
                            conn.execute("SELECT 1")
                        for mode in MODES:
                            runs.setdefault(f"{count}/{mb}/{period}/{path}/{mode}", []).append(
                                _run_one(url, client_env, mode, cap, redact))
            say(f"[cold start] round {round_ + 1} of {settings.runs} done")
    finally:
        use_iterations(stack, config, config.scram_iterations)
        for cap in caps:
            cap.remove()
    out = _summarize(runs, settings, [(mb, period) for mb, period, _ in sizes])
    out["cgroup"] = ({"version": caps[0].version,
                      "quota_us": {_shape(mb, period): cap.quota_us for mb, period, cap in sizes if cap}}
                     if caps else {"uncapped": uncapped_why})
    return out


def _summarize(runs: dict[str, list[dict[str, Any]]], settings: ColdStartSettings,
               sizes: list[tuple[int, int]]) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    errors: dict[str, int] = {}
    for key, reports in runs.items():
        count, mb, period, path, mode = key.split("/")
        ok = [r for r in reports if "error" not in r]
        for r in reports:
            if "error" in r:
                errors[r["error"]] = errors.get(r["error"], 0) + 1
        metrics = ("import", "connect", "first_row") if mode == "client" else ("import", *PHASES, "first_row")
        results.append({
            "iterations": int(count), "memory_mb": int(mb), "period_ms": int(period), "path": path, "mode": mode,
            "runs": len(reports), "failed": len(reports) - len(ok),
            **{f"{m}_ms": _spread([float(r[f"{m}_ms"]) for r in ok]) for m in metrics},
        })
    baseline, other = settings.iterations
    return {
        "settings": {"runs": settings.runs, "memory_mb": list(settings.memory_mb),
                     "iterations": list(settings.iterations), "periods_ms": list(settings.periods_ms)},
        "results": results,
        "errors": errors,
        "ratios": ratios(results, baseline, other, sizes),
    }


def _shape(mb: int, period_ms: int) -> str:
    """``128/100``: the key of one cap (memory size, period) in the ratios and quotas."""
    return f"{mb}/{period_ms}"


def median(results: list[dict[str, Any]], iterations: int, shape: tuple[int, int], path: str,
           metric: str = "first_row") -> float | None:
    """The function's own client's median ``metric`` (ms), or ``None`` if nothing was measured."""
    for r in results:
        if (r["iterations"], (r["memory_mb"], r["period_ms"]), r["path"], r["mode"]) == \
                (iterations, shape, path, "client"):
            value = r[f"{metric}_ms"]["median"]
            return None if value is None else float(value)
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def ratios(results: list[dict[str, Any]], baseline: int, other: int, sizes: list[tuple[int, int]]) -> dict[str, Any]:
    """Per memory size: time to first row with ``other`` / ``baseline`` (each path), pooled / direct (each count)."""
    out: dict[str, Any] = {}
    for shape in sizes:
        out[_shape(*shape)] = {
            **{f"{other}_vs_{baseline}_{path}": _ratio(median(results, other, shape, path),
                                                      median(results, baseline, shape, path)) for path in PATHS},
            **{f"pooled_vs_direct_{count}": _ratio(median(results, count, shape, "pooled"),
                                                  median(results, count, shape, "direct"))
               for count in (baseline, other)},
            # The same after the import (which no iteration count or path changes): the login itself.
            **{f"connect_{other}_vs_{baseline}_{path}": _ratio(median(results, other, shape, path, "connect"),
                                                              median(results, baseline, shape, path, "connect"))
               for path in PATHS},
            **{f"connect_pooled_vs_direct_{count}": _ratio(median(results, count, shape, "pooled", "connect"),
                                                          median(results, count, shape, "direct", "connect"))
               for count in (baseline, other)},
        }
    return out


def line(c: dict[str, Any]) -> str:
    """One line for the terminal: the smallest size's ratios."""
    baseline, other = c["settings"]["iterations"]
    shape, r = next(iter(c["ratios"].items()))
    mb, period = shape.split("/")
    where = f"{mb} MB, {period} ms period" if mb != str(UNCAPPED) else "uncapped"
    return (f"[cold start] {where}: time to first row with {other} iterations / {baseline}: "
            f"{r[f'{other}_vs_{baseline}_pooled']} pooled, {r[f'{other}_vs_{baseline}_direct']} direct "
            f"(connect alone {r[f'connect_{other}_vs_{baseline}_pooled']}, "
            f"{r[f'connect_{other}_vs_{baseline}_direct']}); pooled / direct: {r[f'pooled_vs_direct_{other}']} "
            f"({other}), {r[f'pooled_vs_direct_{baseline}']} ({baseline})")
