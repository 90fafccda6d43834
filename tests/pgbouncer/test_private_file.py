"""pgbouncer.private_file: 0600 whether or not the file was there before, with a wider mode."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pgbouncer.private_file import write_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("atomic", [False, True])
def test_a_new_file_is_0600(tmp_path: Path, atomic: bool) -> None:
    path = tmp_path / "secret"
    write_private(path, "s3cret\n", atomic=atomic)
    assert mode(path) == 0o600
    assert path.read_text() == "s3cret\n"


@pytest.mark.parametrize("atomic", [False, True])
def test_a_pre_existing_0644_file_is_narrowed_to_0600(tmp_path: Path, atomic: bool) -> None:
    path = tmp_path / "secret"
    path.write_text("an older, longer content than the new one\n")
    path.chmod(0o644)
    write_private(path, b"new\n", atomic=atomic)
    assert mode(path) == 0o600
    assert path.read_bytes() == b"new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]  # no partial file left behind
