"""The two connection strings, each its own Secrets Manager secret.

``DATABASE_URL`` goes through the pooler (the NLB) and logs in as the DML-only application role;
``DATABASE_URL_UNPOOLED`` goes straight to RDS as the master user, who owns the schema and runs
the migrations. Same database; user, host, port and TLS mode differ. Who may read which is
decided by the roles that reference these ARNs, not here.
"""

from collections.abc import Mapping
from typing import Required, TypedDict

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from database_urls import DIRECT_URL_ENV, POOLED_URL_ENV, verified_url
from lifeguard.aws.component_args import whole_number
from lifeguard.aws.naming import secret_name_prefix
from lifeguard.aws.type_token import component_type
from pgbouncer.contract import LISTEN_PORT

# Where the migration image keeps the RDS CA bundle (its Dockerfile puts it there).
MIGRATOR_RDS_CA_PATH = "/etc/ssl/certs/rds-global-bundle.pem"
# Secrets Manager: 0 deletes at once (a dev stack recreated under the same names), else 7 to 30 days.
RECOVERY_WINDOWS = (0, *range(7, 31))
DEFAULT_RECOVERY_WINDOW_DAYS = 30
POSTGRES_PORT = 5432


def mark_secret(value: pulumi.Output[str]) -> pulumi.Output[str]:
    """Mark ``value`` secret (typed: ``Output.secret`` confuses mypy next to an optional input)."""
    secret: pulumi.Output[str] = pulumi.Output.secret(value)
    return secret


def generated_password(resource_name: str, opts: pulumi.ResourceOptions,
                       keepers: Mapping[str, str] | None = None) -> random.RandomPassword:
    """The kit's one kind of generated password: 40 letters and digits (about 238 bits).

    Plain ASCII with nothing to escape: not in URLs, userlist.txt or JSON, and not in RDS's own rules
    (which forbid / @ " and space); SASLprep leaves it alone, so a SCRAM verifier computed from it
    here is the one Postgres would compute. A change of ``keepers`` makes a new one (a rotation).
    """
    return random.RandomPassword(
        resource_name, length=40, special=False, min_lower=4, min_upper=4, min_numeric=4, opts=opts,
        keepers=None if keepers is None else dict(keepers),
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


class ConnectionSecretsArgs(TypedDict, total=False):
    app_username: Required[pulumi.Input[str]]
    """The application role, in the pooled URL."""
    app_password: Required[pulumi.Input[str]]
    """Its password (a secret): `AppRoleCredentials.password`."""
    db_name: Required[str]
    """The database both URLs name."""
    pooler_host: Required[pulumi.Input[str]]
    """The pooler's name: `Pooler.endpoint`."""
    pooler_port: pulumi.Input[int]
    """The pooler's port (default 6432)."""
    pooled_root_cert: str
    """Where functions find the pooler's CA (default the CA layer's path, `/opt/lifeguard/pooler-ca.pem`)."""
    username: str | None
    """The database's owner (master user), in the direct URL; with `password`."""
    password: pulumi.Input[str] | None
    """Its password (a secret); unset when the stack does not hold it (an existing database, or RDS's managed master
    secret): then no direct-URL secret, and the migration job composes the URL at run time from the owner secret."""
    database_host: pulumi.Input[str] | None
    """The database's endpoint, in the direct URL: `Database.address`."""
    database_port: pulumi.Input[int] | None
    """The database's port (default 5432): `Database.port`."""
    direct_root_cert: str
    """Where the migration job finds the RDS CA bundle (default the migration image's)."""
    secret_name_prefix: str
    """Prefix of the secrets' names; default `<project>-<stack>-<digest>/` (unique per stack and region)."""
    recovery_window_days: int
    """Days a deleted secret stays recoverable: 0 (deleted at once) or 7 to 30 (default 30)."""
    tags: Mapping[str, pulumi.Input[str]]
    """Tags for both secrets."""


class ConnectionSecrets(pulumi.ComponentResource):
    """The two connection strings, each its own Secrets Manager secret: pooled (the functions') and direct."""

    pooled_secret_arn: pulumi.Output[str]
    """`DATABASE_URL` (through the pooler, as the application role): the secret only the functions read."""
    direct_secret_arn: pulumi.Output[str] | None
    """`DATABASE_URL_UNPOOLED` (straight to the database, as its owner), when a password was given."""

    def __init__(
        self, name: str, args: ConnectionSecretsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        # Here, not at the top: lifeguard.aws.pooler_tls imports this module.
        from lifeguard.aws.pooler_tls import CA_PATH

        # Checked before anything is registered.
        recovery_window_days = whole_number(args.get("recovery_window_days", DEFAULT_RECOVERY_WINDOW_DAYS),
                                            "recovery_window_days")
        if recovery_window_days not in RECOVERY_WINDOWS:
            raise ValueError(f"ConnectionSecretsArgs.recovery_window_days must be 0 or 7 to 30, got "
                             f"{recovery_window_days}")
        password = args.get("password")
        username, database_host = args.get("username"), args.get("database_host")
        if password is not None and (not username or database_host is None):
            raise ValueError("ConnectionSecretsArgs: the direct URL needs username and database_host with password")
        db_name, pooled_root_cert = args["db_name"], args.get("pooled_root_cert", CA_PATH)
        direct_root_cert = args.get("direct_root_cert", MIGRATOR_RDS_CA_PATH)
        tags = args.get("tags")
        super().__init__(component_type(ConnectionSecrets, "secrets"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = args.get("secret_name_prefix") or secret_name_prefix(
            aws.get_region(opts=pulumi.InvokeOptions(parent=self)).region)

        pooled_value: pulumi.Output[str] = pulumi.Output.all(
            args["app_username"], args["app_password"], args["pooler_host"], args.get("pooler_port", LISTEN_PORT)
        ).apply(lambda values: verified_url(values[0], values[1], values[2], int(values[3]), db_name,
                                            pooled_root_cert))
        pooled, _ = stored_secret(
            f"{name}-pooled",
            name_prefix=f"{prefix}{POOLED_URL_ENV}-",
            description=f"{POOLED_URL_ENV}: through PgBouncer (transaction mode); for the functions",
            recovery_window_days=recovery_window_days,
            value=pooled_value,
            opts=child,
            tags=tags,
        )
        self.pooled_secret_arn = pooled.arn
        self.direct_secret_arn = None
        if password is not None:
            direct_user = str(username)
            direct_value: pulumi.Output[str] = pulumi.Output.all(
                password, database_host, args.get("database_port") or POSTGRES_PORT
            ).apply(lambda values: verified_url(direct_user, values[0], values[1], int(values[2]), db_name,
                                                direct_root_cert))
            direct, _ = stored_secret(
                f"{name}-direct",
                name_prefix=f"{prefix}{DIRECT_URL_ENV}-",
                description=f"{DIRECT_URL_ENV}: straight to RDS; for the migration job only",
                recovery_window_days=recovery_window_days,
                value=direct_value,
                opts=child,
                tags=tags,
            )
            self.direct_secret_arn = direct.arn
        self.register_outputs({"pooledSecretArn": self.pooled_secret_arn, "directSecretArn": self.direct_secret_arn})
