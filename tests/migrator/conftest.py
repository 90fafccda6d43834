"""Fixtures for the migrator tests (their shared helpers are in tests/migrator/support.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from migrator.runner import DEFAULT_MIGRATIONS_DIR
from tests.migrator.support import SAMPLE_FILES


@pytest.fixture
def sample_dir(tmp_path: Path) -> Path:
    """A private copy of the sample app's migrations (tests may edit it): the three SAMPLE_FILES, which
    the tests count on (the bundled folder also holds the smoke test's org, 0004)."""
    target = tmp_path / "migrations"
    shutil.copytree(DEFAULT_MIGRATIONS_DIR, target, ignore=lambda _, names: [n for n in names if n not in SAMPLE_FILES])
    return target
