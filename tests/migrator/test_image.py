"""The migration image's parts that run without Docker: imports, .dockerignore, the CA bundle fetcher.

The image itself is built and run in tests/images (test_images.py, test_migration_task.py).
"""

from __future__ import annotations

import ast
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from lifeguard.aws.build_context import SHARED_PACKAGE_NAMES
from migrator import cabundle
from pgbouncer.tls import write_self_signed
from tests.migrator.support import REPO_ROOT

FOLDER = REPO_ROOT / "migrator"


def test_dockerignore_keeps_caches_out() -> None:
    ignored = (FOLDER / ".dockerignore").read_text().split()
    assert "**/__pycache__" in ignored and "**/*.pyc" in ignored


def test_package_imports_only_stdlib_psycopg_and_boto3() -> None:
    allowed = set(sys.stdlib_module_names) | {
        "psycopg", "boto3", "botocore", "migrator", "mypy_boto3_secretsmanager", *SHARED_PACKAGE_NAMES,
    }
    found: dict[str, set[str]] = {}
    for path in FOLDER.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.name)
    assert {top: files for top, files in found.items() if top not in allowed} == {}
    assert {"psycopg", "migrator"} <= set(found)


def self_signed(directory: Path, name: str) -> bytes:
    return write_self_signed(directory, names=("localhost",), stem=name).cert_file.read_bytes()


def test_fetch_writes_a_checked_bundle(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(self_signed(tmp_path, "a") + self_signed(tmp_path, "b"))
    dest = tmp_path / "out" / "rds-global-bundle.pem"

    assert cabundle.fetch(bundle.as_uri(), dest) == 2
    assert dest.read_bytes() == bundle.read_bytes()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<html><body>Access denied</body></html>", "no certificate in it"),
        (b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n", "OpenSSL cannot load it"),
        ("caf\xe9".encode("latin-1"), "non-ASCII bytes"),
    ],
)
def test_fetch_refuses_what_is_not_a_bundle(tmp_path: Path, content: bytes, message: str) -> None:
    source = tmp_path / "download"
    source.write_bytes(content)
    dest = tmp_path / "dest.pem"
    with pytest.raises(cabundle.BundleError, match=message):
        cabundle.fetch(source.as_uri(), dest)
    assert not dest.exists()


def test_fetch_requires_https() -> None:
    with pytest.raises(cabundle.BundleError, match="must be https://"):
        cabundle.fetch("http://truststore.example/global-bundle.pem", Path("/nonexistent/x.pem"))


def test_cabundle_runs_as_a_standalone_script(tmp_path: Path) -> None:
    """The Dockerfile runs it from /tmp before the package exists: stdlib only, isolated mode."""
    script = tmp_path / "cabundle.py"
    script.write_text((FOLDER / "cabundle.py").read_text())
    source = tmp_path / "bundle.pem"
    source.write_bytes(self_signed(tmp_path, "ca"))
    dest = tmp_path / "certs" / "rds-global-bundle.pem"
    ok = subprocess.run([sys.executable, "-I", str(script), source.as_uri(), str(dest)], capture_output=True,
                        text=True, timeout=60, check=False, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "1 certificate(s)" in ok.stdout and dest.exists()

    (tmp_path / "html").write_text("<html></html>")
    bad = subprocess.run([sys.executable, "-I", str(script), (tmp_path / "html").as_uri(), str(tmp_path / "x.pem")],
                         capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)
    assert bad.returncode == 1 and "no certificate in it" in bad.stderr
