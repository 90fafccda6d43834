"""Loading and checking migration files before any connection (no database needed)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from migrator.errors import ExitCode, MigrationFileError
from migrator.files import checksum, load_migrations
from migrator.runner import DEFAULT_MIGRATIONS_DIR
from tests.migrator.support import SAMPLE_FILES, write_migrations


def problems(directory: Path) -> str:
    with pytest.raises(MigrationFileError) as error:
        load_migrations(directory)
    assert error.value.exit_code == ExitCode.CONFIG
    return str(error.value)


def test_bundled_sample_migrations_load() -> None:
    migrations = load_migrations(DEFAULT_MIGRATIONS_DIR)
    # SAMPLE_FILES, then the smoke test's org (#12.14), then idempotency keys per org (#31.6).
    assert [m.filename for m in migrations] == [*SAMPLE_FILES, "0004_smoke_org.sql",
                                                "0005_charges_idempotency_key_per_org.sql"]
    assert [m.version for m in migrations] == ["0001", "0002", "0003", "0004", "0005"]
    assert all(m.transactional for m in migrations)
    first = migrations[0]
    assert first.checksum == hashlib.sha256(first.path.read_bytes()).hexdigest()
    assert [s.keywords[:2] for s in first.statements] == [
        ("create", "table"), ("create", "table"), ("create", "index"), ("create", "table"), ("create", "index"),
    ]


def test_ordered_by_number_not_by_text(tmp_path: Path) -> None:
    directory = write_migrations(tmp_path, {"9_nine.sql": "SELECT 9;", "10_ten.sql": "SELECT 10;",
                                            "0002_two.sql": "SELECT 2;"})
    assert [m.filename for m in load_migrations(directory)] == ["0002_two.sql", "9_nine.sql", "10_ten.sql"]


def test_other_files_are_ignored(tmp_path: Path) -> None:
    directory = write_migrations(
        tmp_path, {"0001_a.sql": "SELECT 1;", "README.md": "notes", ".0002_swap.sql": "junk", "0003_b.sql.bak": "x"}
    )
    (directory / "sub.sql").mkdir()
    assert [m.filename for m in load_migrations(directory)] == ["0001_a.sql"]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    directory = write_migrations(
        tmp_path,
        {
            "0001_ok.sql": "SELECT 1;",
            "0002_first.sql": "SELECT 2;",
            "0002_second.sql": "SELECT 2;",
            "03-dash.sql": "SELECT 3;",
            "0004_upper.SQL": "SELECT 4;",
            "0005_down.undo.sql": "SELECT 5;",
            "0006_empty.sql": "-- nothing yet\n",
            "0007_txn.sql": "BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;\n",
            "0008_open.sql": "SELECT 'never closed;\n",
        },
    )
    (directory / "0009_latin1.sql").write_bytes("SELECT 'caf\xe9';".encode("latin-1"))
    message = problems(directory)
    assert message.startswith(f"8 problem(s) in {directory}:")
    assert "0002_second.sql: number 0002 is already used by 0002_first.sql; renumber one" in message
    assert "03-dash.sql: malformed name; use NNNN_name.sql" in message
    assert "0004_upper.SQL: malformed name" in message
    assert "0005_down.undo.sql: malformed name" in message
    assert "0006_empty.sql: no SQL statement in the file" in message
    assert "0007_txn.sql, line 1: remove 'BEGIN'" in message and "-- lifeguard: no-transaction" in message
    assert "0008_open.sql: unterminated string starting on line 1" in message
    assert "0009_latin1.sql: not UTF-8 (byte 11); save it as UTF-8" in message
    assert "0001_ok.sql" not in message


def test_duplicate_number_with_different_width(tmp_path: Path) -> None:
    directory = write_migrations(tmp_path, {"0002_a.sql": "SELECT 1;", "002_b.sql": "SELECT 2;"})
    assert "is already used by" in problems(directory)


def test_no_transaction_directive(tmp_path: Path) -> None:
    directory = write_migrations(
        tmp_path,
        {
            "0001_plain.sql": "SELECT 1;",
            "0002_concurrent.sql": "--  LIFEGUARD:  No-Transaction  \nCREATE INDEX CONCURRENTLY i ON t (a);\n"
            "CREATE INDEX CONCURRENTLY j ON t (b);\n",
        },
    )
    plain, concurrent = load_migrations(directory)
    assert plain.transactional and not concurrent.transactional
    assert [s.line for s in concurrent.statements] == [2, 3]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SELECT 1;\n-- lifeguard: no-transaction\n", "line 2: '-- lifeguard:' directives must be the first line"),
        ("-- lifeguard: no-transactions\nSELECT 1;\n", "unknown directive 'no-transactions'"),
        ("-- lifeguard: no-transaction\nCOMMIT;\n", "line 2: remove 'COMMIT'"),
    ],
)
def test_bad_directives(tmp_path: Path, text: str, expected: str) -> None:
    write_migrations(tmp_path, {"0001_x.sql": text})
    assert expected in problems(tmp_path)


def test_missing_or_empty_folder(tmp_path: Path) -> None:
    assert "does not exist" in problems(tmp_path / "nope")
    assert "no migration files (NNNN_name.sql)" in problems(tmp_path)


def test_checksum_ignores_line_endings_and_a_bom_is_accepted(tmp_path: Path) -> None:
    assert checksum(b"SELECT 1;\r\nSELECT 2;\r\n") == checksum(b"SELECT 1;\nSELECT 2;\n")
    assert checksum(b"SELECT 1;") != checksum(b"SELECT 2;")
    (tmp_path / "0001_bom.sql").write_bytes(b"\xef\xbb\xbf-- lifeguard: no-transaction\nSELECT 1;\n")
    (migration,) = load_migrations(tmp_path)
    assert not migration.transactional and not migration.sql.startswith("\ufeff")
