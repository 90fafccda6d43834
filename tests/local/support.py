"""What the local-stack tests share besides fixtures: fresh state directories."""

from __future__ import annotations

import itertools
from pathlib import Path

_numbers = itertools.count(1)


def fresh_stack_dir(state_root: Path, prefix: str = "local-") -> Path:
    """A state directory under ``state_root`` that no other test of this run uses (not created)."""
    return state_root / f"{prefix}{next(_numbers)}"
