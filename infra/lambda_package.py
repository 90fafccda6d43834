"""Build the functions' deployment zip deterministically, with Linux wheels for the target CPU.

Same sources and pins give byte-identical zips (fixed timestamps, sorted entries, fixed
permissions, fixed compression), so the code hash Pulumi and Lambda see only changes when the
code does, and an unchanged function is not redeployed. The wheels come from PyPI for the
Lambda platform (manylinux, CPython 3.13), not from the machine running ``pulumi up``.

The bytes depend on the zlib that compresses them: machines with a different zlib (zlib-ng, say)
produce a different but equally stable zip, which redeploys the functions once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from infra.config import Architecture

PYTHON_VERSION = "3.13"
RUNTIME = f"python{PYTHON_VERSION}"
REQUIREMENTS_FILE = Path(__file__).with_name("lambda-requirements.txt")
# manylinux2014 covers most wheels; some aarch64 ones are only published as manylinux_2_28, which
# the Python 3.13 runtime (Amazon Linux 2023, glibc 2.34) also runs.
PLATFORMS: dict[Architecture, tuple[str, ...]] = {
    "x86_64": ("manylinux2014_x86_64", "manylinux_2_28_x86_64"),
    "arm64": ("manylinux2014_aarch64", "manylinux_2_28_aarch64"),
}
# 1980-01-01 is the earliest time a zip entry can hold.
_EPOCH = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o100644  # regular file, rw-r--r--: Lambda only needs to read (dlopen needs no x bit)
_PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)$")
_SKIPPED_PARTS = frozenset({"__pycache__", "tests", ".pytest_cache", ".mypy_cache"})


class PackagingError(RuntimeError):
    """The function package cannot be built; the message says what to fix."""


@dataclass(frozen=True)
class LambdaPackage:
    path: Path
    sha256_hex: str

    @property
    def base64_sha256(self) -> str:
        """The hash in the form Lambda reports as ``CodeSha256`` and Pulumi takes as ``sourceCodeHash``."""
        return base64.b64encode(bytes.fromhex(self.sha256_hex)).decode()


def read_requirements(path: Path = REQUIREMENTS_FILE) -> tuple[str, ...]:
    """The pinned ``name==version`` lines; anything unpinned would make the zip drift."""
    pins = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if not _PINNED.match(text):
            raise PackagingError(f"{path}:{number}: {text!r} must be pinned as name==version")
        pins.append(text)
    if not pins:
        raise PackagingError(f"{path} lists no requirements")
    return tuple(sorted(pins, key=str.lower))


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def download_wheels(
    requirements: Sequence[str],
    architecture: Architecture,
    cache_dir: Path,
    python_version: str = PYTHON_VERSION,
) -> list[Path]:
    """Download (once, then reuse) Linux wheels for ``requirements`` into ``cache_dir``."""
    if architecture not in PLATFORMS:
        raise PackagingError(f"unknown architecture {architecture!r}; use one of {', '.join(PLATFORMS)}")
    platforms = PLATFORMS[architecture]
    key = hashlib.sha256(json.dumps([list(requirements), platforms, python_version]).encode()).hexdigest()
    dest = cache_dir / "wheels" / f"{architecture}-cp{python_version.replace('.', '')}-{key[:16]}"
    marker = dest / ".complete"
    if not marker.exists():
        partial = dest.with_name(dest.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--no-input", "--no-deps", "--only-binary=:all:", "--implementation", "cp",
            "--python-version", python_version, "--dest", str(partial),
        ]
        for platform in platforms:
            command += ["--platform", platform]
        result = subprocess.run([*command, *requirements], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise PackagingError(
                f"pip could not download Linux wheels for {architecture} "
                f"({', '.join(requirements)}):\n{result.stderr.strip()}"
            )
        shutil.rmtree(dest, ignore_errors=True)
        partial.rename(dest)
        marker.write_text("\n".join(requirements) + "\n")
    wheels = sorted(dest.glob("*.whl"))
    found = {_normalise(wheel.name.split("-", 1)[0]) for wheel in wheels}
    missing = [pin for pin in requirements if _normalise(pin.split("==", 1)[0]) not in found]
    if missing:
        raise PackagingError(f"no wheel found for {', '.join(missing)} in {dest}")
    return wheels


def _wheel_entries(wheel: Path) -> Iterable[tuple[str, bytes]]:
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            name = info.filename
            first, _, rest = name.partition("/")
            if first.endswith(".data"):
                # Only library files go to the import root; scripts and headers are not needed.
                kind, _, inner = rest.partition("/")
                if kind not in ("purelib", "platlib"):
                    continue
                name = inner
            yield name, archive.read(info)


def _source_entries(source_dir: Path) -> Iterable[tuple[str, bytes]]:
    for path in sorted(source_dir.rglob("*")):
        relative = path.relative_to(source_dir)
        if not path.is_file() or _SKIPPED_PARTS.intersection(relative.parts):
            continue
        if path.suffix in (".pyc", ".pyo") or any(part.startswith(".") for part in relative.parts):
            continue
        # Keep the package folder in the path: handlers are `lambdas.<module>.handler`.
        yield f"{source_dir.name}/{relative.as_posix()}", path.read_bytes()


def write_deterministic_zip(entries: dict[str, bytes], target: Path) -> str:
    """Write ``entries`` sorted, with fixed time and mode; return the archive's sha256 (hex)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.create_system = 3  # Unix, so external_attr carries the mode on every OS
            info.external_attr = _FILE_MODE << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entries[name], compresslevel=6)
    os.replace(partial, target)
    return hashlib.sha256(target.read_bytes()).hexdigest()


def build(
    source_dir: Path,
    architecture: Architecture,
    build_dir: Path,
    requirements: Sequence[str] | None = None,
    python_version: str = PYTHON_VERSION,
) -> LambdaPackage:
    """Zip ``source_dir`` (as a package of that name) with its pinned wheels for ``architecture``."""
    if not (source_dir / "__init__.py").is_file():
        raise PackagingError(f"{source_dir} is not a Python package (no __init__.py)")
    pins = tuple(requirements) if requirements is not None else read_requirements()
    entries: dict[str, bytes] = {}
    for wheel in download_wheels(pins, architecture, build_dir, python_version):
        for name, data in _wheel_entries(wheel):
            entries[name] = data
    for name, data in _source_entries(source_dir):
        if name in entries:
            raise PackagingError(f"{name} is both in {source_dir} and in a wheel; rename it")
        entries[name] = data
    target = build_dir / f"{source_dir.name}-{architecture}.zip"
    return LambdaPackage(path=target, sha256_hex=write_deterministic_zip(entries, target))
