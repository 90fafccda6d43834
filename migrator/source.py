"""Where the direct URL comes from, and keeping it out of every message (with :mod:`redaction`).

The migrator reads only the direct URL: ``DATABASE_URL_UNPOOLED``, or on AWS the Secrets Manager
secret named by ``DATABASE_URL_UNPOOLED_SECRET_ARN`` (a secret holding the URL as plain text, the
same secret ECS ``secrets`` can inject as ``DATABASE_URL_UNPOOLED``), or its parts
(``migrator.contract.URL_PART_ENVS``: the owner's username and password, which ECS injects from the
owner secret's JSON keys, and host, port, database and CA bundle), composed here so that the owner's
password lives only in that secret, never in the stack's state. ``DATABASE_URL`` is the pooled URL
and is never used, not even as a fallback.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from psycopg.conninfo import conninfo_to_dict

from database_urls import DIRECT_URL_ENV, DIRECT_URL_SECRET_ARN_ENV, POOLED_URL_ENV, verified_url
from migrator.contract import (
    DB_HOST_ENV,
    DB_NAME_ENV,
    DB_PORT_ENV,
    DB_ROOT_CERT_ENV,
    OWNER_PASSWORD_ENV,
    OWNER_USERNAME_ENV,
    URL_PART_ENVS,
)
from migrator.errors import MigratorConfigError, Unavailable
from redaction import ENCODE_HINT, Redactor, url_problem

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:(?P<region>[a-z0-9-]+):[0-9]{12}:secret:.+$")

log = logging.getLogger("migrator")


@dataclass(frozen=True)
class ResolvedUrl:
    url: str
    source: str
    """Where it came from, safe to print: ``DATABASE_URL_UNPOOLED`` or ``secret arn:aws:...``."""


def describe_target(url: str, redactor: Redactor | None = None) -> str:
    """``host:port/dbname`` for logs (never user or password); raises MigratorConfigError on a bad URL.

    A URL that libpq would misread (a password that is not percent-encoded) is refused before
    libpq sees it, and neither that URL nor libpq's words about one it cannot parse are quoted:
    both would carry pieces of the password.
    """
    redactor = redactor or Redactor([url])
    problem = url_problem(url)
    if problem is not None:
        raise MigratorConfigError(f"the direct URL cannot be used as written: {problem}")
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        raise MigratorConfigError(
            "the direct URL is not a valid connection URL (expected "
            f"postgresql://USER:PASSWORD@HOST:PORT/DBNAME); {ENCODE_HINT}"
        ) from None
    host = str(params.get("host") or params.get("hostaddr") or "(default socket)")
    port = str(params.get("port") or 5432)
    dbname = str(params.get("dbname") or "(user's default database)")
    return redactor(f"{host}:{port}/{dbname}")


def fetch_secret_url(arn: str, client: SecretsManagerClient | None = None) -> str:
    """The plain-text URL stored in the Secrets Manager secret ``arn``."""
    import boto3  # only on this path: it costs a few hundred ms to import
    from botocore.exceptions import BotoCoreError, ClientError

    if client is None:
        match = _SECRET_ARN.match(arn)
        # The ARN names its region; boto3's own resolution applies to a bare secret name.
        client = boto3.client("secretsmanager", region_name=match.group("region") if match else None)
    try:
        response = client.get_secret_value(SecretId=arn)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise Unavailable(
            f"cannot read secret {arn} ({code}); check the ARN and that the task role may call "
            "secretsmanager:GetSecretValue on it"
        ) from None
    except BotoCoreError as exc:
        raise Unavailable(f"cannot read secret {arn}: {type(exc).__name__}: {exc}") from None
    value = response.get("SecretString")
    if not value:
        raise MigratorConfigError(f"secret {arn} has no SecretString; store the direct URL in it as plain text")
    value = value.strip()
    if not value.startswith(("postgresql://", "postgres://")):
        raise MigratorConfigError(
            f"secret {arn} does not hold a postgresql:// URL; store the direct URL in it as plain text"
        )
    return value


def url_from_parts(environ: Mapping[str, str]) -> str:
    """``DATABASE_URL_UNPOOLED`` composed from :data:`migrator.contract.URL_PART_ENVS` (all required).

    Errors name the variables, never their values: the password is one of them.
    """
    missing = [name for name in URL_PART_ENVS if not environ.get(name, "").strip()]
    if missing:
        raise MigratorConfigError(
            f"the direct URL's parts are incomplete: set {', '.join(missing)} too (or {DIRECT_URL_ENV} instead)"
        )
    port = environ[DB_PORT_ENV].strip()
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise MigratorConfigError(f"{DB_PORT_ENV} must be a TCP port (1 to 65535), got {port!r}")
    # The password as stored, spaces and all (only an empty one is refused above); the rest trimmed.
    return verified_url(environ[OWNER_USERNAME_ENV].strip(), environ[OWNER_PASSWORD_ENV],
                        environ[DB_HOST_ENV].strip(), int(port), environ[DB_NAME_ENV].strip(),
                        environ[DB_ROOT_CERT_ENV].strip())


def resolve_url(environ: Mapping[str, str], client: SecretsManagerClient | None = None) -> ResolvedUrl:
    """The direct URL from the environment; DATABASE_URL is refused, never used."""
    url = environ.get(DIRECT_URL_ENV, "").strip()
    arn = environ.get(DIRECT_URL_SECRET_ARN_ENV, "").strip()
    parts = any(environ.get(name, "").strip() for name in URL_PART_ENVS)
    if url:
        if arn:
            log.info("using %s; %s is set too and is ignored", DIRECT_URL_ENV, DIRECT_URL_SECRET_ARN_ENV)
        if parts:
            log.info("using %s; the %s parts are set too and are ignored", DIRECT_URL_ENV, OWNER_USERNAME_ENV)
        return ResolvedUrl(url, DIRECT_URL_ENV)
    if arn:
        return ResolvedUrl(fetch_secret_url(arn, client), f"secret {arn}")
    if parts:
        return ResolvedUrl(url_from_parts(environ), f"{OWNER_USERNAME_ENV}, {OWNER_PASSWORD_ENV} and {DB_HOST_ENV} ...")
    if environ.get(POOLED_URL_ENV, "").strip():
        raise MigratorConfigError(
            f"{POOLED_URL_ENV} is set, but the migrator never uses it: it is the pooled URL, and "
            f"migrations must not run through PgBouncer. Set {DIRECT_URL_ENV} to the direct URL "
            f"(or {DIRECT_URL_SECRET_ARN_ENV} to the ARN of the secret holding it)."
        )
    raise MigratorConfigError(
        f"no database URL: set {DIRECT_URL_ENV} to the direct URL (or {DIRECT_URL_SECRET_ARN_ENV} to the ARN of the "
        "secret holding it)"
    )
