"""The rendered configuration against the real PgBouncer: the shipped 1.24.1 and Debian 12's 1.18.

Each test runs once per release (the ``pgbouncer_binary`` fixture in conftest.py).

Every test starts PgBouncer on the renderer's output through the shared fixtures, connects the way
a function does (TLS required, psycopg with server-side prepares off) and checks what the binary,
the log and Postgres' ``pg_stat_activity`` say. Timeouts are shortened to seconds where a test
waits for one; the rest of the settings are the shipped defaults.
"""

from __future__ import annotations

import re
import signal
import string
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lifeguard.stack import pooler as pooler_module
from lifeguard.stack.pooler import PoolerError, PoolerProcess, local_settings
from lifeguard.stack.system import free_port, own_for_service
from pgbouncer.entrypoint import prepare
from pgbouncer.settings import _BOUNDS, MAX_PASSWORD_BYTES, PoolerSettings, render_userlist
from pgbouncer.tls import ServerCertificate, write_self_signed
from pgbouncer.versions import _ADDED, _KEYS_1_18, PINNED, PgBouncerVersion
from tests.pgbouncer.support import MakeRoles, StartMultiUser, pooled_connect
from tests.secrecy import assert_no_secret
from tests.support import APP_USER, AppDatabase, RunningPooler

pytestmark = pytest.mark.timeout(120)

StartPooler = Callable[..., RunningPooler]
LOG_ERRORS = ("unknown parameter", "invalid value", "FATAL", "ERROR")


def connect(pooler: RunningPooler, **params: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(pooler.url(**{"connect_timeout": 10, **params}), autocommit=True, prepare_threshold=None)


def show(pooler: RunningPooler, command: str) -> list[tuple[Any, ...]]:
    """Run an admin-console command (needs ``admin_users`` to include the app role)."""
    with psycopg.connect(pooler.url(connect_timeout=10), dbname="pgbouncer", autocommit=True,
                         prepare_threshold=None) as conn:
        return conn.execute(command).fetchall()


def ini_pairs(text: str) -> dict[str, str]:
    section = text.split("[pgbouncer]\n", 1)[1]
    return dict(line.split(" = ", 1) for line in section.splitlines())


def log_problems(log: str) -> list[str]:
    return [line for line in log.splitlines() if any(marker in line for marker in LOG_ERRORS)]


def wait_for_log(process: PoolerProcess, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while text not in process.log_text():
        assert time.monotonic() < deadline, f"PgBouncer never logged {text!r}"
        time.sleep(0.05)


@pytest.fixture
def service_dir(state_root: Path) -> Iterator[Path]:
    """A directory the PgBouncer user may write (pidfile, logfile, extra certificates)."""
    path = state_root / f"service-{time.monotonic_ns()}"
    path.mkdir()
    own_for_service(path)
    yield path


# -- the configuration loads --------------------------------------------------------------


def test_rendered_defaults_load_without_errors(start_pooler: StartPooler, pgbouncer_version: PgBouncerVersion) -> None:
    pooler = start_pooler()
    with connect(pooler) as conn:
        assert conn.execute("select current_user").fetchone() == (APP_USER,)
    log = pooler.process.log_text()
    assert f"process up: PgBouncer {pgbouncer_version}" in log
    assert log_problems(log) == []


def test_every_key_the_renderer_can_emit_loads_with_the_rendered_value(
    start_pooler: StartPooler, service_dir: Path, pgbouncer_version: PgBouncerVersion
) -> None:
    # Every optional field on and every bool flipped from its default, plus extra keys.
    pooler = start_pooler(
        default_pool_size=5,
        reserve_pool_size=1,
        max_db_connections=8,
        admin_users=(APP_USER,),
        stats_users=("lg_stats",),
        pidfile=str(service_dir / "pgbouncer-own.pid"),
        logfile=str(service_dir / "pgbouncer-own.log"),
        so_reuseport=True,
        log_connections=True,
        log_disconnections=True,
        log_pooler_errors=True,
        log_stats=False,
        tcp_keepalive=True,
        ignore_startup_parameters=("extra_float_digits", "options"),
        extra={"query_timeout": "0", "server_round_robin": "0", "application_name_add_host": "1"},
    )
    rendered = ini_pairs(pooler.process.settings.render_ini())
    assert {"pidfile", "logfile", "admin_users", "stats_users", "server_tls_ca_file", "query_timeout"} <= set(rendered)
    config = {row[0]: row[1] for row in show(pooler, "SHOW CONFIG")}
    assert sorted(set(rendered) - set(config)) == []
    assert {key: (value, config[key]) for key, value in rendered.items() if config[key] != value} == {}
    assert log_problems(pooler.process.log_text()) == []
    assert (service_dir / "pgbouncer-own.pid").read_text().strip().isdigit()


def test_every_number_at_its_lowest_accepted_value_loads(start_pooler: StartPooler) -> None:
    """The renderer's bounds are not stricter than needed at the low end: PgBouncer takes them all."""
    lowest = {name: low for name, (low, _, _) in _BOUNDS.items()}
    lowest["tcp_keepidle"] = 1  # with tcp_keepalive on (the default), the NLB check asks for 1 or more
    pooler = start_pooler(**{**lowest, "default_pool_size": 2})
    with connect(pooler) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    assert log_problems(pooler.process.log_text()) == []


def test_version_table_matches_the_installed_binary(
    start_pooler: StartPooler, pgbouncer_version: PgBouncerVersion
) -> None:
    """``versions.py`` claims exactly the keys this binary knows (SHOW CONFIG lists them all)."""
    pooler = start_pooler(admin_users=(APP_USER,))
    known_to_binary = {row[0] for row in show(pooler, "SHOW CONFIG")}
    candidates = set(_KEYS_1_18) | set(_ADDED)
    claimed = {key for key in candidates if pgbouncer_version.accepts(key)}
    # The dangerous direction first: a key we would render that this release dies on.
    assert sorted(claimed - known_to_binary) == []
    assert sorted(known_to_binary - claimed) == []


def test_pinned_release_ini_kills_the_older_binary(
    app_db: AppDatabase, state_root: Path, pgbouncer_binary: Path, pgbouncer_version: PgBouncerVersion
) -> None:
    """Why the renderer is version-aware: the shipped release's ini is fatal to 1.18."""
    if pgbouncer_version.accepts("max_prepared_statements"):
        pytest.skip(f"PgBouncer {pgbouncer_version} accepts max_prepared_statements")
    root = state_root / f"pinned-ini-{app_db.dbname}"
    settings = local_settings(root, upstream_port=app_db.cluster.port, upstream_ca_file=app_db.cluster.ca_file,
                              dbname=app_db.dbname, listen_port=free_port(), default_pool_size=2,
                              version=PgBouncerVersion.parse(PINNED))
    assert "max_prepared_statements = 200" in settings.render_ini()
    process = PoolerProcess(root=root, settings=settings, binary=pgbouncer_binary)
    try:
        with pytest.raises(PoolerError):
            process.start({app_db.user: app_db.password}, timeout=10)
    finally:
        process.stop(signal.SIGQUIT, timeout=10)
    # 1.18 dies on the first key it does not know (query_wait_notify, or max_prepared_statements).
    unknown = re.search(r"unknown parameter: pgbouncer/(\w+)", process.log_text())
    assert unknown is not None, process.log_text()
    assert not pgbouncer_version.accepts(unknown.group(1)) and PgBouncerVersion.parse(PINNED).accepts(unknown.group(1))


# -- transaction pooling ------------------------------------------------------------------


class BackendWatcher:
    """Polls ``pg_stat_activity`` for the app database's client backends; keeps the peak.

    What goes wrong in its thread (a failed query, a check) is kept and raised in the test's thread
    on leaving the ``with``: an exception in a thread alone would be lost and the peak look fine.
    """

    def __init__(self, db: AppDatabase) -> None:
        self.db = db
        self.peak = 0
        self.samples = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with self.db.cluster.connect_superuser() as conn:
                while not self._stop.is_set():
                    row = conn.execute(
                        "SELECT count(*)::int FROM pg_stat_activity"
                        " WHERE datname = %s AND backend_type = 'client backend'",
                        (self.db.dbname,),
                    ).fetchone()
                    if row is None or not isinstance(row[0], int):
                        raise AssertionError(f"pg_stat_activity gave no count: {row!r}")
                    self.peak = max(self.peak, row[0])
                    self.samples += 1
                    time.sleep(0.01)
        except BaseException as exc:  # raised in the test's thread by __exit__
            self.error = exc

    def __enter__(self) -> BackendWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive(), "the backend watcher did not stop"
        if self.error is not None:
            raise AssertionError("the backend watcher failed") from self.error


def test_thirty_clients_share_two_backends(start_pooler: StartPooler, app_db: AppDatabase) -> None:
    pooler = start_pooler(default_pool_size=2)
    clients, transactions = 30, 3
    connected = threading.Barrier(clients, timeout=60)
    pids: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        try:
            with connect(pooler) as conn:
                connected.wait()  # all 30 hold a client connection at once
                for _ in range(transactions):
                    with conn.transaction():
                        row = conn.execute("select pg_backend_pid()").fetchone()
                        conn.execute("select pg_sleep(0.02)")
                    assert row is not None
                    with lock:
                        pids.append(int(row[0]))
        except Exception as exc:  # collected and asserted below, with the type only
            with lock:
                errors.append(type(exc).__name__)

    with BackendWatcher(app_db) as watcher:
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
    assert errors == []
    assert len(pids) == clients * transactions
    assert len(set(pids)) <= 2
    assert watcher.samples > 0 and 1 <= watcher.peak <= 2


def test_clients_take_turns_on_the_same_backend(start_pooler: StartPooler) -> None:
    pooler = start_pooler(default_pool_size=2)
    with connect(pooler) as first, connect(pooler) as second:
        seen = []
        for conn in (first, second, first):
            with conn.transaction():
                row = conn.execute("select pg_backend_pid()").fetchone()
            assert row is not None
            seen.append(row[0])
    # Released between transactions and reused LIFO: one backend served both clients.
    assert seen[0] == seen[1] == seen[2]


def test_psycopg_default_prepares_through_transaction_pooling_only_where_tracked(
    start_pooler: StartPooler, pgbouncer_version: PgBouncerVersion
) -> None:
    """40 concurrent clients with psycopg's default prepare_threshold, 10 queries each, pool of 4.

    The shipped settings on 1.24.1 (max_prepared_statements 200): no failure. On 1.18, which cannot
    track prepared statements, they collide: why the functions prepare only when told to.
    """
    pooler = start_pooler(default_pool_size=4)
    clients = 40
    barrier = threading.Barrier(clients, timeout=60)
    failures: list[str] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        try:
            with psycopg.connect(pooler.url(connect_timeout=10), autocommit=True) as conn:
                assert conn.prepare_threshold == 5  # psycopg's default
                barrier.wait()
                for n in range(10):
                    assert conn.execute("SELECT %s::int + %s::int", (i, n)).fetchone() == (i + n,)
        except Exception as exc:  # collected and asserted below, by type
            with lock:
                failures.append(type(exc).__name__)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    if pooler.process.settings.tracks_prepared_statements:
        assert failures == []
    else:
        assert failures and set(failures) <= {"DuplicatePreparedStatement", "InvalidSqlStatementName"}, failures


# -- authentication -----------------------------------------------------------------------


def test_wrong_password_is_refused(start_pooler: StartPooler, app_db: AppDatabase) -> None:
    pooler = start_pooler()
    with pytest.raises(psycopg.OperationalError) as info:
        connect(pooler, password=app_db.password + "x")
    message = str(info.value)
    assert "SASL authentication failed" in message or "password authentication failed" in message
    assert_no_secret(app_db.password, message)
    with pytest.raises(psycopg.OperationalError):
        connect(pooler, user="lg_no_such_role", password="anything")
    with connect(pooler) as conn:  # the right one still works
        conn.execute("select 1")
    assert_no_secret(app_db.password, pooler.process.log_text())


def special_passwords() -> dict[str, str]:
    """Label -> password: each printable ASCII punctuation character, spaces and Unicode."""
    passwords = {f"{ch!r}": f"{ch}pw{ch}{ch} x{ch}" for ch in string.punctuation}
    passwords.update({
        "spaces": "  leading, inner  and trailing  ",
        "only-quotes": '""""',
        "unicode": "pässwörd-ünïcødé-密码-🔑",
        "ini comment start": "; not a comment",
        "hash comment start": "# not a comment",
        "md5 prefix, not a hash": "md5" + "z" * 32,
        "md5 prefix, uppercase hex": "md5" + "0123456789ABCDEF" * 2,
        "longest PgBouncer 1.18 reads": "L" * MAX_PASSWORD_BYTES,
    })
    return passwords


def test_special_character_passwords_log_in_through_pgbouncer(
    make_roles: MakeRoles, multi_user_pooler: StartMultiUser, app_db: AppDatabase
) -> None:
    passwords = special_passwords()
    roles = make_roles(passwords)  # role -> password, same order as the labels
    labels = dict(zip(roles, passwords, strict=True))
    # One server connection per role: let every role's pool open at once.
    process = multi_user_pooler(roles, default_pool_size=1, max_db_connections=len(roles) + 1)
    failed: list[str] = []
    for role, password in roles.items():
        try:
            with pooled_connect(process, role, password, app_db.dbname) as conn:
                # Through PgBouncer to Postgres: the server login used the userlist password too.
                assert conn.execute("select current_user").fetchone() == (role,)
        except (psycopg.Error, AssertionError) as exc:
            failed.append(f"{labels[role]}: {type(exc).__name__}")
    assert failed == []
    assert log_problems(process.log_text()) == []


def test_userlist_reload_picks_up_a_rotated_password(
    make_roles: MakeRoles, multi_user_pooler: StartMultiUser, app_db: AppDatabase
) -> None:
    """Re-render userlist.txt and SIGHUP (RELOAD): the new password logs in, the old one not."""
    (role, old), = make_roles({"rotated": "before-rotation:@;#"}).items()
    process = multi_user_pooler({role: old})
    new = "after rotation \"quoted\" ;#$*"
    app_db.cluster.create_app_database(role, new, app_db.dbname)  # ALTER ROLE ... PASSWORD
    # PgBouncer re-reads auth_file only when its size or mtime (whole seconds) changed: the new
    # password is longer, so this RELOAD cannot be skipped even within the same second.
    assert len(new) != len(old)
    Path(process.settings.auth_file).write_text(render_userlist({role: new}))
    process.send_signal(signal.SIGHUP)
    wait_for_log(process, "got SIGHUP, re-reading config")
    with pooled_connect(process, role, new, app_db.dbname) as conn:
        assert conn.execute("select current_user").fetchone() == (role,)
    with pytest.raises(psycopg.OperationalError):
        pooled_connect(process, role, old, app_db.dbname)


@pytest.mark.parametrize(
    ("password", "log_line"),
    [
        ("md5" + "0123456789abcdef" * 2, "SCRAM authentication failed: user has MD5 secret"),
        # 1.18 cuts it at 1024 bytes without a word (longer lines log "password too long"); 1.26
        # takes up to 65535 bytes (as libpq does). The renderer keeps 1.18's limit for both.
        ("too long", "pooler error: SASL authentication failed"),
    ],
    ids=["md5-shaped", "too-long"],
)
def test_passwords_the_renderer_refuses_do_fail_in_pgbouncer(
    make_roles: MakeRoles, multi_user_pooler: StartMultiUser, app_db: AppDatabase,
    monkeypatch: pytest.MonkeyPatch, password: str, log_line: str, pgbouncer_version: PgBouncerVersion,
) -> None:
    """Written past the renderer (which refuses them: test_settings.py), these passwords never log in."""
    if password == "too long":
        password = "L" * ((65535 if pgbouncer_version.at_least(1, 26) else MAX_PASSWORD_BYTES) + 1)
    (role, _), = make_roles({"refused": password}).items()

    def naive_prepare(settings: PoolerSettings, credentials: Mapping[str, str], run_dir: Path,
                      certificate: ServerCertificate | None = None) -> Path:
        ini = prepare(settings, {role: "placeholder password"}, run_dir, certificate)
        Path(settings.auth_file).write_text(f'"{role}" "{password}"\n')  # what a naive entrypoint writes
        return ini

    monkeypatch.setattr(pooler_module, "prepare", naive_prepare)
    process = multi_user_pooler({role: password})
    with pytest.raises(psycopg.OperationalError):
        pooled_connect(process, role, password, app_db.dbname)
    assert log_line in process.log_text()


# -- TLS ------------------------------------------------------------------------------------


def test_plaintext_clients_are_refused(start_pooler: StartPooler) -> None:
    pooler = start_pooler()
    with pytest.raises(psycopg.OperationalError, match="SSL required"):
        connect(pooler, sslmode="disable")
    with connect(pooler, sslmode="require") as conn:
        row = conn.execute("select 1").fetchone()
    assert row == (1,)


def test_server_certificate_is_verified(start_pooler: StartPooler, service_dir: Path) -> None:
    """verify-full toward the database: a CA that did not sign the server's certificate fails."""
    stranger = write_self_signed(service_dir, names=("localhost",), stem="stranger-ca")
    own_for_service(service_dir)
    pooler = start_pooler(server_tls_ca_file=str(stranger.cert_file), query_wait_timeout=1)
    # A fresh pool needs a server login before it can greet a client, so the login itself fails.
    with pytest.raises(psycopg.OperationalError):
        connect(pooler)
    assert "certificate verify failed" in pooler.process.log_text()


# -- timeouts -------------------------------------------------------------------------------


def test_query_wait_timeout_errors_a_queued_client(start_pooler: StartPooler) -> None:
    pooler = start_pooler(default_pool_size=1, query_wait_timeout=2)
    with connect(pooler) as holder, connect(pooler) as queued:
        holder.execute("BEGIN")
        holder.execute("select 1")  # the only server connection is now held by this transaction
        started = time.monotonic()
        with pytest.raises(psycopg.Error, match="query_wait_timeout"):
            queued.execute("select 1")
        waited = time.monotonic() - started
        holder.execute("COMMIT")
    assert 1.5 <= waited < 10
    assert "pooler error: query_wait_timeout" in pooler.process.log_text()


def test_idle_transaction_timeout_frees_the_server(start_pooler: StartPooler, app_db: AppDatabase) -> None:
    pooler = start_pooler(default_pool_size=1, idle_transaction_timeout=1, query_wait_timeout=15)
    with connect(pooler) as frozen, connect(pooler) as other:
        frozen.execute("BEGIN")
        frozen.execute("select 1")  # then the "function" freezes mid-transaction
        started = time.monotonic()
        assert other.execute("select 1").fetchone() == (1,)
        # Served once the frozen transaction was cut, long before query_wait_timeout.
        assert time.monotonic() - started < 8
        with pytest.raises(psycopg.Error, match="idle transaction timeout"):
            frozen.execute("select 1")
    assert "pooler error: idle transaction timeout" in pooler.process.log_text()


# -- shutdown -------------------------------------------------------------------------------


def test_sigint_lets_the_in_flight_transaction_commit_then_exits(
    start_pooler: StartPooler, app_db: AppDatabase, pgbouncer_version: PgBouncerVersion
) -> None:
    with psycopg.connect(app_db.direct_url, autocommit=True) as direct:
        direct.execute("CREATE TABLE shutdown_probe (id int PRIMARY KEY)")
    pooler = start_pooler(default_pool_size=2, query_wait_timeout=2)
    inserted = threading.Event()
    outcome: dict[str, object] = {}

    def function_call() -> None:
        try:
            with connect(pooler) as conn, conn.transaction():
                conn.execute("INSERT INTO shutdown_probe VALUES (1)")
                inserted.set()
                conn.execute("select pg_sleep(1.5)")  # still running when SIGINT arrives
            outcome["committed"] = True
        except psycopg.Error as exc:
            outcome["error"] = type(exc).__name__

    worker = threading.Thread(target=function_call)
    worker.start()
    assert inserted.wait(10)
    pooler.process.send_signal(signal.SIGINT)
    wait_for_log(pooler.process, "got SIGINT")

    if pgbouncer_version.at_least(1, 23):
        # 1.23+ closes the listeners at once (SHUTDOWN WAIT_FOR_SERVERS).
        with pytest.raises(psycopg.OperationalError, match="Connection refused"):
            connect(pooler)
    else:
        # 1.18 keeps listening until the servers are gone: a newcomer logs in (its pool is warm)
        # but is never given a server: its query ends in query_wait_timeout, or in a closed
        # connection when PgBouncer exits first. Either way it is not served.
        with connect(pooler) as newcomer, pytest.raises(psycopg.Error):
            newcomer.execute("select 1")

    worker.join(30)
    assert outcome == {"committed": True}
    assert pooler.process.wait(15), "PgBouncer did not exit after the transaction finished"
    with psycopg.connect(app_db.direct_url) as direct:
        assert direct.execute("SELECT count(*) FROM shutdown_probe").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="Connection refused"):
        connect(pooler, connect_timeout=3)
