"""The cold-start section of docs/benchmarks.md, rendered from ``benchmarks.json``'s ``cold_start``."""

from __future__ import annotations

from typing import Any

from lifeguard.bench.coldstart import PHASES, UNCAPPED
from lifeguard.bench.cpucap import LAMBDA_MB_PER_VCPU


def _size(mb: int, period_ms: int) -> str:
    return "uncapped" if mb == UNCAPPED else f"{mb} MB ({mb / LAMBDA_MB_PER_VCPU:.3f} vCPU), {period_ms} ms"


def _cell(spread: dict[str, Any], digits: int = 1) -> str:
    if spread["median"] is None:
        return "-"
    return f"{spread['median']:.{digits}f} ({spread['min']:.{digits}f} to {spread['max']:.{digits}f})"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def section(r: dict[str, Any]) -> list[str]:
    c = r.get("cold_start")
    if not c:
        return []
    s = c["settings"]
    baseline, other = s["iterations"]
    machine = c.get("machine") or r.get("machine", {})
    cgroup = c["cgroup"]
    if "uncapped" in cgroup:
        how = f"No cgroup could be made here ({cgroup['uncapped']}), so every instance ran on a whole core."
    else:
        periods = " and ".join(f"{p} ms" for p in s.get("periods_ms", []))
        how = (f"Each instance ran in a cgroup v{cgroup['version']} CPU cap of its memory size's share of a vCPU "
               f"(Lambda: 1,769 MB = 1 vCPU), once with each CFS period ({periods}): the cap lets a process run "
               "its quota (share x period) and then stops it until the period ends, so the period sets how "
               "coarsely time is sliced.")
    lines = [
        "## Cold starts: the function's side",
        "",
        *([f"From a separate run (`{c['command']}`) on {machine.get('cpu')}, {machine.get('cores')} cores, "
           f"{machine.get('os')}, kernel {machine.get('kernel')}; Python {machine.get('python')}, psycopg "
           f"{machine.get('psycopg')}, libpq {machine.get('libpq')}, {machine.get('openssl')}. Load average "
           f"{machine.get('load_average_at_start')} at start, {machine.get('load_average_at_end', '-')} at end: other "
           "work (parallel test and benchmark runs) shared the machine, which moves absolute times more than "
           "the ratios." if c.get("command") else ""]),
        "",
        "Fresh processes, each one cold instance of the sample functions' own client (`lambdas/db.py`, from",
        f"its import to its first row), {s['runs']} per cell, through the pooled URL as shipped (TLS to",
        "PgBouncer, `verify-full`) and straight at Postgres as the same application role, with the role's",
        f"SCRAM verifier at {baseline:,} iterations (Postgres' default) and at {other:,}, switched in Postgres and",
        f"PgBouncer together in alternating blocks. {how} Only the client is capped: PgBouncer and Postgres",
        "run on the machine's cores. Medians, with the range (min to max) in brackets, in milliseconds.",
        "",
        "**Ratios** (medians of the same run; below 1 is faster). *First row* counts from before the import;",
        "*connect* from the import's end, i.e. the login and the first transaction alone:",
        "",
        f"| memory, period | first row {other} ÷ {baseline} (pooled / direct) | connect {other} ÷ {baseline} "
        f"(pooled / direct) | first row pooled ÷ direct ({other} / {baseline}) | connect pooled ÷ direct "
        f"({other} / {baseline}) |",
        "|---|---|---|---|---|",
    ]
    for shape, q in c["ratios"].items():
        mb, period = (int(part) for part in shape.split("/"))
        lines.append(
            f"| {_size(mb, period)} | {_x(q[f'{other}_vs_{baseline}_pooled'])} / "
            f"{_x(q[f'{other}_vs_{baseline}_direct'])}"
            f" | {_x(q[f'connect_{other}_vs_{baseline}_pooled'])} / {_x(q[f'connect_{other}_vs_{baseline}_direct'])}"
            f" | {_x(q[f'pooled_vs_direct_{other}'])} / {_x(q[f'pooled_vs_direct_{baseline}'])}"
            f" | {_x(q[f'connect_pooled_vs_direct_{other}'])} / {_x(q[f'connect_pooled_vs_direct_{baseline}'])} |"
        )
    rows = sorted(c["results"], key=lambda x: (-x["period_ms"], x["memory_mb"], x["path"] != "pooled",
                                              x["iterations"] != baseline))
    lines += [
        "",
        "**The function's client** (import, then connect and first row):",
        "",
        "| memory, period | path | iterations | import | connect | first row | failed |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {_size(x['memory_mb'], x['period_ms'])} | {x['path']} | {x['iterations']:,} | "
              f"{_cell(x['import_ms'], 0)} | {_cell(x['connect_ms'])} | {_cell(x['first_row_ms'], 0)} | {x['failed']} |"
              for x in rows if x["mode"] == "client"]
    lines += [
        "",
        "**The login's phases** (libpq's own state machine, timed where its status changes: TCP until the",
        "socket is writable; TLS the SSLRequest and handshake; SCRAM the startup packet and SASL exchange until",
        "AuthenticationOk; session what follows until ReadyForQuery; query `SELECT 1` to its row):",
        "",
        "| memory, period | path | iterations | " + " | ".join(PHASES) + " |",
        "|---|---|---|" + "---|" * len(PHASES),
    ]
    lines += [f"| {_size(x['memory_mb'], x['period_ms'])} | {x['path']} | {x['iterations']:,} | "
              + " | ".join(_cell(x[f"{p}_ms"], 2) for p in PHASES) + " |"
              for x in rows if x["mode"] == "phases"]
    if c.get("errors"):
        lines += ["", "Failed runs: " + "; ".join(f"{n} x {e}" for e, n in c["errors"].items())]
    lines += [
        "",
        "Absolute times do not carry across machines (CPU model, load, and how the cap slices time: CFS",
        "throttles in whole periods, so a step that crosses the end of a period's quota waits for the next",
        "one; Lambda's own slicing is not published). The ratios, taken in one run on one machine, are what",
        "this section is for.",
        "",
    ]
    return lines
