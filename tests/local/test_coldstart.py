"""``lifeguard bench``'s cold-start section at toy scale: it runs, caps, measures each phase and restores the stack.

The figures come from the real run (docs/benchmarks.md); nothing here asserts a time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from lifeguard.bench import coldstart
from lifeguard.bench.coldstart import PHASES, ColdStartSettings
from lifeguard.bench.cpucap import make_caps
from lifeguard.cli import main
from lifeguard.stack.stack import APP_USER, LocalStack, StackOptions
from pgbouncer.scram import APP_ITERATIONS, ITERATIONS, parse_verifier

DOCS = Path(__file__).resolve().parents[2] / "docs"
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="making a cgroup needs root (or a delegated subtree)")


def test_without_a_cgroup_hierarchy_it_says_so_and_caps_nothing(tmp_path: Path) -> None:
    caps, why = make_caps([(0.072, 100_000)], "lifeguard-test", root=tmp_path)
    assert caps == [] and why is not None and "no cgroup cpu controller" in why


@root_only
def test_a_cap_holds_a_busy_process_to_its_share_of_a_cpu() -> None:
    caps, why = make_caps([(0.072, 20_000)], f"lifeguard-test-{os.getpid()}")
    assert why is None, why
    [cap] = caps
    try:
        # One second of wall time spinning: uncapped that is ~1 s of CPU, capped ~0.07 s.
        spin = "import time\nend = time.time() + 1\nwhile time.time() < end: pass"
        busy = subprocess.Popen([sys.executable, "-c", spin], preexec_fn=cap.join)
        _, status, usage = os.wait4(busy.pid, 0)
        busy.returncode = os.waitstatus_to_exitcode(status)
        assert busy.returncode == 0
        cpu = usage.ru_utime + usage.ru_stime
        assert cpu < 0.25, f"{cpu:.2f} s of CPU in 1 s: the cap did not hold"
    finally:
        cap.remove()
    assert not cap.path.exists()


def _row(result: dict[str, object], iterations: int, path: str, mode: str) -> dict[str, object]:
    rows = result["results"]
    assert isinstance(rows, list)
    [row] = [r for r in rows if (r["iterations"], r["path"], r["mode"]) == (iterations, path, mode)]
    assert isinstance(row, dict)
    return row


def test_cold_start_measures_each_phase_and_restores_the_stacks_verifier(stack_dir: Path,
                                                                        ports: tuple[int, int]) -> None:
    stack = LocalStack(stack_dir)
    config = stack.up(StackOptions(pg_port=ports[0], pooler_port=ports[1], durable=False))
    said: list[str] = []
    # Two rounds: the second flips the order and ends on 4096, so only the restore gets the stack's count back.
    settings = ColdStartSettings(runs=2, memory_mb=(1769,), periods_ms=(100,))
    result = coldstart.measure(stack, config, settings, said.append)

    assert result["errors"] == {}
    mb, period = (1769, 100) if "uncapped" not in result["cgroup"] else (coldstart.UNCAPPED, 0)
    for iterations in (ITERATIONS, APP_ITERATIONS):
        for path in ("pooled", "direct"):
            client = _row(result, iterations, path, "client")
            assert (client["memory_mb"], client["period_ms"], client["failed"]) == (mb, period, 0)
            assert {"import_ms", "connect_ms", "first_row_ms"} <= set(client)
            phases = _row(result, iterations, path, "phases")
            assert phases["failed"] == 0
            for phase in PHASES:
                spread = phases[f"{phase}_ms"]
                assert isinstance(spread, dict) and spread["n"] == 2 and spread["median"] >= 0
    assert set(result["ratios"][f"{mb}/{period}"]) >= {f"{APP_ITERATIONS}_vs_{ITERATIONS}_pooled",
                                             f"pooled_vs_direct_{ITERATIONS}"}
    # Back to the stack's own verifier on both sides, and no cgroup left behind.
    verifier = stack.app_verifier(config)
    assert parse_verifier(verifier).iterations == config.scram_iterations == APP_ITERATIONS
    with psycopg.connect(stack.superuser_url(config), connect_timeout=10) as conn:
        row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (APP_USER,)).fetchone()
    assert row == (verifier,)
    for pooler in stack.poolers(config):
        assert f'"{APP_USER}" "{verifier}"' in Path(pooler.settings.auth_file).read_text()
    leftovers = [p for p in Path("/sys/fs/cgroup").rglob(f"lifeguard-bench-{os.getpid()}-*")] \
        if Path("/sys/fs/cgroup").is_dir() else []
    assert leftovers == []
    # The stack's password never reached the report.
    assert stack.app_password() not in json.dumps(result) + "\n".join(said)


def test_only_cold_start_goes_into_the_report_already_there(state_root: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(DOCS / "benchmarks.json", tmp_path / "benchmarks.json")
    code = main(["bench", "--only", "cold-start", "--out", str(tmp_path), "--state-dir",
                 str(state_root / "cold-bench-state"), "--cold-start-runs", "1", "--cold-start-memory", "1769",
                 "--cold-start-periods", "100"])
    err = capsys.readouterr().err
    assert code == 0, err[-3000:]
    merged = json.loads((tmp_path / "benchmarks.json").read_text())
    cold = merged["cold_start"]
    assert cold["command"].endswith("--only cold-start --cold-start-runs 1 --cold-start-memory 1769 "
                                    "--cold-start-periods 100")
    assert cold["settings"] == {"runs": 1, "memory_mb": [1769], "iterations": [ITERATIONS, APP_ITERATIONS],
                                "periods_ms": [100]}
    assert "spike" in merged  # the other sections stay as measured
    markdown = (tmp_path / "benchmarks.md").read_text()
    assert "## Cold starts: the function's side" in markdown and "## 1. Spike capacity" in markdown


@pytest.mark.parametrize(("flags", "message"), [
    (["--cold-start-iterations", "4096,8"], "must be from 16"),
    (["--cold-start-iterations", "4096"], "two different counts"),
    (["--cold-start-memory", "64"], "Lambda memory sizes"),
    (["--cold-start-runs", "0"], "at least 1"),
    (["--cold-start-periods", "10"], "quota of at least 1 ms"),
])
def test_bad_cold_start_settings_are_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    code = main(["bench", "--only", "cold-start", "--out", str(tmp_path), "--state-dir", str(tmp_path / "s"), *flags])
    assert code == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s" / "cold-start").exists()


def test_on_cgroup_v2_it_enables_cpu_and_writes_cpu_max(tmp_path: Path) -> None:
    """This host has cgroup v1, so v2's files are checked on a stand-in folder: what is written where.
    (The kernel's side of v2 is not exercised here; the v1 cap above is, for real.)"""
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    caps, why = make_caps([(128 / 1769, 20_000), (1.0, 100_000)], "lifeguard-test", root=tmp_path)
    assert why is None
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu"
    assert [(cap.version, (cap.path / "cpu.max").read_text()) for cap in caps] == [
        (2, "1447 20000"), (2, "100000 100000")]
    # The probe joined each group (a regular file here, so it stays behind with the pid).
    assert all((cap.path / "cgroup.procs").read_text().isdigit() for cap in caps)
