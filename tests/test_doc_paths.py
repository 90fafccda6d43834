"""The README and docs cite only files that are in the repository.

A cited file that moved or never shipped (a research note outside the repository, a renamed test)
sends the reader nowhere; the paths are checked, not the prose around them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
# A backticked path under one of the repository's top-level folders, or one a reader could take for
# one (`shared/` lives beside the repository, not in it).
CITED_PATH = re.compile(
    r"`((?:infra|lifeguard|migrator|pgbouncer|lambdas|tests|scripts|docs|redaction|database_urls|examples|\.github|\.ci"
    r"|shared)/[\w./-]*[\w/])`"
)


def cited_paths(document: Path) -> list[str]:
    return CITED_PATH.findall(document.read_text(encoding="utf-8"))


@pytest.mark.parametrize("document", DOCS, ids=lambda p: p.name)
def test_every_cited_path_exists(document: Path) -> None:
    missing = [path for path in cited_paths(document) if not (REPO_ROOT / path).exists()]
    assert not missing, f"{document.name} cites paths that are not in the repository: {missing}"


def test_the_check_sees_paths(tmp_path: Path) -> None:
    # Control: the pattern finds the kind of citation that drifted (#27.11).
    page = tmp_path / "page.md"
    page.write_text("see `shared/research/testing-and-style.md`, and `tests/pgbouncer/test_dockerfile.py`.\n")
    assert cited_paths(page) == ["shared/research/testing-and-style.md", "tests/pgbouncer/test_dockerfile.py"]
    assert len(cited_paths(REPO_ROOT / "README.md")) > 10
