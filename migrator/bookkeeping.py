"""Migration tools' bookkeeping tables: what the application role must never read or write.

A tool records what it applied in a table of its own; whoever can write that table can make the
tool skip a migration or apply one twice. Provisioning (:mod:`migrator.roles`) grants the
application role DML on every table of its schema *except* these, the ones the user names
(``LIFEGUARD_BOOKKEEPING_TABLES``, comma-separated, or ``--bookkeeping-table``), and the
migrator's own bookkeeping and lock view. Standard library only: the Pulumi program reads
:data:`BOOKKEEPING_TABLES_ENV`'s name through :mod:`migrator.contract`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from migrator.contract import BOOKKEEPING_TABLES_ENV
from migrator.errors import MigratorConfigError

# Unquoted Postgres names as the tools write them (lower case folds to itself).
_NAME = r"[A-Za-z_][A-Za-z0-9_$]{0,62}"
_TABLE = re.compile(rf"^(?:(?P<schema>{_NAME})\.)?(?P<name>{_NAME})$")


@dataclass(frozen=True, order=True)
class BookkeepingTable:
    name: str
    schema: str | None = None
    """None: the schema the application role is provisioned in (the tool's default schema)."""

    def __str__(self) -> str:
        return self.name if self.schema is None else f"{self.schema}.{self.name}"


KNOWN_TOOLS: Mapping[str, BookkeepingTable] = {
    "Alembic": BookkeepingTable("alembic_version"),
    "Prisma Migrate": BookkeepingTable("_prisma_migrations"),
    "dbmate, golang-migrate": BookkeepingTable("schema_migrations"),
    "node-pg-migrate": BookkeepingTable("pgmigrations"),
    "Flyway": BookkeepingTable("flyway_schema_history"),
    "Django": BookkeepingTable("django_migrations"),
    "Drizzle": BookkeepingTable("__drizzle_migrations", "drizzle"),
}
"""Each tool's table under its default name (a tool configured to use another name: name it)."""
KNOWN_TABLES = tuple(KNOWN_TOOLS.values())


def parse_table(text: str, origin: str = BOOKKEEPING_TABLES_ENV) -> BookkeepingTable:
    match = _TABLE.match(text.strip())
    if match is None:
        raise MigratorConfigError(
            f"{origin}: {text.strip()!r} is not a table name: give NAME or SCHEMA.NAME (letters, digits, '_', "
            "'$', at most 63 each, unquoted)"
        )
    return BookkeepingTable(match.group("name").lower(), (match.group("schema") or "").lower() or None)


def tables_from_env(environ: Mapping[str, str]) -> tuple[BookkeepingTable, ...]:
    """The user's extra bookkeeping tables from ``LIFEGUARD_BOOKKEEPING_TABLES`` (comma-separated)."""
    return tuple(parse_table(item) for item in environ.get(BOOKKEEPING_TABLES_ENV, "").split(",") if item.strip())


def all_tables(extra: Iterable[BookkeepingTable] = ()) -> tuple[BookkeepingTable, ...]:
    """The known tables and ``extra``, each once."""
    return tuple(sorted({*KNOWN_TABLES, *extra}))
