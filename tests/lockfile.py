"""What uv.lock pins, read for the tests: each install's packages, versions and hashes.

uv.lock holds one universal resolution; which packages an install gets follows from the
project's dependencies for that install and the markers, evaluated here for a given environment.
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.markers import Marker, default_environment
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCK_FILE = REPO_ROOT / "uv.lock"
PROJECT = "lifeguard"
FIRST_PARTY = frozenset(
    path.name for path in REPO_ROOT.iterdir() if (path / "__init__.py").is_file() and path.name != "tests"
)
STDLIB = frozenset(sys.stdlib_module_names)


@dataclass(frozen=True)
class Dependency:
    name: str
    extras: tuple[str, ...]
    marker: str | None

    def applies(self, environment: Mapping[str, str]) -> bool:
        return self.marker is None or Marker(self.marker).evaluate(dict(environment))


@dataclass(frozen=True)
class LockedPackage:
    name: str
    version: str
    source: dict[str, str]
    hashes: frozenset[str]  # sha256 of the sdist and every wheel, as PyPI serves them
    urls: tuple[str, ...]
    dependencies: tuple[Dependency, ...]
    optional: dict[str, tuple[Dependency, ...]]  # the package's extras
    groups: dict[str, tuple[Dependency, ...]]  # dependency groups (the project only)


def _dependencies(entries: Iterable[dict[str, Any]]) -> tuple[Dependency, ...]:
    return tuple(
        Dependency(canonicalize_name(e["name"]), tuple(e.get("extra", ())), e.get("marker")) for e in entries
    )


def load(path: Path = LOCK_FILE) -> dict[str, LockedPackage]:
    packages: dict[str, LockedPackage] = {}
    for entry in tomllib.loads(path.read_text())["package"]:
        files = [entry["sdist"]] if "sdist" in entry else []
        files += entry.get("wheels", [])
        name = canonicalize_name(entry["name"])
        packages[name] = LockedPackage(
            name=name,
            version=entry["version"],
            source=entry["source"],
            hashes=frozenset(f["hash"].removeprefix("sha256:") for f in files),
            urls=tuple(f["url"] for f in files if "url" in f),
            dependencies=_dependencies(entry.get("dependencies", ())),
            optional={k: _dependencies(v) for k, v in entry.get("optional-dependencies", {}).items()},
            groups={k: _dependencies(v) for k, v in entry.get("dev-dependencies", {}).items()},
        )
    return packages


def install_roots(
    lock: Mapping[str, LockedPackage], extras: Iterable[str] = (), groups: Iterable[str] = (), *, base: bool = True
) -> list[Dependency]:
    """What the project asks for in an install with ``extras`` and dependency ``groups`` (``base``: and
    its own dependencies, as uv sync installs them; without, as ``uv export --only-group``)."""
    project = lock[PROJECT]
    roots = list(project.dependencies) if base else []
    for extra in extras:
        roots += project.optional[extra]
    for group in groups:
        roots += project.groups[group]
    return roots


def closure(
    lock: Mapping[str, LockedPackage], roots: Iterable[Dependency], environment: Mapping[str, str] | None = None
) -> dict[str, LockedPackage]:
    """Every locked package that ``roots`` pull in where ``environment`` (default: this interpreter) runs."""
    env: dict[str, str] = {**{k: str(v) for k, v in default_environment().items()}, "extra": "", **(environment or {})}
    found: dict[str, LockedPackage] = {}
    todo = [d for d in roots if d.applies(env)]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    while todo:
        dependency = todo.pop()
        if (dependency.name, dependency.extras) in seen:
            continue
        seen.add((dependency.name, dependency.extras))
        package = lock[dependency.name]
        found[package.name] = package
        wanted = list(package.dependencies)
        for extra in dependency.extras:
            wanted += package.optional.get(extra, ())
        todo += [d for d in wanted if d.applies(env)]
    return found
