"""The migrator's direct connections: opened, checked and closed one way, whatever uses them.

Both the migrations' session (:mod:`migrator.runner`) and the lock session (:mod:`migrator.lock`)
go through :func:`direct_connection`: refused through a pooler (:mod:`migrator.guard`), the settings
the file check assumes pinned, a dead client noticed by the backend, and psycopg's errors turned
into the migrator's with nothing of the URL's password in them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from migrator.errors import MigratorConfigError, MigratorError, Unavailable
from migrator.guard import check_direct
from migrator.source import describe_target
from redaction import Redactor

APPLICATION_NAME = "lifeguard-migrator"
CONNECT_TIMEOUT_S = 10
CONNECTION_CHECK_INTERVAL_MS = 1000
"""If the migrator dies mid-statement, its backend notices within this and rolls back (PG 14+)."""
PINNED_SETTINGS = (("standard_conforming_strings", "on"), ("client_encoding", "UTF8"))
"""Session settings the file check assumes: :mod:`migrator.sqlsplit` lexes strings with backslash as
a plain character, and the files are UTF-8. A database or role default of
``standard_conforming_strings=off`` would make Postgres see a ``COMMIT`` the check saw inside a string."""

log = logging.getLogger("migrator")


@dataclass(frozen=True)
class Direct:
    conn: psycopg.Connection[Any]
    target: str
    """``host:port/dbname`` (no credentials)."""
    redactor: Redactor


def bookkeeping_schema(conn: psycopg.Connection[Any]) -> str:
    """Where the migrator keeps its bookkeeping table and lock view: the first schema of the search path."""
    row = conn.execute("SELECT current_schema()").fetchone()
    if row is None or row[0] is None:
        raise MigratorConfigError(
            "no schema of the search_path exists in this database, so there is nowhere to keep the "
            "migrator's bookkeeping and lock: create the schema or fix the role's search_path"
        )
    return str(row[0])


def pin_settings(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "SELECT " + ", ".join("set_config(%s, %s, false)" for _ in PINNED_SETTINGS),
        [value for pair in PINNED_SETTINGS for value in pair],
    )


def _log_notice(diag: psycopg.errors.Diagnostic) -> None:
    log.info("postgres %s: %s", (diag.severity or "notice").lower(), diag.message_primary)


@contextmanager
def direct_connection(url: str) -> Iterator[Direct]:
    """An autocommit connection through ``url`` that is known not to go through a pooler."""
    redactor = Redactor([url])
    target = describe_target(url, redactor)
    # The URL's own connect_timeout wins; application_name is ours, so a waiting run can name the holder.
    timeout = conninfo_to_dict(url).get("connect_timeout") or CONNECT_TIMEOUT_S
    try:
        conn = psycopg.connect(url, autocommit=True, application_name=APPLICATION_NAME, connect_timeout=timeout)
    except psycopg.Error as exc:
        raise Unavailable(f"cannot connect to {target}: {redactor(str(exc).strip())}") from None
    try:
        check_direct(conn)
        pin_settings(conn)
        if conn.info.server_version >= 140000:
            conn.execute(
                "SELECT set_config('client_connection_check_interval', %s, false)",
                (str(CONNECTION_CHECK_INTERVAL_MS),),
            )
        conn.add_notice_handler(_log_notice)
        yield Direct(conn, target, redactor)
    except psycopg.OperationalError as exc:
        raise Unavailable(f"lost the connection to {target}: {redactor(str(exc).strip())}") from None
    except psycopg.Error as exc:
        # Failures outside a migration: bookkeeping, lock queries (a migration's own become MigrationFailed).
        raise MigratorError(f"database error on {target}: {redactor(str(exc).strip())}") from None
    finally:
        conn.close()
