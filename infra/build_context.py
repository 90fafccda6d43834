"""The folder an image is built from: its own folder, or a staged copy with the repository's shared packages.

Standard library only: the Pulumi program (infra/components/image.py) and the local image builds
(lifeguard/stack/containers.py, tests/images) stage the very same context.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_PACKAGE_NAMES = ("redaction", "database_urls")
"""Packages of the repository that deployables ship beside their own: the kit's one redactor, and the
names of the connection-string pair."""
STAGE_ROOT = REPO_ROOT / "build" / "image-contexts"
SHARED_DIR = "shared"
"""Where :func:`build_context` puts shared packages; the Dockerfile copies them to ``/app``."""
_IGNORED_PARTS = frozenset({"__pycache__", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache"})


def shared_packages(repo_root: Path = REPO_ROOT) -> tuple[Path, ...]:
    return tuple(repo_root / name for name in SHARED_PACKAGE_NAMES)


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


def build_context(context_dir: Path, shared_packages: Sequence[Path], stage_root: Path | None = None) -> Path:
    """The folder Docker builds from: ``context_dir``, plus ``shared/<package>/`` for each shared package.

    A package of the repository that several images (and the function zip) import is kept once in
    the repository and added to a staged copy of the context here, rather than copied into each
    image's folder. Without shared packages the folder itself is the context.
    """
    if not shared_packages:
        return context_dir
    entries = context_files(context_dir)
    for package in shared_packages:
        entries += [(path, f"{SHARED_DIR}/{package.name}/{relative}") for path, relative in context_files(package)]
    # Under the repository's build/ (git ignores it) and named by content, so the relative build path
    # pulumi-docker sees is the same in every checkout holding the same files.
    root = stage_root or STAGE_ROOT
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
    return context.name.rsplit("-", 1)[0] if context.parent.name == STAGE_ROOT.name else context.name
