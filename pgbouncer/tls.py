"""Self-signed certificates for PgBouncer's client side (and the local stack's Postgres).

Clients use ``sslmode=require``: encrypted, not verified, so a certificate the entrypoint
makes at start is enough when none is mounted. Written with ``cryptography`` rather than
shelling out to ``openssl``, so the same code is tested here and runs in the image.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pgbouncer.private_file import write_private


@dataclass(frozen=True)
class CertPair:
    cert_file: Path
    key_file: Path


def write_self_signed(
    directory: Path, names: tuple[str, ...] = ("localhost",), days: int = 825, stem: str = "server"
) -> CertPair:
    """Write ``<stem>.crt`` and ``<stem>.key`` (0600) for ``names`` (DNS names or IPs).

    The certificate is its own CA (``BasicConstraints(ca=True)``), so clients that want to
    verify it can use the same file as ``sslrootcert``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pair = CertPair(directory / f"{stem}.crt", directory / f"{stem}.key")
    pair.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(pair.key_file, key_bytes)
    return pair
