"""The local PgBouncer: where scripts/build-pgbouncer.sh puts it, and that it is the shipped release."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from lifeguard.stack.pgbouncer_build import build_dir, built_binary, cache_dir
from lifeguard.stack.pooler import installed_version
from lifeguard.stack.system import PGBOUNCER_ENV, LocalSetupError, find_pgbouncer
from pgbouncer.versions import PINNED, PINNED_DEBIAN_PACKAGE

REPO = Path(__file__).resolve().parents[2]


def test_cache_dir_is_shared_per_machine_and_readable_by_the_service_user(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache_dir({"LIFEGUARD_CACHE_DIR": "/srv/cache"}) == Path("/srv/cache")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert cache_dir({}) == Path("/var/cache/lifeguard")  # not /root: PgBouncer runs as postgres
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cache_dir({"XDG_CACHE_HOME": "/home/u/.cache"}) == Path("/home/u/.cache/lifeguard")
    # One directory per Debian package version: a new pin never reuses an old build.
    assert build_dir({"LIFEGUARD_CACHE_DIR": "/c"}) == Path(f"/c/pgbouncer-{PINNED_DEBIAN_PACKAGE}")


def test_build_script_reads_its_parameters_from_the_one_constant() -> None:
    # The script runs the module with the system's Python, before .venv exists.
    out = subprocess.run(
        ["python3", "-m", "lifeguard.stack.pgbouncer_build"], cwd=REPO, capture_output=True, text=True,
        check=True, env={**os.environ, "PYTHONPATH": str(REPO), "LIFEGUARD_CACHE_DIR": "/tmp/x y"},
    )
    values = dict(shlex.split(line)[0].split("=", 1) for line in out.stdout.splitlines())
    assert values == {"release": PINNED, "package_version": PINNED_DEBIAN_PACKAGE, "suite": "trixie",
                      "build_dir": f"/tmp/x y/pgbouncer-{PINNED_DEBIAN_PACKAGE}"}


def test_the_local_pgbouncer_is_the_shipped_release_with_debians_security_patches() -> None:
    binary = find_pgbouncer()
    assert binary == built_binary()
    assert str(installed_version(binary)) == PINNED
    changelog = (build_dir() / "debian-changelog").read_text()
    assert changelog.startswith(f"pgbouncer ({PINNED_DEBIAN_PACKAGE})")
    for cve in ("CVE-2025-12819", "CVE-2026-6664", "CVE-2026-6665", "CVE-2026-6666", "CVE-2026-6667"):
        assert cve in changelog


def test_another_binary_is_chosen_explicitly_or_refused(tmp_path: Path) -> None:
    not_executable = tmp_path / "pgbouncer"
    not_executable.write_text("")
    with pytest.raises(LocalSetupError, match=f"{PGBOUNCER_ENV}=.* is not an executable file"):
        find_pgbouncer({PGBOUNCER_ENV: str(not_executable)})
    not_executable.chmod(0o755)
    assert find_pgbouncer({PGBOUNCER_ENV: str(not_executable)}) == not_executable
    with pytest.raises(LocalSetupError, match=r"run scripts/build-pgbouncer\.sh"):
        find_pgbouncer({"LIFEGUARD_CACHE_DIR": str(tmp_path / "empty")})
