"""One URL under examination: its role, how it is shown (never with a password), its connection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict

from redaction import Redactor, redact, url_problem

APPLICATION_NAME = "lifeguard-doctor"
CONNECT_TIMEOUT_S = 5
"""Used unless the URL sets its own ``connect_timeout``."""

Role = Literal["pooled", "direct"]
WITHHELD = "(withheld: it could not be shown without its password; percent-encode the user and password)"


class TargetError(Exception):
    """The URL cannot be used; the message is safe to print and says what to change."""


@dataclass
class Target:
    name: str
    """``DATABASE_URL`` or ``DATABASE_URL_UNPOOLED``."""
    role: Role
    url: str = field(repr=False)

    @property
    def shown(self) -> str:
        # A URL libpq would misread (a raw '@' or '/' in the password) is not shown at all.
        return WITHHELD if url_problem(self.url) else redact(self.url)

    def connect(self) -> psycopg.Connection[Any]:
        """An autocommit connection with a connect timeout; raises TargetError with a printable message."""
        problem = url_problem(self.url)
        if problem is not None:
            raise TargetError(f"{self.name} cannot be used as written: {problem}")
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
            raise TargetError(f"cannot connect with {self.name}: {self.error_line(exc)}") from None

    def error_line(self, exc: Exception) -> str:
        """The first line of ``exc``'s message (its type when empty), with this URL's password masked."""
        text = str(exc).strip()
        return Redactor([self.url])(text.splitlines()[0] if text else type(exc).__name__)
