"""Refuse to migrate through a pooler: by address, and by behaviour.

**By address.** Through PgBouncer (or RDS Proxy, or any TCP proxy) the client dials the proxy, and
the server reports the address and port the *proxy* connected to (``inet_server_addr()`` /
``inet_server_port()``), so the two differ. Measured here: direct 127.0.0.1:P on both sides;
through PgBouncer the client dialled 127.0.0.1:6432-ish while the server said 127.0.0.1:P.
Over a Unix socket ``inet_server_addr()`` is NULL: the dialled port must then equal the server's
``port`` setting, and, where the role may read it, the socket folder must be one of
``unix_socket_directories``. An SSH tunnel or a NAT port mapping looks exactly like a proxy and is
refused too: run the job where it reaches the database directly (on AWS, the migration task in the
database's VPC).

**By behaviour.** Addresses can agree through a pooler: a PgBouncer listening on a Unix socket with
Postgres's port number, reaching Postgres over Postgres's own socket, looks direct to every address
the server reports (issue #14.8). A transaction pooler gives itself away by what it does with
backends: two transactions on one client connection may run on different backends, and a second
client connection is handed the backend the first one just released (PgBouncer reuses idle servers
last-in, first-out, so on a quiet pool it is the very same pid). Directly, a connection keeps one
backend and no two connections ever share one. A pooler that holds a backend per client session
(session pooling) keeps the migrator's session intact, so only the address check refuses it.
"""

from __future__ import annotations

import ipaddress
import select
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo

from database_urls import DIRECT_URL_ENV, POOLED_URL_ENV
from migrator.errors import PoolerRefused

PROBE_WAIT_S = 3.0
"""How long the second connection's one query may wait for a backend (a session pooler with no
free server queues it); a direct backend answers ``SELECT pg_backend_pid()`` in microseconds."""
PROBE_CONNECT_TIMEOUT_S = 10
"""The second connection's connect timeout when the first connection's URL sets none."""


@dataclass(frozen=True)
class Endpoint:
    address: str | None
    """IP address, or None for a Unix socket."""
    port: int
    socket_dir: str | None = None

    def __str__(self) -> str:
        if self.address is None:
            where = self.socket_dir or "a Unix socket"
            return f"{where} (Unix socket), port {self.port}"
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


def _normalise(address: str) -> str:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)  # ::ffff:10.0.0.5 on a dual-stack socket is 10.0.0.5
    return str(ip)


def dialled_endpoint(conn: psycopg.Connection[Any]) -> Endpoint:
    host = conn.info.host
    port = conn.info.port
    if host.startswith(("/", "@")):  # a socket folder (or Linux abstract socket) rather than a host
        return Endpoint(None, port, host)
    return Endpoint(_normalise(conn.info.hostaddr), port)


def server_endpoint(conn: psycopg.Connection[Any]) -> tuple[Endpoint, list[str] | None]:
    """Where the server says this session arrived, plus its socket folders if this role may read them."""
    row = conn.execute(
        "SELECT host(inet_server_addr()), inet_server_port(), current_setting('port')::int,"
        " (SELECT setting FROM pg_settings WHERE name = 'unix_socket_directories')"
    ).fetchone()
    assert row is not None
    address, inet_port, configured_port, socket_dirs = row
    dirs = [d.strip() for d in str(socket_dirs).split(",") if d.strip()] if socket_dirs is not None else None
    if address is None:
        return Endpoint(None, int(configured_port)), dirs
    return Endpoint(_normalise(str(address)), int(inet_port)), dirs


@dataclass(frozen=True)
class AddressCheck:
    dialled: Endpoint
    server: Endpoint
    """Where Postgres says the session arrived."""
    socket_dirs: list[str] | None
    """The server's ``unix_socket_directories``, or None when this role may not read them."""

    @property
    def proxied(self) -> bool:
        """The endpoints differ: something between us and Postgres dialled it for us."""
        dialled, server = self.dialled, self.server
        return (
            (dialled.address is None) != (server.address is None)
            or dialled.address != server.address
            or dialled.port != server.port
            or (
                dialled.address is None
                and self.socket_dirs is not None
                and dialled.socket_dir is not None
                and dialled.socket_dir.rstrip("/") not in {d.rstrip("/") for d in self.socket_dirs}
            )
        )


def address_check(conn: psycopg.Connection[Any]) -> AddressCheck:
    """Compare the endpoint ``conn`` dialled with the one Postgres says it answered on (one round trip)."""
    server, socket_dirs = server_endpoint(conn)
    return AddressCheck(dialled_endpoint(conn), server, socket_dirs)


@dataclass(frozen=True)
class PoolingProbe:
    """Backend pids seen by one connection across two transactions, and by a second connection."""

    first: int
    second: int
    other: int | None
    """The second connection's backend pid; None when it got none (see :attr:`other_problem`)."""
    other_problem: str | None = None
    """Why there is no :attr:`other`: it could not connect, or its query waited for a backend."""
    other_waited: bool = False
    """The second connection logged in but its trivial query got no backend within the wait: a pooler
    queueing it (a direct backend exists from the moment the connection does)."""

    @property
    def moved_between_transactions(self) -> bool:
        return self.first != self.second

    @property
    def shared_with_other(self) -> bool:
        return self.other is not None and self.other in (self.first, self.second)

    @property
    def multiplexed(self) -> bool:
        """Transaction (or statement) pooling: backends are not tied to client connections."""
        return self.moved_between_transactions or self.shared_with_other

    def describe(self) -> str:
        if self.moved_between_transactions:
            return f"two transactions on one connection ran on backends {self.first} and {self.second}"
        if self.shared_with_other:
            return f"a second connection ran on backend {self.other}, the first connection's own"
        other = f"a second connection on {self.other}" if self.other is not None else (self.other_problem or "")
        return f"one connection kept backend {self.first} across two transactions; {other}"


def _backend_pid(conn: psycopg.Connection[Any]) -> int:
    """``pg_backend_pid()`` in a transaction of its own (autocommit); libpq's own pid is the pooler's."""
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def _same_parameters(conn: psycopg.Connection[Any]) -> bytes:
    """A conninfo for another connection exactly like ``conn`` (libpq's PQconninfo, password included).

    Pinned to the host, address and port ``conn`` actually reached: a URL with several hosts, or a
    name resolving to several addresses (one per pooler task behind a load balancer), must not send
    the second connection to another pooler, whose backends the first one could never share.
    """
    params = {o.keyword.decode(): o.val.decode() for o in conn.pgconn.info if o.val is not None}
    params.setdefault("connect_timeout", str(PROBE_CONNECT_TIMEOUT_S))
    params["host"], params["port"] = conn.info.host, str(conn.info.port)
    if conn.info.hostaddr:
        params["hostaddr"] = conn.info.hostaddr
    else:
        params.pop("hostaddr", None)
    return make_conninfo(**params).encode()


class ProbeError(Exception):
    """A probe connection or query failed; the message holds libpq's first line (no conninfo)."""


def _first_line(message: str) -> str:
    lines = message.strip().splitlines()
    return lines[0] if lines else "no message"


def connect_like(conn: psycopg.Connection[Any]) -> pq.abc.PGconn:
    """A second, libpq-level connection with ``conn``'s parameters; the caller must ``finish()`` it.

    libpq-level so that a query can be abandoned after a wait (:func:`query_within`) by closing the
    connection, without relying on a cancel request, which a pooler has no backend to forward to
    while the query waits for one.
    """
    other = pq.PGconn.connect(_same_parameters(conn))
    if other.status != pq.ConnStatus.OK:
        message = _first_line(other.get_error_message())  # libpq names host and port, never the password
        other.finish()
        raise ProbeError(f"a second connection failed ({message})")
    return other


def query_within(pgconn: pq.abc.PGconn, query: bytes, wait_s: float) -> list[pq.abc.PGresult] | None:
    """Run ``query`` (simple protocol; several statements allowed); None if it is still waiting after ``wait_s``.

    Raises ProbeError when a statement fails. After None the query may still run: release whatever
    it waits for and call :func:`results_within` again, or ``finish()`` the connection.
    """
    pgconn.send_query(query)
    return results_within(pgconn, wait_s)


def results_within(pgconn: pq.abc.PGconn, wait_s: float) -> list[pq.abc.PGresult] | None:
    """The results of the query in flight on ``pgconn``, or None if they do not come within ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([pgconn.socket], [], [], remaining)[0]:
            return None
    results: list[pq.abc.PGresult] = []
    while (result := pgconn.get_result()) is not None:
        results.append(result)
    for result in results:
        if result.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
            raise ProbeError(_first_line(result.get_error_message()))
    return results


def int_value(result: pq.abc.PGresult, column: int = 0) -> int:
    value = result.get_value(0, column)
    assert value is not None
    return int(value.decode())


def _other_backend_pid(conn: psycopg.Connection[Any], wait_s: float) -> tuple[int | None, str | None, bool]:
    """The backend pid of a second connection like ``conn``: (pid, problem, waited)."""
    try:
        other = connect_like(conn)
    except ProbeError as exc:
        return None, str(exc), False
    try:
        results = query_within(other, b"SELECT pg_backend_pid()", wait_s)
        if results is None:
            return None, f"a second connection's query waited over {wait_s:g} s for a backend", True
        return int_value(results[-1]), None, False
    except ProbeError as exc:
        return None, f"a second connection's query failed ({exc})", False
    finally:
        other.finish()


def probe_pooling(conn: psycopg.Connection[Any], wait_s: float = PROBE_WAIT_S) -> PoolingProbe:
    """Watch backend pids: two transactions on ``conn`` (autocommit, idle), then one on a second connection.

    Three round trips on ``conn``'s session plus one short-lived connection; holds no lock, runs no load.
    """
    if not conn.autocommit or conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise ValueError("probe_pooling needs an idle autocommit connection")
    first = _backend_pid(conn)
    second = _backend_pid(conn)
    other, problem, waited = _other_backend_pid(conn, wait_s)
    return PoolingProbe(first, second, other, problem, waited)


def check_direct(conn: psycopg.Connection[Any]) -> Endpoint:
    """The server endpoint, if ``conn`` reaches Postgres directly; raises PoolerRefused otherwise."""
    addresses = address_check(conn)
    if addresses.proxied:
        raise PoolerRefused(
            f"refusing to migrate through a pooler or proxy: this connection was dialled to "
            f"{addresses.dialled}, but Postgres says it arrived on {addresses.server}. Migrations hold a "
            f"run-long lock and run each file in one transaction on one server session, which a "
            f"transaction pooler does not keep. Use the direct URL, {DIRECT_URL_ENV}, not the pooled {POOLED_URL_ENV}."
        )
    probe = probe_pooling(conn)
    if probe.multiplexed:
        raise PoolerRefused(
            f"refusing to migrate through a transaction pooler: {probe.describe()}, although the addresses "
            f"agree ({addresses.dialled}). Migrations hold a run-long lock and need one server "
            f"session for the whole run. Use the direct URL, {DIRECT_URL_ENV}, not the pooled {POOLED_URL_ENV}."
        )
    return addresses.server
