"""``lifeguard doctor`` against real servers: Postgres direct, PgBouncer in transaction and session
mode, a leaked idle-in-transaction client, a role without pg_monitor, a pair on two databases."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from lifeguard.doctor import Report, Status, release, run_doctor
from lifeguard.doctor.findings import Finding
from lifeguard.doctor.target import Target
from lifeguard.stack.pooler import PoolerProcess, installed_version
from lifeguard.stack.system import debian_pgbouncer
from pgbouncer.tls import CertPair, issue_server_certificate, write_authority
from pgbouncer.versions import PINNED, PgBouncerVersion
from tests.migrator.support import assert_no_secret, cli_env, secrets_of
from tests.support import APP_PASSWORD, AppDatabase, RunningPooler, pooler_settings

CHECKS = ("pooling", "prepared statements", "session state", "headroom", "tls", "pair")


def finding(report: Report, check: str, target: str = "DATABASE_URL") -> Finding:
    matches = [f for f in report.findings if f.check == check and (check in ("pair", "headroom") or f.target == target)]
    assert len(matches) == 1, [f.as_json() for f in report.findings]
    return matches[0]


def assert_all_six(report: Report) -> None:
    assert {f.check for f in report.findings} == set(CHECKS), [f.as_json() for f in report.findings]
    for f in report.findings:
        assert f.summary and f.advice and "\n" not in f.summary + f.advice


def test_direct_postgres(app_db: AppDatabase) -> None:
    report = run_doctor(app_db.direct_url)
    assert_all_six(report)
    pooling = finding(report, "pooling")
    assert pooling.status is Status.FAIL and pooling.details["kind"] == "direct"
    assert "point DATABASE_URL at a transaction pooler" in pooling.advice
    prepared = finding(report, "prepared statements")
    # Directly, a protocol-level prepared statement is still there in the next transaction.
    assert prepared.status is Status.OK and prepared.details["survived"] and "persist" in prepared.summary
    assert finding(report, "session state").status is Status.OK
    assert finding(report, "tls").status is Status.OK and "verified" in finding(report, "tls").summary
    assert finding(report, "pair").status is Status.WARN  # only one URL
    assert report.exit_code == 1

    as_direct = run_doctor(None, app_db.direct_url)
    assert finding(as_direct, "pooling", "DATABASE_URL_UNPOOLED").status is Status.OK
    assert as_direct.elapsed_s < 10


@pytest.mark.parametrize("max_prepared_statements", [200, 0])
def test_transaction_pooler_pair(
    app_db: AppDatabase,
    start_pooler: Callable[..., RunningPooler],
    pgbouncer_version: PgBouncerVersion,
    max_prepared_statements: int,
) -> None:
    """Prepared statements are carried only by PgBouncer 1.21+ with max_prepared_statements > 0 (1.18: never)."""
    pooler = start_pooler(max_prepared_statements=max_prepared_statements)
    report = run_doctor(pooler.url(), app_db.direct_url)
    assert_all_six(report)
    assert finding(report, "pooling").details["kind"] == "transaction pooling"
    assert finding(report, "pooling").status is Status.OK
    assert finding(report, "pooling", "DATABASE_URL_UNPOOLED").status is Status.OK
    prepared = finding(report, "prepared statements")
    assert prepared.details["ran_on_backend"] != prepared.details["made_on_backend"]
    if pgbouncer_version.accepts("max_prepared_statements") and max_prepared_statements > 0:
        assert prepared.status is Status.OK and prepared.details["survived"]
    else:  # the name is unknown on the next backend
        assert prepared.status is Status.WARN and not prepared.details["survived"]
        assert "does not exist" in str(prepared.details["error"])
        assert "prepare_threshold=None" in prepared.advice and "prepare: false" in prepared.advice
    session = finding(report, "session state")
    assert session.status is Status.WARN and session.details["leaked_to_other_client"]
    assert "SET LOCAL" in session.advice and "LISTEN" in session.advice
    assert finding(report, "tls").status is Status.WARN and "sslmode=require" in finding(report, "tls").summary
    assert finding(report, "tls", "DATABASE_URL_UNPOOLED").status is Status.OK
    assert finding(report, "pair").status is Status.OK
    assert report.exit_code == 0

    spike = run_doctor(pooler.url(), app_db.direct_url, instances=5000)
    assert finding(spike, "headroom").status is not Status.FAIL
    assert "multiplexes" in finding(spike, "headroom").summary


def test_transaction_pooler_with_a_single_server(
    app_db: AppDatabase, start_pooler: Callable[..., RunningPooler]
) -> None:
    """One server: the probe cannot move the next transaction to another backend, and says so."""
    pooler = start_pooler(default_pool_size=1)
    report = run_doctor(pooler.url(), app_db.direct_url)
    assert finding(report, "pooling").details["kind"] == "transaction pooling"
    prepared = finding(report, "prepared statements")
    assert prepared.details["ran_on_backend"] == prepared.details["made_on_backend"]
    assert prepared.status is Status.WARN and prepared.summary.startswith("inconclusive")
    assert finding(report, "session state").details["leaked_to_other_client"]


def test_session_mode_pooler(app_db: AppDatabase, start_pooler: Callable[..., RunningPooler]) -> None:
    pooler = start_pooler(pool_mode="session")
    report = run_doctor(pooler.url(), app_db.direct_url)
    assert_all_six(report)
    pooling = finding(report, "pooling")
    assert pooling.status is Status.WARN and pooling.details["kind"] == "session pooling or proxy"
    assert "pool_mode=transaction" in pooling.advice
    assert finding(report, "prepared statements").status is Status.OK
    assert finding(report, "session state").status is Status.OK
    pair = finding(report, "pair")
    assert pair.status is Status.FAIL and "not a transaction pooler" in pair.summary
    assert report.exit_code == 1


def test_statement_mode_pooler(app_db: AppDatabase, start_pooler: Callable[..., RunningPooler]) -> None:
    """Statement mode refuses transactions and drops the client: said, and the other checks still run."""
    pooler = start_pooler(pool_mode="statement")
    report = run_doctor(pooler.url(), app_db.direct_url)
    assert_all_six(report)
    prepared = finding(report, "prepared statements")
    assert prepared.status is Status.FAIL and "use pool_mode=transaction" in prepared.advice
    assert finding(report, "session state").status is Status.WARN
    assert finding(report, "tls").status is Status.WARN and finding(report, "pair").status is Status.OK


@pytest.fixture
def monitor_role(app_db: AppDatabase) -> Iterator[str]:
    """A login role with pg_monitor, on the app database; its URL is returned."""
    name, password = "lg_doctor_monitor", "m0n:it@r/pw"
    app_db.cluster.create_app_database(name, password, app_db.dbname)
    with app_db.cluster.connect_superuser() as conn:
        conn.execute(sql.SQL("GRANT pg_monitor TO {}").format(sql.Identifier(name)))
    yield app_db.cluster.dsn(name, password, app_db.dbname)
    with app_db.cluster.connect_superuser() as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def _leak(url: str) -> psycopg.Connection[tuple[object, ...]]:
    conn = psycopg.connect(url, application_name="leaky-function")
    conn.execute("SELECT 1")  # not autocommit: the transaction stays open
    return conn


def test_leaked_idle_in_transaction_client(app_db: AppDatabase) -> None:
    leaky = _leak(app_db.direct_url)
    leaky_pid = leaky.info.backend_pid
    try:
        time.sleep(1.2)
        report = run_doctor(app_db.direct_url, leak_after_s=1)
    finally:
        leaky.close()
    headroom = finding(report, "headroom")
    assert headroom.status is Status.WARN and headroom.details["leak_count"] == 1
    assert headroom.details["leaks"][0]["pid"] == leaky_pid
    assert "'leaky-function'" in headroom.summary and "idle_in_transaction_session_timeout" in headroom.advice
    assert "leaky-function 1" in headroom.summary  # backends by application_name
    assert headroom.details["by_state"]["idle in transaction"] == 1


def test_role_without_pg_monitor_is_told_what_it_cannot_see(app_db: AppDatabase, monitor_role: str) -> None:
    leaky = _leak(app_db.cluster.superuser_dsn(app_db.dbname))  # another role's session
    try:
        time.sleep(1.2)
        blind = run_doctor(app_db.app_direct_url, leak_after_s=1)
        seeing = run_doctor(monitor_role, leak_after_s=1)
    finally:
        leaky.close()
    headroom = finding(blind, "headroom")
    assert headroom.status is Status.WARN and headroom.details["hidden"] >= 1 and not headroom.details["sees_all"]
    assert "GRANT pg_monitor TO lifeguard_app" in headroom.advice and "cannot see" in headroom.summary
    assert headroom.details["leak_count"] == 0  # not reported as "no leaks": the summary says it cannot see
    monitored = finding(seeing, "headroom")
    assert monitored.details["sees_all"] and monitored.details["hidden"] == 0
    assert monitored.details["leak_count"] == 1 and "pg_monitor" not in monitored.advice


def test_pair_on_two_databases(app_db: AppDatabase, start_pooler: Callable[..., RunningPooler]) -> None:
    pooler = start_pooler()
    other = f"{app_db.dbname}_other"
    # The owner role (what DATABASE_URL_UNPOOLED logs in as); re-creating the application role with
    # its plain password would change its verifier under PgBouncer.
    app_db.cluster.create_app_database(app_db.owner, app_db.owner_password, other)
    try:
        report = run_doctor(pooler.url(), app_db.cluster.dsn(app_db.owner, app_db.owner_password, other))
    finally:
        app_db.cluster.drop_database(other)
    pair = finding(report, "pair")
    assert pair.status is Status.FAIL and "different databases" in pair.summary
    assert pair.details["pooled"]["database"] == app_db.dbname and pair.details["direct"]["database"] == other
    assert report.exit_code == 1


def _doctor_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lifeguard.cli", "doctor", *args], env=cli_env(env),
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli_json_and_exit_status(app_db: AppDatabase, start_pooler: Callable[..., RunningPooler]) -> None:
    pooler = start_pooler()
    ok = _doctor_cli(["--json"], {"DATABASE_URL": pooler.url(), "DATABASE_URL_UNPOOLED": app_db.direct_url})
    assert_no_secret(ok.stdout + ok.stderr, [*secrets_of(app_db), pooler.url()])
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["status"] in ("ok", "warn") and report["urls"]["DATABASE_URL"].startswith("postgresql://lifeguard_app:***@")
    assert {f["check"] for f in report["findings"]} == set(CHECKS)

    spike = _doctor_cli([app_db.direct_url, "--instances", "500"], {})
    assert_no_secret(spike.stdout + spike.stderr, secrets_of(app_db))
    assert spike.returncode == 1
    assert "FAIL  headroom" in spike.stdout and "would get 'too many clients'" in spike.stdout

    assert _doctor_cli([], {}).returncode == 2


def test_never_prints_a_password_from_a_url_that_is_not_percent_encoded(app_db: AppDatabase) -> None:
    raw = "Xq7ZrTq/Wp3KvLm@x"
    url = f"postgresql://{app_db.user}:{raw}@localhost:{app_db.cluster.port}/{app_db.dbname}"
    proc = _doctor_cli([url], {})
    assert proc.returncode == 1
    assert_no_secret(proc.stdout + proc.stderr, [raw, "Xq7ZrTq", "Wp3KvLm", quote(raw, safe="")])
    assert "FAIL" in proc.stdout and APP_PASSWORD not in proc.stdout


def test_a_pooler_certificate_near_its_expiry_is_a_warning(
    app_db: AppDatabase, start_pooler: Callable[..., RunningPooler], tmp_path: Path
) -> None:
    """The renewal safety net: a stack left without `pulumi up` past its renewal window is told so."""
    authority = CertPair(tmp_path / "ca.crt", tmp_path / "ca.key")
    write_authority(authority, "doctor test CA")
    fresh = start_pooler(certificate=issue_server_certificate(authority, ("localhost", "127.0.0.1")))
    verified = {"sslmode": "verify-full", "sslrootcert": str(authority.cert_file)}
    tls = finding(run_doctor(fresh.url(**verified)), "tls")
    assert tls.status is Status.OK and tls.details["certificate_expires"] is not None
    expiring = start_pooler(certificate=issue_server_certificate(authority, ("localhost", "127.0.0.1"), days=10))
    tls = finding(run_doctor(expiring.url(**verified)), "tls")
    assert tls.status is Status.WARN and "days left" in tls.summary and "pulumi up" in tls.advice


def test_urls_can_come_on_stdin_instead_of_the_command_line(
    app_db: AppDatabase, start_pooler: Callable[..., RunningPooler]
) -> None:
    # Issue 31: a password on the command line shows in `ps`; `-` reads each URL from stdin, in order.
    pooler = start_pooler()
    proc = subprocess.run([sys.executable, "-m", "lifeguard.cli", "doctor", "-", "--unpooled", "-", "--json"],
                          env=cli_env({}), input=f"{pooler.url()}\n{app_db.direct_url}\n",
                          capture_output=True, text=True, timeout=120, check=False)
    assert_no_secret(proc.stdout + proc.stderr, [*secrets_of(app_db), pooler.url()])
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["urls"]) == {"DATABASE_URL", "DATABASE_URL_UNPOOLED"}
    assert {f["check"] for f in report["findings"]} == set(CHECKS)

    empty = subprocess.run([sys.executable, "-m", "lifeguard.cli", "doctor", "-"], env=cli_env({}), input="",
                           capture_output=True, text=True, timeout=120, check=False)
    assert empty.returncode == 2 and "standard input holds no URL" in empty.stderr


def test_help_says_how_to_keep_the_url_off_the_command_line() -> None:
    shown = subprocess.run([sys.executable, "-m", "lifeguard.cli", "doctor", "--help"], env=cli_env({}),
                           capture_output=True, text=True, timeout=60, check=True).stdout
    assert "$DATABASE_URL" in shown and "pipe the URL on stdin" in " ".join(shown.split())


def _debian_12_pgbouncer() -> Path:
    found = debian_pgbouncer()
    assert found is not None, "Debian 12's pgbouncer is missing: scripts/bootstrap.sh dev installs it"
    return found


def test_a_pooler_on_a_vulnerable_release_is_named_with_its_cves(app_db: AppDatabase, state_root: Path) -> None:
    """Debian 12's 1.18.0 is in CVE-2026-107350's range (1.17.0-1.26.0); its console answers SHOW VERSION
    for a stats user, and 1.18 reports no pgbouncer.version at login."""
    binary = _debian_12_pgbouncer()
    root = state_root / f"doctor-release-{app_db.dbname}"
    settings = pooler_settings(app_db, root, installed_version(binary), 5, stats_users=(app_db.user,))
    process = PoolerProcess(root=root, settings=settings, binary=binary)
    process.start({app_db.user: app_db.verifier})
    try:
        report = run_doctor(RunningPooler(process, app_db).url())
    finally:
        process.stop(signal.SIGQUIT, timeout=10)
    found = finding(report, "pooler release")
    assert found.status is Status.WARN and report.exit_code == 0
    assert found.details["release"] == "1.18.0" and found.details["fixed_in"] == "1.26.1"
    assert "CVE-2026-107350 (fixed in 1.26.1)" in found.summary
    assert "CVE-2026-107349" not in found.summary  # 1.20.0 and later only
    assert "upgrade PgBouncer to 1.26.1" in found.advice
    assert_all_six(Report(report.urls, tuple(f for f in report.findings if f.check != "pooler release"), 0))


def test_a_pooler_on_the_shipped_release_gives_no_release_finding(
    app_db: AppDatabase, start_pooler: Callable[..., RunningPooler],
) -> None:
    pooler = start_pooler()
    target = Target("DATABASE_URL", "pooled", pooler.url())
    with target.connect() as conn:
        assert release.observe(target, conn) == PINNED  # read, from the login's pgbouncer.version
    report = run_doctor(pooler.url(), app_db.direct_url)
    assert_all_six(report)  # and nothing more: no "pooler release" finding
