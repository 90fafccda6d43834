"""pgbouncer.private_file: 0600 whether or not the file was there before, with a wider mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pgbouncer.private_file import write_private
from pgbouncer.tls import CertPair, issue_server_certificate, write_self_signed


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


# Issue 31: root writes these files in folders the postgres user owns, who could leave a link there.


def test_a_symlink_at_the_path_is_refused_and_its_target_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "shadow"
    target.write_text("root's own line\n")
    link = tmp_path / "userlist.txt"
    link.symlink_to(target)
    with pytest.raises(OSError):
        write_private(link, "planted\n")
    assert target.read_text() == "root's own line\n"


def test_a_hard_link_at_the_path_is_refused_and_its_other_name_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "shadow"
    target.write_text("root's own line\n")
    os.link(target, tmp_path / "userlist.txt")
    with pytest.raises(PermissionError, match="one link"):
        write_private(tmp_path / "userlist.txt", "planted\n")
    assert target.read_text() == "root's own line\n"


def test_a_certificate_is_not_written_through_a_link(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("root's own line\n")
    (tmp_path / "pgbouncer.crt").symlink_to(target)
    certificate = issue_server_certificate(write_self_signed(tmp_path / "ca", stem="ca"), ("localhost",))
    with pytest.raises(OSError):
        certificate.write(CertPair(tmp_path / "pgbouncer.crt", tmp_path / "pgbouncer.key"))
    assert target.read_text() == "root's own line\n"
