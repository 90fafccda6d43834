"""infra's imports run one way: types <- config <- components <- program."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.infra.infra_harness import REPO_ROOT

INFRA = REPO_ROOT / "infra"
# Each layer, and the infra modules it must not import (the layers above it).
LAYERS: dict[str, tuple[str, ...]] = {
    "infra/types.py": ("infra.config", "infra.components", "infra.program"),
    "infra/config.py": ("infra.components", "infra.program"),
    **{str(path.relative_to(REPO_ROOT)): ("infra.program",) for path in (INFRA / "components").glob("*.py")},
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
