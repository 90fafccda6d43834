"""When the server's certificate expires: read from a TLS handshake of our own, as Postgres does it.

libpq verifies the certificate but does not hand it to psycopg, so the doctor opens one more
connection: Postgres' ``SSLRequest``, then a handshake that only reads the certificate (the
verification that matters is libpq's, on the connection already made), then closes. Hand-written
because no driver exposes the peer certificate; it is 8 bytes of protocol and :mod:`ssl`.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import struct

from cryptography import x509

# Postgres' SSLRequest: length 8, then the request code 1234.5679.
_SSL_REQUEST = struct.pack("!ii", 8, 80877103)
RENEW_WITHIN = dt.timedelta(days=30)
"""Warn when less than this is left: the stack re-issues PgBouncer's certificate in the same window."""


def server_certificate_expiry(host: str, port: int, timeout: float = 5) -> dt.datetime | None:
    """The end of validity of the certificate ``host:port`` presents; None when it offers no TLS."""
    with socket.create_connection((host, port), timeout=timeout) as raw:
        raw.sendall(_SSL_REQUEST)
        if raw.recv(1) != b"S":
            return None
        context = ssl.create_default_context()
        # Only reading the certificate: the connection that matters was verified by libpq.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with context.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    if der is None:
        return None
    return x509.load_der_x509_certificate(der).not_valid_after_utc
