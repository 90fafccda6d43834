"""The direct URL from its parts (#24: an existing database's owner secret, read by the task at run time).

ECS injects the owner's username and password from the secret's JSON keys; the migrator composes a
verify-full URL from them and host, port, database and CA bundle. Run for real against the local Postgres,
whose owner password holds every character a URL must percent-encode (``tests.support.OWNER_PASSWORD``).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from migrator.contract import (
    DB_HOST_ENV,
    DB_NAME_ENV,
    DB_PORT_ENV,
    DB_ROOT_CERT_ENV,
    OWNER_PASSWORD_ENV,
    OWNER_USERNAME_ENV,
    URL_PART_ENVS,
)
from migrator.errors import ExitCode
from tests.migrator.support import recorded_versions, run_cli, secrets_of
from tests.support import OWNER_PASSWORD, AppDatabase

# Public CAs only: the local cluster's own CA is not among them.
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
TOOL = textwrap.dedent("""\
    import os, psycopg
    env = os.environ
    print("owner password passed on:", "LIFEGUARD_DB_OWNER_PASSWORD" in env)
    print("the url:", env["DATABASE_URL_UNPOOLED"])  # a tool that quotes its URL: the wrapper masks it
    with psycopg.connect(env["DATABASE_URL_UNPOOLED"], autocommit=True) as conn:
        user, ssl = conn.execute("SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        print("connected as:", user, "tls:", ssl)
""")


def parts(db: AppDatabase) -> dict[str, str]:
    return {OWNER_USERNAME_ENV: db.owner, OWNER_PASSWORD_ENV: db.owner_password, DB_HOST_ENV: "localhost",
            DB_PORT_ENV: str(db.cluster.port), DB_NAME_ENV: db.dbname, DB_ROOT_CERT_ENV: str(db.cluster.ca_file)}


def test_the_password_needs_percent_encoding() -> None:
    """The premise of the tests below: the owner's password would break a URL written as it is."""
    assert set(OWNER_PASSWORD) & set("#@:/?%& '\"")


def test_a_wrapped_tool_gets_a_working_verified_url_composed_from_the_parts(app_db: AppDatabase,
                                                                           tmp_path: Path) -> None:
    script = tmp_path / "tool.py"
    script.write_text(TOOL)
    proc = run_cli(["run", "--", sys.executable, str(script)], parts(app_db), secrets_of(app_db))
    assert proc.returncode == 0, proc.stderr
    assert f"connected as: {app_db.owner} tls: True" in proc.stdout
    assert "owner password passed on: False" in proc.stdout
    assert "the url: ***" in proc.stdout  # the composed URL, masked whole
    assert "direct URL from LIFEGUARD_DB_OWNER_USERNAME" in proc.stderr


def test_the_runner_migrates_with_the_parts(app_db: AppDatabase, sample_dir: Path) -> None:
    proc = run_cli(["apply", "--migrations-dir", str(sample_dir)], parts(app_db), secrets_of(app_db))
    assert proc.returncode == 0, proc.stderr
    assert recorded_versions(app_db) == ["0001", "0002", "0003"]


def test_the_server_certificate_is_verified(app_db: AppDatabase) -> None:
    """verify-full: a server whose certificate does not chain to the given bundle is refused."""
    env = {**parts(app_db), DB_ROOT_CERT_ENV: SYSTEM_BUNDLE}
    proc = run_cli(["status"], env, secrets_of(app_db))
    assert proc.returncode == ExitCode.UNAVAILABLE, proc.stderr


@pytest.mark.parametrize("missing", URL_PART_ENVS)
def test_incomplete_parts_name_what_is_missing_and_never_the_password(app_db: AppDatabase, missing: str) -> None:
    env = {k: v for k, v in parts(app_db).items() if k != missing}
    proc = run_cli(["status"], env, secrets_of(app_db))
    assert proc.returncode == ExitCode.CONFIG
    assert f"set {missing} too" in proc.stderr


def test_a_bad_port_is_named(app_db: AppDatabase) -> None:
    proc = run_cli(["status"], {**parts(app_db), DB_PORT_ENV: "54x32"}, secrets_of(app_db))
    assert proc.returncode == ExitCode.CONFIG
    assert "LIFEGUARD_DB_PORT must be a TCP port" in proc.stderr


def test_a_given_direct_url_wins_over_the_parts(app_db: AppDatabase) -> None:
    env = {**parts(app_db), DB_NAME_ENV: "no_such_db", "DATABASE_URL_UNPOOLED": app_db.direct_url}
    proc = run_cli(["status"], env, secrets_of(app_db))
    assert proc.returncode == 0, proc.stderr
    assert "direct URL from DATABASE_URL_UNPOOLED" in proc.stderr
