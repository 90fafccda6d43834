"""``lifeguard bench`` at toy scale: every phase runs and the outputs have their shape.

The figures themselves come from the real run (docs/benchmarks.*), never from timed tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lifeguard.bench.capacity import summarize
from lifeguard.cli import main
from lifeguard.stack.pooler import installed_version
from lifeguard.stack.system import debian_pgbouncer
from pgbouncer.versions import PINNED

CAPACITY_ROUNDS = 3


@dataclass(frozen=True)
class BenchRun:
    out: Path
    results: dict[str, Any]


@pytest.fixture(scope="module")
def bench(state_root: Path) -> BenchRun:
    """One toy-scale ``lifeguard bench`` run that both tests read."""
    out = state_root / "bench-out"
    code = main([
        "bench", "--out", str(out), "--state-dir", str(state_root / "bench-state"),
        "--levels", "40,120", "--direct-instances", "120", "--workers", "1", "--threads", "16",
        "--churn-clients", "4", "--churn-seconds", "1", "--churn-rounds", "1",
        "--warm-clients", "2", "--warm-seconds", "0.5",
        "--reuseport-processes", "2",
        # Several rounds: each variant's figures are checked per round.
        "--capacity-rounds", str(CAPACITY_ROUNDS), "--capacity-login-seconds", "0.5",
        "--capacity-warm-seconds", "0.3", "--capacity-variants", "plain_password,no_tls",
        "--cold-start-runs", "1", "--cold-start-memory", "1769", "--cold-start-periods", "100",
    ])
    assert code == 0, "lifeguard bench failed: its output is in this test's captured stderr"
    return BenchRun(out, json.loads((out / "benchmarks.json").read_text()))


def test_bench_writes_json_markdown_and_chart(bench: BenchRun, state_root: Path) -> None:
    out, results = bench.out, bench.results

    spike = results["spike"]
    assert spike["direct"]["failed"] > 0 and spike["direct_capacity"] < 120
    assert [run["instances"] for run in spike["pooled_runs"]] == [40, 120]
    assert spike["pooled_capacity"] == 120
    assert all(run["peak_backends"] <= spike["pool_size"] for run in spike["pooled_runs"])
    assert "samples" not in spike["direct"]  # time series go to the chart, not the JSON

    for kind in ("direct", "pooled"):
        churn = results["churn"][kind]
        assert churn["ok"] > 0 and churn["failed"] == 0
        assert set(churn["cpu_ms_per_invocation"]) == {"client", "pgbouncer", "postgres"}
        assert results["warm"][kind]["p50_ms"] > 0
    # PgBouncer does the work of a login through the pooler; Postgres forks a backend only direct.
    assert results["churn"]["direct"]["cpu_ms_per_invocation"]["pgbouncer"] == 0
    assert results["churn"]["pooled"]["cpu_ms_per_invocation"]["pgbouncer"] > 0
    assert results["churn"]["ratio"] > 0
    assert results["plain_password"]["churn"]["pooled"]["ok"] > 0
    # Which of the verifier and the plain password costs less is a figure for the report (1.24.1: the
    # verifier, 4.5x; 1.26.1: about the same), not an assertion here.
    assert results["plain_password"]["churn"]["pooled"]["cpu_ms_per_invocation"]["pgbouncer"] > 0
    assert results["reuseport"]["processes"] == 2
    assert results["reuseport"]["spike"]["pooled_runs"][0]["failed"] == 0

    prepared = results["prepared"]
    assert prepared["prepare_threshold"] == 5 and prepared["queries_each"] > 0
    assert prepared["prepared"]["p50_ms"] > 0 and prepared["unprepared"]["p50_ms"] > 0
    assert results["machine"]["load_average_peak"] >= 0  # sampled at every step, for the noise note
    assert results["cold_start"]["errors"] == {} and results["cold_start"]["results"]
    targets = results["targets"]
    assert set(targets) == {"spike_capacity", "churn_ratio", "warm_overhead_ms", "pgbouncer_cpu_per_login_ms",
                            "pgbouncer_cpu_per_warm_query_us"}
    # The headline: PgBouncer's own CPU as shipped, beside the baselines, from the same run.
    variants = results["capacity"]["variants"]
    assert list(variants) == ["shipped", "plain_password", "no_tls"]
    for variant in variants.values():
        assert [r["round"] for r in variant["rounds"]] == list(range(1, CAPACITY_ROUNDS + 1))
        for one_round in variant["rounds"]:
            assert one_round["logins"] > 0 and one_round["failed"] == 0 and one_round["ms_per_login"] > 0
            assert one_round["queries"] > 0 and one_round["us_per_query"] > 0
            assert one_round["postgres_us_per_query"] > 0  # the warm query's floor, from the same phase
    summary = summarize(results["capacity"])
    assert summary["shipped"]["release"] == PINNED
    # Each figure also as a ratio to its floor measured in the same run.
    assert summary["shipped"]["login_per_tls_handshake"] > 0 and summary["shipped"]["query_per_postgres_query"] > 0
    assert targets["spike_capacity"]["met"] is False  # 120 instances is not the 10,000 target
    markdown = (out / "benchmarks.md").read_text()
    assert "## Machine" in markdown and "lifeguard bench --out" in markdown
    assert "## 5. Prepared statements on warm calls" in markdown
    assert "## Headline: PgBouncer CPU per login and per warm query, as shipped" in markdown
    assert "÷ TLS handshake" in markdown and "÷ Postgres' own" in markdown
    assert (out / "benchmarks-spike.png").read_bytes()[:4] == b"\x89PNG"
    # Nothing left behind: the throwaway stacks are gone.
    assert not any((state_root / "bench-state").iterdir())

    assert results["machine"]["pgbouncer"] == PINNED


def test_bench_compares_debian_pgbouncer_with_the_shipped_one(bench: BenchRun) -> None:
    """Debian's own PgBouncer (12's 1.18) beside the shipped one, when it is another release (CI has it:
    a skip here fails CI, tests/ci_skips.py)."""
    debian = debian_pgbouncer()
    if debian is None or str(installed_version(debian)) == PINNED:
        pytest.skip("no other PgBouncer release installed to compare with")
    results = bench.results
    compare = results["compare"]
    assert compare["pgbouncer"] == str(installed_version(debian))
    assert compare["spike"]["pooled_runs"][0]["failed"] == 0
    assert compare["churn"]["pooled"]["cpu_ms_per_invocation"]["pgbouncer"] > 0
    assert compare["warm"]["pooled"]["p50_ms"] > 0 and compare["plain_password_churn"]["pooled"]["ok"] > 0
    markdown = (bench.out / "benchmarks.md").read_text()
    assert f"## 4. PgBouncer {PINNED} (shipped) against Debian 12's {compare['pgbouncer']}" in markdown
