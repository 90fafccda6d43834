"""Split a SQL file into top-level statements, with psql's rules for where a statement ends.

Used for two things: to check a file before anything runs (no ``BEGIN``/``COMMIT`` of its own,
no unterminated string or comment) and to run a ``-- lifeguard: no-transaction`` file one
statement at a time (several statements sent in one query would share an implicit transaction,
which is exactly what ``CREATE INDEX CONCURRENTLY`` refuses).

Hand-written on purpose: a statement boundary only needs Postgres' lexical rules (quotes,
``E''`` strings, ``$tag$`` quoting, nested ``/* */`` comments) plus psql's ``BEGIN ATOMIC``
heuristic, and follows psql's ``psqlscan.l``. sqlparse applies generic rules (no nested comments,
backslash escapes in every string); pglast is exact but a native wheel tied to one Postgres
grammar, too heavy for a boundary check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_IDENT = re.compile(r"[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*")
_NUMBER = re.compile(r"[0-9][A-Za-z0-9_.]*")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)?\$")
_PARAM = re.compile(r"\$[0-9]+")
_ROUTINE_STARTS = (("create", "function"), ("create", "procedure"))
_ROUTINE_STARTS_OR_REPLACE = (("create", "or", "replace", "function"), ("create", "or", "replace", "procedure"))
_KEYWORDS_KEPT = 4


class SqlSyntaxError(ValueError):
    """A string, identifier or comment that never ends; ``line`` is where it starts."""

    def __init__(self, what: str, line: int) -> None:
        super().__init__(f"unterminated {what} starting on line {line}")
        self.what = what
        self.line = line


@dataclass(frozen=True)
class Statement:
    text: str
    """The statement as written, leading comments dropped, with its ``;`` if it had one."""
    line: int
    """1-based line of the file on which the statement starts."""
    keywords: tuple[str, ...]
    """Its first few bare words, lower-cased (``("create", "index", "concurrently")``)."""

    def controls_transaction(self) -> bool:
        """True for statements that begin or end a transaction (not savepoints)."""
        head = self.keywords
        if not head:
            return False
        if head[0] in ("begin", "start", "commit", "end", "abort"):
            return True
        if head[0] == "rollback":
            return "to" not in head[1:3]  # ROLLBACK [WORK|TRANSACTION] TO SAVEPOINT is fine
        return head[:2] == ("prepare", "transaction")


def _line_at(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _skip_quoted(text: str, start: int, quote: str, backslash: bool, what: str) -> int:
    """Index just past the string or quoted identifier opening at ``start``."""
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if backslash and c == "\\":
            i += 2
            continue
        if c == quote:
            if i + 1 < n and text[i + 1] == quote:  # '' or "" stands for one quote
                i += 2
                continue
            return i + 1
        i += 1
    raise SqlSyntaxError(what, _line_at(text, start))


def _skip_block_comment(text: str, start: int) -> int:
    depth = 0
    i = start
    n = len(text)
    while i < n:
        if text.startswith("/*", i):
            depth += 1
            i += 2
        elif text.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    raise SqlSyntaxError("block comment", _line_at(text, start))


def split_statements(text: str) -> list[Statement]:
    """The top-level statements of ``text``; comments and empty statements (``;;``) are dropped."""
    statements: list[Statement] = []
    n = len(text)
    i = 0
    start = -1  # index of the current statement's first token, -1 before it
    keywords: list[str] = []
    paren_depth = 0
    begin_depth = 0  # BEGIN ... END blocks of a CREATE FUNCTION/PROCEDURE body (BEGIN ATOMIC)

    def finish(end: int) -> None:
        nonlocal start, keywords, paren_depth, begin_depth
        statements.append(Statement(text[start:end].rstrip(), _line_at(text, start), tuple(keywords)))
        start, keywords, paren_depth, begin_depth = -1, [], 0, 0

    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if text.startswith("--", i):
            newline = text.find("\n", i)
            i = n if newline < 0 else newline + 1
            continue
        if text.startswith("/*", i):
            i = _skip_block_comment(text, i)
            continue
        if c == ";":
            if start >= 0 and paren_depth == 0 and begin_depth == 0:
                finish(i + 1)
            i += 1
            continue
        if start < 0:
            start = i
        if c == "'":
            i = _skip_quoted(text, i, "'", backslash=False, what="string")
        elif c == '"':
            i = _skip_quoted(text, i, '"', backslash=False, what="quoted identifier")
        elif c == "$":
            tag = _DOLLAR_TAG.match(text, i)
            if tag is None:
                param = _PARAM.match(text, i)
                i = param.end() if param else i + 1
                continue
            close = text.find(tag.group(), tag.end())
            if close < 0:
                raise SqlSyntaxError(f"dollar-quoted string {tag.group()}", _line_at(text, i))
            i = close + len(tag.group())
        elif c.isdigit():
            number = _NUMBER.match(text, i)
            assert number is not None
            i = number.end()
        elif (word_match := _IDENT.match(text, i)) is not None:
            word = word_match.group().lower()
            i = word_match.end()
            if word == "e" and i < n and text[i] == "'":  # E'...': backslash escapes
                i = _skip_quoted(text, i, "'", backslash=True, what="string")
                continue
            if len(keywords) < _KEYWORDS_KEPT:
                keywords.append(word)
            head = tuple(keywords)
            in_routine = head[:2] in _ROUTINE_STARTS or head[:4] in _ROUTINE_STARTS_OR_REPLACE
            if in_routine and paren_depth == 0:
                # psql's heuristic: BEGIN opens a block, END closes one, CASE ... END nests inside.
                if word == "begin" or (word == "case" and begin_depth >= 1):
                    begin_depth += 1
                elif word == "end" and begin_depth > 0:
                    begin_depth -= 1
        elif c == "(":
            paren_depth += 1
            i += 1
        elif c == ")":
            paren_depth = max(0, paren_depth - 1)
            i += 1
        else:
            i += 1
    if start >= 0:
        finish(n)
    return statements
