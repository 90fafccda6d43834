"""The function zip: reproducible bytes, the expected layout, Linux wheels for the target CPU."""

from __future__ import annotations

import ast
import os
import shutil
import struct
import zipfile
from pathlib import Path

import pytest

from infra import SAMPLE_REQUIREMENTS
from lifeguard.aws.lambda_package import (
    PackagingError,
    Pin,
    build,
    download_wheels,
    read_requirements,
    write_deterministic_zip,
)
from tests.infra.infra_harness import REPO_ROOT

ELF_MACHINE = {"x86_64": 62, "arm64": 183}  # EM_X86_64, EM_AARCH64
WHEEL_ARCH = {"x86_64": "x86_64", "arm64": "aarch64"}


def copy_sources(target: Path) -> Path:
    """A copy of ``lambdas/`` with fresh timestamps (copy, not copy2) and a stray bytecode cache."""
    shutil.copytree(REPO_ROOT / "lambdas", target, copy_function=shutil.copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    cache = target / "__pycache__"
    cache.mkdir()
    (cache / "db.cpython-312.pyc").write_bytes(os.urandom(64))
    return target


@pytest.fixture(scope="module")
def x86_zip(build_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    sources = copy_sources(tmp_path_factory.mktemp("first") / "lambdas")
    return build(sources, "x86_64", build_dir, SAMPLE_REQUIREMENTS).path.read_bytes()


def test_same_sources_give_the_same_bytes(x86_zip: bytes, build_dir: Path, tmp_path: Path) -> None:
    # Another copy elsewhere, with other timestamps and another stray .pyc: not one byte differs.
    sources = copy_sources(tmp_path / "second" / "lambdas")
    os.utime(sources / "db.py", (0, 0))
    package = build(sources, "x86_64", build_dir, SAMPLE_REQUIREMENTS)
    assert package.path.read_bytes() == x86_zip
    assert package.sha256_hex == build(sources, "x86_64", build_dir, SAMPLE_REQUIREMENTS).sha256_hex


def test_a_changed_source_changes_the_hash(x86_zip: bytes, build_dir: Path, tmp_path: Path) -> None:
    sources = copy_sources(tmp_path / "lambdas")
    with (sources / "db.py").open("a") as handle:
        handle.write("\n# changed\n")
    assert build(sources, "x86_64", build_dir, SAMPLE_REQUIREMENTS).path.read_bytes() != x86_zip


def test_source_code_hash_is_lambdas_code_sha256(build_dir: Path, tmp_path: Path) -> None:
    import base64
    import hashlib

    package = build(copy_sources(tmp_path / "lambdas"), "x86_64", build_dir, SAMPLE_REQUIREMENTS)
    assert package.base64_sha256 == base64.b64encode(hashlib.sha256(package.path.read_bytes()).digest()).decode()


def test_archive_entries_are_sorted_with_fixed_time_and_mode(x86_zip: bytes, tmp_path: Path) -> None:
    archive_path = tmp_path / "a.zip"
    archive_path.write_bytes(x86_zip)
    with zipfile.ZipFile(archive_path) as archive:
        infos = archive.infolist()
        names = [i.filename for i in infos]
        assert names == sorted(names)
        assert len(names) == len(set(names))
        for info in infos:
            assert info.date_time == (1980, 1, 1, 0, 0, 0), info.filename
            assert info.external_attr >> 16 == 0o100644, info.filename
            assert info.create_system == 3
        assert archive.testzip() is None


def test_archive_holds_the_handlers_and_no_bytecode(x86_zip: bytes, tmp_path: Path) -> None:
    archive_path = tmp_path / "a.zip"
    archive_path.write_bytes(x86_zip)
    with zipfile.ZipFile(archive_path) as archive:
        names = set(archive.namelist())
        sources = {f"lambdas/{p.relative_to(REPO_ROOT / 'lambdas').as_posix()}"
                   for p in (REPO_ROOT / "lambdas").rglob("*.py") if "__pycache__" not in p.parts}
        assert sources <= names
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        for module in ("lambdas/read_invoices.py", "lambdas/charge_credits.py"):
            tree = ast.parse(archive.read(module))
            assert "handler" in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, module
        # The shared packages ship beside the handlers, which import them.
        assert {"redaction/__init__.py", "database_urls/__init__.py"} <= names
        # psycopg at the import root, where Lambda looks; typing-extensions is psycopg's dependency
        # only below Python 3.13, so the python3.13 runtime's zip leaves it out.
        assert "psycopg/__init__.py" in names
        assert "typing_extensions.py" not in names


def elf_machine(data: bytes) -> int:
    assert data[:4] == b"\x7fELF", "not an ELF shared object"
    little_endian = data[5] == 1
    machine: int = struct.unpack("<H" if little_endian else ">H", data[18:20])[0]
    return machine


@pytest.mark.parametrize("architecture", ["x86_64", "arm64"])
def test_wheels_are_linux_builds_for_the_architecture(architecture: str, build_dir: Path, tmp_path: Path) -> None:
    package = build(copy_sources(tmp_path / "lambdas"), architecture, build_dir, SAMPLE_REQUIREMENTS)  # type: ignore[arg-type]
    with zipfile.ZipFile(package.path) as archive:
        names = archive.namelist()
        shared = [n for n in names if n.startswith("psycopg_binary") and ".so" in n.rsplit("/", 1)[-1]]
        assert any(n.startswith("psycopg_binary/_psycopg") for n in shared), shared
        for name in shared:
            assert elf_machine(archive.read(name)) == ELF_MACHINE[architecture], name
        [wheel_file] = [n for n in names if n.startswith("psycopg_binary-") and n.endswith(".dist-info/WHEEL")]
        tags = [line.split(": ", 1)[1] for line in archive.read(wheel_file).decode().splitlines()
                if line.startswith("Tag: ")]
        assert tags and all(t.startswith("cp313-cp313-manylinux") and t.endswith(WHEEL_ARCH[architecture])
                            for t in tags), tags
    assert package.path.name == f"lambdas-{architecture}.zip"


def test_requirements_are_pinned_with_hashes(tmp_path: Path) -> None:
    pins = read_requirements("x86_64", SAMPLE_REQUIREMENTS)
    assert {p.name for p in pins} >= {"psycopg", "psycopg-binary"}
    assert all(p.hashes for p in pins)
    sha = "0" * 64
    loose = tmp_path / "loose.txt"
    loose.write_text(f"psycopg>=3.2 --hash=sha256:{sha}\n")
    with pytest.raises(PackagingError, match="pinned"):
        read_requirements("x86_64", loose)
    unhashed = tmp_path / "unhashed.txt"
    unhashed.write_text("psycopg==3.2.1\n")
    with pytest.raises(PackagingError, match="no --hash"):
        read_requirements("x86_64", unhashed)


def test_requirements_markers_are_evaluated_for_the_lambda_runtime(tmp_path: Path) -> None:
    sha = "0" * 64
    exported = tmp_path / "requirements.txt"
    exported.write_text(
        f"a==1 \\\n    --hash=sha256:{sha}\n    # via b\n"
        f"b==2 ; sys_platform == 'win32' \\\n    --hash=sha256:{sha}\n"
        f"c==3 ; python_full_version < '3.13' and platform_machine == 'aarch64' \\\n    --hash=sha256:{sha}\n"
    )
    assert [(p.name, p.version, p.hashes) for p in read_requirements("x86_64", exported)] == [("a", "1", (sha,))]
    assert [p.name for p in read_requirements("arm64", exported, python_version="3.12")] == ["a", "c"]
    assert [p.name for p in read_requirements("arm64", exported)] == ["a"]  # the python3.13 runtime


def test_a_wheel_that_does_not_match_its_hash_is_refused(tmp_path: Path) -> None:
    [psycopg] = [p for p in read_requirements("x86_64", SAMPLE_REQUIREMENTS) if p.name == "psycopg"]
    tampered = Pin(psycopg.name, psycopg.version, ("0" * 64,))
    with pytest.raises(PackagingError, match="DO NOT MATCH THE HASHES"):
        download_wheels([tampered], "x86_64", tmp_path)


def test_a_folder_that_is_not_a_package_is_refused(tmp_path: Path, build_dir: Path) -> None:
    (tmp_path / "lambdas").mkdir()
    with pytest.raises(PackagingError, match="not a Python package"):
        build(tmp_path / "lambdas", "x86_64", build_dir, SAMPLE_REQUIREMENTS)


def test_zip_writer_is_order_independent(tmp_path: Path) -> None:
    entries = {"b.py": b"b", "a/x.py": b"x", "a.py": b"a"}
    first = write_deterministic_zip(entries, tmp_path / "one.zip")
    second = write_deterministic_zip(dict(reversed(list(entries.items()))), tmp_path / "two.zip")
    assert first == second
    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "two.zip").read_bytes()
