"""The migration image, checked without Docker: Dockerfile, pins, imports, the CA bundle fetcher."""

from __future__ import annotations

import ast
import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from migrator import cabundle
from pgbouncer.tls import write_self_signed
from tests.migrator.support import REPO_ROOT

FOLDER = REPO_ROOT / "migrator"
DOCKERFILE = (FOLDER / "Dockerfile").read_text()


def instructions(keyword: str) -> list[str]:
    """Arguments of every ``keyword`` instruction, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(f"{keyword} ")]


def test_dockerfile_shape() -> None:
    assert instructions("FROM") == ["python:3.12-slim-bookworm"]
    assert [json.loads(cmd) for cmd in instructions("CMD")] == [["python", "-m", "migrator"]]
    (user,) = instructions("USER")
    assert not user.startswith(("0", "root")) and user.split(":")[0].isdigit()
    assert instructions("WORKDIR") == ["/app"]  # python -m finds /app/migrator from here
    assert "COPY --chown=root:root . /app/migrator/" in DOCKERFILE
    assert "COPY --chown=root:root shared/ /app/" in DOCKERFILE  # the one redactor, beside the package
    (install,) = [run for run in instructions("RUN") if "pip install" in run]
    assert "--require-hashes" in install and "-r /tmp/requirements.txt" in install


def test_dockerfile_fetches_the_rds_bundle_where_the_direct_url_points() -> None:
    assert f"ARG RDS_CA_BUNDLE_URL={cabundle.RDS_CA_BUNDLE_URL}" in DOCKERFILE
    (fetch,) = [run for run in instructions("RUN") if "cabundle.py" in run]
    assert f'python /tmp/cabundle.py "${{RDS_CA_BUNDLE_URL}}" {cabundle.RDS_CA_BUNDLE_PATH}' in fetch
    assert str(cabundle.RDS_CA_BUNDLE_PATH) == "/etc/ssl/certs/rds-global-bundle.pem"


def test_requirements_are_pinned_with_hashes() -> None:
    # Pins only, not compared with whatever happens to be installed (that turned CI red on every
    # boto3 release); the kit's own environment is pinned by uv.lock.
    text = re.sub(r"\\\n\s*", " ", (FOLDER / "requirements.txt").read_text())
    pins: dict[str, tuple[str, int]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        requirement, *hashes = line.split(" --hash=sha256:")
        name, pinned = requirement.strip().split("==")
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h.strip()) for h in hashes), name
        pins[name] = (pinned, len(hashes))
    assert {"psycopg", "psycopg-binary", "boto3", "botocore"} <= set(pins)
    assert pins["psycopg-binary"][0] == pins["psycopg"][0]
    assert pins["psycopg-binary"][1] == 2  # x86_64 and aarch64 wheels


def test_dockerignore_keeps_caches_out() -> None:
    ignored = (FOLDER / ".dockerignore").read_text().split()
    assert "**/__pycache__" in ignored and "**/*.pyc" in ignored


def test_package_imports_only_stdlib_psycopg_and_boto3() -> None:
    allowed = set(sys.stdlib_module_names) | {
        "psycopg", "boto3", "botocore", "migrator", "mypy_boto3_secretsmanager", "redaction",
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
