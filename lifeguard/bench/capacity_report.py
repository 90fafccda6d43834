"""The capacity headline of ``docs/benchmarks.md``, rendered from the measured figures.

Every number is computed from ``results["capacity"]``; the only fixed words are what each lever
does inside PgBouncer, and the verdicts come from the figures (a lever "helps" only when its
whole spread lies below the shipped one's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lifeguard.bench.capacity import SHIPPED, headline, summarize
from lifeguard.bench.sizing import STACK_DEFAULTS, PoolerCost, Spread, task_capacity, tasks_needed

# Levers that may measure lower and still stay out of the shipped settings, and why.
NOT_KEPT = {
    "server_tls_off": "not taken: `server_tls_sslmode=verify-full` is what authenticates RDS and encrypts the"
                      " hop through the VPC; its cost is the price of that.",
    "no_tls": "not an option: the NLB path carries passwords.",
}

# Example loads for the sizing table: a steady API, a burst of new instances, a busy fleet.
EXAMPLE_LOADS = ((100, 2_000), (500, 10_000), (2_000, 50_000))


def _spread(s: Mapping[str, Any], unit: str, digits: int) -> str:
    return f"{s['median']:.{digits}f} {unit} ({s['low']:.{digits}f}-{s['high']:.{digits}f})"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _change(percent: float) -> str:
    return "-" if percent == 0 else f"{percent:+.0f}%"


def verdict(entry: Mapping[str, Any], shipped: Mapping[str, Any], figure: str) -> str:
    """``lower``/``higher`` when the two spreads do not overlap, else ``same within the spread``."""
    mine, ref = entry[figure], shipped[figure]
    if mine["high"] < ref["low"]:
        return "lower"
    if mine["low"] > ref["high"]:
        return "higher"
    return "same within the spread"


def section(r: Mapping[str, Any], defaults: Mapping[str, int] | None = None) -> list[str]:
    c = r.get("capacity")
    if not c:
        return []
    summary = summarize(c)
    head = headline(summary)
    s = c["settings"]
    lines = [
        "## Headline: PgBouncer CPU per login and per warm query, as shipped",
        "",
        f"PgBouncer {c['pgbouncer']}'s own CPU, read from `/proc/PID/task/*/schedstat` (the scheduler's"
        " nanosecond clock) around each measurement, so other work on the machine slows the run without"
        f" adding to the figure. {c['started_at']}, {c['duration_s']:.0f} s; load average"
        f" {c['load_average_at_start']} at start, {c['load_average_after_rounds'][-1]} at the end"
        " (2 cores shared with other work). Each configuration is its own PgBouncer beside the others,"
        f" measured {s['rounds']} times in rotating order: the median, then min-max.",
        "",
        f"- **per login**: the sample client's cold start (a new `lambdas.db.Database` runs `read_invoices`"
        f" and closes: TCP, TLS, SCRAM, one transaction), {s['login_clients']} at a time for"
        f" {s['login_seconds']:g} s;",
        f"- **per warm query**: `SELECT 1` on {s['warm_clients']} kept connections for {s['warm_seconds']:g} s,"
        " prepared as the client prepares behind this pooler (`max_prepared_statements` > 0).",
        "",
        "Server connections are opened before the rounds, as on a running pooler: a client login",
        "reuses one (`server_lifetime` 3600 s), so the server-side TLS handshake is not in the login",
        "figure, while its encryption of every message is in both.",
        "",
        "The ratios divide by floors measured in the same run, so they carry from one machine to another"
        " where the absolute times do not: a login by the server CPU of OpenSSL's bare TLS 1.3 handshake"
        " (below), a warm query by Postgres' own CPU per `SELECT 1` (its backends over the same warm phase).",
        "",
        "| configuration | PgBouncer | CPU per login | ÷ TLS handshake | cold starts/s per vCPU |"
        " per warm query | ÷ Postgres' own | warm queries/s per vCPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, entry in summary.items():
        if entry["group"] == "experiment":
            continue
        name = f"**{entry['label']}**" if key == SHIPPED else entry["label"]
        lines.append(f"| {name} | {entry['release']} | {_spread(entry['login_ms'], 'ms', 3)} |"
                     f" {_ratio(entry['login_per_tls_handshake'])} | {entry['cold_starts_per_vcpu']:,} | "
                     f"{_spread(entry['query_us'], 'us', 1)} | {_ratio(entry['query_per_postgres_query'])} |"
                     f" {entry['queries_per_vcpu']:,} |")
    failed = sum(e["failed_logins"] for e in summary.values())
    lines += [
        "",
        "| target (as shipped) | measured | met? |",
        "|---|---|---|",
        f"| <= {head['login_target_ms']} ms PgBouncer CPU per login | {head['login_ms']:.3f} ms | "
        f"{'met' if head['login_met'] else '**missed**'} |",
        f"| <= {head['query_target_us']:g} us PgBouncer CPU per warm query | {head['query_us']:.1f} us | "
        f"{'met' if head['query_met'] else '**missed**'} |",
        "",
        f"Failed logins over all rows: {failed}.",
        "",
    ]
    lines += _image_text(c.get("image"))
    lines += _baselines_text(summary)
    lines += _floor_text(c, summary, head)
    lines += _experiments(summary)
    lines += _sizing(head, defaults if defaults is not None else STACK_DEFAULTS)
    return lines


def _image_text(image: Mapping[str, Any] | None) -> list[str]:
    """The shipped image as its task runs it, with its own floors (``--images``)."""
    if not image:
        return []
    entry = summarize(image)["image"]
    tls = image["tls_handshake"]
    floor = Spread.of(tls["ms_per_handshake"]["tickets_2"])
    return [
        f"**Inside the shipped image** (`{image['image']}`, PgBouncer {image['pgbouncer']}, run as its task"
        " definition says: the task's settings, the verifier, a read-only root; `lifeguard bench --only capacity"
        f" --images`, {image['started_at']}, load average {image['load_average_at_start']} at start), with"
        " floors measured in the same run and in the same place: the image's own"
        f" {' '.join(tls['openssl'].split()[:2])} for the handshake ({floor.median:.3f} ms), the stack's"
        " Postgres for `SELECT 1`:",
        "",
        "| | CPU per login | ÷ TLS handshake | per warm query | ÷ Postgres' own |",
        "|---|---|---|---|---|",
        f"| PgBouncer in the image | {_spread(entry['login_ms'], 'ms', 3)} | {_ratio(entry['login_per_tls_handshake'])}"
        f" | {_spread(entry['query_us'], 'us', 1)} | {_ratio(entry['query_per_postgres_query'])} |",
        "",
        f"Postgres' own CPU per `SELECT 1` there: {entry['postgres_us_per_query']:.1f} us. Failed logins:"
        f" {entry['failed_logins']}.",
        "",
    ]


def _baselines_text(summary: Mapping[str, Any]) -> list[str]:
    shipped = summary[SHIPPED]
    out = []
    plain = summary.get("plain_password")
    if plain and verdict(plain, shipped, "login_ms") == "higher":
        out.append(
            f"The plain password in `auth_file` costs {plain['login_ms']['median']:.2f} ms per login"
            f" ({_change(plain['login_change_percent'])} against the verifier): PgBouncer derives the SCRAM keys"
            " from it for every login (4096 PBKDF2-SHA-256 iterations), which the shipped verifier spares.")
    elif plain:
        out.append(
            f"The plain password in `auth_file` costs {plain['login_ms']['median']:.2f} ms per login"
            f" ({_change(plain['login_change_percent'])} against the verifier, {verdict(plain, shipped, 'login_ms')}):"
            f" PgBouncer {shipped['release']} does not derive the SCRAM keys again for every login. The verifier"
            " stays for what it was chosen for besides speed: the pooler never holds the application role's"
            " password ([roles.md](roles.md)).")
    old, old_plain = summary.get("pgbouncer_1_24_1"), summary.get("pgbouncer_1_24_1_plain_password")
    if old and old_plain:
        new_plain = (f"; on {shipped['release']} the plain password costs {plain['login_ms']['median']:.2f} ms,"
                     f" {plain['login_ms']['median'] / shipped['login_ms']['median']:.1f}x the verifier's"
                     if plain else "")
        out.append(
            f"Before the upgrade, on {old['release']} with the same settings: {old['login_ms']['median']:.2f} ms"
            f" per login with the verifier, {old_plain['login_ms']['median']:.2f} ms with the plain password"
            f" ({old_plain['login_ms']['median'] / old['login_ms']['median']:.1f}x){new_plain}"
            " (1.25 reworked ad hoc SCRAM authentication). Warm queries:"
            f" {old['query_us']['median']:.1f} us on {old['release']} against {shipped['query_us']['median']:.1f} us.")
    no_tls = summary.get("no_tls")
    if no_tls:
        tls_login = shipped["login_ms"]["median"] - no_tls["login_ms"]["median"]
        tls_query = shipped["query_us"]["median"] - no_tls["query_us"]["median"]
        out.append(
            f"TLS on both sides costs {tls_login:.3f} ms of each login and {tls_query:.1f} us of each warm query"
            f" (shipped minus no TLS); without TLS a login costs {no_tls['login_ms']['median']:.3f} ms and a warm"
            f" query {no_tls['query_us']['median']:.1f} us: PgBouncer's own protocol work.")
    server_off = summary.get("server_tls_off")
    if server_off and no_tls:
        server_login = shipped["login_ms"]["median"] - server_off["login_ms"]["median"]
        server_query = shipped["query_us"]["median"] - server_off["query_us"]["median"]
        client_login = server_off["login_ms"]["median"] - no_tls["login_ms"]["median"]
        client_query = server_off["query_us"]["median"] - no_tls["query_us"]["median"]
        out.append(
            f"Split by side: client TLS {_ms_or_none(client_login)} per login (the handshake) and"
            f" {_us_or_none(client_query)} per query; `server_tls` {_ms_or_none(server_login)} per login and"
            f" {_us_or_none(server_query)} per query (it encrypts each message to Postgres; its handshake is once"
            " per server connection). A difference at or below zero is within the rounds' spread.")
    return [line for text in out for line in (text, "")]


def _ms_or_none(value: float) -> str:
    return f"{value:.3f} ms" if value > 0 else "nothing measurable"


def _us_or_none(value: float) -> str:
    return f"{value:.1f} us" if value > 0 else "nothing measurable"


def _floor_text(c: Mapping[str, Any], summary: Mapping[str, Any], head: Mapping[str, Any]) -> list[str]:
    """OpenSSL's handshake alone, and what stands between the shipped figures and their targets."""
    tls = c.get("tls_handshake")
    no_tls = summary.get("no_tls")
    if not tls or not no_tls:
        return []
    with_tickets = Spread.of(tls["ms_per_handshake"]["tickets_2"])
    without = Spread.of(tls["ms_per_handshake"]["tickets_0"])
    floor = with_tickets.median + no_tls["login_ms"]["median"]
    lines = [
        f"The floor under client TLS: {' '.join(tls['openssl'].split()[:2])}'s own TLS 1.3 handshake, server side"
        " (`openssl s_server` with the certificate PgBouncer used, X25519 key exchange, `openssl s_time -new`"
        f" as the client, CPU from `/proc`), costs {with_tickets.median:.3f} ms"
        f" ({with_tickets.low:.3f}-{with_tickets.high:.3f}) with"
        " OpenSSL's default two TLS 1.3 session tickets per connection, which PgBouncer sends and has no setting"
        f" for, and {without.median:.3f} ms ({without.low:.3f}-{without.high:.3f}) without them. A new function"
        " instance cannot resume a session (libpq keeps none across processes), so tickets are the only part of"
        " the handshake it does not need, and they are a small part of it. The floor runs this machine's"
        f" `openssl` ({' '.join(tls['openssl'].split()[:2])}); PgBouncer {c['pgbouncer']} runs with the OpenSSL"
        " it was installed with (Debian 13's 3.5, through Debian 13's loader).",
        "",
    ]
    if not head["login_met"]:
        lines += [
            f"**What stands in the way of {head['login_target_ms']} ms per login as shipped:** the handshake"
            f" alone ({with_tickets.median:.3f} ms) plus PgBouncer's own work without TLS"
            f" ({no_tls['login_ms']['median']:.3f} ms) make about {floor:.2f} ms on this machine under this load."
            " What lowers it beyond that is outside PgBouncer's settings: a pooler core that is not shared with"
            f" other work (load average"
            f" {c['load_average_at_start'][0]} on 2 cores here; CPU time per operation grows with cache contention,"
            " and earlier runs at lower load read 0.65-0.73 ms per login with the verifier and client TLS, issue"
            " #19). Dropping client TLS would meet it and is not an option: the NLB path carries passwords.",
            "",
        ]
    if not head["query_met"]:
        server_off = summary.get("server_tls_off")
        split = ""
        if server_off:
            split = (f"; `server_tls` alone is {head['query_us'] - server_off['query_us']['median']:.1f} us of it,"
                     " the encryption of every message to and from Postgres, which the stack keeps (RDS over the"
                     " VPC, `verify-full`)")
        lines += [
            f"**What stands in the way of {head['query_target_us']:g} us per warm query as shipped:** without TLS"
            f" PgBouncer itself needs {no_tls['query_us']['median']:.1f} us per query here; TLS on both sides adds"
            f" {head['query_us'] - no_tls['query_us']['median']:.1f} us{split}. Each warm query is two TLS"
            " records decrypted and two encrypted, plus the event-loop wake-ups, on a core shared with the load.",
            "",
        ]
    return lines


def _experiments(summary: Mapping[str, Any]) -> list[str]:
    shipped = summary[SHIPPED]
    rows = [(k, e) for k, e in summary.items() if e["group"] == "experiment"]
    if not rows:
        return []
    lines = [
        "### Levers tried",
        "",
        "Each one PgBouncer with the shipped settings and one change, in the same rounds. \"lower\" or",
        "\"higher\" only when the whole spread is apart from the shipped one's.",
        "",
        "| lever | per login | vs shipped | | per warm query | vs shipped | |",
        "|---|---|---|---|---|---|---|",
    ]
    for _key, e in rows:
        lines.append(
            f"| {e['label']} | {_spread(e['login_ms'], 'ms', 3)} | {_change(e['login_change_percent'])} | "
            f"{verdict(e, shipped, 'login_ms')} | {_spread(e['query_us'], 'us', 1)} | "
            f"{_change(e['query_change_percent'])} | {verdict(e, shipped, 'query_us')} |")
    lines.append("")
    lower = [(k, e) for k, e in rows
             if "lower" in (verdict(e, shipped, "login_ms"), verdict(e, shipped, "query_us"))]
    if not [k for k, _ in lower if k not in NOT_KEPT]:
        lines.append("No setting lowered a figure beyond the spread, so the shipped settings stay: PgBouncer's own"
                     " defaults for `pkt_buf`, `sbuf_loopcnt` and `tcp_defer_accept`, logging and stats as shipped,"
                     " and the P-256 certificate (an RSA key only adds signing work).")
        lines.append("")
    for key, e in lower:
        lines.append(f"{e['label']} measured lower: " + NOT_KEPT.get(
            key, "a candidate for the shipped settings once a second run confirms it."))
        lines.append("")
    return lines


def _sizing(head: Mapping[str, Any], d: Mapping[str, int]) -> list[str]:
    cost = PoolerCost(head["login_ms"], head["query_us"])
    cpu, target = d["poolerCpu"], d["poolerCpuTargetPercent"]
    cold_task, query_task = task_capacity(cost, cpu, target)
    lines = [
        "### What it means for sizing",
        "",
        f"With these shipped figures, a pooler task of `poolerCpu` {cpu} ({cpu / 1024:g} vCPU; PgBouncer is one"
        f" process, so never more than 1 vCPU counts) held at `poolerCpuTargetPercent` {target} carries about"
        f" {cold_task:,.0f} cold starts/s or {query_task:,.0f} warm queries/s; the defaults' {d['poolerMinTasks']}"
        f" to {d['poolerMaxTasks']} tasks carry {cold_task * d['poolerMinTasks']:,.0f} to"
        f" {cold_task * d['poolerMaxTasks']:,.0f} cold starts/s. Tasks for a load (both at once, their CPU adds up):",
        "",
        "| cold starts/s | warm queries/s | tasks for the cold starts | for the queries | for both |",
        "|---|---|---|---|---|",
    ]
    for cold, queries in EXAMPLE_LOADS:
        t = tasks_needed(cost, cold, queries, cpu, target)
        lines.append(f"| {cold:,} | {queries:,} | {t.cold_start_tasks} | {t.query_tasks} | {t.tasks} |")
    lines += ["", "The README's Pool sizing section has the formula.", ""]
    return lines
