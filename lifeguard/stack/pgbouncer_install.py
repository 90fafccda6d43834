"""Where the local PgBouncer lives, and how it runs: the image's very binary, through Debian 13's loader.

``scripts/install-pgbouncer.sh`` installs the ``.deb`` that :data:`pgbouncer.versions.SHIPPED_PACKAGE`
pins into a Debian 13 root (``debootstrap``, then ``apt-get install`` of the ``.deb``: Debian 13's
dependencies only, as in the image), then keeps, in :func:`install_dir`: the ``.deb`` itself, its
``usr/sbin/pgbouncer`` (``sbin/pgbouncer``), the Debian 13 libraries that binary loads with Debian
13's loader (``lib/``), and ``bin/pgbouncer``, a symlink to that loader. Debian forky's build needs
glibc 2.38, newer than Debian 12's, so on this host it runs as
``bin/pgbouncer --inhibit-cache --library-path lib sbin/pgbouncer ARGS`` (:func:`command`): the
loader runs under PgBouncer's name, so ``/proc/PID/comm`` reads ``pgbouncer``.

One cache per machine, shared by every clone: ``$LIFEGUARD_CACHE_DIR`` when set, else
``/var/cache/lifeguard`` for root (root's home is 0700, and PgBouncer runs as the ``postgres``
user, who must be able to execute the binary), else ``${XDG_CACHE_HOME:-~/.cache}/lifeguard``.

Standard library only: the install script runs ``python3 -m lifeguard.stack.pgbouncer_install``
with the system's Python, before ``.venv`` exists.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

from pgbouncer.debian_package import PackageError, deb_member, host_arch, sha256_of
from pgbouncer.versions import PACKAGES, SHIPPED_PACKAGE, DebianBinary

CACHE_ENV = "LIFEGUARD_CACHE_DIR"
# Debian 13's dynamic loader and library directory, per Debian architecture.
LOADERS = {"amd64": "ld-linux-x86-64.so.2", "arm64": "ld-linux-aarch64.so.1"}
TRIPLETS = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}
BINARY_IN_PACKAGE = "usr/sbin/pgbouncer"


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV])
    if os.geteuid() == 0:
        return Path("/var/cache/lifeguard")
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lifeguard"


def install_dir(package: DebianBinary = SHIPPED_PACKAGE, env: Mapping[str, str] | None = None) -> Path:
    """One directory per Debian package version, so a new pin never reuses an old install.

    ``pgbouncer-deb-``: not the ``pgbouncer-VERSION`` of the source builds before 1.26.1, which
    clones still on that code keep using from the same cache.
    """
    return cache_dir(env) / f"pgbouncer-deb-{package.version}"


def installed_binary(package: DebianBinary = SHIPPED_PACKAGE, env: Mapping[str, str] | None = None) -> Path:
    """The package's own ``usr/sbin/pgbouncer``, byte for byte (:func:`problems` checks)."""
    return install_dir(package, env) / "sbin" / "pgbouncer"


def command(binary: Path) -> list[str]:
    """The argv that runs ``binary``: through the loader installed beside it, else ``binary`` itself.

    An install by the script has ``bin/pgbouncer`` (the loader) and ``lib/`` next to ``sbin/``;
    any other binary (Debian 12's ``/usr/sbin/pgbouncer``, ``$LIFEGUARD_PGBOUNCER``) runs as it is.
    """
    root = binary.parent.parent
    launcher = root / "bin" / "pgbouncer"
    if binary.parent.name == "sbin" and launcher.is_symlink() and (root / "lib").is_dir():
        return [str(launcher), "--inhibit-cache", "--library-path", str(root / "lib"), str(binary)]
    return [str(binary)]


def problems(directory: Path, package: DebianBinary, arch: str) -> list[str]:
    """What is wrong with the install in ``directory``; empty when it is the pinned package's binary."""
    deb = directory / package.filename(arch)
    binary = directory / "sbin" / "pgbouncer"
    launcher = directory / "bin" / "pgbouncer"
    found = []
    if not deb.is_file():
        return [f"{deb} is missing"]
    if sha256_of(deb) != package.digest(arch):
        found.append(f"{deb} is not the pinned package (SHA256 differs)")
    elif not binary.is_file():
        found.append(f"{binary} is missing")
    else:
        try:
            expected = hashlib.sha256(deb_member(deb, BINARY_IN_PACKAGE)).hexdigest()
        except PackageError as exc:
            found.append(str(exc))
        else:
            if sha256_of(binary) != expected:
                found.append(f"{binary} differs from {BINARY_IN_PACKAGE} in {deb.name}")
    loader = directory / "lib" / LOADERS[arch]
    if not (launcher.is_symlink() and os.readlink(launcher) == f"../lib/{LOADERS[arch]}" and loader.is_file()):
        found.append(f"{launcher} is not a link to Debian 13's loader {loader}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m lifeguard.stack.pgbouncer_install")
    parser.add_argument("action", choices=("vars", "check"),
                        help="vars: the parameters as shell assignments; check: exit 1 unless installed intact")
    parser.add_argument("package", choices=sorted(PACKAGES), nargs="?", default="shipped")
    parser.add_argument("--dir", type=Path, help="check this directory instead of the cache's")
    args = parser.parse_args(argv)
    package = PACKAGES[args.package]
    arch = host_arch()
    directory = args.dir or install_dir(package)
    if args.action == "check":
        found = problems(directory, package, arch)
        for line in found:
            print(f"install-pgbouncer: {line}", file=sys.stderr)
        return 1 if found else 0
    if arch not in LOADERS:
        print(f"install-pgbouncer: no Debian 13 loader known for {arch}", file=sys.stderr)
        return 1
    values = {
        "release": package.release,
        "package_version": package.version,
        "arch": arch,
        "deb_name": package.filename(arch),
        "install_dir": str(directory),
        "loader": LOADERS[arch],
        "triplet": TRIPLETS[arch],
    }
    sys.stdout.write("".join(f"{name}={shlex.quote(value)}\n" for name, value in values.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
