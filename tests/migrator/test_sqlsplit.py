"""Statement splitting with psql's rules (no database needed)."""

from __future__ import annotations

import pytest

from migrator.sqlsplit import SqlSyntaxError, Statement, split_statements


def texts(sql: str) -> list[str]:
    return [s.text for s in split_statements(sql)]


def test_splits_on_top_level_semicolons_with_line_numbers() -> None:
    statements = split_statements("-- header\nCREATE TABLE a (id int);\n\n  INSERT INTO a VALUES (1);;\nSELECT 1")
    assert [(s.text, s.line) for s in statements] == [
        ("CREATE TABLE a (id int);", 2),
        ("INSERT INTO a VALUES (1);", 4),
        ("SELECT 1", 5),
    ]
    assert statements[0].keywords == ("create", "table", "a", "id")


def test_semicolons_inside_literals_comments_and_identifiers_do_not_split() -> None:
    sql = (
        "SELECT 'a;b', 'it''s; here', E'back\\'slash;', \"odd;name\", U&'x;' -- trailing; comment\n;"
        "/* block; /* nested; */ still comment; */ SELECT $$dollar; body$$, $fn$ $$ ; $fn$;"
        "SELECT $1, a$b FROM t;"
    )
    assert texts(sql) == [
        "SELECT 'a;b', 'it''s; here', E'back\\'slash;', \"odd;name\", U&'x;' -- trailing; comment\n;",
        "SELECT $$dollar; body$$, $fn$ $$ ; $fn$;",
        "SELECT $1, a$b FROM t;",
    ]


def test_standard_strings_do_not_treat_backslash_as_an_escape() -> None:
    # standard_conforming_strings: 'C:\' is a complete string, so the ; after it ends the statement.
    assert texts("SELECT 'C:\\'; SELECT 2;") == ["SELECT 'C:\\';", "SELECT 2;"]


def test_plpgsql_and_begin_atomic_bodies_stay_whole() -> None:
    sql = (
        "DO $$ BEGIN PERFORM 1; END $$;\n"
        "CREATE OR REPLACE FUNCTION f(x int) RETURNS int LANGUAGE sql\n"
        "BEGIN ATOMIC\n  SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END;\n  SELECT x;\nEND;\n"
        "CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); END;\n"
        "SELECT 3;"
    )
    statements = split_statements(sql)
    assert [s.line for s in statements] == [1, 2, 7, 8]
    assert statements[1].text.endswith("SELECT x;\nEND;")
    assert not any(s.controls_transaction() for s in statements)


@pytest.mark.parametrize(
    ("sql", "controls"),
    [
        ("BEGIN;", True),
        ("begin transaction isolation level serializable;", True),
        ("START TRANSACTION;", True),
        ("COMMIT;", True),
        ("END;", True),
        ("ABORT;", True),
        ("ROLLBACK;", True),
        ("PREPARE TRANSACTION 'x';", True),
        ("/* note */ Commit AND CHAIN;", True),
        ("SAVEPOINT s;", False),
        ("RELEASE SAVEPOINT s;", False),
        ("ROLLBACK TO SAVEPOINT s;", False),
        ("ROLLBACK WORK TO s;", False),
        ("SELECT 'BEGIN; COMMIT;';", False),
        ("PREPARE q AS SELECT 1;", False),
    ],
)
def test_transaction_control_detection(sql: str, controls: bool) -> None:
    (statement,) = split_statements(sql)
    assert statement.controls_transaction() is controls


@pytest.mark.parametrize(
    ("sql", "what", "line"),
    [
        ("SELECT 1;\nSELECT 'open", "string", 2),
        ("SELECT E'ends with escaped quote\\';", "string", 1),
        ('SELECT "open', "quoted identifier", 1),
        ("\n\nSELECT $tag$ never closed $$;", "dollar-quoted string $tag$", 3),
        ("/* outer /* inner */ still open", "block comment", 1),
    ],
)
def test_unterminated_tokens_are_reported_with_their_line(sql: str, what: str, line: int) -> None:
    with pytest.raises(SqlSyntaxError) as error:
        split_statements(sql)
    assert (error.value.what, error.value.line) == (what, line)
    assert str(error.value) == f"unterminated {what} starting on line {line}"


def test_comments_only_is_no_statement() -> None:
    assert split_statements("-- nothing\n/* here */\n;\n") == []


def test_statement_is_a_value() -> None:
    assert Statement("SELECT 1;", 1, ("select",)) == split_statements("SELECT 1;")[0]
