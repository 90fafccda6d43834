"""Real PEMs for the pulumi-tls resources under the mocks, made from the inputs the program passes.

The image tier (tests/images) runs PgBouncer with the certificate and key the program wires, and
PgBouncer refuses anything that is not a real pair; the wiring tests only follow values around, so
real ones serve both. The certificates carry what the provider would put in them and no more: in
particular ``allowedUses`` becomes KeyUsage (critical) and ExtendedKeyUsage, as pulumi-tls (the
Terraform TLS provider, Go's crypto/x509) emits them, so a verify-full proof on these certificates
holds for the real ones.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The provider's allowed_uses names (terraform-provider-tls internal/provider/common_cert.go: keyUsages,
# extendedKeyUsages), each to the KeyUsage bit or the ExtendedKeyUsage purpose it sets.
# KEY_USAGES: the provider's name -> cryptography's x509.KeyUsage argument.
KEY_USAGES = {
    "digital_signature": "digital_signature",
    "content_commitment": "content_commitment",
    "key_encipherment": "key_encipherment",
    "data_encipherment": "data_encipherment",
    "key_agreement": "key_agreement",
    "cert_signing": "key_cert_sign",
    "crl_signing": "crl_sign",
    "encipher_only": "encipher_only",
    "decipher_only": "decipher_only",
}
EXTENDED_KEY_USAGES = {
    "any_extended": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    "server_auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code_signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email_protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "ipsec_end_system": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.5"),
    "ipsec_tunnel": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.6"),
    "ipsec_user": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.7"),
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp_signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "microsoft_server_gated_crypto": x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),
    "netscape_server_gated_crypto": x509.ObjectIdentifier("2.16.840.1.113730.4.1"),
    "microsoft_commercial_code_signing": x509.ObjectIdentifier("1.3.6.1.4.1.311.2.1.22"),
    "microsoft_kernel_code_signing": x509.ObjectIdentifier("1.3.6.1.4.1.311.61.1.1"),
}


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


def _with_uses(builder: x509.CertificateBuilder, inputs: dict[str, Any]) -> x509.CertificateBuilder:
    """KeyUsage and ExtendedKeyUsage from ``allowedUses``; each only when some use asks for it (Go's
    x509.CreateCertificate writes KeyUsage critical, ExtendedKeyUsage not)."""
    uses = [str(use) for use in inputs.get("allowedUses") or []]
    unknown = sorted(set(uses) - set(KEY_USAGES) - set(EXTENDED_KEY_USAGES))
    assert not unknown, f"pulumi-tls refuses allowed_uses {unknown}"
    bits = {argument: name in uses for name, argument in KEY_USAGES.items()}
    if any(bits.values()):
        builder = builder.add_extension(x509.KeyUsage(**bits), critical=True)
    purposes = [EXTENDED_KEY_USAGES[use] for use in uses if use in EXTENDED_KEY_USAGES]
    if purposes:
        builder = builder.add_extension(x509.ExtendedKeyUsage(purposes), critical=False)
    return builder


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
    return _sign(_with_uses(builder, inputs), int(inputs["validityPeriodHours"]), key)


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
    return _sign(_with_uses(builder, inputs), int(inputs["validityPeriodHours"]), ca_key)
