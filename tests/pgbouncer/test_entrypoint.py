"""The image's entrypoint: render, check the open-files limit, then exec PgBouncer.

``os.execvp`` is replaced by a recorder for the happy path (exec would replace pytest); the
refusal path runs the real module in a child under ``ulimit -n 256``, as the container would.
"""

from __future__ import annotations

import os
import resource
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from pgbouncer.entrypoint import (
    CREDENTIALS_ENV,
    SETTINGS_ENV,
    StartupError,
    check_open_files,
    credentials_from_secret,
    main,
)
from pgbouncer.settings import PoolerSettings, Upstream, render_userlist
from pgbouncer.versions import DEBIAN_BOOKWORM

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "en-Try:p@ss w\"rd';#%$*"
SECRET = '{"username": "app", "password": "' + PASSWORD.replace('"', '\\"') + '"}'


def settings_in(run_dir: Path, **overrides: object) -> PoolerSettings:
    fields: dict[str, object] = {
        "upstream": Upstream(host="db.example.com", dbname="app"),
        "default_pool_size": 10,
        "version": DEBIAN_BOOKWORM,
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
    assert CREDENTIALS_ENV not in os.environ
    out = capsys.readouterr()
    assert PASSWORD not in out.out + out.err
    assert "starting PgBouncer 1.18.0" in out.err


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
    assert PASSWORD not in result.stdout + result.stderr
    # Refused before anything was written: no userlist holding the secret is left behind.
    assert not Path(settings.auth_file).exists()
