"""The folder an image is built from: its own folder, or a staged copy with the kit's shared packages.

Everything is found through the installed packages (``pgbouncer/`` and ``migrator/`` ship their
Dockerfiles as package data), never through a repository checkout: the library builds the same images
from a wheel in a user's virtualenv as from this repository. Standard library only: the Pulumi
components (lifeguard/aws/image.py) and the local image builds (lifeguard/stack/containers.py,
tests/images) stage the very same context.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

SHARED_PACKAGE_NAMES = ("redaction", "database_urls")
"""Packages of the kit that deployables ship beside their own: the kit's one redactor, and the
names of the connection-string pair."""
BUILD_DIR_ENV = "LIFEGUARD_BUILD_DIR"
STAGE_DIR_NAME = "image-contexts"
SHARED_DIR = "shared"
"""Where :func:`build_context` puts shared packages; the Dockerfile copies them to ``/app``."""
_IGNORED_PARTS = frozenset({"__pycache__", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache"})


def package_dir(name: str) -> Path:
    """The folder of the installed package ``name`` (site-packages, or this checkout in a dev install)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"package {name!r} is not installed: install the lifeguard distribution")
    return Path(spec.origin).resolve().parent


def shared_packages() -> tuple[Path, ...]:
    return tuple(package_dir(name) for name in SHARED_PACKAGE_NAMES)


def project_dir(start: Path | None = None) -> Path:
    """The Pulumi project's folder: the nearest folder holding ``Pulumi.yaml``, from the working directory up
    (as Pulumi finds it), else the working directory. Relative paths in stack config start here."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "Pulumi.yaml").is_file() or (folder / "Pulumi.yml").is_file():
            return folder
    return here


def build_dir() -> Path:
    """Where the kit writes what it builds: ``$LIFEGUARD_BUILD_DIR``, else ``build/`` in the project's folder.

    Never inside the installed package, and in the project, so the relative paths pulumi-docker sees
    are the same in every checkout of it.
    """
    return Path(os.environ.get(BUILD_DIR_ENV) or project_dir() / "build")


def context_files(context_dir: Path) -> list[tuple[Path, str]]:
    """The files Docker would get from ``context_dir`` (caches left out), with their relative paths."""
    files = []
    for path in sorted(context_dir.rglob("*")):
        relative = path.relative_to(context_dir)
        if not path.is_file() or _IGNORED_PARTS.intersection(relative.parts) or path.suffix == ".pyc":
            continue
        files.append((path, relative.as_posix()))
    return files


def files_digest(entries: Sequence[tuple[Path, str]], seed: bytes = b"") -> str:
    """sha256 over each file's relative path, executable bit and bytes: the same in every checkout.

    Only the executable bit counts, not the whole mode, so another umask gives the same digest.
    """
    digest = hashlib.sha256(seed)
    for path, relative in entries:
        executable = path.stat().st_mode & 0o111 != 0
        digest.update(f"\0{relative}\0{int(executable)}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build_context(context_dir: Path, shared_packages: Sequence[Path], stage_root: Path | None = None,
                  working_dir: Path | None = None) -> Path:
    """The folder Docker builds from: ``context_dir``, plus ``shared/<package>/`` for each shared package.

    A package of the kit that several images (and the function zip) import is kept once and added to
    a staged copy of the context here, rather than copied into each image's folder. Without shared
    packages the folder itself is the context, if it lies under ``working_dir`` (the program's, by
    default); an installed package's folder (site-packages) is staged too, so the build path stays
    relative to the project and the same on every machine.
    """
    working = (working_dir or Path.cwd()).resolve()
    if not shared_packages and context_dir.resolve().is_relative_to(working):
        return context_dir
    entries = context_files(context_dir)
    for package in shared_packages:
        entries += [(path, f"{SHARED_DIR}/{package.name}/{relative}") for path, relative in context_files(package)]
    # Under the project's build folder and named by content, so the relative build path pulumi-docker
    # sees is the same in every checkout holding the same files.
    root = stage_root or build_dir() / STAGE_DIR_NAME
    stage = root / f"{context_dir.name}-{files_digest(entries)[:20]}"
    if not stage.is_dir():
        partial = stage.with_name(f"{stage.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        for path, relative in entries:
            (partial / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, partial / relative)
        os.replace(partial, stage)
    return stage


def source_name(context: Path) -> str:
    """The folder a context was made from: ``migrator`` for a staged ``migrator-<digest>``."""
    return context.name.rsplit("-", 1)[0] if context.parent.name == STAGE_DIR_NAME else context.name
