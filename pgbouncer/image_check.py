"""Build-time check of the pooler image: the installed PgBouncer is the release the renderer targets.

The Dockerfile runs ``python3 -m pgbouncer.image_check`` after the pinned package is installed, so an
image whose PgBouncer would reject (or silently ignore) keys of the rendered ini, or that holds
another build of the release than the pinned Debian package, is never built.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from pgbouncer.versions import PINNED, SHIPPED_PACKAGE


def installed_release(binary: str | Sequence[str] = "pgbouncer") -> str:
    """The first line of ``pgbouncer --version``, e.g. ``PgBouncer 1.26.1``.

    ``binary`` is a path, or the argv that runs one (the local stack's goes through a loader).
    """
    argv = [binary] if isinstance(binary, str) else list(binary)
    result = subprocess.run([*argv, "--version"], capture_output=True, text=True, check=True, timeout=30)
    return result.stdout.splitlines()[0].strip()


def installed_package_version(package: str = "pgbouncer") -> str:
    """Debian's version of the installed package, e.g. ``1.26.1-1`` (empty when not installed)."""
    result = subprocess.run(["dpkg-query", "--show", "--showformat=${Version}", package],
                            capture_output=True, text=True, check=False, timeout=30)
    return result.stdout.strip() if result.returncode == 0 else ""


def main(binary: str = "pgbouncer", package_version: str | None = None) -> int:
    """``package_version``: what dpkg says is installed (asked when None)."""
    line = installed_release(binary)
    # Compared as text: PgBouncerVersion refuses releases outside the renderer's tables, and any
    # release but the pinned one must fail here with this message, not a parse error.
    if line != f"PgBouncer {PINNED}":
        print(f"image_check: this image has {line!r}, but the renderer targets PgBouncer {PINNED} "
              "(pgbouncer.versions.PINNED): install that release or change PINNED", file=sys.stderr)
        return 1
    package_version = installed_package_version() if package_version is None else package_version
    if package_version != SHIPPED_PACKAGE.version:
        print(f"image_check: the installed pgbouncer package is {package_version or 'none'!r}, but "
              f"pgbouncer.versions.SHIPPED_PACKAGE pins {SHIPPED_PACKAGE.version!r}: install that .deb",
              file=sys.stderr)
        return 1
    print(f"image_check: {line}, Debian package {package_version}, as pgbouncer.versions pins")
    return 0


if __name__ == "__main__":
    sys.exit(main())
