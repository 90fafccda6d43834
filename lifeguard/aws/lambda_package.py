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

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from lifeguard.aws.build_context import shared_packages as default_shared_packages
from lifeguard.aws.types import Architecture

PYTHON_VERSION = "3.13"
RUNTIME = f"python{PYTHON_VERSION}"
# manylinux2014 covers most wheels; some aarch64 ones are only published as manylinux_2_28, which
# the Python 3.13 runtime (Amazon Linux 2023, glibc 2.34) also runs.
PLATFORMS: dict[Architecture, tuple[str, ...]] = {
    "x86_64": ("manylinux2014_x86_64", "manylinux_2_28_x86_64"),
    "arm64": ("manylinux2014_aarch64", "manylinux_2_28_aarch64"),
}
# 1980-01-01 is the earliest time a zip entry can hold.
_EPOCH = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o100644  # regular file, rw-r--r--: Lambda only needs to read (dlopen needs no x bit)
_MACHINES: dict[Architecture, str] = {"x86_64": "x86_64", "arm64": "aarch64"}
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")
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


@dataclass(frozen=True)
class Pin:
    """One requirement of the zip: an exact version and the sha256 of each file it may come from."""

    name: str
    version: str
    hashes: tuple[str, ...]

    def line(self) -> str:
        """As a hash-checking requirements line for ``pip download --require-hashes``."""
        return " ".join([f"{self.name}=={self.version}", *(f"--hash=sha256:{h}" for h in self.hashes)])


def lambda_environment(architecture: Architecture, python_version: str = PYTHON_VERSION) -> dict[str, str]:
    """The marker environment of the Lambda runtime (CPython on Linux), whatever machine runs `pulumi up`."""
    if architecture not in _MACHINES:
        raise PackagingError(f"unknown architecture {architecture!r}; use one of {', '.join(_MACHINES)}")
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{python_version}.0",
        "platform_python_implementation": "CPython",
        "os_name": "posix",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": _MACHINES[architecture],
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
    }


def read_requirements(
    architecture: Architecture, path: Path, python_version: str = PYTHON_VERSION
) -> tuple[Pin, ...]:
    """The pins whose markers hold on the Lambda runtime; each must be exact and carry its hashes.

    ``path`` is a hash-checking requirements file, e.g. ``uv export`` of a lock (the sample functions'
    is ``infra/lambda-requirements.txt``, written by scripts/relock).
    """
    environment = lambda_environment(architecture, python_version)
    pins = []
    # One requirement per logical line: `uv export` continues the hashes with backslashes.
    for number, line in enumerate(path.read_text().replace("\\\n", " ").splitlines(), start=1):
        text = _HASH.sub("", line).split("#", 1)[0].strip()
        if not text:
            continue
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            raise PackagingError(f"{path}: requirement {number}: {exc}") from None
        specifiers = list(requirement.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==" or "*" in specifiers[0].version:
            raise PackagingError(f"{path}: {text!r} must be pinned as name==version (run scripts/relock)")
        hashes = tuple(_HASH.findall(line))
        if not hashes:
            raise PackagingError(f"{path}: {text!r} has no --hash=sha256: (run scripts/relock)")
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        pins.append(Pin(canonicalize_name(requirement.name), specifiers[0].version, hashes))
    if not pins:
        raise PackagingError(f"{path} lists no requirements for the Lambda runtime")
    return tuple(sorted(pins, key=lambda pin: pin.name))


def download_wheels(
    requirements: Sequence[Pin],
    architecture: Architecture,
    cache_dir: Path,
    python_version: str = PYTHON_VERSION,
) -> list[Path]:
    """Download (once, then reuse) Linux wheels for ``requirements`` into ``cache_dir``, hashes checked."""
    if architecture not in PLATFORMS:
        raise PackagingError(f"unknown architecture {architecture!r}; use one of {', '.join(PLATFORMS)}")
    platforms = PLATFORMS[architecture]
    lines = [pin.line() for pin in requirements]
    key = hashlib.sha256(json.dumps([lines, platforms, python_version]).encode()).hexdigest()
    dest = cache_dir / "wheels" / f"{architecture}-cp{python_version.replace('.', '')}-{key[:16]}"
    marker = dest / ".complete"
    if not marker.exists():
        partial = dest.with_name(dest.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        # Outside the download folder, which must hold wheels only.
        requirements_file = partial.with_name(partial.name + ".txt")
        requirements_file.write_text("\n".join(lines) + "\n")
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--no-input", "--no-deps", "--require-hashes", "--only-binary=:all:", "--implementation", "cp",
            "--python-version", python_version, "--dest", str(partial), "-r", str(requirements_file),
        ]
        for platform in platforms:
            command += ["--platform", platform]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        requirements_file.unlink()
        if result.returncode != 0:
            raise PackagingError(
                f"pip could not download Linux wheels for {architecture} "
                f"({', '.join(f'{pin.name}=={pin.version}' for pin in requirements)}):\n{result.stderr.strip()}"
            )
        shutil.rmtree(dest, ignore_errors=True)
        partial.rename(dest)
        marker.write_text("\n".join(lines) + "\n")
    wheels = sorted(dest.glob("*.whl"))
    # A wheel file names its project with "_" for "-" (PEP 427); canonical names compare the two.
    found = {canonicalize_name(wheel.name.split("-", 1)[0]) for wheel in wheels}
    missing = [f"{pin.name}=={pin.version}" for pin in requirements if canonicalize_name(pin.name) not in found]
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
    requirements: Path | Sequence[Pin],
    python_version: str = PYTHON_VERSION,
    shared_packages: Sequence[Path] | None = None,
) -> LambdaPackage:
    """Zip ``source_dir`` and ``shared_packages`` (as packages of those names) with the pinned wheels.

    ``requirements``: a hash-checking requirements file (:func:`read_requirements`) or its pins.
    ``shared_packages`` defaults to the kit's (``build_context.SHARED_PACKAGE_NAMES``), which the kit's
    own function client imports.
    """
    if shared_packages is None:
        shared_packages = default_shared_packages()
    for package_dir in (source_dir, *shared_packages):
        if not (package_dir / "__init__.py").is_file():
            raise PackagingError(f"{package_dir} is not a Python package (no __init__.py)")
    if isinstance(requirements, Path):
        requirements = read_requirements(architecture, requirements, python_version=python_version)
    pins = tuple(requirements)
    entries: dict[str, bytes] = {}
    for wheel in download_wheels(pins, architecture, build_dir, python_version):
        for name, data in _wheel_entries(wheel):
            entries[name] = data
    for package_dir in (source_dir, *shared_packages):
        for name, data in _source_entries(package_dir):
            if name in entries:
                raise PackagingError(f"{name} is both in {package_dir} and in a wheel; rename it")
            entries[name] = data
    target = build_dir / f"{source_dir.name}-{architecture}.zip"
    return LambdaPackage(path=target, sha256_hex=write_deterministic_zip(entries, target))
