"""The pooler's own CA and PgBouncer's certificate, so clients can verify the pooler (``verify-full``).

Why the Pulumi TLS provider (pulumi-tls, Pulumi's bridge of HashiCorp's ``tls`` provider): the keys
and certificates are ordinary resources whose private parts Pulumi keeps as secrets in the stack's
encrypted state, with nothing more to run or pay for. ACM cannot do it: an NLB TLS listener would
end TLS at the NLB, but a Postgres client first sends a plaintext ``SSLRequest`` that only the
server (PgBouncer) answers, and ACM does not export private keys of public certificates; ACM
Private CA exports them but costs hundreds of dollars a month per CA for one internal name.

- :class:`PoolerCertificateAuthority`: an ECDSA P-256 CA (10 years) and a Lambda layer holding its
  certificate at :data:`CA_PATH` (``/opt/...``), the ``sslrootcert`` of ``DATABASE_URL``. The
  functions attach the layer; users' own functions attach the same layer (``poolerCaLayerArn``)
  or bundle the ``poolerCaCertificate`` output.
- :class:`PoolerCertificate`: PgBouncer's key and a certificate for the NLB's DNS name, signed by
  the CA. The key goes to a Secrets Manager secret the pooler's tasks read (``POOLER_TLS_KEY``); the
  certificate is public and goes in the task definition's environment (``POOLER_TLS_CERT``).

Renewal (a rotation story): the leaf lives :data:`LEAF_VALIDITY_HOURS` and the provider marks it for
replacement once fewer than :data:`LEAF_EARLY_RENEWAL_HOURS` remain, so any ``pulumi up`` in that
window (the pipeline runs one per deploy) issues a new one; the task definition's environment
changes with it and ECS rolls the tasks (circuit breaker on). The key and the CA stay, so clients
notice nothing. ``poolerCertificateExpiry`` says when a stack left alone would need it.
"""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict

import pulumi
import pulumi_aws as aws
import pulumi_tls as tls

from lifeguard.aws.lambda_package import RUNTIME
from lifeguard.aws.naming import LAMBDA_LAYER, stack_name
from lifeguard.aws.secrets import mark_secret, stored_secret
from lifeguard.aws.type_token import component_type
from pgbouncer.contract import KEY_ENV

CA_LAYER_FILE = "lifeguard/pooler-ca.pem"
CA_PATH = f"/opt/{CA_LAYER_FILE}"
"""Where a function with the CA layer finds the certificate (layers unpack under ``/opt``)."""
CA_VALIDITY_HOURS = 10 * 365 * 24
LEAF_VALIDITY_HOURS = 365 * 24
LEAF_EARLY_RENEWAL_HOURS = 30 * 24
# The runtimes the layer declares (a layer with none is attachable to all; these document the use).
LAYER_RUNTIMES = [RUNTIME, "nodejs20.x", "nodejs22.x"]


# RFC 5280's upper bound for a common name; certificate libraries refuse a longer one.
COMMON_NAME_MAX = 64


def ca_common_name(stack: str) -> str:
    """``lifeguard <stack> pooler CA``, within COMMON_NAME_MAX: a long stack name is cut and a digest
    of the whole name keeps two such stacks apart."""
    name = f"lifeguard {stack} pooler CA"
    if len(name) <= COMMON_NAME_MAX:
        return name
    digest = hashlib.sha256(stack.encode()).hexdigest()[:8]
    room = COMMON_NAME_MAX - len("lifeguard  pooler CA") - len(digest) - 1
    return f"lifeguard {stack[:room]}~{digest} pooler CA"


def ca_layer_archive(cert_pem: str) -> pulumi.AssetArchive:
    return pulumi.AssetArchive({CA_LAYER_FILE: pulumi.StringAsset(cert_pem)})


class PoolerCertificateAuthorityArgs(TypedDict, total=False):
    common_name: pulumi.Input[str]
    """The CA's subject, at most 64 characters; default `lifeguard <stack> pooler CA`."""


class PoolerCertificateAuthority(pulumi.ComponentResource):
    """The pooler's own CA (ECDSA P-256, 10 years) and a Lambda layer with its certificate for clients."""

    cert_pem: pulumi.Output[str]
    """The CA certificate (public): what clients verify the pooler against."""
    private_key_pem: pulumi.Output[str]
    """The CA's private key (a secret): the Pooler signs PgBouncer's certificate with it."""
    layer_arn: pulumi.Output[str]
    """A Lambda layer version with the certificate at `/opt/lifeguard/pooler-ca.pem`."""

    def __init__(
        self, name: str, args: PoolerCertificateAuthorityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        given = args.get("common_name")
        # Checked before anything is registered (a plain string: an Output's value is known only later).
        if isinstance(given, str) and not 0 < len(given) <= COMMON_NAME_MAX:
            raise ValueError(f"PoolerCertificateAuthorityArgs.common_name must be 1 to {COMMON_NAME_MAX} characters "
                             f"(RFC 5280), got {len(given)}: shorten it, or leave it unset for the default")
        super().__init__(component_type(PoolerCertificateAuthority, "tls"), name, None, opts)
        # Layer names are per account and region: the region of this component's provider.
        region = aws.get_region(opts=pulumi.InvokeOptions(parent=self)).region
        common_name = given if given is not None else ca_common_name(pulumi.get_stack())
        child = pulumi.ResourceOptions(parent=self)
        key = tls.PrivateKey(f"{name}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        cert = tls.SelfSignedCert(
            f"{name}-cert",
            private_key_pem=key.private_key_pem,
            subject={"common_name": common_name, "organization": "lifeguard"},
            is_ca_certificate=True,
            max_path_length=0,
            set_subject_key_id=True,
            validity_period_hours=CA_VALIDITY_HOURS,
            allowed_uses=["cert_signing", "crl_signing"],
            opts=child,
        )
        layer = aws.lambda_.LayerVersion(
            f"{name}-layer",
            # A stack name may hold characters Lambda refuses (`prod.eu-1`): the naming rule sanitises it.
            layer_name=stack_name(LAMBDA_LAYER, name, region=region),
            description=f"The pooler's CA certificate at {CA_PATH} (DATABASE_URL's sslrootcert)",
            code=cert.cert_pem.apply(ca_layer_archive),
            compatible_runtimes=LAYER_RUNTIMES,
            # Stacks deployed when the name was `<name>-<stack>` (valid for them, or their first `up`
            # would have failed) keep it: a new name would publish a new layer version and move
            # poolerCaLayerArn under the users' own functions for no gain.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["layerName"]),
        )
        self.cert_pem = cert.cert_pem
        self.private_key_pem = mark_secret(key.private_key_pem)
        self.layer_arn = layer.arn
        self.register_outputs({"certPem": self.cert_pem, "layerArn": self.layer_arn})


@dataclass(frozen=True)
class PoolerCertificateArgs:
    ca_cert_pem: pulumi.Input[str]
    ca_private_key_pem: pulumi.Input[str]
    """The signing CA's key (a secret): :attr:`PoolerCertificateAuthority.private_key_pem`."""
    dns_name: pulumi.Input[str]
    """The name clients dial: the NLB's DNS name."""
    secret_name_prefix: str
    recovery_window_days: int
    tags: Mapping[str, pulumi.Input[str]] | None = None
    """On the key's secret (nothing else here is taggable)."""


class PoolerCertificate(pulumi.ComponentResource):
    cert_pem: pulumi.Output[str]
    key_secret_arn: pulumi.Output[str]
    key_secret_version: aws.secretsmanager.SecretVersion
    """Tasks must not start before the key they will read is there."""
    expiry: pulumi.Output[str]
    """RFC 3339 end of validity of the certificate PgBouncer serves."""

    def __init__(self, name: str, args: PoolerCertificateArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lifeguard:tls:PoolerCertificate", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        key = tls.PrivateKey(f"{name}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        request = tls.CertRequest(
            f"{name}-request",
            private_key_pem=key.private_key_pem,
            # The name is in the SAN (what clients check); an NLB's DNS name can outgrow a CN's 64 characters.
            subject={"common_name": "lifeguard pooler", "organization": "lifeguard"},
            dns_names=[args.dns_name],
            opts=child,
        )
        cert = tls.LocallySignedCert(
            f"{name}-cert",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=args.ca_private_key_pem,
            ca_cert_pem=args.ca_cert_pem,
            validity_period_hours=LEAF_VALIDITY_HOURS,
            early_renewal_hours=LEAF_EARLY_RENEWAL_HOURS,
            allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
            opts=child,
        )
        secret, self.key_secret_version = stored_secret(
            f"{name}-key",
            name_prefix=f"{args.secret_name_prefix}{KEY_ENV}-",
            description="PgBouncer's TLS private key (its certificate is in the task definition); read by the "
                        "pooler tasks only",
            recovery_window_days=args.recovery_window_days,
            value=key.private_key_pem,
            opts=child,
            tags=args.tags,
        )
        self.cert_pem = cert.cert_pem
        self.key_secret_arn = secret.arn
        self.expiry = cert.validity_end_time
        self.register_outputs({"certPem": self.cert_pem, "keySecretArn": self.key_secret_arn,
                               "expiry": self.expiry})
