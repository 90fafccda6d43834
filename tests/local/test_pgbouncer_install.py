"""The local PgBouncer: where scripts/install-pgbouncer.sh puts it, that it is the image's very binary
(the pinned .deb's bytes), and that it runs through Debian 13's loader under PgBouncer's name."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from lifeguard.stack.pgbouncer_install import cache_dir, command, install_dir, installed_binary, problems
from lifeguard.stack.pooler import installed_version
from lifeguard.stack.system import PGBOUNCER_ENV, LocalSetupError, find_pgbouncer
from pgbouncer.debian_package import host_arch
from pgbouncer.versions import PINNED, SHIPPED_PACKAGE

REPO = Path(__file__).resolve().parents[2]


def test_cache_dir_is_shared_per_machine_and_readable_by_the_service_user(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache_dir({"LIFEGUARD_CACHE_DIR": "/srv/cache"}) == Path("/srv/cache")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert cache_dir({}) == Path("/var/cache/lifeguard")  # not /root: PgBouncer runs as postgres
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cache_dir({"XDG_CACHE_HOME": "/home/u/.cache"}) == Path("/home/u/.cache/lifeguard")
    # One directory per Debian package version: a new pin never reuses an old install.
    assert install_dir(env={"LIFEGUARD_CACHE_DIR": "/c"}) == Path(f"/c/pgbouncer-deb-{SHIPPED_PACKAGE.version}")


def test_install_script_reads_its_parameters_from_the_one_pin() -> None:
    # The script runs the module with the system's Python, before .venv exists.
    out = subprocess.run(
        ["python3", "-m", "lifeguard.stack.pgbouncer_install", "vars"], cwd=REPO, capture_output=True, text=True,
        check=True, env={**os.environ, "PYTHONPATH": str(REPO), "LIFEGUARD_CACHE_DIR": "/tmp/x y"},
    )
    values = dict(shlex.split(line)[0].split("=", 1) for line in out.stdout.splitlines())
    arch = host_arch()
    assert values["release"] == PINNED == SHIPPED_PACKAGE.release
    assert values["package_version"] == SHIPPED_PACKAGE.version
    assert values["deb_name"] == f"pgbouncer_{SHIPPED_PACKAGE.version}_{arch}.deb"
    assert values["install_dir"] == f"/tmp/x y/pgbouncer-deb-{SHIPPED_PACKAGE.version}"


def test_the_local_pgbouncer_is_the_shipped_debs_binary_run_through_debian_13s_loader() -> None:
    binary = find_pgbouncer()
    assert binary == installed_binary()
    assert str(installed_version(binary)) == PINNED
    # Integrity: the .deb is the pinned one and the binary is its usr/sbin/pgbouncer, byte for byte.
    assert problems(install_dir(), SHIPPED_PACKAGE, host_arch()) == []
    argv = command(binary)
    assert Path(argv[0]).name == "pgbouncer" and os.readlink(argv[0]).startswith("../lib/ld-linux")
    assert argv[-1] == str(binary)


def test_a_changed_binary_or_package_is_found(tmp_path: Path) -> None:
    """What the install script's fast path checks: a copy whose binary differs is not taken for the install."""
    copy = tmp_path / "install"
    shutil.copytree(install_dir(), copy, symlinks=True)
    arch = host_arch()
    assert problems(copy, SHIPPED_PACKAGE, arch) == []
    binary = copy / "sbin" / "pgbouncer"
    binary.write_bytes(binary.read_bytes() + b"\0")
    assert problems(copy, SHIPPED_PACKAGE, arch) == [
        f"{binary} differs from usr/sbin/pgbouncer in {SHIPPED_PACKAGE.filename(arch)}"]
    deb = copy / SHIPPED_PACKAGE.filename(arch)
    deb.write_bytes(deb.read_bytes()[:-1])
    assert problems(copy, SHIPPED_PACKAGE, arch) == [f"{deb} is not the pinned package (SHA256 differs)"]


def test_another_binary_runs_as_it_is() -> None:
    assert command(Path("/usr/sbin/pgbouncer")) == ["/usr/sbin/pgbouncer"]


def test_another_binary_is_chosen_explicitly_or_refused(tmp_path: Path) -> None:
    not_executable = tmp_path / "pgbouncer"
    not_executable.write_text("")
    with pytest.raises(LocalSetupError, match=f"{PGBOUNCER_ENV}=.* is not an executable file"):
        find_pgbouncer({PGBOUNCER_ENV: str(not_executable)})
    not_executable.chmod(0o755)
    assert find_pgbouncer({PGBOUNCER_ENV: str(not_executable)}) == not_executable
    with pytest.raises(LocalSetupError, match=r"run scripts/install-pgbouncer\.sh"):
        find_pgbouncer({"LIFEGUARD_CACHE_DIR": str(tmp_path / "empty")})
