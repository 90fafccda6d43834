"""The two connection strings, each its own Secrets Manager secret.

``DATABASE_URL`` goes through the pooler (the NLB) and logs in as the DML-only application role;
``DATABASE_URL_UNPOOLED`` goes straight to RDS as the master user, who owns the schema and runs
the migrations. Same database; user, host, port and TLS mode differ. Who may read which is
decided by the roles that reference these ARNs, not here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from database_urls import DIRECT_URL_ENV, POOLED_URL_ENV

# Where the migration image keeps the RDS CA bundle (its Dockerfile puts it there).
MIGRATOR_RDS_CA_PATH = "/etc/ssl/certs/rds-global-bundle.pem"


def verified_url(user: str, password: str, host: str, port: int, db_name: str, root_cert: str) -> str:
    """A URL whose client checks the server's certificate names ``host`` and chains to ``root_cert``
    (``verify-full``): for the pooled URL, PgBouncer's certificate for the NLB from the stack's own CA;
    for the direct one, the RDS endpoint's certificate from the RDS bundle."""
    return (
        f"postgresql://{_credentials(user, password)}@{host}:{port}/{db_name}"
        f"?sslmode=verify-full&sslrootcert={quote(root_cert, safe='/')}"
    )


def mark_secret(value: pulumi.Output[str]) -> pulumi.Output[str]:
    """Mark ``value`` secret (typed: ``Output.secret`` confuses mypy next to an optional input)."""
    secret: pulumi.Output[str] = pulumi.Output.secret(value)
    return secret


def generated_password(resource_name: str, opts: pulumi.ResourceOptions) -> random.RandomPassword:
    """The kit's one kind of generated password: 40 letters and digits (about 238 bits).

    Plain ASCII with nothing to escape: not in URLs, userlist.txt or JSON, and not in RDS's own rules
    (which forbid / @ " and space); SASLprep leaves it alone, so a SCRAM verifier computed from it
    here is the one Postgres would compute.
    """
    return random.RandomPassword(
        resource_name, length=40, special=False, min_lower=4, min_upper=4, min_numeric=4, opts=opts
    )


def stored_secret(
    resource_name: str,
    *,
    name_prefix: str,
    description: str,
    recovery_window_days: int,
    value: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
    tags: Mapping[str, pulumi.Input[str]] | None = None,
) -> tuple[aws.secretsmanager.Secret, aws.secretsmanager.SecretVersion]:
    """A Secrets Manager secret and its value (marked secret in state), both named ``resource_name``."""
    secret = aws.secretsmanager.Secret(
        resource_name, name_prefix=name_prefix, description=description,
        recovery_window_in_days=recovery_window_days, tags=tags, opts=opts,
    )
    version = aws.secretsmanager.SecretVersion(
        resource_name, secret_id=secret.id, secret_string=mark_secret(pulumi.Output.from_input(value)), opts=opts,
    )
    return secret, version


def _credentials(user: str, password: str) -> str:
    return f"{quote(user, safe='')}:{quote(password, safe='')}"


@dataclass(frozen=True)
class ConnectionSecretsArgs:
    username: str
    """The master user, in the direct URL."""
    password: pulumi.Output[str]
    app_username: str
    """The application role, in the pooled URL."""
    app_password: pulumi.Output[str]
    db_name: str
    pooler_host: pulumi.Output[str]
    pooler_port: int
    database_host: pulumi.Output[str]
    database_port: pulumi.Output[int]
    secret_name_prefix: str
    recovery_window_days: int
    pooled_root_cert: str
    """Where functions find the pooler's CA (the CA layer's path)."""
    direct_root_cert: str = MIGRATOR_RDS_CA_PATH


class ConnectionSecrets(pulumi.ComponentResource):
    pooled_secret_arn: pulumi.Output[str]
    direct_secret_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: ConnectionSecretsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("lifeguard:secrets:ConnectionSecrets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        pooled_value: pulumi.Output[str] = pulumi.Output.all(args.app_password, args.pooler_host).apply(
            lambda values: verified_url(args.app_username, values[0], values[1], args.pooler_port, args.db_name,
                                        args.pooled_root_cert)
        )
        pooled, _ = stored_secret(
            f"{name}-pooled",
            name_prefix=f"{args.secret_name_prefix}{POOLED_URL_ENV}-",
            description=f"{POOLED_URL_ENV}: through PgBouncer (transaction mode); for the functions",
            recovery_window_days=args.recovery_window_days,
            value=pooled_value,
            opts=child,
        )
        direct_value: pulumi.Output[str] = pulumi.Output.all(
            args.password, args.database_host, args.database_port
        ).apply(lambda values: verified_url(args.username, values[0], values[1], values[2], args.db_name,
                                            args.direct_root_cert))
        direct, _ = stored_secret(
            f"{name}-direct",
            name_prefix=f"{args.secret_name_prefix}{DIRECT_URL_ENV}-",
            description=f"{DIRECT_URL_ENV}: straight to RDS; for the migration job only",
            recovery_window_days=args.recovery_window_days,
            value=direct_value,
            opts=child,
        )

        self.pooled_secret_arn = pooled.arn
        self.direct_secret_arn = direct.arn
        self.register_outputs({"pooledSecretArn": self.pooled_secret_arn, "directSecretArn": self.direct_secret_arn})
