"""What the local-stack tests share besides fixtures: fresh state directories, and removing them again."""

from __future__ import annotations

import itertools
from pathlib import Path

from lifeguard.stack.stack import LocalStack

_numbers = itertools.count(1)


def fresh_stack_dir(state_root: Path, prefix: str = "local-") -> Path:
    """A state directory under ``state_root`` that no other test of this run uses (not created)."""
    return state_root / f"{prefix}{next(_numbers)}"


def purge_stack(path: Path) -> None:
    """Stop whatever runs in the stack at ``path`` and delete its state: as root, its service directory under
    /var/lib/lifeguard too, which removing the test's temporary folder would leave behind."""
    if path.exists():
        LocalStack(path).down(purge=True)
