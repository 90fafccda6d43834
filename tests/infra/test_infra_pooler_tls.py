"""The pooler's CA and certificate as the program wires them (pulumi-tls under mocks; the PEMs are stand-ins).

What is checked here is where each piece goes: the certificate is requested for the NLB's name and
signed by the stack's CA; PgBouncer gets the certificate in its environment and the key as a secret;
the functions get the CA through a layer at the path DATABASE_URL names; no private key is plain.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pulumi
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from lifeguard.aws import pooler_tls
from tests.infra.infra_harness import ProgramRun, is_secret, unwrap, walk_plain_strings
from tests.infra.test_infra_stack import pooler_container, secret_arn, secret_value

PRIVATE = "PRIVATE KEY"


def _one(run: ProgramRun, kind: str, name: str = "") -> Any:
    return run.one(f"tls:index/{kind}", name)


def test_the_ca_is_a_ca_and_signs_a_server_certificate_for_the_nlb_name(example_run: ProgramRun) -> None:
    ca_key = _one(example_run, "privateKey:PrivateKey", "pooler-ca-key")
    ca = _one(example_run, "selfSignedCert:SelfSignedCert")
    assert ca.input("isCaCertificate") is True
    assert ca.input("privateKeyPem") == ca_key.state["privateKeyPem"]
    assert set(ca.input("allowedUses")) == {"cert_signing", "crl_signing"}
    assert ca.input("validityPeriodHours") == 10 * 365 * 24
    assert (ca_key.input("algorithm"), ca_key.input("ecdsaCurve")) == ("ECDSA", "P256")

    nlb = example_run.one("aws:lb/loadBalancer:LoadBalancer")
    leaf_key = _one(example_run, "privateKey:PrivateKey", "pooler-tls-key")
    request = _one(example_run, "certRequest:CertRequest")
    assert request.input("dnsNames") == [nlb.state["dnsName"]]
    assert request.input("privateKeyPem") == leaf_key.state["privateKeyPem"]
    leaf = _one(example_run, "locallySignedCert:LocallySignedCert")
    assert leaf.input("certRequestPem") == request.state["certRequestPem"]
    assert leaf.input("caCertPem") == ca.state["certPem"]
    assert leaf.input("caPrivateKeyPem") == ca_key.state["privateKeyPem"]
    assert sorted(leaf.input("allowedUses")) == ["digital_signature", "key_encipherment", "server_auth"]
    # The rotation story: one year, re-issued by any `pulumi up` in its last 30 days.
    assert (leaf.input("validityPeriodHours"), leaf.input("earlyRenewalHours")) == (365 * 24, 30 * 24)
    assert example_run.outputs["poolerCertificateExpiry"] == leaf.state["validityEndTime"]


def _key_usage(cert: x509.Certificate) -> set[str]:
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "key_cert_sign", "crl_sign")
    return {name for name in names if getattr(usage.value, name)}


def test_the_certificates_carry_exactly_the_uses_the_program_asks_for(every_run: ProgramRun) -> None:
    """What TLS clients check: the leaf may sign a TLS handshake and serve TLS, nothing else (no CA,
    no client auth); the CA may sign certificates and CRLs only. Read from the PEMs, which the mocks
    issue from ``allowedUses`` as pulumi-tls does (tests/infra/tls_mocks.py)."""
    ca = x509.load_pem_x509_certificate(_one(every_run, "selfSignedCert:SelfSignedCert").state["certPem"].encode())
    leaf_pem = _one(every_run, "locallySignedCert:LocallySignedCert").state["certPem"]
    leaf = x509.load_pem_x509_certificate(leaf_pem.encode())
    assert _key_usage(leaf) == {"digital_signature", "key_encipherment"}
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH]
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert _key_usage(ca) == {"key_cert_sign", "crl_sign"}
    with pytest.raises(x509.ExtensionNotFound):
        ca.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True


def test_pgbouncer_gets_the_certificate_in_its_environment_and_the_key_as_a_secret(example_run: ProgramRun) -> None:
    container = pooler_container(example_run)
    leaf = _one(example_run, "locallySignedCert:LocallySignedCert")
    environment = {e["name"]: e["value"] for e in container["environment"]}
    assert environment["POOLER_TLS_CERT"] == leaf.state["certPem"]
    assert {"name": "POOLER_TLS_KEY", "valueFrom": secret_arn(example_run, "pooler-tls-key")} in container["secrets"]
    key = secret_value(example_run, "pooler-tls-key")
    assert is_secret(key)
    assert unwrap(key) == _one(example_run, "privateKey:PrivateKey", "pooler-tls-key").state["privateKeyPem"]
    # The task definition must not start tasks before the key is stored.
    task = example_run.one("aws:ecs/taskDefinition:TaskDefinition", "pooler")
    assert PRIVATE not in json.dumps(unwrap(task.inputs))


def test_functions_find_the_ca_where_the_pooled_url_says(example_run: ProgramRun) -> None:
    layer = example_run.one("aws:lambda/layerVersion:LayerVersion")
    ca = _one(example_run, "selfSignedCert:SelfSignedCert")
    code = layer.inputs["code"]
    assert isinstance(code, pulumi.AssetArchive)
    assert list(code.assets) == ["lifeguard/pooler-ca.pem"]
    asset = code.assets["lifeguard/pooler-ca.pem"]
    assert isinstance(asset, pulumi.StringAsset) and asset.text == ca.state["certPem"]
    query = parse_qs(urlsplit(unwrap(secret_value(example_run, "connection-pooled"))).query)
    assert query["sslrootcert"] == ["/opt/lifeguard/pooler-ca.pem"] == [example_run.outputs["poolerCaPath"]]
    for function in example_run.of_type("aws:lambda/function:Function"):
        assert function.input("layers") == [layer.state["arn"]], function.name
    assert example_run.outputs["poolerCaLayerArn"] == layer.state["arn"]
    # Public, so users can bundle it: the CA certificate is a plain output; its key is nowhere in them.
    assert example_run.outputs["poolerCaCertificate"] == ca.state["certPem"]
    assert "poolerCaCertificate" not in example_run.secret_outputs


def test_no_private_key_is_plain_in_any_input_or_output(every_run: ProgramRun) -> None:
    for resource in every_run.resources:
        for path, value in walk_plain_strings(resource.inputs):
            assert PRIVATE not in value, f"{resource.type} {resource.name}{path}"
    for name, value in every_run.outputs.items():
        assert PRIVATE not in json.dumps(unwrap(value)), name


def test_the_ca_name_fits_x509s_limit_for_any_stack_name() -> None:
    assert pooler_tls.ca_common_name("dev") == "lifeguard dev pooler CA"
    long = "prod.eu-1." + "x" * 100
    name = pooler_tls.ca_common_name(long)
    assert len(name) == pooler_tls.COMMON_NAME_MAX and name != pooler_tls.ca_common_name(long + "y")
