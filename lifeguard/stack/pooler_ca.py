"""The local stack's own CA for PgBouncer, kept in the state directory (``tls/``).

What the Pulumi TLS provider does on AWS, done with :mod:`pgbouncer.tls` here: a CA made once
(``pooler-ca.crt``, the ``sslrootcert`` of ``DATABASE_URL``; ``pooler-ca.key``, 0600), and a
server certificate for the names clients dial, issued afresh each time PgBouncer starts and
handed to the same :func:`pgbouncer.entrypoint.prepare` the image runs.
"""

from __future__ import annotations

from pathlib import Path

from pgbouncer.tls import CertPair, ServerCertificate, issue_server_certificate, write_authority

# What `lifeguard local env` puts in DATABASE_URL's host, plus the name a user may type instead.
LOCAL_NAMES = ("localhost", "127.0.0.1")
CA_COMMON_NAME = "lifeguard local pooler CA"


def authority_pair(state_dir: Path) -> CertPair:
    return CertPair(state_dir / "tls" / "pooler-ca.crt", state_dir / "tls" / "pooler-ca.key")


def ensure_authority(state_dir: Path) -> CertPair:
    """The stack's CA, made on first use and kept (clients hold on to its certificate)."""
    pair = authority_pair(state_dir)
    if not (pair.cert_file.exists() and pair.key_file.exists()):
        write_authority(pair, CA_COMMON_NAME)
    return pair


def server_certificate(state_dir: Path) -> ServerCertificate:
    """A fresh PgBouncer certificate for :data:`LOCAL_NAMES`, signed by the stack's CA."""
    return issue_server_certificate(ensure_authority(state_dir), LOCAL_NAMES)
