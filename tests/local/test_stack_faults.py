"""The local stack under faults and odd state directories (issue 14): real Postgres and PgBouncer."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lifeguard.cli import main
from lifeguard.stack.pooler import pid_record_file
from lifeguard.stack.procs import identify
from lifeguard.stack.stack import MAX_SOCKET_PATH_BYTES, LocalStack
from lifeguard.stack.system import SERVICE_USER, port_in_use, running_as_root
from tests.local.support import fresh_stack_dir, purge_stack

REPO_ROOT = Path(__file__).resolve().parents[2]


def _up(stack_dir: Path, ports: tuple[int, int], *extra: str) -> int:
    return main(["local", "up", "--state-dir", str(stack_dir), "--pg-port", str(ports[0]),
                 "--pooler-port", str(ports[1]), "--no-migrate", *extra])


def _wait_gone(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while identify(pid) is not None:
        assert time.monotonic() < deadline, f"pid {pid} did not exit"
        time.sleep(0.05)


@pytest.fixture
def odd_dir(state_root: Path) -> Iterator[Path]:
    path = fresh_stack_dir(state_root, "it's a dir, with spaces ")
    yield path
    purge_stack(path)


# -- item 3: pid files -------------------------------------------------------------------------


@pytest.mark.skipif(not running_as_root(), reason="the service user is another user only when run as root")
def test_the_service_user_cannot_point_down_at_another_process(
    stack_dir: Path, ports: tuple[int, int], bystander: subprocess.Popen[bytes]
) -> None:
    assert _up(stack_dir, ports) == 0
    stack = LocalStack(stack_dir)
    real = stack.pooler_pid(1)
    assert real is not None
    record = pid_record_file(stack.pooler_root(1))
    assert record.stat().st_uid == 0 and record.stat().st_mode & 0o077 == 0
    # The postgres user owns pgbouncer-1/ and may write anything there, but not the record beside it.
    forge = f"echo {bystander.pid} > {stack.pooler_root(1)}/pgbouncer.pid; echo {bystander.pid} > {record}"
    attempt = subprocess.run(["runuser", "-u", SERVICE_USER, "--", "sh", "-c", forge], capture_output=True, check=False)
    assert attempt.returncode != 0
    assert json.loads(record.read_text())["pid"] == real

    assert main(["local", "down", "--state-dir", str(stack_dir)]) == 0
    assert bystander.poll() is None  # never signalled
    assert identify(real) is None and not port_in_use(ports[1])  # the real PgBouncer was stopped


def test_a_reused_pid_is_not_taken_for_pgbouncer(
    stack_dir: Path, ports: tuple[int, int], bystander: subprocess.Popen[bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _up(stack_dir, ports) == 0
    stack = LocalStack(stack_dir)
    real = stack.pooler_pid(1)
    assert real is not None
    os.kill(real, signal.SIGKILL)
    _wait_gone(real)
    # PgBouncer crashed and its pid now belongs to another process (as after many forks).
    record = pid_record_file(stack.pooler_root(1))
    reused = {**json.loads(record.read_text()), "pid": bystander.pid}
    record.write_text(json.dumps(reused))
    (stack.pooler_root(1) / "pgbouncer.pid").write_text(f"{bystander.pid}\n")  # where older versions looked

    status = stack.status()
    assert status.postgres_running and status.poolers_running == 0
    capsys.readouterr()
    assert _up(stack_dir, ports) == 0  # starts PgBouncer again instead of skipping it
    assert "starting PgBouncer" in capsys.readouterr().err
    assert stack.status().up and stack.pooler_pid(1) not in (None, bystander.pid)
    assert main(["local", "down", "--state-dir", str(stack_dir)]) == 0
    assert bystander.poll() is None


# -- item 12: up after kill -9 -----------------------------------------------------------------

_ZOMBIE_SCRIPT = textwrap.dedent("""
    import ctypes, os, signal, sys, time
    from pathlib import Path
    from lifeguard.cli import main
    from lifeguard.stack.procs import process_state
    from lifeguard.stack.stack import LocalStack

    # A subreaper that does not reap, like a container's PID 1 without an init: a killed
    # postmaster stays a zombie, and `pg_ctl status` still calls it running.
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    state, pg, pooler = sys.argv[1:4]
    up = ["local", "up", "--state-dir", state, "--pg-port", pg, "--pooler-port", pooler, "--no-migrate"]
    assert main(up) == 0
    stack = LocalStack(Path(state).absolute())
    postmaster = int(open(os.path.join(stack.service_dir, "postgres", "data", "postmaster.pid")).read().split()[0])
    os.kill(stack.pooler_pid(1), signal.SIGKILL)
    os.kill(postmaster, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process_state(postmaster) != "Z":
        assert time.monotonic() < deadline, "the postmaster did not become a zombie"
        time.sleep(0.05)
    print("zombie-up", main(up), file=sys.stderr, flush=True)
    while True:  # now reap, as an init would
        try:
            if os.waitpid(-1, 0)[0] == postmaster:
                break
        except ChildProcessError:
            break
    print("reaped-up", main(up), file=sys.stderr, flush=True)
    print("down", main(["local", "down", "--state-dir", state]), file=sys.stderr, flush=True)
""")


def test_up_after_kill_9_says_what_to_do_then_recovers(stack_dir: Path, ports: tuple[int, int]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _ZOMBIE_SCRIPT, str(stack_dir), str(ports[0]), str(ports[1])],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=240, check=False,
    )
    err = proc.stderr
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "zombie-up 1" in err and "is a zombie that its parent process" in err and "docker run --init" in err
    assert "reaped-up 0" in err and "down 0" in err


# -- item 13: a failed up stops what it started -------------------------------------------------


def test_a_failed_up_leaves_running_what_was_running_before(stack_dir: Path, ports: tuple[int, int]) -> None:
    assert _up(stack_dir, ports) == 0
    stack = LocalStack(stack_dir)
    config = stack.require_config()
    for process in stack.poolers(config):
        process.stop(signal.SIGINT, timeout=15)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports[1]))
        holder.listen()
        assert _up(stack_dir, ports) == 1
    status = stack.status()
    assert status.postgres_running and status.poolers_running == 0  # Postgres was not this up's to stop


# -- item 14: socket path length ---------------------------------------------------------------


def test_a_service_directory_too_deep_for_the_sockets_is_refused_up_front(
    state_root: Path, ports: tuple[int, int], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # pgbouncer-1/.s.PGSQL.PORT is 25 bytes with a 5-digit port: this reaches 108 bytes exactly.
    base = f"{state_root}/"
    suffix = "/pgbouncer-1/.s.PGSQL." + str(ports[1])
    if running_as_root():
        # The sockets live in SERVICE_PARENT/<uid>-<16 hex digits>: a parent this deep makes them too long.
        service_name = f"/{os.geteuid()}-" + "0" * 16
        parent = Path(base + "p" * (MAX_SOCKET_PATH_BYTES + 1 - len(base) - len(service_name) - len(suffix)))
        parent.mkdir(mode=0o711)
        monkeypatch.setattr("lifeguard.stack.stack.SERVICE_PARENT", parent)
        deep = state_root / f"shallow-{ports[0]}"
    else:
        deep = Path(base + "d" * (MAX_SOCKET_PATH_BYTES + 1 - len(base) - len(suffix)))
    service = LocalStack(deep).service_dir
    assert len(str(service) + suffix) == MAX_SOCKET_PATH_BYTES + 1
    assert _up(deep, ports) == 1
    err = capsys.readouterr().err
    assert f"would be {MAX_SOCKET_PATH_BYTES + 1} bytes long" in err and "at most 107 bytes" in err
    # Refused before anything was made or started.
    assert not deep.exists() and not service.exists() and not port_in_use(ports[0])


# -- item 15: concurrent up --------------------------------------------------------------------


def test_two_concurrent_ups_both_succeed_one_after_the_other(stack_dir: Path, ports: tuple[int, int]) -> None:
    argv = [sys.executable, "-m", "lifeguard.cli", "local", "up", "--state-dir", str(stack_dir),
            "--pg-port", str(ports[0]), "--pooler-port", str(ports[1]), "--no-migrate"]
    procs = [subprocess.Popen(argv, cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [proc.communicate(timeout=180)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    assert any("already running" in out for out in outputs)
    assert LocalStack(stack_dir).status().up


# -- item 16: quotes and spaces in the state directory -------------------------------------------


def test_a_state_directory_with_a_quote_and_spaces_works(odd_dir: Path, ports: tuple[int, int]) -> None:
    assert main(["local", "up", "--state-dir", str(odd_dir), "--pg-port", str(ports[0]),
                 "--pooler-port", str(ports[1])]) == 0
    stack = LocalStack(odd_dir)
    assert stack.status().up
    run = stack.migrate()
    assert run.returncode == 0 and "nothing to apply" in run.output
    assert main(["local", "down", "--state-dir", str(odd_dir)]) == 0
    assert not stack.status().anything_running
