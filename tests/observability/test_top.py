"""``lifeguard local top`` against the real PgBouncer and Postgres: figures, table, JSON, errors."""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Callable

import psycopg
import pytest

from lifeguard.cli import main as cli_main
from lifeguard.stack.top import TopSources, add_top_command, format_table, run_top, snapshot
from pgbouncer.metrics import sample_console
from tests.observability.support import STATS_PASSWORD, StatsPooler
from tests.observability.test_publisher import saturated, wait_until
from tests.secrecy import assert_no_secret


def top_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lifeguard local")
    add_top_command(parser.add_subparsers(dest="local_command"))
    return parser.parse_args(["top", *argv])


def test_snapshot_of_a_saturated_pool(stats_pooler: Callable[..., StatsPooler]) -> None:
    pooler = stats_pooler(default_pool_size=1)
    console = pooler.console()
    superuser = pooler.db.cluster.superuser_dsn()
    with saturated(pooler, waiters=2):
        wait_until(lambda: sample_console(console).pools[0].cl_waiting == 2, 15, "2 clients waiting")
        time.sleep(0.2)
        snap = snapshot(console, superuser)
    [pool] = snap["pools"]
    assert pool["pool"] == f"{pooler.db.dbname}/{pooler.db.user}"
    assert (pool["cl_active"], pool["cl_waiting"], pool["sv_active"]) == (1, 2, 1)
    assert pool["maxwait_s"] >= 0.2
    assert snap["totals"]["cl_waiting"] == 2 and snap["totals"]["client_connections"] == 3
    pg = snap["postgres"]
    assert pg["max_connections"] == pooler.db.cluster.max_connections
    # The pool's one server connection, at least (other tests' clusters share this server).
    assert 1 <= pg["backends"] < pg["max_connections"]
    json.dumps(snap)  # plain data, for the demo and --json


def test_app_user_url_sees_every_backend(stats_pooler: Callable[..., StatsPooler]) -> None:
    """DATABASE_URL_UNPOOLED (the app role, no superuser) is enough for the backend count."""
    pooler = stats_pooler()
    with psycopg.connect(pooler.db.cluster.superuser_dsn(), autocommit=True) as other:
        other.execute("SELECT 1")
        as_app = snapshot(pooler.console(), pooler.db.direct_url)["postgres"]["backends"]
        as_superuser = snapshot(pooler.console(), pooler.db.cluster.superuser_dsn())["postgres"]["backends"]
    assert as_app >= 1  # the superuser's session, another role's backend, is counted
    assert abs(as_app - as_superuser) <= 2  # each run excludes only itself; other tests may come and go


def test_top_once_json_and_table(stats_pooler: Callable[..., StatsPooler], monkeypatch: pytest.MonkeyPatch) -> None:
    pooler = stats_pooler()
    with psycopg.connect(pooler.url(), prepare_threshold=None, autocommit=True) as conn:
        conn.execute("SELECT 1")
        env = {"LIFEGUARD_POOLER_CONSOLE_URL": pooler.console_url(), "DATABASE_URL_UNPOOLED": pooler.db.direct_url}
        out, err = io.StringIO(), io.StringIO()
        assert run_top(top_args("--once", "--json"), env=env, out=out, err=err) == 0
        snap = json.loads(out.getvalue())
        assert snap["pools"][0]["cl_active"] == 1
        assert snap["postgres"]["max_connections"] == 100
        table_out = io.StringIO()
        assert run_top(top_args("--once"), env=env, out=table_out, err=err) == 0
    table = table_out.getvalue()
    header = table.splitlines()[1].split()
    assert header == ["pool", "cl_active", "cl_waiting", "sv_active", "sv_idle", "maxwait_s", "tps", "qps"]
    assert f"{pooler.db.dbname}/{pooler.db.user}" in table and "(all)" in table
    assert "Postgres backends" in table and "max_connections 100" in table
    assert_no_secret(STATS_PASSWORD, table + out.getvalue() + err.getvalue())


def test_top_through_the_cli(stats_pooler: Callable[..., StatsPooler], monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    pooler = stats_pooler()
    monkeypatch.setenv("LIFEGUARD_POOLER_CONSOLE_URL", pooler.console_url())
    monkeypatch.delenv("DATABASE_URL_UNPOOLED", raising=False)
    assert cli_main(["local", "top", "--once", "--json"]) == 0
    snap = json.loads(capsys.readouterr().out)
    assert snap["pools"] == [] and snap["postgres"] is None
    assert snap["console"].endswith(f".s.PGSQL.{pooler.port}")


class _Terminal(io.StringIO):
    """A tty that is closed (Ctrl-C) after a few refreshes."""

    def __init__(self, refreshes: int) -> None:
        super().__init__()
        self.left = refreshes

    def isatty(self) -> bool:
        return True

    def flush(self) -> None:
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt


def test_live_mode_refreshes_in_place(stats_pooler: Callable[..., StatsPooler]) -> None:
    pooler = stats_pooler()
    sources = TopSources(pooler.console())
    terminal = _Terminal(refreshes=3)
    assert run_top(top_args("--interval", "0.05"), resolver=lambda: sources, env={}, out=terminal) == 0
    screen = terminal.getvalue()
    assert screen.count("\x1b[H\x1b[2J") == 3  # home + clear before each table
    assert screen.count("PgBouncer ") == 3


def test_top_errors(stats_pooler: Callable[..., StatsPooler]) -> None:
    err = io.StringIO()
    assert run_top(top_args("--once"), env={}, out=io.StringIO(), err=err) == 2
    assert "LIFEGUARD_POOLER_CONSOLE_URL" in err.getvalue() and "lifeguard local up" in err.getvalue()

    pooler = stats_pooler()
    url = pooler.console_url()
    pooler.process.stop()
    err = io.StringIO()
    assert run_top(top_args("--once"), env={"LIFEGUARD_POOLER_CONSOLE_URL": url}, out=io.StringIO(), err=err) == 1
    assert "console at" in err.getvalue()
    assert_no_secret(STATS_PASSWORD, err.getvalue())

    err = io.StringIO()
    bad = {"LIFEGUARD_POOLER_CONSOLE_URL": "postgresql://u:" + STATS_PASSWORD + "@h:notaport/x"}
    assert run_top(top_args("--once"), env=bad, out=io.StringIO(), err=err) == 2
    assert_no_secret(STATS_PASSWORD, err.getvalue())

    assert run_top(top_args("--once", "--interval", "0"), resolver=lambda: TopSources(pooler.console()), env={},
                   out=io.StringIO(), err=io.StringIO()) == 2


def test_format_table_without_postgres() -> None:
    snap = {
        "time": 0.0, "console": "/tmp/.s.PGSQL.6432", "postgres": None,
        "pools": [{"pool": "db/u", "cl_active": 1, "cl_waiting": 0, "sv_active": 1, "sv_idle": 0,
                   "maxwait_s": 0.0, "tps": 1.5, "qps": 3.0}],
        "totals": {"cl_active": 1, "cl_waiting": 0, "sv_active": 1, "sv_idle": 0, "maxwait_s": 0.0,
                   "tps": 1.5, "qps": 3.0, "client_connections": 1, "server_connections": 1},
    }
    table = format_table(snap)
    assert "Postgres" not in table.split("\n", 1)[1]
    assert table.splitlines()[2].split() == ["db/u", "1", "0", "1", "0", "0.0", "1.5", "3.0"]


def test_top_and_stack_sources_on_the_local_stack(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real path: `lifeguard local up`, then `lifeguard local top` finds the stack by itself."""
    import shutil
    import tempfile
    from pathlib import Path

    from lifeguard.stack.stack import LocalStack
    from lifeguard.stack.system import free_port
    from lifeguard.stack.top import snapshot, stack_sources

    for name in ("LIFEGUARD_POOLER_CONSOLE_URL", "DATABASE_URL_UNPOOLED", "LIFEGUARD_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    state = Path(tempfile.mkdtemp(prefix="lifeguard-top-"))
    state.chmod(0o755)
    stack_dir = state / "stack"
    common = ["--state-dir", str(stack_dir)]
    try:
        # With the migrations: the job provisions the application role the pooled URL logs in as.
        assert cli_main(["local", "up", *common, "--pg-port", str(free_port()),
                         "--pooler-port", str(free_port()), "--max-connections", "40"]) == 0
        stack = LocalStack(stack_dir)
        with psycopg.connect(stack.pooled_url(), prepare_threshold=None, autocommit=True) as conn:
            conn.execute("SELECT 1")
            capsys.readouterr()
            assert cli_main(["local", "top", *common, "--once", "--json"]) == 0
            snap = json.loads(capsys.readouterr().out)
            sources = stack_sources(stack)
            demo = snapshot(sources.console, sources.direct_url)
        assert snap["pools"][0]["cl_active"] == 1
        assert snap["postgres"]["max_connections"] == 40 and snap["postgres"]["backends"] >= 1
        assert demo["pools"][0]["pool"] == snap["pools"][0]["pool"]
        assert_no_secret(stack.stats_password(), json.dumps(snap) + json.dumps(demo))
    finally:
        cli_main(["local", "down", *common, "--purge"])
        shutil.rmtree(state, ignore_errors=True)


def test_top_reads_the_console_url_from_stdin(stats_pooler: Callable[..., StatsPooler],
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # Issue 31: `--console-url -` keeps the stats user's password off the command line.
    pooler = stats_pooler()
    monkeypatch.delenv("LIFEGUARD_POOLER_CONSOLE_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL_UNPOOLED", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(pooler.console_url() + "\n"))
    assert cli_main(["local", "top", "--once", "--json", "--console-url", "-"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["console"].endswith(f".s.PGSQL.{pooler.port}")
    assert_no_secret(STATS_PASSWORD, captured.out + captured.err)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert cli_main(["local", "top", "--once", "--console-url", "-"]) != 0
    assert "standard input holds no URL" in capsys.readouterr().err
