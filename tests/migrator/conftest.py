"""Fixtures for the migrator tests (their shared helpers are in tests/migrator/support.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from migrator.runner import DEFAULT_MIGRATIONS_DIR


@pytest.fixture
def sample_dir(tmp_path: Path) -> Path:
    """A private copy of the sample app's migrations (tests may edit it)."""
    target = tmp_path / "migrations"
    shutil.copytree(DEFAULT_MIGRATIONS_DIR, target)
    return target
