"""Migration files: ``NNNN_name.sql`` in one folder, applied in the order of their number.

A file runs in its own transaction unless its first line is ``-- lifeguard: no-transaction``.
Everything that can be checked without a database is checked here, for every file, before the
migrator connects: a bad name, a duplicate number, a file that is not UTF-8 or holds a NUL
byte, an unterminated string or comment, and a ``BEGIN``/``COMMIT`` of the file's own (which
would commit half a migration behind the bookkeeping's back).

Files named ``NNNN_seed_demo...sql`` hold demo data only; they are left out when the job's
``LIFEGUARD_DEMO_DATA`` is 0 (the stack sets it so in production), and applied otherwise.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from migrator.contract import DEMO_DATA_ENV
from migrator.errors import MigrationFileError
from migrator.sqlsplit import SqlSyntaxError, Statement, split_statements

FILENAME = re.compile(r"^(?P<version>[0-9]+)_(?P<name>[A-Za-z0-9][A-Za-z0-9_-]*)\.sql$")
DIRECTIVE = re.compile(r"^\s*--\s*lifeguard\s*:\s*(?P<value>.*?)\s*$", re.IGNORECASE)
NO_TRANSACTION = "no-transaction"
DEMO_DATA_NAME_PREFIX = "seed_demo"
"""The name part (after ``NNNN_``) of migrations that only add demo data."""

log = logging.getLogger("migrator")


def demo_data_wanted(environ: Mapping[str, str] | None = None) -> bool:
    """``LIFEGUARD_DEMO_DATA``: 1 (the default: local stacks, tests) applies demo-data migrations, 0 skips them."""
    value = (os.environ if environ is None else environ).get(DEMO_DATA_ENV, "1").strip().lower()
    if value not in ("1", "0", "true", "false"):
        raise MigrationFileError(f"{DEMO_DATA_ENV} must be 1 or 0, got {value!r}")
    return value in ("1", "true")


@dataclass(frozen=True)
class Migration:
    version: str
    """The number as written in the file name (``"0001"``): the bookkeeping key."""
    filename: str
    path: Path
    sql: str
    checksum: str
    """sha256 of the file with line endings normalised, so a CRLF checkout is not drift."""
    transactional: bool
    statements: tuple[Statement, ...]

    @property
    def number(self) -> int:
        return int(self.version)


def checksum(data: bytes) -> str:
    return hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest()


def _parse(path: Path, version: str) -> Migration:
    """One file; raises :class:`MigrationFileError` naming the file and what to change."""
    name = path.name
    data = path.read_bytes()
    nul = data.find(b"\x00")
    if nul >= 0:
        # libpq sends SQL as a C string: everything after a NUL would be silently dropped,
        # and the file still recorded as applied.
        nul_line = data.count(b"\n", 0, nul) + 1
        raise MigrationFileError(
            f"{name}, line {nul_line}: NUL byte at byte offset {nul}; PostgreSQL cannot receive it and "
            "would run only the text before it. Remove it"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MigrationFileError(f"{name}: not UTF-8 (byte {exc.start}); save it as UTF-8") from None
    text = text.removeprefix("\ufeff")
    lines = text.splitlines()
    transactional = True
    for number, line in enumerate(lines, start=1):
        directive = DIRECTIVE.match(line)
        if directive is None:
            continue
        value = directive.group("value").lower()
        if number != 1:
            raise MigrationFileError(
                f"{name}, line {number}: '-- lifeguard:' directives must be the first line of the file"
            )
        if value != NO_TRANSACTION:
            raise MigrationFileError(
                f"{name}, line 1: unknown directive '{directive.group('value')}'; "
                f"the only one is '-- lifeguard: {NO_TRANSACTION}'"
            )
        transactional = False
    try:
        statements = split_statements(text)
    except SqlSyntaxError as exc:
        raise MigrationFileError(f"{name}: {exc}") from None
    if not statements:
        raise MigrationFileError(f"{name}: no SQL statement in the file; delete it or add its statements")
    for statement in statements:
        if statement.controls_transaction():
            verb = " ".join(statement.keywords[:2]).upper()
            raise MigrationFileError(
                f"{name}, line {statement.line}: remove '{verb}': the migrator runs each file in its own "
                f"transaction and records it in that same transaction. For statements that cannot run in "
                f"a transaction, put '-- lifeguard: {NO_TRANSACTION}' on the first line instead."
            )
    return Migration(
        version=version,
        filename=name,
        path=path,
        sql=text,
        checksum=checksum(data),
        transactional=transactional,
        statements=tuple(statements),
    )


def load_migrations(directory: Path) -> list[Migration]:
    """Every migration in ``directory``, ordered by number; all problems are reported at once.

    Files not ending in ``.sql``, dotfiles and subfolders are ignored (a README may live there).
    """
    if not directory.is_dir():
        raise MigrationFileError(f"migrations folder {directory} does not exist or is not a folder")
    problems: list[str] = []
    migrations: list[Migration] = []
    by_number: dict[int, str] = {}
    for path in sorted(directory.iterdir()):
        name = path.name
        if name.startswith(".") or not name.lower().endswith(".sql") or not path.is_file():
            continue
        match = FILENAME.match(name)
        if match is None:
            problems.append(
                f"{name}: malformed name; use NNNN_name.sql (digits, an underscore, then letters, digits, "
                f"'_' or '-', lower-case .sql), e.g. 0004_add_orders.sql"
            )
            continue
        version = match.group("version")
        if match.group("name").startswith(DEMO_DATA_NAME_PREFIX) and not demo_data_wanted():
            log.info("%s: demo data, skipped (%s=0)", name, DEMO_DATA_ENV)
            continue
        number = int(version)
        if number in by_number:
            problems.append(f"{name}: number {version} is already used by {by_number[number]}; renumber one")
            continue
        by_number[number] = name
        try:
            migrations.append(_parse(path, version))
        except MigrationFileError as exc:
            problems.append(str(exc))
    if problems:
        raise MigrationFileError(
            f"{len(problems)} problem(s) in {directory}:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    if not migrations:
        raise MigrationFileError(f"no migration files (NNNN_name.sql) in {directory}")
    return sorted(migrations, key=lambda m: m.number)
