"""One URL under examination: its role, how it is shown (never with a password), its connection."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict

# TODO(#14.2): one redactor for the whole kit is being merged; use it here when it lands.
from lifeguard.pipeline.redact import redact

ENV_POOLED = "DATABASE_URL"
ENV_DIRECT = "DATABASE_URL_UNPOOLED"
APPLICATION_NAME = "lifeguard-doctor"
CONNECT_TIMEOUT_S = 5
"""Used unless the URL sets its own ``connect_timeout``."""

Role = Literal["pooled", "direct"]
WITHHELD = "(withheld: it could not be shown without its password; percent-encode the user and password)"


class TargetError(Exception):
    """The URL cannot be used; the message is safe to print and says what to change."""


def _credential_pieces(url: str) -> list[str]:
    """What may be a password in ``url``, parsed or not: the text between the scheme and the last ``@``.

    The kit's redactor masks a password it can parse; a URL that is not percent-encoded (a raw ``@``
    or ``/`` in the password) is misparsed by libpq, which then quotes pieces of the password as a
    host or port. Those pieces must not be printed either.
    """
    head = url.split("?", 1)[0]
    if "://" not in head or "@" not in head:
        return []
    userinfo = head.split("://", 1)[1].rsplit("@", 1)[0]
    password = userinfo.split(":", 1)[1] if ":" in userinfo else ""
    pieces = [password, *re.split(r"[:/@]", password)]
    return [p for p in pieces if len(p) >= 3]


def safe_text(text: str, url: str) -> str | None:
    """``text`` with the URL's password masked, or None if a piece of the password would still show."""
    masked = redact(text)
    if any(piece in masked for piece in _credential_pieces(url)):
        return None
    return masked


@dataclass
class Target:
    name: str
    """``DATABASE_URL`` or ``DATABASE_URL_UNPOOLED``."""
    role: Role
    url: str = field(repr=False)

    @property
    def shown(self) -> str:
        return safe_text(self.url, self.url) or WITHHELD

    def connect(self) -> psycopg.Connection[Any]:
        """An autocommit connection with a connect timeout; raises TargetError with a printable message."""
        try:
            params = conninfo_to_dict(self.url)
        except psycopg.Error:
            # libpq's parse errors quote the offending token, which may be the password: never echoed.
            raise TargetError(
                f"{self.name} is not a valid connection URL: percent-encode special characters "
                "(@ : / ? # % and spaces) in the user name and password"
            ) from None
        timeout = params.get("connect_timeout") or CONNECT_TIMEOUT_S
        try:
            return psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=int(timeout),
                application_name=APPLICATION_NAME,
                prepare_threshold=None,  # psycopg's own prepares would disturb the prepared-statement check
            )
        except psycopg.Error as exc:
            message = safe_text(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, self.url)
            hint = ""
            if safe_text(self.url, self.url) is None:  # the URL itself is misparsed around its password
                hint = " (the password is not percent-encoded, so libpq misread the URL: encode @ / : ? # % in it)"
            raise TargetError(
                f"cannot connect with {self.name}: "
                + (message or "libpq's message quoted part of the password and is withheld; percent-encode it")
                + hint
            ) from None
