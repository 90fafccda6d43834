"""The capacity headline's arithmetic, summary and report, and the variants' settings (no timing)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from lifeguard.bench import capacity_report
from lifeguard.bench.capacity import (
    SHIPPED,
    VARIANTS,
    CapacitySettings,
    PoolerVariant,
    headline,
    summarize,
    variant_settings,
    variants_from_text,
)
from lifeguard.bench.cpu import process_cpu_ns
from lifeguard.bench.experiments import KEY_TYPES, ExperimentError, write_certificate
from lifeguard.bench.sizing import PoolerCost, Spread, task_capacity, tasks_needed, usable_vcpus
from pgbouncer.settings import PoolerSettings, Upstream

DEFAULTS = {"poolerMinTasks": 2, "poolerMaxTasks": 4, "poolerCpu": 512, "poolerCpuTargetPercent": 60}


def test_cost_per_vcpu_is_the_inverse_of_the_cpu_per_operation() -> None:
    cost = PoolerCost(login_ms=0.5, query_us=25)
    assert cost.cold_starts_per_vcpu == 2000
    assert cost.queries_per_vcpu == 40000
    with pytest.raises(ValueError, match="must be positive"):
        PoolerCost(0, 25)


def test_pgbouncer_uses_at_most_one_vcpu_per_process() -> None:
    assert usable_vcpus(512) == 0.5
    assert usable_vcpus(1024) == 1.0
    assert usable_vcpus(4096) == 1.0  # one process: the other three vCPUs idle
    assert usable_vcpus(4096, processes=2) == 2.0


def test_tasks_needed_adds_login_and_query_cpu_and_keeps_the_margin() -> None:
    cost = PoolerCost(login_ms=0.5, query_us=25)
    # 600 logins/s = 0.3 vCPU; 12,000 queries/s = 0.3 vCPU; a 0.5-vCPU task at 60% carries 0.3 vCPU.
    t = tasks_needed(cost, 600, 12000, cpu_units=512, target_percent=60)
    assert (t.cold_start_tasks, t.query_tasks, t.tasks, t.busy_vcpus) == (1, 1, 2, 0.6)
    t = tasks_needed(cost, 601, 0, cpu_units=512, target_percent=60)
    assert (t.cold_start_tasks, t.query_tasks, t.tasks) == (2, 0, 2)
    assert task_capacity(cost, 512, 60) == pytest.approx((600, 12000))
    with pytest.raises(ValueError, match="target_percent"):
        tasks_needed(cost, 1, 1, 512, 0)


def test_spread_is_median_min_max() -> None:
    assert Spread.of([3.0, 1.0, 2.0]) == Spread(2.0, 1.0, 3.0, 3)
    with pytest.raises(ValueError):
        Spread.of([])


def _round(login: float, query: float, postgres: float = 10.0) -> dict[str, Any]:
    return {"round": 1, "logins": 100, "failed": 0, "errors": {}, "cpu_ms": login * 100, "ms_per_login": login,
            "queries": 1000, "us_per_query": query, "postgres_us_per_query": postgres}


def _capacity(variants: dict[str, tuple[str, list[tuple[float, ...]]]]) -> dict[str, Any]:
    return {
        "started_at": "2026-12-01T00:00:00Z", "duration_s": 60, "pgbouncer": "1.24.1",
        "settings": {"rounds": 3, "login_seconds": 3, "warm_seconds": 2, "login_clients": 4, "warm_clients": 4},
        "load_average_at_start": [30.0, 30.0, 30.0], "load_average_after_rounds": [[31.0, 30.0, 30.0]],
        "tls_handshake": {"openssl": "OpenSSL 3.0.22", "seconds": 2,
                          "ms_per_handshake": {"tickets_2": [0.55, 0.6, 0.5], "tickets_0": [0.5, 0.52, 0.48]}},
        "variants": {k: {"label": k.replace("_", " "), "group": g, "rounds": [_round(*r) for r in rounds]}
                     for k, (g, rounds) in variants.items()},
    }


SAMPLE = _capacity({
    SHIPPED: ("shipped", [(0.6, 30.0), (0.7, 32.0), (0.65, 31.0)]),
    "plain_password": ("baseline", [(3.7, 30.0), (3.8, 31.0), (3.6, 29.0)]),
    "no_tls": ("baseline", [(0.3, 18.0), (0.32, 19.0), (0.31, 20.0)]),
    "server_tls_off": ("experiment", [(0.6, 22.0), (0.62, 23.0), (0.61, 24.0)]),
    "pkt_buf_16k": ("experiment", [(0.8, 33.0), (0.75, 35.0), (0.9, 34.0)]),
})


def test_summary_medians_capacity_and_changes() -> None:
    s = summarize(SAMPLE)
    assert s[SHIPPED]["login_ms"] == {"median": 0.65, "low": 0.6, "high": 0.7, "runs": 3}
    assert s[SHIPPED]["cold_starts_per_vcpu"] == round(1000 / 0.65)
    assert s[SHIPPED]["queries_per_vcpu"] == round(1e6 / 31.0)
    assert s["no_tls"]["login_change_percent"] == pytest.approx(-52.3, abs=0.1)
    h = headline(s)
    assert (h["login_met"], h["query_met"]) == (False, False)
    assert capacity_report.verdict(s["server_tls_off"], s[SHIPPED], "query_us") == "lower"
    assert capacity_report.verdict(s["server_tls_off"], s[SHIPPED], "login_ms") == "same within the spread"
    assert capacity_report.verdict(s["pkt_buf_16k"], s[SHIPPED], "login_ms") == "higher"


def test_report_section_shows_headline_baselines_levers_and_sizing() -> None:
    text = "\n".join(capacity_report.section({"capacity": SAMPLE}, DEFAULTS))
    # Each figure also divided by its floor from the same run: the handshake's 0.55 ms, Postgres' 10 us.
    assert ("| **shipped** | 1.24.1 | 0.650 ms (0.600-0.700) | 1.18x | 1,538 | 31.0 us (30.0-32.0) | 3.10x |"
            " 32,258 |") in text
    assert "| plain password | 1.24.1 | 3.700 ms (3.600-3.800) | 6.73x |" in text
    assert "| <= 0.5 ms PgBouncer CPU per login | 0.650 ms | **missed** |" in text
    # TLS's share from the same run: shipped minus no TLS; the split by side uses server_tls_off.
    assert "TLS on both sides costs 0.340 ms of each login and 12.0 us of each warm query" in text
    assert "| server tls off | 0.610 ms (0.600-0.620) | -6% | same within the spread |" in text
    # 0.5 vCPU at 60%: 1000/0.65 * 0.3 = 462 cold starts/s per task.
    assert "carries about 462 cold starts/s or 9,677 warm queries/s" in text
    assert "| 2,000 | 50,000 | 5 | 6 | 10 |" in text
    assert capacity_report.section({}, DEFAULTS) == []
    # The floor: OpenSSL's handshake plus PgBouncer's work without TLS, and what stands in the way.
    assert "costs 0.550 ms (0.500-0.600) with OpenSSL's default two TLS 1.3 session tickets" in text
    assert "and 0.500 ms (0.480-0.520) without them" in text
    assert "make about 0.86 ms on this machine under this load" in text
    assert "`server_tls` alone is 8.0 us of it" in text


def _base(tmp_path: Path) -> PoolerSettings:
    return PoolerSettings(upstream=Upstream(host="localhost", dbname="app"), default_pool_size=20, version="1.24.1",
                          client_tls_cert_file=str(tmp_path / "a.crt"), client_tls_key_file=str(tmp_path / "a.key"))


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.key)
def test_every_variant_renders_for_the_shipped_release(variant: PoolerVariant, tmp_path: Path) -> None:
    settings = variant_settings(_base(tmp_path), variant, tmp_path / variant.key, 7001, pool_size=4)
    ini = settings.render_ini()
    assert "listen_port = 7001" in ini and "default_pool_size = 4" in ini
    assert f"auth_file = {tmp_path / variant.key / 'userlist.txt'}" in ini
    for key, value in variant.extra.items():
        assert f"{key} = {value}" in ini
    if variant.key == SHIPPED:
        assert "server_tls_sslmode = verify-full" in ini and "client_tls_sslmode = require" in ini
        assert "max_prepared_statements = 200" in ini


def test_variant_keys_from_the_command_line() -> None:
    assert variants_from_text("no_tls") == (SHIPPED, "no_tls")
    assert variants_from_text("all") == tuple(v.key for v in VARIANTS)
    with pytest.raises(ValueError, match="unknown capacity variant"):
        CapacitySettings(variants=(SHIPPED, "nope")).check()
    with pytest.raises(ValueError, match="must include 'shipped'"):
        CapacitySettings(variants=("no_tls",)).check()


@pytest.mark.parametrize("key_type", sorted(KEY_TYPES))
def test_experiment_certificates(key_type: str, tmp_path: Path) -> None:
    cert, key = tmp_path / "tls" / "pgbouncer.crt", tmp_path / "tls" / "pgbouncer.key"
    write_certificate(cert, key, key_type)
    assert cert.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert key.stat().st_mode & 0o777 == 0o600


def test_unknown_key_type_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExperimentError, match="unknown key type"):
        write_certificate(tmp_path / "c.crt", tmp_path / "c.key", "dsa")


def test_process_cpu_counts_nanoseconds_of_every_thread() -> None:
    before = process_cpu_ns(os.getpid())
    sum(i * i for i in range(200_000))
    assert process_cpu_ns(os.getpid()) > before
    assert process_cpu_ns(2**22 + 12345) == 0  # no such process


def test_tls_floor_measures_openssl_handshakes(tmp_path: Path) -> None:
    from lifeguard.bench.tls_floor import handshake_cpu_ms
    from pgbouncer.tls import write_self_signed

    pair = write_self_signed(tmp_path)
    result = handshake_cpu_ms(pair.cert_file, pair.key_file, seconds=1, tickets=0)
    assert result["handshakes"] > 0 and result["ms_per_handshake"] > 0


def test_capacity_only_run_goes_into_the_report_already_there(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import shutil

    from lifeguard.cli.bench import _write_capacity

    docs = Path(__file__).resolve().parents[2] / "docs"
    assert _write_capacity(dict(SAMPLE), tmp_path, "lifeguard bench --only capacity") == 1
    assert "run the full `lifeguard bench` first" in capsys.readouterr().err
    shutil.copy(docs / "benchmarks.json", tmp_path / "benchmarks.json")
    assert _write_capacity(dict(SAMPLE), tmp_path, "lifeguard bench --out x --only capacity") == 0
    merged = json.loads((tmp_path / "benchmarks.json").read_text())
    assert merged["capacity"]["started_at"] == SAMPLE["started_at"] and "spike" in merged
    assert merged["targets"]["pgbouncer_cpu_per_login_ms"]["measured"] == 0.65
    markdown = (tmp_path / "benchmarks.md").read_text()
    assert "separate, later run (`lifeguard bench --out x --only capacity`" in markdown
    assert "## 1. Spike capacity" in markdown and "| **shipped** | 1.24.1 | 0.650 ms" in markdown
    # A report from an older bench is refused, not half-rendered.
    (tmp_path / "benchmarks.json").write_text(json.dumps({"machine": {}, "settings": {}}))
    assert _write_capacity(dict(SAMPLE), tmp_path, "lifeguard bench --only capacity") == 1
    assert "is from an older `lifeguard bench`" in capsys.readouterr().err


def test_report_compares_the_release_before_and_shows_the_image() -> None:
    """1.24.1 beside 1.26.1 in one run (verifier and plain password on each), and the image's own row."""
    capacity = _capacity({
        SHIPPED: ("shipped", [(0.8, 16.0), (0.9, 18.0), (0.85, 17.0)]),
        "plain_password": ("baseline", [(0.9, 16.0), (1.0, 17.0), (0.95, 18.0)]),
        "pgbouncer_1_24_1": ("baseline", [(0.75, 17.0), (0.8, 18.0), (0.7, 16.0)]),
        "pgbouncer_1_24_1_plain_password": ("baseline", [(3.4, 17.0), (3.6, 18.0), (3.5, 16.0)]),
    })
    capacity["pgbouncer"] = "1.26.1"
    capacity["releases"] = {SHIPPED: "1.26.1", "plain_password": "1.26.1", "pgbouncer_1_24_1": "1.24.1",
                            "pgbouncer_1_24_1_plain_password": "1.24.1"}
    image = _capacity({"image": ("shipped", [(1.0, 20.0, 8.0), (1.2, 22.0, 8.0), (1.1, 21.0, 8.0)])})
    image.update({"image": "lifeguard-pgbouncer:local", "pgbouncer": "1.26.1", "load_average_at_end": [1, 1, 1]})
    image["tls_handshake"]["openssl"] = "OpenSSL 3.5.9 29 Sep 2026"
    capacity["image"] = image
    text = "\n".join(capacity_report.section({"capacity": capacity}, DEFAULTS))
    assert "| Debian 13's PgBouncer 1.24.1" not in text  # labels come from the run: here the keys
    assert "| pgbouncer 1 24 1 | 1.24.1 | 0.750 ms (0.700-0.800) |" in text
    assert ("Before the upgrade, on 1.24.1 with the same settings: 0.75 ms per login with the verifier, 3.50 ms"
            " with the plain password (4.7x); on 1.26.1 the plain password costs 0.95 ms, 1.1x the verifier's") in text
    # On 1.26.1 the plain password costs what the verifier does: the text follows the figures.
    assert "(+12% against the verifier, same within the spread): PgBouncer 1.26.1 does not derive" in text
    assert "derives the SCRAM keys from it for every login" not in text
    assert "derives the SCRAM keys from it for every login" in "\n".join(
        capacity_report.section({"capacity": SAMPLE}, DEFAULTS))
    assert "the image's own OpenSSL 3.5.9 for the handshake (0.550 ms)" in text
    assert "| PgBouncer in the image | 1.100 ms (1.000-1.200) | 2.00x | 21.0 us (20.0-22.0) | 2.62x |" in text
