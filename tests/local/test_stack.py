"""``lifeguard local up|status|env|down``, run for real against Postgres 15 and the shipped PgBouncer 1.24.1."""

from __future__ import annotations

import json
import socket
import stat
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from lifeguard.cli import main
from lifeguard.stack.stack import LocalStack, StackError, StackOptions, migration_env
from lifeguard.stack.system import port_in_use
from tests.secrecy import assert_no_secret
from tests.support import exported_env


def _up(stack_dir: Path, ports: tuple[int, int], *extra: str) -> int:
    return main(["local", "up", "--state-dir", str(stack_dir), "--pg-port", str(ports[0]),
                 "--pooler-port", str(ports[1]), *extra])


def _pids(stack: LocalStack) -> tuple[str, str]:
    postmaster = (stack.service_dir / "postgres" / "data" / "postmaster.pid").read_text().split()[0]
    return postmaster, str(stack.pooler_pid(1))


def test_up_status_env_down(stack_dir: Path, ports: tuple[int, int], capsys: pytest.CaptureFixture[str]) -> None:
    assert _up(stack_dir, ports) == 0
    stack = LocalStack(stack_dir)
    password_file = stack_dir / "app.password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    capsys.readouterr()

    assert main(["local", "status", "--state-dir", str(stack_dir)]) == 0
    status_text = capsys.readouterr().out
    assert "stack     up" in status_text
    assert_no_secret(stack.app_password(), status_text)

    assert main(["local", "env", "--state-dir", str(stack_dir)]) == 0
    printed = capsys.readouterr().out
    # Export lines: `eval "$(lifeguard local env)"` reaches the programs the shell starts afterwards.
    values = exported_env(printed)
    assert [line.split("=", 1)[0] for line in printed.splitlines()] == [
        "export DATABASE_URL", "export LIFEGUARD_POOLER_PREPARED_STATEMENTS", "export NODE_EXTRA_CA_CERTS",
        "export DATABASE_URL_UNPOOLED",
    ]
    # The shipped PgBouncer tracks prepared statements, and the functions are told so; Node.js
    # clients get the pooler's CA, the very file DATABASE_URL names.
    assert values["LIFEGUARD_POOLER_PREPARED_STATEMENTS"] == "1"
    assert values["NODE_EXTRA_CA_CERTS"] == str(stack.pooler_ca_file)
    names = ["DATABASE_URL", "DATABASE_URL_UNPOOLED"]
    assert sorted(values) == sorted([*names, "LIFEGUARD_POOLER_PREPARED_STATEMENTS", "NODE_EXTRA_CA_CERTS"])
    urls = {name: values[name] for name in names}
    pooled, direct = conninfo_to_dict(urls["DATABASE_URL"]), conninfo_to_dict(urls["DATABASE_URL_UNPOOLED"])
    assert (str(pooled["port"]), str(direct["port"])) == (str(ports[1]), str(ports[0]))
    # Two roles (the functions' DML-only one, the owner that migrates), one database.
    assert (pooled["user"], direct["user"]) == ("lifeguard_app", "lifeguard_owner")
    assert pooled["dbname"] == direct["dbname"]
    # Both verified: the pooled URL against the stack's own pooler CA, in the state directory.
    assert direct["sslmode"] == "verify-full" and pooled["sslmode"] == "verify-full"
    assert pooled["sslrootcert"] == str(stack.pooler_ca_file) and stack.pooler_ca_file.is_relative_to(stack_dir)
    # Verification is real: the same URL with another CA is refused.
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(urls["DATABASE_URL"].replace(str(stack.pooler_ca_file), str(direct["sslrootcert"])),
                        connect_timeout=10)

    # Both URLs work, and they reach the same database: the migrations are visible through both.
    for name in names:
        with psycopg.connect(urls[name], prepare_threshold=None, connect_timeout=10) as conn:
            row = conn.execute("SELECT credits FROM orgs WHERE name = 'acme'").fetchone()
            assert row is not None and row[0] >= 0
            server_port = conn.execute("SELECT inet_server_port()").fetchone()
        # Through PgBouncer the server sees PgBouncer's connection, on Postgres' own port.
        assert server_port == (ports[0],)

    # `local top` reads PgBouncer's console as the stack's stats user, and Postgres' backends.
    assert main(["local", "top", "--once", "--state-dir", str(stack_dir)]) == 0
    top = capsys.readouterr().out
    assert "max_connections 100" in top and "cl_active" in top

    assert main(["local", "down", "--state-dir", str(stack_dir)]) == 0
    assert main(["local", "status", "--state-dir", str(stack_dir)]) == 3
    assert "stack     down" in capsys.readouterr().out
    assert not port_in_use(ports[0]) and not port_in_use(ports[1])
    assert main(["local", "env", "--state-dir", str(stack_dir)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "not running" in captured.err


def test_second_up_is_idempotent_and_restarts_a_stopped_stack(
    stack_dir: Path, ports: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _up(stack_dir, ports) == 0
    stack = LocalStack(stack_dir)
    before = _pids(stack)
    password = stack.app_password()
    capsys.readouterr()

    assert _up(stack_dir, ports) == 0
    err = capsys.readouterr().err
    assert "Postgres already running" in err and "PgBouncer already running" in err
    assert "nothing to apply" in err
    assert _pids(stack) == before
    assert stack.app_password() == password

    # Options that contradict the stored stack are refused, naming the option.
    assert _up(stack_dir, ports, "--max-connections", "50") == 1
    assert "--max-connections 50 (the stack has 100)" in capsys.readouterr().err

    stack.down()
    assert not stack.status().anything_running
    # Without options, `up` brings the stopped stack back with what it stored.
    assert main(["local", "up", "--state-dir", str(stack_dir), "--no-migrate"]) == 0
    assert stack.status().up

    stack.down(purge=True)
    assert not stack_dir.exists()


@pytest.mark.parametrize("which", ["postgres", "pgbouncer"])
def test_port_in_use_is_a_clear_error(
    stack_dir: Path, ports: tuple[int, int], which: str, capsys: pytest.CaptureFixture[str]
) -> None:
    busy = ports[0] if which == "postgres" else ports[1]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", busy))
        holder.listen()
        assert _up(stack_dir, ports, "--no-migrate") == 1
    err = capsys.readouterr().err
    assert f"port {busy} on 127.0.0.1 is already in use" in err
    assert ("--pg-port" if which == "postgres" else "--pooler-port") in err
    assert "Traceback" not in err
    # The failed `up` stopped what it had started (Postgres, when the pooler's port was taken).
    assert not LocalStack(stack_dir).status().anything_running
    assert not port_in_use(ports[0])


def test_missing_pgbouncer_install_says_how_to_make_it(
    stack_dir: Path, ports: tuple[int, int], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LIFEGUARD_CACHE_DIR", str(stack_dir / "empty-cache"))  # nothing installed there
    monkeypatch.delenv("LIFEGUARD_PGBOUNCER", raising=False)
    assert _up(stack_dir, ports) == 1
    err = capsys.readouterr().err
    assert "run scripts/install-pgbouncer.sh" in err
    assert "Traceback" not in err


def test_another_pgbouncer_binary_is_refused_unless_executable(
    stack_dir: Path, ports: tuple[int, int], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LIFEGUARD_PGBOUNCER", str(stack_dir / "no-such-pgbouncer"))
    assert _up(stack_dir, ports) == 1
    assert "LIFEGUARD_PGBOUNCER" in capsys.readouterr().err


def test_migration_job_gets_only_the_direct_url(
    stack_dir: Path, ports: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Decoys in our own environment that must not reach the job.
    monkeypatch.setenv("DATABASE_URL", "postgresql://decoy@example.invalid/x")
    monkeypatch.setenv("PGHOST", "example.invalid")
    report = stack_dir.parent / f"{stack_dir.name}-env.json"
    script = (
        "import json, os, sys; "
        "json.dump({k: v for k, v in os.environ.items() if k.startswith(('DATABASE', 'PG'))}, "
        f"open({str(report)!r}, 'w'))"
    )
    stack = LocalStack(stack_dir)
    stack.up(StackOptions(pg_port=ports[0], pooler_port=ports[1]), migrate_command=[sys.executable, "-c", script])
    seen = json.loads(report.read_text())
    report.unlink()
    assert sorted(seen) == ["DATABASE_URL_UNPOOLED"]
    points_at_postgres = seen["DATABASE_URL_UNPOOLED"] == stack.direct_url()
    assert points_at_postgres

    # The real job over the same environment applies the migrations through the direct URL.
    run = stack.migrate()
    assert run.returncode == 0, run.output
    assert_no_secret(stack.app_password(), run.output)


def test_migration_env_strips_every_database_variable() -> None:
    env = migration_env("postgresql://u:p@h:1/d", base={
        "PATH": "/bin", "DATABASE_URL": "x", "DATABASE_URL_SECRET_ARN": "y", "PGPASSWORD": "z", "HOME": "/root",
    })
    assert env == {"PATH": "/bin", "HOME": "/root", "DATABASE_URL_UNPOOLED": "postgresql://u:p@h:1/d"}


def test_options_are_checked_before_anything_starts(stack_dir: Path) -> None:
    with pytest.raises(StackError, match="--pg-port and --pooler-port must differ"):
        LocalStack(stack_dir).up(StackOptions(pg_port=50000, pooler_port=50000))
    assert not (stack_dir / "stack.json").exists()
