"""The lifeguard distribution as a user gets it: a wheel built from this checkout, installed into a fresh
virtualenv outside the repository, with the `infra` extra exactly as uv.lock pins it.

Nothing here runs in the tested virtualenv's interpreter but that interpreter itself: the tests hand it
programs and read back what they printed or wrote.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
UV = REPO_ROOT / "scripts" / "uv"
# Top-level packages the wheel installs (pyproject's [tool.setuptools.packages.find] include).
INSTALLED_PACKAGES = ("lifeguard", "pgbouncer", "lambdas", "migrator", "redaction", "database_urls")
# What the Pulumi mocks import besides the infra extra (tests/infra/tls_mocks.py makes real PEMs): put on
# the runner's PYTHONPATH from a folder of their own, never installed into the tested site-packages.
MOCK_DISTRIBUTIONS = ("cryptography", "cffi", "pycparser")
# Copied for the runner: the strict mocks and the runner itself (tests/ is not in the wheel).
HARNESS_FILES = ("tests/__init__.py", "tests/infra/__init__.py", "tests/infra/infra_harness.py",
                 "tests/infra/tls_mocks.py", "tests/examples/__init__.py", "tests/examples/runner.py")


@dataclass
class Installed:
    """A virtualenv holding the built wheel, and what it took to make it."""

    wheel: Path
    venv: Path
    harness: Path
    """PYTHONPATH for the mock runner: the copied harness, then the mocks' own dependencies."""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def site_packages(self) -> Path:
        [site] = self.venv.glob("lib/python3*/site-packages")
        return site

    def run(self, args: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """The venv's python with ``args``, in ``cwd``, with nothing of the repository in its environment."""
        return subprocess.run([str(self.python), *args], cwd=cwd, env=clean_env(env), text=True,
                              capture_output=True, timeout=timeout, check=False)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment without anything that would put the repository or its venv on a path."""
    dropped = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "UV_PROJECT_ENVIRONMENT"}
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("PULUMI_")}
    # The repository's venv must not lead PATH: a `python` or `node` found there would be the repository's.
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(str(REPO_ROOT)))
    env.update(extra or {})
    return env


def source_files(root: Path = REPO_ROOT) -> list[str]:
    """What a fresh clone of this checkout holds: tracked files, plus new files not ignored (yet to commit)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=root, capture_output=True, check=True).stdout.decode()
    return sorted(name for name in listed.split("\0") if name and (root / name).is_file())


def build_wheel(out: Path) -> Path:
    """A wheel built as the README says (``scripts/uv build``: an sdist, then the wheel from it), from a copy
    of the checkout's files, as from a fresh clone.

    From a copy because setuptools writes its egg-info (and, building in place, build/lib, which it never
    cleans: a deleted file would still ship) into the source folder. Offline and without build isolation:
    the setuptools of the test's own virtualenv builds it.
    """
    source = out / "source"
    for name in source_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, source / name)
    wheels = out / "dist"
    subprocess.run([str(UV), "build", "--quiet", "--offline", "--no-build-isolation", "--python", sys.executable,
                    "--out-dir", str(wheels), str(source)], check=True, capture_output=True, text=True, cwd=out,
                   env=clean_env())
    [wheel] = wheels.glob("lifeguard-*.whl")
    return wheel


def wheel_key(wheel: Path) -> str:
    """The wheel's content (its RECORD: every file's path and sha256), not its zip's timestamps."""
    with zipfile.ZipFile(wheel) as archive:
        [record] = [n for n in archive.namelist() if n.endswith(".dist-info/RECORD")]
        return hashlib.sha256(archive.read(record)).hexdigest()


def install(wheel: Path, venv: Path) -> None:
    """A fresh virtualenv at ``venv``: the lock's `infra` extra (offline, from uv's cache), then the wheel.

    ``uv sync --locked`` installs exactly what uv.lock pins for the extra, hash-checked, and only reads the
    repository's lock; ``--no-install-project`` leaves the project out, so lifeguard comes from the wheel.
    """
    env = clean_env({"UV_PROJECT_ENVIRONMENT": str(venv)})
    subprocess.run([str(UV), "sync", "--locked", "--offline", "--quiet", "--no-dev", "--extra", "infra",
                    "--no-install-project"], cwd=REPO_ROOT, env=env, check=True, capture_output=True, text=True)
    subprocess.run([str(UV), "pip", "install", "--offline", "--quiet", "--no-deps", "--python",
                    str(venv / "bin" / "python"), str(wheel)], cwd=venv, env=clean_env(), check=True,
                   capture_output=True, text=True)


def copy_harness(target: Path) -> None:
    """The mock runner's files and the mocks' own dependencies, in a folder the runner puts on its path."""
    for name in HARNESS_FILES:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target / name)
    deps = target / "deps"
    for name in MOCK_DISTRIBUTIONS:
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # cffi/pycparser only where cryptography needs them
        for file in distribution.files or ():
            located = Path(str(distribution.locate_file(file)))
            if file.parts[0] == ".." or not located.is_file():
                continue  # scripts outside site-packages
            (deps / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(located, deps / file)


def prepare(root: Path) -> Installed:
    """Build the wheel and the virtualenv under ``root`` (a temporary folder outside the repository)."""
    assert not root.resolve().is_relative_to(REPO_ROOT), f"{root} must be outside the repository"
    timings: dict[str, float] = {}
    started = time.monotonic()
    wheel = build_wheel(root / "wheel")
    timings["build the wheel"] = time.monotonic() - started
    started = time.monotonic()
    # Named by the wheel's content: a session that builds the same files twice installs once.
    venv = root / f"venv-{wheel_key(wheel)[:16]}"
    if not (venv / "bin" / "python").exists():
        install(wheel, venv)
    timings["install it with the infra extra"] = time.monotonic() - started
    started = time.monotonic()
    harness = root / "harness"
    copy_harness(harness)
    timings["copy the mock harness"] = time.monotonic() - started
    return Installed(wheel=wheel, venv=venv, harness=harness, timings=timings)


def snapshot(folder: Path, skip: Sequence[str] = ()) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and mtime, to tell whether anything was written there.

    ``__pycache__`` is left out: the interpreter's own bytecode cache, not something the kit writes.
    """
    files: dict[str, tuple[int, int]] = {}
    for directory, subdirs, names in os.walk(folder):
        subdirs[:] = [d for d in subdirs if d != "__pycache__" and not any(
            (Path(directory) / d).resolve().is_relative_to(folder / s) for s in skip)]
        for name in names:
            path = Path(directory) / name
            stat = path.lstat()
            files[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns)
    return files
