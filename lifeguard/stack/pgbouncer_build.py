"""Where the local PgBouncer lives: Debian 13's source package of the pinned release, built once.

``scripts/build-pgbouncer.sh`` builds it into :func:`build_dir`; :func:`lifeguard.stack.system.find_pgbouncer`
runs it. One cache per machine, shared by every clone: ``$LIFEGUARD_CACHE_DIR`` when set, else
``/var/cache/lifeguard`` for root (root's home is 0700, and PgBouncer runs as the ``postgres``
user, who must be able to execute the binary), else ``${XDG_CACHE_HOME:-~/.cache}/lifeguard``.

Standard library only: the build script runs ``python3 -m lifeguard.stack.pgbouncer_build``
with the system's Python, before ``.venv`` exists.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

from pgbouncer.versions import PINNED, PINNED_DEBIAN_PACKAGE, PINNED_DEBIAN_SUITE

CACHE_ENV = "LIFEGUARD_CACHE_DIR"


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV])
    if os.geteuid() == 0:
        return Path("/var/cache/lifeguard")
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lifeguard"


def build_dir(env: Mapping[str, str] | None = None) -> Path:
    """One directory per Debian package version, so a new pin never reuses an old build."""
    return cache_dir(env) / f"pgbouncer-{PINNED_DEBIAN_PACKAGE}"


def built_binary(env: Mapping[str, str] | None = None) -> Path:
    return build_dir(env) / "bin" / "pgbouncer"


def main() -> None:
    """Print the build's parameters as shell assignments (for ``eval`` in the build script)."""
    values = {
        "release": PINNED,
        "package_version": PINNED_DEBIAN_PACKAGE,
        "suite": PINNED_DEBIAN_SUITE,
        "build_dir": str(build_dir()),
    }
    sys.stdout.write("".join(f"{name}={shlex.quote(value)}\n" for name, value in values.items()))


if __name__ == "__main__":
    main()
