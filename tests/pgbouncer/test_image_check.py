"""The pooler image's build-time release check (the image build itself is in tests/images)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgbouncer import image_check
from pgbouncer.versions import PINNED, SHIPPED_PACKAGE


def fake_pgbouncer(directory: Path, release: str) -> str:
    binary = directory / "pgbouncer"
    binary.write_text(f"#!/bin/sh\necho 'PgBouncer {release}'\necho 'libevent 2.1.12-stable'\n")
    binary.chmod(0o755)
    return str(binary)


def test_passes_on_the_pinned_release(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert image_check.main(fake_pgbouncer(tmp_path, PINNED), SHIPPED_PACKAGE.version) == 0
    assert f"PgBouncer {PINNED}, Debian package {SHIPPED_PACKAGE.version}" in capsys.readouterr().out


def test_fails_on_another_release_and_says_what_to_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert image_check.main(fake_pgbouncer(tmp_path, "1.26.0"), SHIPPED_PACKAGE.version) == 1
    err = capsys.readouterr().err
    assert "'PgBouncer 1.26.0'" in err and f"targets PgBouncer {PINNED}" in err and "change PINNED" in err


def test_fails_on_another_debian_build_of_the_release(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Same upstream release, another package (e.g. a later Debian revision with other patches)."""
    assert image_check.main(fake_pgbouncer(tmp_path, PINNED), f"{PINNED}-2") == 1
    err = capsys.readouterr().err
    assert f"'{PINNED}-2'" in err and f"pins '{SHIPPED_PACKAGE.version}'" in err
    assert image_check.main(fake_pgbouncer(tmp_path, PINNED), "") == 1
    assert "package is 'none'" in capsys.readouterr().err
