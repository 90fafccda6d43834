"""Real PEMs for the pulumi-tls resources under the mocks, made from the inputs the program passes.

The image tier (tests/images) runs PgBouncer with the certificate and key the program wires, and
PgBouncer refuses anything that is not a real pair; the wiring tests only follow values around, so
real ones serve both.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _key(pem: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey), "the program's keys are ECDSA P-256"
    return key


def _subject(inputs: dict[str, Any]) -> x509.Name:
    common_name = (inputs.get("subject") or {}).get("commonName") or "lifeguard"
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(common_name))])


def private_key(inputs: dict[str, Any]) -> dict[str, Any]:
    assert (inputs.get("algorithm"), inputs.get("ecdsaCurve")) == ("ECDSA", "P256"), inputs
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return {"privateKeyPem": pem, "publicKeyPem": public}


def cert_request(inputs: dict[str, Any]) -> dict[str, Any]:
    names = [x509.DNSName(str(n)) for n in inputs.get("dnsNames") or []]
    builder = x509.CertificateSigningRequestBuilder().subject_name(_subject(inputs))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    request = builder.sign(_key(str(inputs["privateKeyPem"])), hashes.SHA256())
    return {"certRequestPem": request.public_bytes(serialization.Encoding.PEM).decode()}


def _sign(builder: x509.CertificateBuilder, hours: int, key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    end = now + dt.timedelta(hours=hours)
    cert = (builder.serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(end)
            .sign(key, hashes.SHA256()))
    return {"certPem": cert.public_bytes(serialization.Encoding.PEM).decode(),
            "validityEndTime": end.strftime("%Y-%m-%dT%H:%M:%SZ")}


def self_signed(inputs: dict[str, Any]) -> dict[str, Any]:
    key = _key(str(inputs["privateKeyPem"]))
    name = _subject(inputs)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .add_extension(x509.BasicConstraints(ca=bool(inputs.get("isCaCertificate")), path_length=None),
                              critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    return _sign(builder, int(inputs["validityPeriodHours"]), key)


def locally_signed(inputs: dict[str, Any]) -> dict[str, Any]:
    request = x509.load_pem_x509_csr(str(inputs["certRequestPem"]).encode())
    ca = x509.load_pem_x509_certificate(str(inputs["caCertPem"]).encode())
    ca_key = _key(str(inputs["caPrivateKeyPem"]))
    builder = (x509.CertificateBuilder().subject_name(request.subject).issuer_name(ca.subject)
               .public_key(request.public_key())
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    for extension in request.extensions:
        builder = builder.add_extension(extension.value, critical=extension.critical)
    return _sign(builder, int(inputs["validityPeriodHours"]), ca_key)
