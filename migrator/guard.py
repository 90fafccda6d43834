"""Refuse to migrate through a pooler: the endpoint we dialled must be the one Postgres answers on.

Through PgBouncer (or RDS Proxy, or any TCP proxy) the client dials the proxy, and the server
reports the address and port the *proxy* connected to (``inet_server_addr()`` /
``inet_server_port()``), so the two differ. Measured here: direct 127.0.0.1:P on both sides;
through PgBouncer the client dialled 127.0.0.1:6432-ish while the server said 127.0.0.1:P.

Over a Unix socket ``inet_server_addr()`` is NULL: the dialled port must then equal the server's
``port`` setting, and, where the role may read it, the socket folder must be one of
``unix_socket_directories``.

An SSH tunnel or a NAT port mapping looks exactly like a proxy and is refused too: run the job
where it reaches the database directly (on AWS, the migration task in the database's VPC).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import psycopg

from migrator.errors import PoolerRefused
from migrator.source import ENV_POOLED_URL, ENV_URL


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


def check_direct(conn: psycopg.Connection[Any]) -> Endpoint:
    """The server endpoint, if ``conn`` reaches Postgres directly; raises PoolerRefused otherwise."""
    dialled = dialled_endpoint(conn)
    server, socket_dirs = server_endpoint(conn)
    mismatch = (
        (dialled.address is None) != (server.address is None)
        or dialled.address != server.address
        or dialled.port != server.port
        or (
            dialled.address is None
            and socket_dirs is not None
            and dialled.socket_dir is not None
            and dialled.socket_dir.rstrip("/") not in {d.rstrip("/") for d in socket_dirs}
        )
    )
    if mismatch:
        raise PoolerRefused(
            f"refusing to migrate through a pooler or proxy: this connection was dialled to {dialled}, "
            f"but Postgres says it arrived on {server}. Migrations hold a session advisory lock and run "
            f"each file in one transaction on one server session, which a transaction pooler does not "
            f"keep. Use the direct URL, {ENV_URL}, not the pooled {ENV_POOLED_URL}."
        )
    return server
