"""Write the benchmark's results: JSON (the figures), markdown (the same, explained) and a chart.

The markdown is generated from the JSON, so the figures in the docs are always the measured ones;
the explanations quote the measured CPU costs rather than fixed numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lifeguard.bench import capacity_report, coldstart_report
from lifeguard.load.chart import Series, backends_chart

COMMAND = "lifeguard bench --out docs"


def _strip_samples(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_samples(v) for k, v in value.items() if k != "samples"}
    if isinstance(value, list):
        return [_strip_samples(v) for v in value]
    return value


def write(results: dict[str, Any], out_dir: Path, command: str = COMMAND) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    chart = out_dir / "benchmarks-spike.png"
    _spike_chart(results, chart)
    clean = _strip_samples(results)
    clean["command"] = command
    clean["chart"] = chart.name
    json_path = out_dir / "benchmarks.json"
    json_path.write_text(json.dumps(clean, indent=2) + "\n")
    md_path = out_dir / "benchmarks.md"
    md_path.write_text(render_markdown(clean, chart.name))
    return {"json": json_path, "markdown": md_path, "chart": chart}


def _spike_chart(results: dict[str, Any], path: Path) -> None:
    spike = results["spike"]
    series = []
    if "direct" in spike:
        d = spike["direct"]
        series.append(Series(f"direct, {d['instances']:,} instances ({d['failed']:,} failed)", d["samples"], "#d32f2f"))
    runs = spike["pooled_runs"]
    if runs:
        last = runs[-1]
        series.append(Series(f"PgBouncer, {last['instances']:,} instances ({last['failed']:,} failed)",
                             last["samples"], "#2e7d32"))
    backends_chart(path, series, max_connections=spike["max_connections"], pool_size=spike["pool_size"],
                   title="Spike: Postgres backends, straight at Postgres and through PgBouncer")


def _ms(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f} ms"


def _n(value: float | int) -> str:
    return f"{value:,}"


def _tick(met: bool) -> str:
    return "met" if met else "**missed**"


def render_markdown(r: dict[str, Any], chart_name: str) -> str:
    m, s, t = r["machine"], r["settings"], r["targets"]
    spike, churn, warm = r["spike"], r["churn"], r["warm"]
    plain = r.get("plain_password")
    reuseport = r.get("reuseport")
    pool = spike["pool_size"]
    lines: list[str] = [
        "# Benchmarks: through PgBouncer against straight at Postgres",
        "",
        f"Measured by `lifeguard bench` in one run on one machine ({r['started_at']}, {r['duration_s']:.0f} s).",
        "Reproduce with:",
        "",
        "```sh",
        r.get("command", COMMAND),
        "```",
        "",
        "It starts its own throwaway stacks (free ports, a temporary state directory), writes",
        "`benchmarks.json`, this file and the chart, and stops everything it started.",
        "",
        *([f"The main rows run the PgBouncer the image shipped at the run ({r['machine']['pgbouncer']}: since",
           "issue #23 the image's own Debian package run locally through Debian 13's loader, before it a local",
           "build of Debian 13's source package); runs before issue #10 measured Debian 12's 1.18 instead,",
           "which section 4 now repeats beside it in the same run. Section 5 measures what prepared statements",
           "gain on warm calls.",
           ""] if r.get("compare") else []),
        *([f"The headline section comes from a separate, later run (`{r['capacity']['command']}`, its time and"
           " load are in it); the numbered sections from the run above.", ""]
          if r.get("capacity", {}).get("command") else []),
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| CPU | {m['cpu']}, {m['cores']} cores |",
        f"| memory | {m['memory_gib']} GiB |",
        f"| OS | {m['os']}, kernel {m['kernel']} |",
        f"| Postgres | {m['postgres']} (max_connections {spike['max_connections']}, SCRAM, TLS forced) |",
        f"| PgBouncer | {m['pgbouncer']}, the release the image shipped at the run"
        f" (transaction mode, default_pool_size {pool} from PoolBudget, client TLS `require`, server TLS"
        " `verify-full`, the SCRAM verifier in auth_file"
        + (f"; Debian 12's {r['compare']['pgbouncer']} beside it in section 4" if r.get("compare") else "") + ") |",
        f"| client | Python {m['python']}, psycopg {m['psycopg']}, libpq {m['libpq']}, {m['openssl']} |",
        f"| load average | {m['load_average_at_start']} at start, {m.get('load_average_at_end', '-')} at end"
        + (f", 1-minute peak {m['load_average_peak']}" if "load_average_peak" in m else "") + " "
        "(the machine is shared; other work adds noise) |",
        "",
        *_noise_note(m),
        "Clients, PgBouncer and Postgres share these cores, so every figure includes the clients' own",
        f"CPU. Function instances are hosted by worker processes (at least {s['workers']}, at most 900",
        "instances each; see `docs/local.md`). The throwaway clusters run with fsync off; the measured",
        "work only reads.",
        "",
    ]
    lines += capacity_report.section(r)
    lines += coldstart_report.section(r)
    lines += [
        "## Targets",
        "",
        "| target | as shipped | met? | best lift tried |",
        "|---|---|---|---|",
    ]
    sc, cr, wo = t["spike_capacity"], t["churn_ratio"], t["warm_overhead_ms"]
    lines += [
        f"| {_n(sc['target'])} concurrent instances, 0 errors, backends <= pool | {_n(sc['measured'])} | "
        f"{_tick(sc['met'])} | {_variants(sc['by_variant'], _n)} |",
        f"| churn throughput pooled >= {cr['target']}x direct | {cr['measured']}x | {_tick(cr['met'])} | "
        f"{_variants(cr['by_variant'], lambda v: f'{v}x')} |",
        f"| warm per-query overhead <= {wo['target']} ms at p50 | {wo['measured']:.3f} ms | {_tick(wo['met'])} | - |",
        "",
        "## 1. Spike capacity",
        "",
        "Every instance cold-starts (opens its connection, runs `read_invoices`), then stays alive holding",
        "its connection until all are done, and is invoked once more warm: at the end all of them are",
        "connected at once. Time to first row counts from the spike's start, so it includes waiting for one",
        f"of the {s['workers'] * s['threads']} cold-start slots ({s['workers']} x {s['threads']}, spread over"
        " more worker processes for large spikes): Lambda, too, scales out at a bounded rate.",
        "",
        "| run | instances | ok | failed | peak backends | first row p50 | p99 | wall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if "direct" in spike:
        d = spike["direct"]
        lines.append(_spike_row("straight at Postgres", d, spike["max_connections"], "max_connections"))
    for run in spike["pooled_runs"]:
        lines.append(_spike_row("through PgBouncer", run, pool, "pool"))
    if plain:
        for run in plain["spike"]["pooled_runs"]:
            lines.append(_spike_row("PgBouncer, plain password (experiment)", run, pool, "pool"))
    if reuseport:
        rp = reuseport["spike"]
        for run in rp["pooled_runs"]:
            lines.append(_spike_row(f"{reuseport['processes']} PgBouncers, so_reuseport", run, rp["pool_size"], "pool"))
    lines += ["", f"![backends over time]({chart_name})", ""]
    if "direct" in spike:
        d = spike["direct"]
        lines += [
            f"Straight at Postgres, {_n(spike['direct_capacity'])} instances got a connection and "
            f"{_n(d['failed'])} of {_n(d['instances'])} failed: "
            + ", ".join(f"{_n(c)} x `{e}`" for e, c in sorted(d["db_errors"].items(), key=lambda kv: -kv[1]))
            + ".",
            "",
        ]
    lines += _spike_explanation(r)
    lines += [
        "## 2. Connection churn: a new connection per invocation",
        "",
        f"{churn['direct']['clients']} clients, each invocation a fresh instance (new connection: TCP, TLS, SCRAM),"
        f" {s['churn_seconds']:.0f} s per path in {s['churn_rounds']} alternating blocks, so each pair of rows"
        " shares the machine's background load and its ratio compares like with like. CPU per invocation is"
        " measured from `/proc` (Postgres: the postmaster and every backend it forked; PgBouncer: its"
        " processes) and from the workers' own usage.",
        "",
        "| | throughput | vs direct | p50 | p99 | failed | client CPU | PgBouncer CPU | Postgres CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    pairs = [("through PgBouncer", churn)]
    if plain:
        pairs.append(("PgBouncer, plain password (experiment)", plain["churn"]))
    if reuseport:
        k = reuseport["processes"]
        pairs.append((f"{k} PgBouncers, so_reuseport", reuseport["churn"]))
        pairs.append((f"{k} PgBouncers, so_reuseport + plain password (experiment)",
                      reuseport["plain_password_churn"]))
    for name, pair in pairs:
        lines.append(_churn_row("straight at Postgres", pair["direct"], None))
        lines.append(_churn_row(name, pair["pooled"], pair["ratio"]))
    lines += ["", *_churn_explanation(r)]
    lines += [
        "## 3. Warm overhead: a reused connection",
        "",
        f"`{warm['sql']}` on connections that stay open (warm instances). Latency: one client with one"
        f" direct and one pooled connection, back to back on one for half a second, then on the other,"
        f" for {s['warm_seconds']:.0f} s ({_n(warm['latency_queries_each'])} queries each), so both paths"
        " see the same background load."
        f" Throughput: {warm['direct']['clients']} clients on their own connections, each path on its own.",
        "",
        "| | p50 | p99 | throughput | p50 under throughput load |",
        "|---|---|---|---|---|",
    ]
    for name, w in (("straight at Postgres", warm["direct"]), ("through PgBouncer", warm["pooled"])):
        lines.append(f"| {name} | {_ms(w['p50_ms'], 3)} | {_ms(w['p99_ms'], 3)} | "
                     f"{w['throughput_qps']:,.0f} queries/s | {_ms(w['throughput_p50_ms'], 3)} |")
    overhead = wo["measured"]
    lines += [
        "",
        f"PgBouncer adds one hop on loopback: {overhead:.3f} ms per query at p50"
        + (" (within the target)." if wo["met"] else
           f", above the {wo['target']} ms target. The hop costs two extra socket reads and writes and a"
           " wake-up of PgBouncer's event loop per message; on a busy 2-core machine the wake-up waits for a"
           " core. Lifts: fewer round trips per invocation (one statement per transaction, as"
           " `read_invoices` does), and a core that is not shared with the clients."),
        "Warm throughput through one PgBouncer process is bounded by that process's single core; a second"
        " process with `so_reuseport` adds a core where one is free.",
        "",
        *_compare_section(r),
        *_prepared_section(r),
        "## Notes",
        "",
        "- Same machine, same run, same code path: the functions' own `lambdas.db.Database`, one per",
        "  instance, configured as the stack configures it (`LIFEGUARD_POOLER_PREPARED_STATEMENTS`).",
        "- The kit ships the application role's SCRAM verifier in `auth_file`; the plain-password rows",
        "  are an experiment (`lifeguard/bench/experiments.py`) showing what PgBouncer pays without it.",
        "- The raw figures are in `benchmarks.json`; `lifeguard bench --help` lists the knobs",
        "  (levels, durations, workers, clients).",
        "",
    ]
    return "\n".join(lines)


def _variants(values: dict[str, Any], fmt: Any) -> str:
    others = {k: v for k, v in values.items() if k != "shipped"}
    return ", ".join(f"{k}: {fmt(v)}" for k, v in others.items()) or "-"


def _spike_row(name: str, run: dict[str, Any], limit: int, limit_name: str) -> str:
    return (f"| {name} | {_n(run['instances'])} | {_n(run['ok'])} | {_n(run['failed'])} | "
            f"{run['peak_backends']} ({limit_name} {limit}) | {_ms(run['p50_ms'])} | {_ms(run['p99_ms'])} | "
            f"{run['wall_s']:.1f} s |")


def _churn_row(name: str, c: dict[str, Any], ratio: float | None) -> str:
    cpu = c["cpu_ms_per_invocation"]
    versus = f"**{ratio}x**" if ratio is not None else "1x"
    return (f"| {name} | {c['throughput_per_s']:,.0f}/s | {versus} | {_ms(c['p50_ms'], 1)} | {_ms(c['p99_ms'], 1)} | "
            f"{_n(c['failed'])} | {cpu['client']:.2f} ms | {cpu['pgbouncer']:.2f} ms | {cpu['postgres']:.2f} ms |")


def _spike_explanation(r: dict[str, Any]) -> list[str]:
    t = r["targets"]["spike_capacity"]
    churn = r["churn"]["pooled"]["cpu_ms_per_invocation"]
    per_login = churn["client"] + churn["pgbouncer"]
    cores = r["machine"]["cores"] or 1
    ceiling = cores * 1000 / per_login if per_login else 0
    lines = [
        "What limits the spike: every cold start is a full login (TLS handshake and SCRAM on both ends).",
        f"Measured in the churn run, a login through PgBouncer costs {churn['client']:.2f} ms of client CPU and",
        f"{churn['pgbouncer']:.2f} ms of PgBouncer CPU, so {cores} cores admit at most about {ceiling:,.0f} new",
        "instances per second; the spike's time to first row grows with its size at that rate, while",
        "Postgres never sees more backends than the pool (how many of them are busy depends on how long",
        "the CPU-starved clients hold their transactions). On AWS the clients' half runs on the Lambda",
        "hosts, not on the pooler's cores.",
    ]
    if not t["met"]:
        failed = [run for run in r["spike"]["pooled_runs"] if not run.get("passed", True)]
        if failed:
            run = failed[0]
            errors = ", ".join(f"{_n(c)} x `{e}`" for e, c in sorted(
                {**run["errors"], **run["db_errors"]}.items(), key=lambda kv: -kv[1])[:3]) or "none"
            how = (f"at {_n(run['instances'])} instances {_n(run['failed'])} cold starts and "
                   f"{_n(run['warm_failed'])} warm calls failed ({errors}), peak {run['peak_backends']} backends")
        else:
            how = f"no level failed, but the levels tried stopped at {_n(t['measured'])}"
        lines += [
            "",
            f"**Target missed as shipped:** {_n(t['measured'])} instances passed; {how}. What lifts it: more",
            "PgBouncer cores (`so_reuseport`, or more tasks behind the NLB), and the Lambda hosts doing the",
            "clients' half of every login (here the clients share the machine's cores).",
        ]
    return [*lines, ""]


def _churn_explanation(r: dict[str, Any]) -> list[str]:
    cr = r["targets"]["churn_ratio"]
    d = r["churn"]["direct"]["cpu_ms_per_invocation"]
    p = r["churn"]["pooled"]["cpu_ms_per_invocation"]
    direct_total = d["client"] + d["postgres"]
    pooled_total = p["client"] + p["pgbouncer"] + p["postgres"]
    lines = [
        f"Per new connection, straight at Postgres costs {direct_total:.2f} ms of CPU in all (client"
        f" {d['client']:.2f}, Postgres {d['postgres']:.2f}: fork, TLS, backend start-up), through PgBouncer"
        f" {pooled_total:.2f} ms (client {p['client']:.2f}, PgBouncer {p['pgbouncer']:.2f}, Postgres"
        f" {p['postgres']:.2f}: no new backend). With every core busy, throughput is the cores divided by that"
        " cost, so the ratio of the two is what the pooler can win on one machine.",
        "",
    ]
    plain = r.get("plain_password")
    if plain:
        v = plain["churn"]["pooled"]["cpu_ms_per_invocation"]
        lines += [
            f"PgBouncer CPU per login: {p['pgbouncer']:.2f} ms with the SCRAM verifier in auth_file (as shipped),"
            f" {v['pgbouncer']:.2f} ms with the plain password, from which PgBouncer derives the SCRAM keys"
            f" again for every login ({cr['by_variant'].get('plain_password', '-')}x direct).",
            "",
        ]
    if not cr["met"]:
        lines += [
            f"**Target missed as shipped ({cr['measured']}x):** the client's own login CPU"
            # Runs before the count was recorded had Postgres' 4096.
            f" ({p['client']:.2f} ms: SCRAM's {r.get('scram_iterations', 4096)} PBKDF2 iterations and the TLS"
            " handshake in libpq, plus the"
            " Python handler) is paid on both paths and shares the same two cores.",
            f"Best lift tried here: {cr['best_variant']} at {cr['by_variant'][cr['best_variant']]}x direct"
            + (" (target reached)." if cr["by_variant"][cr["best_variant"]] >= cr["target"] else "."),
            "What lifts it in production: the clients' CPU is on the Lambda hosts, and `so_reuseport` or more"
            " tasks add pooler cores.",
            "",
        ]
    reuse = cr["by_variant"].get("so_reuseport")
    if reuse is not None and reuse <= cr["measured"]:
        lines += [
            f"A second PgBouncer process (`so_reuseport`, {reuse}x) adds nothing on this machine: clients,"
            " PgBouncer and Postgres already keep both cores busy, so another process only competes for them;"
            " it pays off where the pooler has cores of its own (a Fargate task with more vCPUs).",
            "",
        ]
    return lines


def _compare_section(r: dict[str, Any]) -> list[str]:
    c = r.get("compare")
    if not c:
        return []
    shipped, old = r["machine"]["pgbouncer"], c["pgbouncer"]
    rows = [
        (shipped, r["spike"]["pooled_runs"][-1], r["churn"], r.get("plain_password", {}).get("churn"), r["warm"]),
        (old, c["spike"]["pooled_runs"][-1], c["churn"], c.get("plain_password_churn"), c["warm"]),
    ]
    lines = [
        f"## 4. PgBouncer {shipped} (shipped) against Debian 12's {old}",
        "",
        "The same spike (top level), churn and warm runs on a second throwaway stack whose PgBouncer is the",
        f"distribution's {old}, later in the same run; everything else is identical (the renderer writes",
        f"only the keys each release knows: {old} gets no `max_prepared_statements`).",
        "",
        "| PgBouncer | spike: ok / failed | first row p50 | churn throughput | vs direct | PgBouncer CPU per"
        " login | with the plain password | warm p50 | warm throughput |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for version, spike, churn_run, plain_churn, warm_run in rows:
        cpu = churn_run["pooled"]["cpu_ms_per_invocation"]["pgbouncer"]
        vcpu = (f"{plain_churn['pooled']['cpu_ms_per_invocation']['pgbouncer']:.2f} ms"
                if plain_churn else "-")
        lines.append(
            f"| {version} | {_n(spike['ok'])} / {_n(spike['failed'])} of {_n(spike['instances'])} | "
            f"{_ms(spike['p50_ms'])} | {churn_run['pooled']['throughput_per_s']:,.0f}/s | {churn_run['ratio']}x | "
            f"{cpu:.2f} ms | {vcpu} | {_ms(warm_run['pooled']['p50_ms'], 3)} | "
            f"{warm_run['pooled']['throughput_qps']:,.0f} queries/s |"
        )
    lines += [
        "",
        "Each ratio compares with the direct blocks interleaved with it. The two stacks run one after the",
        "other, so when other work shares the machine its load differs between them and only large",
        "differences tell. PgBouncer's login cost is the SCRAM work (4096 PBKDF2 iterations per login from",
        "a plain password), which both releases do the same way; the shipped verifier removes most of it.",
        "",
    ]
    return lines


def _prepared_section(r: dict[str, Any]) -> list[str]:
    p = r.get("prepared")
    if not p:
        return []
    return [
        "## 5. Prepared statements on warm calls",
        "",
        f"The `{p['function']}` function's own query on two warm connections through PgBouncer"
        f" {r['machine']['pgbouncer']} (`max_prepared_statements` 200), back to back in alternating half-second"
        f" blocks ({_n(p['queries_each'])} queries each): one never prepares (`prepare_threshold=None`, what"
        f" the client must do behind a pooler that does not track them), one prepares after"
        f" {p['prepare_threshold']} runs (psycopg's default, what the client uses when the stack sets"
        " `LIFEGUARD_POOLER_PREPARED_STATEMENTS=1`).",
        "",
        "| | p50 | p99 |",
        "|---|---|---|",
        f"| unprepared | {_ms(p['unprepared']['p50_ms'], 3)} | {_ms(p['unprepared']['p99_ms'], 3)} |",
        f"| prepared | {_ms(p['prepared']['p50_ms'], 3)} | {_ms(p['prepared']['p99_ms'], 3)} |",
        "",
        f"Prepared, a warm call's query is {p['p50_gain_percent']}% faster at p50: Postgres skips parsing and"
        " planning. Through 1.18 the same client would fail (`prepared statement \"_pg3_0\" already exists`),"
        " which is why it only prepares when the stack says the pooler tracks statements.",
        "",
    ]


def _noise_note(m: dict[str, Any]) -> list[str]:
    """Say so when other work shared the machine: the load average tells."""
    loads = [*m.get("load_average_at_start", []), *m.get("load_average_at_end", []), m.get("load_average_peak", 0)]
    cores = m.get("cores") or 1
    if not loads or max(loads) <= cores:
        return []
    return [
        f"**A noisy run:** the load average reached {max(loads):g} on {cores} cores, so other work (on this",
        "shared machine: other test suites) competed for the cores throughout. Compare figures within this",
        "run, where the paths and releases alternate or follow each other under the same load, rather than",
        "with other runs.",
        "",
    ]
