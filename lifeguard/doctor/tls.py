"""Check 5: is the connection encrypted, and is the server verified?

The server certificate's expiry comes from a handshake of our own (:mod:`.certificate`): one
that expires within 30 days is a warning, whatever else holds. The client side comes from libpq
(``PQsslInUse`` and the ``sslmode`` in effect): through a pooler that is the leg to the pooler.
``pg_stat_ssl`` for our backend tells the leg the server saw, which through a pooler is the
pooler's own connection to Postgres.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg

from lifeguard.doctor.certificate import RENEW_WITHIN, server_certificate_expiry
from lifeguard.doctor.findings import NOTHING_TO_CHANGE, Finding, Status
from lifeguard.doctor.target import Target

_SERVER_LEG = (
    "SELECT s.ssl, s.version, host(inet_client_addr()) FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()"
)
VERIFY = "sslmode=verify-full with sslrootcert=<the server's CA bundle>"


def _sslmode(conn: psycopg.Connection[Any]) -> str:
    for option in conn.pgconn.info:
        if option.keyword == b"sslmode" and option.val is not None:
            return option.val.decode()
    return "prefer"


def finding(target: Target, conn: psycopg.Connection[Any], pooled: bool) -> Finding:
    """``pooled``: the URL goes through a pooler or proxy, so the server-side leg is the pooler's."""
    unix_socket = conn.info.host.startswith(("/", "@"))
    encrypted = bool(conn.pgconn.ssl_in_use)
    sslmode = _sslmode(conn)
    row = conn.execute(_SERVER_LEG).fetchone()
    server_ssl, server_version, server_client = (row if row is not None else (None, None, None))
    details: dict[str, Any] = {
        "encrypted": encrypted,
        "sslmode": sslmode,
        # Directly, the server's leg is ours; through a pooler our leg's version is not visible here.
        "protocol": server_version if encrypted and not pooled else None,
        "unix_socket": unix_socket,
        "server_leg_encrypted": server_ssl,
        "server_leg_protocol": server_version,
    }
    server_leg = ""
    if pooled:
        server_leg = "; the pooler reaches Postgres " + ("with TLS" if server_ssl else "without TLS")
    if unix_socket:
        return Finding("tls", target.name, Status.OK, f"Unix socket: local, no TLS needed{server_leg}",
                       NOTHING_TO_CHANGE, details)
    if not encrypted:
        return Finding("tls", target.name, Status.FAIL, f"not encrypted (sslmode={sslmode}){server_leg}",
                       f"encrypt it: {VERIFY} (at least sslmode=require)", details)
    protocol = details["protocol"] or "TLS"
    try:
        expires = server_certificate_expiry(conn.info.host, conn.info.port)
    except (OSError, ValueError):
        expires = None
    details["certificate_expires"] = expires.isoformat() if expires is not None else None
    left = expires - dt.datetime.now(dt.UTC) if expires is not None else None
    if left is not None and left < RENEW_WITHIN:
        return Finding("tls", target.name, Status.WARN,
                       f"{protocol}, but the server certificate expires {expires:%Y-%m-%d} ({left.days} days left)",
                       "renew it before clients refuse it: on a lifeguard stack `pulumi up` issues a new one in "
                       "its last 30 days (output poolerCertificateExpiry); locally `lifeguard local down`, then `up`",
                       details)
    if pooled and not server_ssl and server_client not in (None, "127.0.0.1", "::1"):
        return Finding("tls", target.name, Status.WARN, f"{protocol}, sslmode={sslmode}{server_leg}",
                       "encrypt the pooler's leg to Postgres (PgBouncer server_tls_sslmode=verify-full)", details)
    if sslmode == "verify-full":
        return Finding("tls", target.name, Status.OK, f"{protocol}, server certificate and name verified{server_leg}",
                       NOTHING_TO_CHANGE, details)
    if sslmode == "verify-ca":
        return Finding("tls", target.name, Status.WARN,
                       f"{protocol}, server certificate verified but not its name (sslmode=verify-ca){server_leg}",
                       "use sslmode=verify-full so the certificate must name the host you dialled", details)
    return Finding("tls", target.name, Status.WARN,
                   f"{protocol} but the server is not verified (sslmode={sslmode}): a machine in the middle "
                   f"could read the password{server_leg}",
                   f"verify the server: {VERIFY} (for a pooler with its own certificate, its CA)", details)
