"""Days left on the certificate PgBouncer serves, for the sidecar to publish.

The stack's leaf certificate is renewed only by a ``pulumi up`` in its last 30 days; a stack left
alone for eleven months would have the entrypoint refuse to start new tasks once it expires. The
sidecar gets the same public certificate as PgBouncer (``POOLER_TLS_CERT``) and publishes how many
days it has left, which the stack alarms on.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from pgbouncer.contract import CERT_ENV

SECONDS_PER_DAY = 86_400


class CertificateReadError(ValueError):
    """``POOLER_TLS_CERT`` holds no certificate; the message says so without quoting it."""


def not_after(cert_pem: str) -> dt.datetime:
    """The end of validity of the leaf: the first certificate of the PEM chain, the one PgBouncer presents."""
    try:
        chain = x509.load_pem_x509_certificates(cert_pem.encode())
    except ValueError:
        raise CertificateReadError(f"{CERT_ENV} is not a PEM certificate chain") from None
    return chain[0].not_valid_after_utc


def days_left(expiry: dt.datetime, now: dt.datetime) -> float:
    """Days (fractional, negative once expired) from ``now`` until ``expiry``."""
    return (expiry - now).total_seconds() / SECONDS_PER_DAY
