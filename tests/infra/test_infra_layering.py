"""The library's imports run one way: types <- config <- components <- the sample stack (infra/)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.infra.infra_harness import REPO_ROOT

LIBRARY = REPO_ROOT / "lifeguard" / "aws"
COMPONENTS = tuple(f"lifeguard.aws.{name}" for name in (
    "app_role", "database", "fargate_base", "image", "migration_job", "network", "observability", "pooler",
    "pooler_tls", "secrets",
))
# Each layer, and the modules it must not import (the layers above it). No module of the library imports
# the sample stack: a user's program gets the same library the samples use.
LAYERS: dict[str, tuple[str, ...]] = {
    "lifeguard/aws/types.py": ("lifeguard.aws.config", *COMPONENTS, "infra"),
    "lifeguard/aws/config.py": (*COMPONENTS, "infra"),
    **{str(path.relative_to(REPO_ROOT)): ("infra",) for path in sorted(LIBRARY.glob("*.py"))},
}


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize(("module", "above"), LAYERS.items(), ids=list(LAYERS))
def test_a_layer_imports_nothing_above_it(module: str, above: tuple[str, ...]) -> None:
    imports = imported_modules(REPO_ROOT / module)
    upward = sorted(name for name in imports if name.startswith(above))
    assert not upward, f"{module} imports {upward}"
