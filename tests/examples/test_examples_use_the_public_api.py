"""The examples are what a user writes: they import lifeguard only through ``lifeguard.aws``'s public names.

A name reached in a private module (``lifeguard.aws.secrets``, say) is not part of the API the reference
documents (docs/api.md) and may move; an example must not teach it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lifeguard.aws import _EXPORTS
from tests.examples.example_runs import EXAMPLES

PROGRAMS = sorted(EXAMPLES.glob("*/__main__.py"))


def lifeguard_imports(source: str) -> list[tuple[str, str]]:
    """(module, name) of every import of the kit's packages in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names]
    kit = ("lifeguard", "pgbouncer", "lambdas", "migrator", "redaction", "database_urls")
    return [(module, name) for module, name in found if module.split(".")[0] in kit]


def test_there_are_the_two_examples() -> None:
    assert [p.parent.name for p in PROGRAMS] == ["attach-from-another-stack", "own-program"]


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.parent.name)
def test_an_example_imports_only_public_names(program: Path) -> None:
    imports = lifeguard_imports(program.read_text())
    assert imports, f"{program} does not use lifeguard"
    private = [f"{module}.{name}" for module, name in imports if module != "lifeguard.aws" or name not in _EXPORTS]
    assert not private, f"{program.parent.name} reaches past lifeguard.aws's public names: {private}"


def test_the_check_sees_a_private_import() -> None:
    # Control.
    source = "from lifeguard.aws import Pooler\nfrom lifeguard.aws.secrets import ConnectionSecrets\nimport migrator\n"
    imports = lifeguard_imports(source)
    assert imports == [("lifeguard.aws", "Pooler"), ("lifeguard.aws.secrets", "ConnectionSecrets"), ("migrator", "")]
