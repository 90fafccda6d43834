"""PgBouncer's client-side certificate: the one the stack issues, checked and written at start.

The stack owns a CA (on AWS the Pulumi TLS provider, in state; locally :func:`write_authority`
in the state directory) and issues PgBouncer a certificate for the name clients dial, so
``DATABASE_URL`` can say ``sslmode=verify-full`` with ``sslrootcert`` = that CA. The entrypoint
receives the pair as ``POOLER_TLS_CERT`` (public, in the task's environment, so a new leaf
rolls the tasks) and ``POOLER_TLS_KEY`` (a secret), checks that they belong together and are
valid now, and writes them where the rendered ini points. Written with ``cryptography`` rather
than shelling out to ``openssl``, so the same code is tested here and runs in the image.

:func:`write_self_signed` remains for what has no CA: the local Postgres standing in for RDS,
and a pooler started without a pair (tests, a bare ``docker run``), which verify-full clients refuse.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pgbouncer.contract import CERT_ENV, KEY_ENV
from pgbouncer.private_file import write_file, write_private


class CertificateError(ValueError):
    """The given certificate pair cannot be used; the message says why (never the key)."""


@dataclass(frozen=True)
class CertPair:
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class ServerCertificate:
    """A certificate and its private key, as PEM text."""

    cert_pem: str
    key_pem: str = field(repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServerCertificate | None:
        """The pair in ``env``; None when neither variable is set, an error when only one is."""
        given = [name for name in (CERT_ENV, KEY_ENV) if env.get(name)]
        if not given:
            return None
        if len(given) == 1:
            missing = KEY_ENV if given == [CERT_ENV] else CERT_ENV
            raise CertificateError(f"{given[0]} is set but {missing} is not; give both or neither")
        return cls(env[CERT_ENV], env[KEY_ENV])

    def check(self, now: dt.datetime | None = None) -> x509.Certificate:
        """The leaf certificate, once its key matches and it is valid at ``now``."""
        try:
            chain = x509.load_pem_x509_certificates(self.cert_pem.encode())
        except ValueError:
            raise CertificateError(f"{CERT_ENV} is not a PEM certificate") from None
        try:
            key = serialization.load_pem_private_key(self.key_pem.encode(), password=None)
        except (ValueError, TypeError):
            raise CertificateError(f"{KEY_ENV} is not an unencrypted PEM private key") from None
        leaf = chain[0]
        public = serialization.PublicFormat.SubjectPublicKeyInfo
        if leaf.public_key().public_bytes(serialization.Encoding.DER, public) != key.public_key().public_bytes(
            serialization.Encoding.DER, public
        ):
            raise CertificateError(f"{KEY_ENV} is not the private key of the certificate in {CERT_ENV}")
        now = now or dt.datetime.now(dt.UTC)
        if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
            raise CertificateError(
                f"the certificate in {CERT_ENV} is valid from {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} to "
                f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, not now; issue a new one (`pulumi up` "
                "re-issues it inside its renewal window)"
            )
        return leaf

    def write(self, pair: CertPair) -> None:
        """Write the certificate (0644) and the key (0600) to ``pair``'s paths."""
        pair.cert_file.parent.mkdir(parents=True, exist_ok=True)
        pair.key_file.parent.mkdir(parents=True, exist_ok=True)
        write_file(pair.cert_file, self.cert_pem, 0o644)
        write_private(pair.key_file, self.key_pem.encode())


def _names(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(sans)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _builder(subject: str, issuer: x509.Name | None, public: ec.EllipticCurvePublicKey, days: int
             ) -> x509.CertificateBuilder:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
    )


def write_self_signed(
    directory: Path, names: tuple[str, ...] = ("localhost",), days: int = 825, stem: str = "server"
) -> CertPair:
    """Write ``<stem>.crt`` and ``<stem>.key`` (0600) for ``names`` (DNS names or IPs).

    The certificate is its own CA (``BasicConstraints(ca=True)``), so clients that want to
    verify it can use the same file as ``sslrootcert``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(names[0], None, key.public_key(), days)
        .add_extension(_names(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pair = CertPair(directory / f"{stem}.crt", directory / f"{stem}.key")
    ServerCertificate(_pem(cert), _key_pem(key)).write(pair)
    return pair


def write_authority(pair: CertPair, common_name: str, days: int = 3650) -> None:
    """Write a CA certificate and its key (0600) to ``pair``: it signs, it serves nothing."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(common_name, None, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    ServerCertificate(_pem(cert), _key_pem(key)).write(pair)


def issue_server_certificate(authority: CertPair, names: tuple[str, ...], days: int = 397) -> ServerCertificate:
    """A server certificate for ``names`` (DNS names or IPs), signed by the CA in ``authority``."""
    ca_cert = x509.load_pem_x509_certificate(authority.cert_file.read_bytes())
    ca_key = serialization.load_pem_private_key(authority.key_file.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{authority.key_file} is not the EC key write_authority makes")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(names[0], ca_cert.subject, key.public_key(), days)
        .add_extension(_names(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return ServerCertificate(_pem(cert), _key_pem(key))
