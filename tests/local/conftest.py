"""Fixtures for the local stack: a state directory the ``postgres`` user can reach, free ports, a bystander process."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lifeguard.stack.system import free_port
from tests.local.support import fresh_stack_dir, purge_stack


@pytest.fixture
def stack_dir(state_root: Path) -> Iterator[Path]:
    """A fresh state directory; whatever a test started there is stopped afterwards."""
    path = fresh_stack_dir(state_root)
    yield path
    purge_stack(path)


@pytest.fixture
def ports() -> tuple[int, int]:
    pg = free_port()
    pooler = free_port()
    while pooler == pg:
        pooler = free_port()
    return pg, pooler


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A process of ours (root's, when run as root) that the stack must never signal."""
    proc = subprocess.Popen(["sleep", "120"])
    yield proc
    proc.kill()
    proc.wait()
