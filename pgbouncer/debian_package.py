"""Fetch a pinned Debian binary package from the machine's own Debian mirror, and read files out of it.

The pooler image's build (pgbouncer/Dockerfile) and the local install (scripts/install-pgbouncer.sh)
both get PgBouncer this way: the ``.deb`` that :data:`pgbouncer.versions.SHIPPED_PACKAGE` pins, from
``pool/`` on the mirror the system's apt sources name, refused unless its SHA256 is the pinned one.
A mirror's pool drops a version some time after its suite moves on; ``--url`` then takes the same
file from elsewhere (a snapshot archive), and the digest check still applies.

Standard library only (hand-written rather than a library): it runs in the image build, before
anything but Debian's ``python3`` is installed, and in the bootstrap, before ``.venv`` exists.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from pgbouncer.versions import PACKAGES, DebianBinary


class PackageError(RuntimeError):
    """The package could not be fetched or is not the pinned one; the message says what to change."""


def apt_mirror(root: Path = Path("/")) -> str:
    """The first Debian mirror (not a security archive) in ``root``'s apt sources.

    deb822 ``sources.list.d/*.sources`` first (Debian 12 and later), then the one-line format.
    """
    etc = root / "etc" / "apt"
    for path in sorted((etc / "sources.list.d").glob("*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:"):
                for uri in line.split()[1:]:
                    if uri.startswith(("http://", "https://")) and "security" not in uri:
                        return uri.rstrip("/")
    one_line = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]
    for path in one_line:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] != ["deb"]:
                continue
            uris = [w for w in words[1:] if w.startswith(("http://", "https://"))]
            if uris and "security" not in uris[0]:
                return uris[0].rstrip("/")
    raise PackageError(f"no Debian mirror in {etc}/sources.list.d/*.sources or {etc}/sources.list: "
                       "configure apt, or give the package's URL")


def host_arch() -> str:
    """Debian's name for this machine's architecture (``amd64``, ``arm64``)."""
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(package: DebianBinary, arch: str, dest: Path, url: str | None = None, timeout: float = 60) -> Path:
    """Download ``package`` for ``arch`` to ``dest`` (from ``url``, else the apt mirror's pool).

    ``dest`` appears only once the digest matched: a wrong file is never left where a build looks.
    """
    expected = package.digest(arch)
    source = url or f"{apt_mirror()}/{package.pool_path(arch)}"
    if not source.startswith(("http://", "https://")):
        raise PackageError(f"{source}: only http(s) URLs are fetched (the SHA256 check guards either)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(source, timeout=timeout) as response:  # noqa: S310 (checked above)
                    while block := response.read(1 << 20):
                        out.write(block)
            except OSError as exc:
                raise PackageError(f"could not download {source}: {exc}") from None
        got = sha256_of(Path(partial))
        if got != expected:
            raise PackageError(
                f"{source} has SHA256 {got}, but {package.filename(arch)} is pinned to {expected} "
                "(pgbouncer/versions.py): refusing it"
            )
        os.chmod(partial, 0o644)
        os.replace(partial, dest)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return dest


def deb_member(deb: Path, member: str) -> bytes:
    """The bytes of ``member`` (e.g. ``usr/sbin/pgbouncer``) in ``deb``'s data archive.

    A ``.deb`` is an ``ar`` archive holding ``data.tar.xz`` (or ``.gz``); ``tarfile`` reads both.
    """
    data = deb.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise PackageError(f"{deb} is not a Debian package (no ar header)")
    offset = 8
    while offset + 60 <= len(data):
        header = data[offset:offset + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = data[offset + 60:offset + 60 + size]
        if name.startswith("data.tar"):
            try:
                with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
                    for info in tar:
                        if info.name.lstrip("./") == member and info.isfile():
                            extracted = tar.extractfile(info)
                            assert extracted is not None
                            return extracted.read()
            except tarfile.TarError as exc:
                raise PackageError(f"cannot read {name} in {deb}: {exc}") from None
            raise PackageError(f"{deb} holds no {member}")
        offset += 60 + size + (size % 2)
    raise PackageError(f"{deb} has no data archive")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m pgbouncer.debian_package", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("fetch", help="download the pinned .deb and check its SHA256")
    get.add_argument("--package", choices=sorted(PACKAGES), default="shipped")
    get.add_argument("--arch", help="Debian architecture (default: dpkg --print-architecture)")
    get.add_argument("--url", help="take the .deb from this URL instead of the apt mirror's pool")
    get.add_argument("--out", type=Path, required=True)
    commands.add_parser("mirror", help="print the Debian mirror named by the apt sources")
    args = parser.parse_args(argv)
    try:
        if args.command == "mirror":
            print(apt_mirror())
            return 0
        package = PACKAGES[args.package]
        arch = args.arch or host_arch()
        fetch(package, arch, args.out, args.url or None)
        print(f"{package.filename(arch)}: SHA256 {package.digest(arch)}, as pinned")
        return 0
    except (PackageError, ValueError) as exc:
        print(f"debian_package: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
