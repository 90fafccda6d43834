"""The image's entrypoint: render, check the open-files limit, then exec PgBouncer.

``os.execvp`` is replaced by a recorder for the happy path (exec would replace pytest); the
refusal path runs the real module in a child under ``ulimit -n 256``, as the container would;
and the real module, given both secrets, execs the real PgBouncer that the stats user then reads.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shlex
import signal
import stat
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from cryptography import x509

from lifeguard.stack.pgbouncer_install import command
from lifeguard.stack.pooler import local_settings, wait_for_port
from lifeguard.stack.postgres import make_dsn
from lifeguard.stack.system import SERVICE_USER, free_port, running_as_root, service_argv
from pgbouncer.contract import (
    ALTERNATE_PASSWORD_KEY,
    ALTERNATE_USERNAME_KEY,
    CREDENTIALS_ENV,
    SETTINGS_ENV,
    STATS_CREDENTIALS_ENV,
    STATS_USER,
)
from pgbouncer.entrypoint import (
    StartupError,
    check_open_files,
    credentials_from_env,
    credentials_from_secret,
    main,
)
from pgbouncer.metrics import ConsoleTarget, sample_console
from pgbouncer.settings import PoolerSettings, Upstream, render_userlist
from pgbouncer.versions import PINNED, PgBouncerVersion
from tests.observability.support import wait_for_socket
from tests.secrecy import assert_no_secret
from tests.support import AppDatabase

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "en-Try:p@ss w\"rd';#%$*"
SECRET = '{"username": "app", "password": "' + PASSWORD.replace('"', '\\"') + '"}'
STATS_PASSWORD = "St4ts \"console\" p@ss:w%rd#;"
STATS_SECRET = json.dumps({"username": STATS_USER, "password": STATS_PASSWORD})


def settings_in(run_dir: Path, **overrides: object) -> PoolerSettings:
    fields: dict[str, object] = {
        "upstream": Upstream(host="db.example.com", dbname="app"),
        "default_pool_size": 10,
        "version": PINNED,
        "auth_file": str(run_dir / "userlist.txt"),
        "client_tls_cert_file": str(run_dir / "tls" / "server.crt"),
        "client_tls_key_file": str(run_dir / "tls" / "server.key"),
        "server_tls_ca_file": str(run_dir / "ca.pem"),
        "max_client_conn": 100,
    }
    fields.update(overrides)
    return PoolerSettings(**fields)  # type: ignore[arg-type]


# -- open files ---------------------------------------------------------------------------


def test_check_open_files_refuses_a_limit_below_what_max_client_conn_needs(tmp_path: Path) -> None:
    settings = settings_in(tmp_path, max_client_conn=10000, default_pool_size=20)
    needed = settings.required_open_files()
    assert needed == 10000 + 20 + 32
    with pytest.raises(StartupError) as info:
        check_open_files(settings, 1024)
    message = str(info.value)
    assert f"open-files limit 1024 is below the {needed}" in message
    assert "nofile" in message and "max_client_conn" in message
    check_open_files(settings, needed)
    check_open_files(settings, resource.RLIM_INFINITY)
    with pytest.raises(StartupError):
        check_open_files(settings, needed - 1)


# -- the pooler secret --------------------------------------------------------------------


def test_credentials_from_secret() -> None:
    assert credentials_from_secret(SECRET) == {"app": PASSWORD}


def test_the_secret_may_name_the_second_login_role_of_a_rotation() -> None:
    both = json.dumps({"username": "app", "password": PASSWORD, ALTERNATE_USERNAME_KEY: "app_b",
                       ALTERNATE_PASSWORD_KEY: "Sup3r-s3cret-b"})
    assert credentials_from_secret(both, alternate=True) == {"app": PASSWORD, "app_b": "Sup3r-s3cret-b"}
    # Only the pooler's own secret: the console user's names one user.
    with pytest.raises(StartupError, match="may not name a second user") as info:
        credentials_from_secret(both, STATS_CREDENTIALS_ENV)
    assert "Sup3r" not in str(info.value)


@pytest.mark.parametrize(
    "extra",
    [{ALTERNATE_USERNAME_KEY: "app_b"}, {ALTERNATE_PASSWORD_KEY: "Sup3r-s3cret-b"},
     {ALTERNATE_USERNAME_KEY: "app", ALTERNATE_PASSWORD_KEY: "Sup3r-s3cret-b"},
     {ALTERNATE_USERNAME_KEY: "", ALTERNATE_PASSWORD_KEY: "Sup3r-s3cret-b"}],
)
def test_a_half_given_second_role_is_refused(extra: dict[str, str]) -> None:
    text = json.dumps({"username": "app", "password": PASSWORD, **extra})
    with pytest.raises(StartupError) as info:
        credentials_from_secret(text, alternate=True)
    assert "Sup3r" not in str(info.value) and CREDENTIALS_ENV in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        '{"username": "app", "password": "Sup3r-s3cret',  # truncated: not JSON
        '{"user": "app", "password": "Sup3r-s3cret"}',
        '{"username": "app", "password": ["Sup3r-s3cret"]}',
        '["app", "Sup3r-s3cret"]',
    ],
)
def test_bad_secret_is_refused_without_echoing_it(text: str) -> None:
    with pytest.raises(StartupError) as info:
        credentials_from_secret(text)
    assert "Sup3r" not in str(info.value)
    assert CREDENTIALS_ENV in str(info.value)


# -- the stats user's secret -------------------------------------------------------------


def test_stats_secret_adds_a_stats_users_user() -> None:
    settings = settings_in(Path("/run/x"), stats_users=("other", STATS_USER))
    both = credentials_from_env({CREDENTIALS_ENV: SECRET, STATS_CREDENTIALS_ENV: STATS_SECRET}, settings)
    assert both == {"app": PASSWORD, STATS_USER: STATS_PASSWORD}
    # Optional: without it the auth_file holds the pooler's user only, stats_users or not.
    assert credentials_from_env({CREDENTIALS_ENV: SECRET}, settings) == {"app": PASSWORD}


@pytest.mark.parametrize(
    ("stats_users", "secret", "message"),
    [
        ((), STATS_SECRET, f"user '{STATS_USER}', which the pooler settings do not list in stats_users (listed: none)"),
        (("metrics",), STATS_SECRET, "(listed: 'metrics'); add it to stats_users or unset POOLER_STATS_CREDENTIALS"),
        ((STATS_USER,), json.dumps({"username": "app", "password": "Sup3r-s3cret"}),
         "names the pooler's database user 'app'"),
        ((STATS_USER,), '{"username": "lifeguard_stats", "password": "Sup3r-s3cret',
         "POOLER_STATS_CREDENTIALS is not JSON"),
        ((STATS_USER,), json.dumps({"username": STATS_USER, "password": 7}), "POOLER_STATS_CREDENTIALS must be a JSON"),
        ((STATS_USER,), "", "POOLER_STATS_CREDENTIALS is not JSON"),
    ],
    ids=["no-stats-users", "not-listed", "database-user", "not-json", "bad-shape", "empty"],
)
def test_bad_stats_secret_is_refused_without_echoing_it(
    stats_users: tuple[str, ...], secret: str, message: str
) -> None:
    settings = settings_in(Path("/run/x"), stats_users=stats_users)
    with pytest.raises(StartupError) as info:
        credentials_from_env({CREDENTIALS_ENV: SECRET, STATS_CREDENTIALS_ENV: secret}, settings)
    assert message in str(info.value)
    # A bool, not `x not in y`: pytest would print both operands, the password among them.
    leaked = any(password in str(info.value) for password in ("Sup3r", STATS_PASSWORD, PASSWORD))
    assert not leaked


# -- main(): the happy path ---------------------------------------------------------------


@pytest.fixture
def exec_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    calls: list[tuple[str, list[str]]] = []

    def record(file: str, args: list[str]) -> None:
        calls.append((file, list(args)))

    monkeypatch.setattr(os, "execvp", record)
    return calls


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_main_renders_private_files_makes_a_certificate_and_execs_pgbouncer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exec_calls: list[tuple[str, list[str]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_in(tmp_path / "run")
    monkeypatch.setenv(SETTINGS_ENV, settings.to_json())
    monkeypatch.setenv(CREDENTIALS_ENV, SECRET)

    main(run_dir=tmp_path / "run")

    ini = tmp_path / "run" / "pgbouncer.ini"
    assert exec_calls == [("pgbouncer", ["pgbouncer", str(ini)])]
    assert ini.read_text() == settings.render_ini()
    userlist = Path(settings.auth_file)
    assert userlist.read_text() == render_userlist({"app": PASSWORD})
    cert, key = Path(settings.client_tls_cert_file), Path(settings.client_tls_key_file)
    for private in (ini, userlist, key):
        assert mode(private) == 0o600, private.name
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "pgbouncer" in names.get_values_for_type(x509.DNSName)
    # The secret is in the 0600 auth_file only: not in PgBouncer's environment, not on stderr.
    left = {CREDENTIALS_ENV} & set(os.environ)
    assert not left
    out = capsys.readouterr()
    leaked = PASSWORD in out.out + out.err
    assert not leaked
    assert f"starting PgBouncer {PINNED}" in out.err


def test_main_renders_the_stats_user_and_drops_both_secrets_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exec_calls: list[tuple[str, list[str]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_in(tmp_path, stats_users=(STATS_USER,))
    monkeypatch.setenv(SETTINGS_ENV, settings.to_json())
    monkeypatch.setenv(CREDENTIALS_ENV, SECRET)
    monkeypatch.setenv(STATS_CREDENTIALS_ENV, STATS_SECRET)

    main(run_dir=tmp_path)

    assert len(exec_calls) == 1
    userlist = Path(settings.auth_file)
    assert userlist.read_text() == render_userlist({"app": PASSWORD, STATS_USER: STATS_PASSWORD})
    assert mode(userlist) == 0o600
    assert f"stats_users = {STATS_USER}" in (tmp_path / "pgbouncer.ini").read_text()
    # Compared by name, so a failure prints variable names, not the environment holding the secrets.
    left = {CREDENTIALS_ENV, STATS_CREDENTIALS_ENV} & set(os.environ)
    assert not left
    out = capsys.readouterr()
    assert not any(p in out.out + out.err for p in (STATS_PASSWORD, PASSWORD)), "a password was printed"


def test_main_keeps_a_mounted_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exec_calls: list[tuple[str, list[str]]]
) -> None:
    settings = settings_in(tmp_path)
    tls = tmp_path / "tls"
    tls.mkdir()
    (tls / "server.crt").write_text("mounted certificate\n")
    (tls / "server.key").write_text("mounted key\n")
    main({SETTINGS_ENV: settings.to_json(), CREDENTIALS_ENV: SECRET}, run_dir=tmp_path)
    assert (tls / "server.crt").read_text() == "mounted certificate\n"
    assert (tls / "server.key").read_text() == "mounted key\n"
    assert len(exec_calls) == 1


def test_main_skips_the_certificate_when_client_tls_is_off(
    tmp_path: Path, exec_calls: list[tuple[str, list[str]]]
) -> None:
    settings = settings_in(tmp_path, client_tls_sslmode="disable")
    main({SETTINGS_ENV: settings.to_json(), CREDENTIALS_ENV: SECRET}, run_dir=tmp_path)
    assert not (tmp_path / "tls").exists()
    assert len(exec_calls) == 1


# -- main(): refusals ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, f"set {SETTINGS_ENV} and {CREDENTIALS_ENV}"),
        ({SETTINGS_ENV: "{}", CREDENTIALS_ENV: SECRET}, "need 'upstream' and 'default_pool_size'"),
        ({CREDENTIALS_ENV: '{"username": "app", "password": "Sup3r-s3cret\\n"}'}, "line break or control character"),
        ({CREDENTIALS_ENV: '{"username": "app", "password": "Sup3r-s3cret'}, "is not JSON"),
        ({CREDENTIALS_ENV: '{"username": "app", "password": "md5' + "ab" * 16 + '"}'}, "looks like an md5"),
        ({CREDENTIALS_ENV: SECRET, STATS_CREDENTIALS_ENV: '{"username": "lifeguard_stats", "password": "Sup3r'},
         "POOLER_STATS_CREDENTIALS is not JSON"),
        ({CREDENTIALS_ENV: SECRET, STATS_CREDENTIALS_ENV: json.dumps({"username": "x", "password": "Sup3r-s3cret"})},
         "do not list in stats_users"),
    ],
)
def test_main_refuses_with_exit_2_and_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], exec_calls: list[tuple[str, list[str]]],
    env: dict[str, str], message: str,
) -> None:
    env = {SETTINGS_ENV: settings_in(tmp_path).to_json(), **env} if env else env
    with pytest.raises(SystemExit) as info:
        main(env, run_dir=tmp_path)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("lifeguard-pgbouncer: refusing to start: ")
    assert message in err
    assert "Sup3r" not in err and "ab" * 16 not in err
    assert exec_calls == []


def test_main_refuses_generated_certificate_paths_it_cannot_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], exec_calls: list[tuple[str, list[str]]]
) -> None:
    settings = settings_in(tmp_path, client_tls_cert_file=str(tmp_path / "cert.pem"))
    with pytest.raises(SystemExit):
        main({SETTINGS_ENV: settings.to_json(), CREDENTIALS_ENV: SECRET}, run_dir=tmp_path)
    assert "<dir>/<name>.crt" in capsys.readouterr().err
    assert exec_calls == []


def test_module_refuses_to_start_under_a_low_open_files_limit(tmp_path: Path) -> None:
    """The real ``python -m pgbouncer.entrypoint`` under ``ulimit -n 256``, as in a container."""
    settings = settings_in(tmp_path, max_client_conn=10000)
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(REPO),
        SETTINGS_ENV: settings.to_json(),
        CREDENTIALS_ENV: SECRET,
    }
    result = subprocess.run(
        ["bash", "-c", 'ulimit -n 256 && exec "$0" -m pgbouncer.entrypoint', sys.executable],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    needed = settings.required_open_files()
    assert f"refusing to start: open-files limit 256 is below the {needed} that max_client_conn 10000 needs" in (
        result.stderr
    )
    assert_no_secret(PASSWORD, result.stdout + result.stderr)
    # Refused before anything was written: no userlist holding the secret is left behind.
    assert not Path(settings.auth_file).exists()


# -- the real module with both secrets, exec'ing the real PgBouncer -----------------------


def _descendant_named(pid: int, name: str) -> int:
    """``pid`` itself or its first child when that process runs ``name`` (runuser forks once)."""
    for candidate in [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]:
        if Path(f"/proc/{candidate}/comm").read_text().strip() == name:
            return candidate
    raise AssertionError(f"no {name} process at or under pid {pid}")


def test_module_execs_a_pgbouncer_whose_console_the_stats_user_reads(
    app_db: AppDatabase, state_root: Path, pgbouncer_binary: Path, pgbouncer_version: PgBouncerVersion,
    tmp_path: Path,
) -> None:
    """``python -m pgbouncer.entrypoint``'s ``main`` with both secrets, exactly as the pooler task runs it.

    The image runs entrypoint and PgBouncer as one non-root uid. Here Python lives where only root
    may read, and PgBouncer refuses root, so ``pgbouncer`` on PATH is a stand-in that hands the
    files the entrypoint wrote to the service user and execs the real binary as that user (what
    ``PoolerProcess.start`` does after ``prepare``). Everything else is the real chain: the
    entrypoint parses both secrets, renders, and ``os.execvp``s; PgBouncer serves the app user
    over TCP and the stats user over the Unix socket, and neither secret is in its environment.
    """
    root = state_root / f"entrypoint-{app_db.dbname}"
    root.mkdir()
    settings = local_settings(
        root, upstream_port=app_db.cluster.port, upstream_ca_file=app_db.cluster.ca_file, dbname=app_db.dbname,
        listen_port=free_port(), default_pool_size=2, version=pgbouncer_version, max_client_conn=100,
        stats_users=(STATS_USER,),
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    hand_over = f"chown -R {SERVICE_USER}: {shlex.quote(str(root))}\n" if running_as_root() else ""
    shim = bin_dir / "pgbouncer"
    # What the entrypoint's exec hands on is recorded here: under root, service_argv gives PgBouncer a
    # fresh environment of its own (issue 31), so PgBouncer's /proc/PID/environ no longer shows it.
    # The shipped binary runs through Debian 13's loader, linked as `pgbouncer`: comm stays "pgbouncer".
    exec_env = tmp_path / "exec.environ"
    shim.write_text(f'#!/bin/sh\n{hand_over}env -0 > {shlex.quote(str(exec_env))}\n'
                    f'exec {shlex.join(service_argv(command(pgbouncer_binary)))} "$@"\n')
    shim.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),
        SETTINGS_ENV: settings.to_json(),
        # As the stack's pooler secret holds it: the application role's SCRAM verifier.
        CREDENTIALS_ENV: json.dumps({"username": app_db.user, "password": app_db.verifier}),
        STATS_CREDENTIALS_ENV: STATS_SECRET,
    }
    run = "import sys; from pathlib import Path; from pgbouncer.entrypoint import main; main(run_dir=Path(sys.argv[1]))"
    log = tmp_path / "entrypoint.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", run, str(root)], env=env, cwd=tmp_path,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        assert wait_for_port("127.0.0.1", settings.listen_port, 15, alive=proc), log.read_text()
        wait_for_socket(root, settings.listen_port)

        sample = sample_console(ConsoleTarget(host=str(root), port=settings.listen_port, user=STATS_USER,
                                              password=STATS_PASSWORD))
        assert sample.client_connections == 0
        url = make_dsn("127.0.0.1", settings.listen_port, app_db.user, app_db.password, app_db.dbname,
                       sslmode="require", connect_timeout=10)
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (app_db.user,)
            pools = sample_console(ConsoleTarget(host=str(root), port=settings.listen_port, user=STATS_USER,
                                                 password=STATS_PASSWORD)).pools
        assert [pool.name for pool in pools] == [f"{app_db.dbname}/{app_db.user}"]

        # The entrypoint replaced itself (exec, not a child process) with PgBouncer, or here with the
        # stand-in that runs PgBouncer as the service user ...
        replaced_by = "runuser" if running_as_root() else "pgbouncer"
        assert Path(f"/proc/{proc.pid}/comm").read_text().strip() == replaced_by
        pgbouncer = _descendant_named(proc.pid, "pgbouncer")
        # ... and handed neither secret on: they are only in the 0600 auth_file.
        environ = exec_env.read_bytes().split(b"\0") + Path(f"/proc/{pgbouncer}/environ").read_bytes().split(b"\0")
        names = {item.split(b"=", 1)[0].decode() for item in exec_env.read_bytes().split(b"\0") if item}
        assert SETTINGS_ENV in names
        assert not names & {CREDENTIALS_ENV, STATS_CREDENTIALS_ENV}
        leaked = any(p.encode() in b"\0".join(environ) for p in (STATS_PASSWORD, app_db.verifier))
        assert not leaked, "a password is in PgBouncer's environment"
        assert Path(settings.auth_file).read_text() == render_userlist(
            {app_db.user: app_db.verifier, STATS_USER: STATS_PASSWORD})
        assert mode(Path(settings.auth_file)) == 0o600

        os.kill(pgbouncer, signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            # The session this test started: the entrypoint's exec chain and PgBouncer.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    text = log.read_text()
    assert f"starting PgBouncer {pgbouncer_version}" in text
    secrets = (STATS_PASSWORD, app_db.password, app_db.verifier)
    assert not any(p in text for p in secrets), "a password or verifier is in the log"
