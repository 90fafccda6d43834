"""Relayed text must not become a CI workflow command.

``lifeguard migrate`` prints the migration task's log lines and ``lifeguard smoke`` a function's error,
and both end up in the CI log. Those lines carry what a database wrote (a migration's ``RAISE
NOTICE``, an error quoting a row), and GitHub Actions acts on a workflow command in any line of a
step's output: ``::add-mask::``, ``::error::``, ``::set-output``, ``::stop-commands::``, written at
the start of a line (after blanks), and the older ``##[command]`` form anywhere in a line. So a row
could hide the log, forge an annotation or set a step output.

:func:`neutralise` makes every line of relayed text inert and keeps it readable: a line whose first
visible characters are ``::`` gets a ``| `` prefix, and ``##[`` becomes ``## [``. Line breaks are
split as broadly as Python does (``\\r`` alone, ``\\v``, ``\\u2028``, ...), a superset of what the
runner splits on, and leading format characters (zero-width space, BOM) count as blank.

Why not GitHub's ``::stop-commands::<token>`` around the output: it works on GitHub's runner only and
relies on the token line and its closing line both reaching the log, which a killed step does not
guarantee; a prefix per line is the same on every CI and a test can check it.
"""

from __future__ import annotations

import unicodedata

PREFIX = "| "
_INVISIBLE = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


def neutralise(text: str) -> str:
    """``text`` with no line a CI runner would read as a workflow command (lines joined with ``\\n``)."""
    return "\n".join(_line(line) for line in text.splitlines() or [text])


def _line(line: str) -> str:
    start = 0
    while start < len(line) and (line[start].isspace() or unicodedata.category(line[start]) in _INVISIBLE):
        start += 1
    if line.startswith("::", start):
        line = PREFIX + line
    return line.replace("##[", "## [")
