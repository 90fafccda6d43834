"""Fetching the pinned PgBouncer .deb (pgbouncer/debian_package.py, run by the image build and the local
install): the mirror comes from apt's sources, and a file with another SHA256 is refused and not kept."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lifeguard.stack.containers import serve_on_loopback
from lifeguard.stack.pgbouncer_install import install_dir
from pgbouncer import debian_package
from pgbouncer.debian_package import PackageError, apt_mirror, deb_member, fetch, host_arch
from pgbouncer.versions import SHIPPED_PACKAGE, DebianBinary


def test_the_mirror_is_read_from_deb822_sources_then_one_line_lists(tmp_path: Path) -> None:
    apt = tmp_path / "etc" / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list").write_text("deb http://one-line.example/debian trixie main\n")
    assert apt_mirror(tmp_path) == "http://one-line.example/debian"
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: trixie-security\n\n"
        "Types: deb\nURIs: http://deb822.example/debian/\nSuites: trixie trixie-updates\n"
    )
    assert apt_mirror(tmp_path) == "http://deb822.example/debian"
    with pytest.raises(PackageError, match="no Debian mirror"):
        apt_mirror(tmp_path / "nothing")


def test_the_pool_path_is_debians() -> None:
    assert SHIPPED_PACKAGE.pool_path("amd64") == "pool/main/p/pgbouncer/pgbouncer_1.26.1-1_amd64.deb"
    assert SHIPPED_PACKAGE.release == "1.26.1"
    with pytest.raises(ValueError, match=r"no SHA256 pinned for pgbouncer_1\.26\.1-1_riscv64\.deb"):
        SHIPPED_PACKAGE.digest("riscv64")


def test_a_file_with_another_digest_is_refused_and_not_kept(tmp_path: Path) -> None:
    arch = host_arch()
    deb = install_dir() / SHIPPED_PACKAGE.filename(arch)  # the pinned .deb, as the local install keeps it
    served = tmp_path / "served" / deb.name
    served.parent.mkdir()
    served.write_bytes(deb.read_bytes())
    with serve_on_loopback(served, tmp_path / "port") as url:
        good = fetch(SHIPPED_PACKAGE, arch, tmp_path / "out" / "ok.deb", url=url)
        assert hashlib.sha256(good.read_bytes()).hexdigest() == SHIPPED_PACKAGE.digest(arch)
        other = DebianBinary("pgbouncer", SHIPPED_PACKAGE.version, "forky", {arch: "0" * 64})
        with pytest.raises(PackageError, match=f"is pinned to {'0' * 64}.*refusing it"):
            fetch(other, arch, tmp_path / "out" / "bad.deb", url=url)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok.deb"]  # no partial file either
    assert deb_member(good, "usr/sbin/pgbouncer") == (install_dir() / "sbin" / "pgbouncer").read_bytes()


def test_only_http_urls_are_fetched(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="only http"):
        fetch(SHIPPED_PACKAGE, "amd64", tmp_path / "x.deb", url=f"file://{tmp_path}/x.deb")


def test_the_command_line_fails_with_a_message(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert debian_package.main(["fetch", "--arch", "riscv64", "--out", str(tmp_path / "x.deb")]) == 1
    assert "no SHA256 pinned" in capsys.readouterr().err
