"""Both images, built from their Dockerfiles: what is in them and how they are configured to run."""

from __future__ import annotations

import ast
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from lifeguard.aws.build_context import build_context, shared_packages
from lifeguard.stack.containers import BuiltImages, serve_on_loopback
from lifeguard.stack.docker_engine import DockerEngine, EngineError
from lifeguard.stack.pgbouncer_install import install_dir
from pgbouncer.contract import IMAGE_RUN_DIR, IMAGE_SOCKET_DIR
from pgbouncer.debian_package import host_arch
from pgbouncer.settings import PoolerSettings, Upstream
from pgbouncer.versions import PINNED, SHIPPED_PACKAGE
from tests.images.support import step_output
from tests.infra.infra_harness import REPO_ROOT

DEFAULTS = PoolerSettings(upstream=Upstream(host="db.example.com", dbname="app"), default_pool_size=1)


def third_party_imports(package: Path) -> set[str]:
    imported: set[str] = set()
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    return imported - set(sys.stdlib_module_names) - {"__future__", package.name, "mypy_boto3_secretsmanager"}


def inspect_config(engine: DockerEngine, image: str) -> dict[str, Any]:
    return dict(json.loads(engine.docker("image", "inspect", "--format", "{{json .Config}}", image).stdout))


# Runs in the image as its user: what PgBouncer and the entrypoint rely on.
PROBE = """
import importlib, json, os, shutil, stat, subprocess, sys
paths = sys.argv[2:]
report = {"uid": os.getuid(), "gid": os.getgid(), "imports": {}, "dirs": {}, "compilers": [],
          "writable": [p for p in paths if os.access(p, os.W_OK)]}
for name in sys.argv[1].split(","):
    try:
        importlib.import_module(name)
        report["imports"][name] = "ok"
    except Exception as exc:
        report["imports"][name] = repr(exc)
for path in WRITTEN_DIRS:
    if os.path.exists(path):
        st = os.stat(path)
        report["dirs"][path] = [st.st_uid, st.st_gid, oct(stat.S_IMODE(st.st_mode))]
report["compilers"] = [c for c in ("gcc", "cc", "make") if shutil.which(c)]
if shutil.which("pgbouncer"):
    report["pgbouncer"] = subprocess.run(["pgbouncer", "--version"], capture_output=True, text=True).stdout
    report["pgbouncer_package"] = subprocess.run(["dpkg-query", "--show", "--showformat=${Version}", "pgbouncer"],
                                                 capture_output=True, text=True).stdout
sources = [os.path.join("/etc/apt/sources.list.d", n) for n in os.listdir("/etc/apt/sources.list.d")]
report["apt_sources"] = "".join(open(p).read() for p in ["/etc/apt/sources.list", *sources] if os.path.isfile(p))
print(json.dumps(report))
""".replace("WRITTEN_DIRS", repr((IMAGE_RUN_DIR, IMAGE_SOCKET_DIR)))


def probe(engine: DockerEngine, image: str, modules: set[str], paths: list[str]) -> dict[str, Any]:
    result = engine.docker("run", "--rm", "--network", "none", "--entrypoint", "python3", image,
                           "-c", PROBE, ",".join(sorted(modules)), *paths)
    return dict(json.loads(result.stdout))


def test_pooler_image_runs_pgbouncer_as_its_fixed_user(engine: DockerEngine, images: BuiltImages) -> None:
    config = inspect_config(engine, images.pooler)
    assert config["User"] == "10001:10001"
    # Exec form: a shell form would make /bin/sh PID 1, and sh does not pass SIGINT on.
    assert config["Entrypoint"] == ["python3", "-m", "pgbouncer.entrypoint"] and not config.get("Cmd")
    assert config["StopSignal"] == "SIGINT"
    # Both directories PgBouncer writes under a read-only root: the task mounts its volumes there, and a
    # VOLUME is what makes a fresh task volume take the image's owner and mode.
    assert config["Volumes"] == {IMAGE_RUN_DIR: {}, IMAGE_SOCKET_DIR: {}}
    assert config["ExposedPorts"] == {f"{DEFAULTS.listen_port}/tcp": {}}
    assert config["WorkingDir"] == "/app" and "PYTHONPATH=/app" in config["Env"]


def test_pooler_image_holds_the_pinned_pgbouncer_and_every_import(engine: DockerEngine, images: BuiltImages) -> None:
    package = REPO_ROOT / "pgbouncer"
    modules = third_party_imports(package) | {"pgbouncer.entrypoint", "pgbouncer.metrics.publisher"}
    report = probe(engine, images.pooler, modules, ["/app/pgbouncer", "/app/pgbouncer/entrypoint.py",
                                                    DEFAULTS.server_tls_ca_file])
    assert str(report["pgbouncer"]).splitlines()[0] == f"PgBouncer {PINNED}"
    # Debian forky's package, installed with Debian 13's dependencies: forky is no apt source here.
    assert report["pgbouncer_package"] == SHIPPED_PACKAGE.version
    assert "trixie" in report["apt_sources"] and "forky" not in report["apt_sources"]
    assert set(report["imports"].values()) == {"ok"}, report["imports"]
    assert report["uid"] == 10001 and report["gid"] == 10001
    # The run dir holds the auth file and TLS key (0700); the socket dir is shared with the sidecar (0750).
    assert report["dirs"] == {IMAGE_RUN_DIR: [10001, 10001, "0o700"],
                              IMAGE_SOCKET_DIR: [10001, 10001, "0o750"]}
    assert report["writable"] == [] and report["compilers"] == []


def test_migrator_image_runs_the_package_as_its_fixed_user(engine: DockerEngine, images: BuiltImages) -> None:
    config = inspect_config(engine, images.migrator)
    assert config["User"] == "10001:10001"
    assert config["Cmd"] == ["python3", "-m", "migrator"] and config["WorkingDir"] == "/app"
    modules = third_party_imports(REPO_ROOT / "migrator") | {"migrator.cli", "migrator.source"}
    assert {"psycopg", "boto3"} <= modules
    report = probe(engine, images.migrator, modules, ["/app/migrator", "/app/migrator/cli.py",
                                                      "/etc/ssl/certs/rds-global-bundle.pem"])
    assert set(report["imports"].values()) == {"ok"}, report["imports"]
    assert report["uid"] == 10001 and report["writable"] == [] and report["compilers"] == []


def test_pooler_build_fails_unless_pgbouncer_is_the_pinned_release(
    engine: DockerEngine, images: BuiltImages, rds_cert: tuple[Path, Path], tmp_path: Path
) -> None:
    context = tmp_path / "pgbouncer"
    shutil.copytree(REPO_ROOT / "pgbouncer", context, ignore=shutil.ignore_patterns("__pycache__"))
    versions = context / "versions.py"
    text = versions.read_text()
    assert "PINNED = SHIPPED_PACKAGE.release\n" in text
    versions.write_text(text.replace("PINNED = SHIPPED_PACKAGE.release\n", 'PINNED = "1.18.0"\n'))
    with serve_on_loopback(rds_cert[0], engine.root / "ca-bundle.port") as url, pytest.raises(EngineError) as failed:
        engine.build(context, "lifeguard-pgbouncer:wrong-pin", {"RDS_CA_BUNDLE_URL": url})
    assert f"this image has 'PgBouncer {PINNED}', but the renderer targets PgBouncer 1.18.0" in str(failed.value)


def test_pooler_build_refuses_a_pgbouncer_package_with_another_digest(
    engine: DockerEngine, images: BuiltImages, rds_cert: tuple[Path, Path], tmp_path: Path
) -> None:
    """PGBOUNCER_DEB_URL takes the .deb from elsewhere (a snapshot archive), but the pinned SHA256 decides:
    the real package with one byte appended fails the build."""
    arch = host_arch()
    tampered = tmp_path / "served" / SHIPPED_PACKAGE.filename(arch)
    tampered.parent.mkdir()
    tampered.write_bytes((install_dir() / SHIPPED_PACKAGE.filename(arch)).read_bytes() + b"\0")
    with (serve_on_loopback(tampered, tmp_path / "port") as deb_url,
          serve_on_loopback(rds_cert[0], engine.root / "ca-bundle.port") as ca_url,
          pytest.raises(EngineError) as failed):
        engine.build(REPO_ROOT / "pgbouncer", "lifeguard-pgbouncer:tampered",
                     {"RDS_CA_BUNDLE_URL": ca_url, "PGBOUNCER_DEB_URL": deb_url})
    assert f"is pinned to {SHIPPED_PACKAGE.digest(arch)}" in str(failed.value) and "refusing it" in str(failed.value)


@pytest.mark.parametrize(("folder", "message"), [
    ("pgbouncer", "RDS_CA_BUNDLE_URL did not give a PEM bundle of certificates"),
    ("migrator", "not a PEM bundle: no certificate in it"),
])
def test_builds_refuse_a_ca_bundle_that_is_not_one(
    engine: DockerEngine, images: BuiltImages, tmp_path: Path, folder: str, message: str
) -> None:
    # The contexts the images are built from: the migrator's is staged with the shared packages.
    contexts = {"pgbouncer": REPO_ROOT / "pgbouncer",
                "migrator": build_context(REPO_ROOT / "migrator", shared_packages())}
    page = tmp_path / "bundle.pem"
    page.write_text("<html><body>Access denied</body></html>\n")
    with serve_on_loopback(page, tmp_path / "port") as url, pytest.raises(EngineError) as failed:
        engine.build(contexts[folder], f"lifeguard-{folder}:bad-bundle", {"RDS_CA_BUNDLE_URL": url})
    # Refused by the bundle check's own words, not by some other failure of the step.
    assert message in step_output(str(failed.value)), str(failed.value)


def test_step_output_drops_the_echoed_commands() -> None:
    """What the refusal test reads: a message in a RUN line is echoed by Docker, so it does not count."""
    error = ("docker build failed (1): Step 12/15 : RUN test -s x || { echo \"not a bundle\" >&2; exit 1; }\n"
             " ---> Running in 0123abcd\n"
             "The command '/bin/sh -c test -s x || { echo \"not a bundle\" >&2; exit 1; }' returned a non-zero code: 1")
    assert "not a bundle" not in step_output(error)
    assert "not a bundle" in step_output(error.replace(" ---> Running in 0123abcd", "not a bundle"))


@pytest.mark.parametrize("folder", ["pgbouncer", "migrator"])
def test_dockerfile_needs_no_frontend_image(folder: str) -> None:
    # `# syntax=` makes every build pull a frontend image from Docker Hub.
    assert "syntax=" not in (REPO_ROOT / folder / "Dockerfile").read_text()
