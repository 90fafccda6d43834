"""Where the direct URL comes from, and keeping it out of every message.

The migrator reads only the direct URL: ``DATABASE_URL_UNPOOLED``, or on AWS the Secrets Manager
secret named by ``DATABASE_URL_UNPOOLED_SECRET_ARN`` (a secret holding the URL as plain text, the
same secret ECS ``secrets`` can inject as ``DATABASE_URL_UNPOOLED``). ``DATABASE_URL`` is the
pooled URL and is never used, not even as a fallback.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from migrator.errors import ConfigError, Unavailable

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

ENV_URL = "DATABASE_URL_UNPOOLED"
ENV_SECRET_ARN = "DATABASE_URL_UNPOOLED_SECRET_ARN"  # noqa: S105 (a variable name)
ENV_POOLED_URL = "DATABASE_URL"
_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:(?P<region>[a-z0-9-]+):[0-9]{12}:secret:.+$")
_QUOTED = re.compile(r'"[^"]*"')
MASK = "***"

log = logging.getLogger("migrator")


@dataclass(frozen=True)
class ResolvedUrl:
    url: str
    source: str
    """Where it came from, safe to print: ``DATABASE_URL_UNPOOLED`` or ``secret arn:aws:...``."""


class Redactor(logging.Filter):
    """Masks a URL's password (raw, percent-encoded and decoded) and the URL itself in any text.

    Also a logging filter, so a record that somehow carries the URL is masked before it is written.
    """

    def __init__(self, urls: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._ordered: list[str] = []
        for url in urls:
            self.add_url(url)

    def add_url(self, url: str) -> None:
        secrets = {url}
        password: str | None = None
        try:
            raw = urlsplit(url).password  # as written, possibly percent-encoded or malformed
        except ValueError:
            raw = None
        if raw:
            secrets |= {raw, unquote(raw)}
            password = unquote(raw)
        with contextlib.suppress(psycopg.Error):  # the key=value form has no URL password
            password = str(conninfo_to_dict(url).get("password") or "") or password
        if password:
            secrets |= {password, quote(password, safe=""), quote(password)}
        # Longest first, so a URL is masked whole rather than around its masked password.
        self._secrets |= {s for s in secrets if s}
        self._ordered = sorted(self._secrets, key=len, reverse=True)

    def add_secret(self, secret: str) -> None:
        """Mask ``secret`` (a SCRAM verifier, say) as it is written."""
        self._secrets.add(secret)
        self._ordered = sorted(self._secrets, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._ordered:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def parse_error_message(exc: psycopg.Error, redactor: Redactor) -> str:
    """libpq's message for a URL it could not parse, with quoted fragments (maybe secrets) masked."""
    return _QUOTED.sub(f'"{MASK}"', redactor(str(exc).strip()))


def describe_target(url: str, redactor: Redactor | None = None) -> str:
    """``host:port/dbname`` for logs (never user or password); raises ConfigError on a bad URL."""
    redactor = redactor or Redactor([url])
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise ConfigError(
            f"the direct URL is not a valid connection URL ({parse_error_message(exc, redactor)}); "
            "percent-encode special characters in the user and password"
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
        raise ConfigError(f"secret {arn} has no SecretString; store the direct URL in it as plain text")
    value = value.strip()
    if not value.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            f"secret {arn} does not hold a postgresql:// URL; store the direct URL in it as plain text"
        )
    return value


def resolve_url(environ: Mapping[str, str], client: SecretsManagerClient | None = None) -> ResolvedUrl:
    """The direct URL from the environment; DATABASE_URL is refused, never used."""
    url = environ.get(ENV_URL, "").strip()
    arn = environ.get(ENV_SECRET_ARN, "").strip()
    if url:
        if arn:
            log.info("using %s; %s is set too and is ignored", ENV_URL, ENV_SECRET_ARN)
        return ResolvedUrl(url, ENV_URL)
    if arn:
        return ResolvedUrl(fetch_secret_url(arn, client), f"secret {arn}")
    if environ.get(ENV_POOLED_URL, "").strip():
        raise ConfigError(
            f"{ENV_POOLED_URL} is set, but the migrator never uses it: it is the pooled URL, and "
            f"migrations must not run through PgBouncer. Set {ENV_URL} to the direct URL "
            f"(or {ENV_SECRET_ARN} to the ARN of the secret holding it)."
        )
    raise ConfigError(
        f"no database URL: set {ENV_URL} to the direct URL (or {ENV_SECRET_ARN} to the ARN of the "
        "secret holding it)"
    )
