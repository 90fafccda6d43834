"""The console reader against the real PgBouncer (the shipped 1.24.1): login, protocol, privileges, no held session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
import pytest

from pgbouncer.contract import STATS_USER
from pgbouncer.metrics import ConsoleError, ConsoleTarget, read_console, sample_console
from tests.observability.support import STATS_PASSWORD, StatsPooler
from tests.secrecy import assert_no_secret
from tests.support import AppDatabase


def test_stats_user_logs_in_over_unix_socket_with_scram(stats_pooler: Callable[..., StatsPooler]) -> None:
    pooler = stats_pooler()
    with psycopg.connect(pooler.url(), prepare_threshold=None) as app:
        app.execute("SELECT 1")
        sample = sample_console(pooler.console())
    assert pooler.process.settings.auth_type == "scram-sha-256"
    names = [pool.name for pool in sample.pools]
    # The console's own pgbouncer/pgbouncer pool is bookkeeping and is left out.
    assert names == [f"{pooler.db.dbname}/{pooler.db.user}"]
    assert [db.database for db in sample.databases] == [pooler.db.dbname]
    assert sample.pools[0].cl_active == 1
    assert sample.databases[0].xact_count >= 1
    assert "used_clients" in sample.lists and "used_servers" in sample.lists
    # Our own console connection is not reported as a client.
    assert sample.client_connections == 1


def test_stats_user_over_tcp_with_tls(stats_pooler: Callable[..., StatsPooler]) -> None:
    pooler = stats_pooler()
    sample = sample_console(pooler.console(host="127.0.0.1"))
    assert sample.client_connections == 0


def test_console_url_form(stats_pooler: Callable[..., StatsPooler]) -> None:
    pooler = stats_pooler()
    target = ConsoleTarget.from_url(pooler.console_url())
    assert (target.host, target.port, target.user) == (pooler.socket_dir, pooler.port, STATS_USER)
    assert target.password == STATS_PASSWORD
    assert_no_secret(STATS_PASSWORD, repr(target))
    assert sample_console(target).pools == ()


def test_wrong_password_is_a_console_error_without_the_password(
    stats_pooler: Callable[..., StatsPooler],
) -> None:
    pooler = stats_pooler()
    wrong = "n0t-the-Pa55word"
    with pytest.raises(ConsoleError) as info:
        sample_console(pooler.console(password=wrong))
    message = str(info.value)
    assert "SASL authentication failed" in message
    assert_no_secret(wrong, message)
    assert_no_secret(STATS_PASSWORD, message)
    assert pooler.socket_dir in message  # says where it tried


def test_console_refuses_the_extended_protocol_but_the_reader_never_uses_it(
    stats_pooler: Callable[..., StatsPooler],
) -> None:
    pooler = stats_pooler()
    target = pooler.console()
    # prepare_threshold=0 makes psycopg's default cursor prepare every query (extended protocol).
    with psycopg.connect(
        host=target.host, port=target.port, user=target.user, password=target.password,
        dbname="pgbouncer", autocommit=True, prepare_threshold=0,
    ) as conn, pytest.raises(psycopg.errors.ProtocolViolation, match="extended query protocol not supported"):
        conn.execute("SHOW POOLS")
    with psycopg.connect(
        host=target.host, port=target.port, user=target.user, password=target.password,
        dbname="pgbouncer", autocommit=True, prepare_threshold=0,
    ) as conn:
        # The same connection, read repeatedly: the reader's ClientCursor sends simple queries only.
        for _ in range(7):
            sample = read_console(conn)
        assert sample.lists["used_clients"] == 1


def test_stats_user_is_read_only(stats_pooler: Callable[..., StatsPooler]) -> None:
    pooler = stats_pooler()
    with pooler.console().connect() as conn, pytest.raises(psycopg.Error, match="admin access needed"):
        psycopg.ClientCursor(conn).execute("PAUSE")


def test_sampling_does_not_hold_a_client_slot(stats_pooler: Callable[..., StatsPooler]) -> None:
    pooler = stats_pooler()
    target = pooler.console()
    for _ in range(5):
        sample_console(target)
    with target.connect() as observer:
        lists = read_console(observer).lists
    # Only the observer itself: none of the five sampling connections stayed open.
    assert lists["used_clients"] == 1


def test_unreachable_console_is_a_console_error(stats_pooler: Callable[..., StatsPooler]) -> None:
    pooler = stats_pooler()
    target = pooler.console()
    pooler.process.stop()
    with pytest.raises(ConsoleError, match="console at"):
        sample_console(target)


def test_console_url_keeps_its_sslrootcert_and_the_server_is_verified_against_it(
    stats_pooler: Callable[..., StatsPooler], app_db: AppDatabase
) -> None:
    pooler = stats_pooler()
    # The test pooler serves a self-signed certificate: as its own root it verifies (verify-ca: its
    # names are pgbouncer and localhost, the URL dials 127.0.0.1).
    own_cert = str(Path(pooler.process.settings.client_tls_cert_file))
    url = (f"postgresql://{STATS_USER}:{quote(STATS_PASSWORD, safe='')}@127.0.0.1:{pooler.port}/pgbouncer?"
           + urlencode({"sslmode": "verify-ca", "sslrootcert": own_cert}))
    target = ConsoleTarget.from_url(url)
    assert (target.sslmode, target.sslrootcert) == ("verify-ca", own_cert)
    assert sample_console(target).pools == ()
    # Another CA does not verify it: the URL's sslrootcert is what libpq checks against.
    other_ca = url.replace(quote(own_cert, safe=""), quote(str(app_db.cluster.ca_file), safe=""))
    with pytest.raises(ConsoleError, match="certificate verify failed"):
        sample_console(ConsoleTarget.from_url(other_ca))


def test_console_url_over_tcp_without_sslmode_is_refused_not_defaulted() -> None:
    with pytest.raises(ValueError, match="names no sslmode: add sslmode=verify-full&sslrootcert="):
        ConsoleTarget.from_url(f"postgresql://{STATS_USER}:pw@127.0.0.1:6432/pgbouncer")
    # Over the Unix socket TLS does not apply, and nothing needs saying.
    assert ConsoleTarget.from_url(f"postgresql://{STATS_USER}@/pgbouncer?host=/run/pgbouncer&port=6432").host == (
        "/run/pgbouncer")
