"""Static checks of the pooler image: no Docker engine here, so the Dockerfile is read, not built.

Each check ties the image to the code that depends on it: the pinned release to the renderer's
version table, the CA bundle path and port to the settings defaults, the entrypoint to the module
that execs PgBouncer.
"""

from __future__ import annotations

import ast
import fnmatch
import inspect
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

from pgbouncer import entrypoint
from pgbouncer.settings import IMAGE_SOCKET_DIR, PoolerSettings, Upstream
from pgbouncer.versions import PINNED

PACKAGE = Path(entrypoint.__file__).resolve().parent
DOCKERFILE = PACKAGE / "Dockerfile"
REQUIREMENTS = PACKAGE / "requirements-image.txt"
DEFAULTS = PoolerSettings(upstream=Upstream(host="db.example.com", dbname="app"), default_pool_size=1)

Instruction = dict[str, Any]


@pytest.fixture(scope="module")
def structure() -> list[Instruction]:
    return [i for i in DockerfileParser(path=str(DOCKERFILE)).structure if i["instruction"] != "COMMENT"]


def global_args(structure: list[Instruction]) -> dict[str, str]:
    """``ARG`` defaults declared before the first ``FROM`` (visible to every stage that re-declares them)."""
    args: dict[str, str] = {}
    for item in structure:
        if item["instruction"] == "FROM":
            break
        if item["instruction"] == "ARG":
            name, _, default = item["value"].partition("=")
            args[name] = default
    return args


def stages(structure: list[Instruction]) -> dict[str, list[Instruction]]:
    """Instructions of each stage, by its ``AS`` name."""
    result: dict[str, list[Instruction]] = {}
    current: list[Instruction] | None = None
    for item in structure:
        if item["instruction"] == "FROM":
            words = item["value"].split()
            assert len(words) == 3 and words[1].upper() == "AS", f"unnamed stage: {item['value']}"
            current = result.setdefault(words[2], [item])
        elif current is not None:
            current.append(item)
    return result


def values(items: list[Instruction], instruction: str) -> list[str]:
    return [item["value"] for item in items if item["instruction"] == instruction]


def test_two_stages_build_then_python_runtime(structure: list[Instruction]) -> None:
    by_name = stages(structure)
    assert list(by_name) == ["build", "runtime"]
    assert by_name["runtime"][0]["value"].split()[0] == "python:3.12-slim-bookworm"
    # Build against bookworm's libraries: the runtime stage installs the same sonames.
    assert by_name["build"][0]["value"].split()[0] == "debian:bookworm-slim"
    build_runs = " ".join(values(by_name["build"], "RUN"))
    for dev_package in ("libevent-dev", "libssl-dev", "libc-ares-dev"):
        assert dev_package in build_runs
    assert "--with-cares" in build_runs and "--with-openssl" in build_runs
    runtime_runs = " ".join(values(by_name["runtime"], "RUN"))
    for library in ("libevent-2.1-7", "libssl3", "libc-ares2"):
        assert library in runtime_runs
    assert "gcc" not in runtime_runs and "-dev" not in runtime_runs
    assert "--from=build /build/pgbouncer /usr/local/bin/pgbouncer" in values(by_name["runtime"], "COPY")


def test_pinned_release_is_the_one_the_renderer_targets(structure: list[Instruction]) -> None:
    assert global_args(structure)["PGBOUNCER_VERSION"] == PINNED
    # A build-time check that the binary really is that release.
    build_runs = " ".join(values(stages(structure)["build"], "RUN"))
    assert 'pgbouncer --version | grep -qx "PgBouncer ${PGBOUNCER_VERSION}"' in build_runs


def test_tarball_is_verified_with_sha256_before_it_is_unpacked(structure: list[Instruction]) -> None:
    args = global_args(structure)
    assert re.fullmatch(r"[0-9a-f]{64}", args["PGBOUNCER_SHA256"])
    build = stages(structure)["build"]
    # An ARG declared before FROM is empty inside a stage unless re-declared there.
    assert {"PGBOUNCER_VERSION", "PGBOUNCER_SHA256"} <= set(values(build, "ARG"))
    download = next(run for run in values(build, "RUN") if "pgbouncer.tar.gz" in run)
    url = "https://www.pgbouncer.org/downloads/files/${PGBOUNCER_VERSION}/pgbouncer-${PGBOUNCER_VERSION}.tar.gz"
    assert f'"{url}"' in download
    assert "--fail" in download and "--proto '=https'" in download
    check = 'echo "${PGBOUNCER_SHA256}  pgbouncer.tar.gz" | sha256sum -c -'
    assert check in download
    assert download.index(check) < download.index("tar -xzf pgbouncer.tar.gz")
    # Every step is chained with &&, so a failed check stops the build.
    assert ";" not in download.replace("';'", "")


def test_runs_as_a_fixed_non_root_user_that_owns_the_run_dir(structure: list[Instruction]) -> None:
    runtime = stages(structure)["runtime"]
    users = values(runtime, "USER")
    assert users, "the runtime stage must set USER"
    user, _, group = users[-1].partition(":")
    assert user not in ("root", "0") and group not in ("root", "0")
    assert user.isdigit(), "a numeric uid lets runAsNonRoot-style checks prove it is not root"
    setup = " ".join(values(runtime, "RUN"))
    assert f"--uid {user}" in setup and f"--gid {group}" in setup
    run_dir = Path(DEFAULTS.auth_file).parent
    assert run_dir == inspect.signature(entrypoint.main).parameters["run_dir"].default
    assert f"install -d -o pgbouncer -g pgbouncer -m 0700 {run_dir}" in setup


def test_socket_dir_is_a_volume_the_runtime_user_owns(structure: list[Instruction]) -> None:
    """The metrics sidecar reaches PgBouncer's socket through a task volume mounted at this path.

    On Fargate that volume is root-owned unless the image declares the same path a VOLUME owned by
    the runtime user (ECS then copies the directory in); PgBouncer runs as that user and must
    create its socket there. Parent directories are real (no symlink like /var/run -> /run),
    because ECS compares the VOLUME path with the task's containerPath as text.
    """
    runtime = stages(structure)["runtime"]
    user = values(runtime, "USER")[-1].partition(":")[0]
    setup = " ".join(values(runtime, "RUN"))
    assert f"--uid {user} --gid pgbouncer" in setup
    # 0750: PgBouncer (owner) creates the socket, nobody outside uid/gid 10001 can reach it.
    assert f"install -d -o pgbouncer -g pgbouncer -m 0750 {IMAGE_SOCKET_DIR}" in setup
    volumes = [json.loads(v) if v.startswith("[") else v.split() for v in values(runtime, "VOLUME")]
    # The run directory (rendered ini, userlist.txt, TLS pair) too: the task's root filesystem is read-only.
    assert volumes == [[str(Path(DEFAULTS.auth_file).parent), IMAGE_SOCKET_DIR]]
    assert not IMAGE_SOCKET_DIR.startswith("/var/run/")
    # Declared after the directory is created and owned: changes to a VOLUME path after the
    # VOLUME instruction are discarded by the build.
    runtime_order = [i["instruction"] for i in runtime]
    creates = next(n for n, i in enumerate(runtime) if i["instruction"] == "RUN" and IMAGE_SOCKET_DIR in i["value"])
    assert creates < runtime_order.index("VOLUME")
    assert all(IMAGE_SOCKET_DIR not in i["value"] for i in runtime[runtime_order.index("VOLUME") + 1:]
               if i["instruction"] == "RUN")


def test_stop_signal_lets_transactions_finish(structure: list[Instruction]) -> None:
    assert values(structure, "STOPSIGNAL") == ["SIGINT"]


def test_entrypoint_execs_the_python_entrypoint(structure: list[Instruction]) -> None:
    entrypoints = values(structure, "ENTRYPOINT")
    assert len(entrypoints) == 1
    # Exec form: a shell form would make /bin/sh PID 1, and sh does not pass SIGINT on.
    assert json.loads(entrypoints[0]) == ["python", "-m", "pgbouncer.entrypoint"]
    assert values(structure, "CMD") == []
    # ... and the module ends by replacing itself with PgBouncer.
    tree = ast.parse(inspect.getsource(entrypoint.main))
    last = tree.body[0].body[-1]  # type: ignore[attr-defined]
    assert isinstance(last, ast.Expr) and ast.unparse(last.value).startswith("os.execvp('pgbouncer'")


def test_python_package_is_installed_where_the_entrypoint_imports_it(structure: list[Instruction]) -> None:
    runtime = stages(structure)["runtime"]
    assert "--chown=root:root . /app/pgbouncer/" in values(runtime, "COPY")
    envs = " ".join(values(runtime, "ENV"))
    assert "PYTHONPATH=/app" in envs.split()
    assert values(runtime, "WORKDIR")[-1] == "/app"


def test_ca_bundle_is_where_the_settings_look_for_it(structure: list[Instruction]) -> None:
    copies = values(stages(structure)["runtime"], "COPY")
    destinations = [shlex.split(copy)[-1] for copy in copies]
    assert DEFAULTS.server_tls_ca_file in destinations
    assert global_args(structure)["RDS_CA_BUNDLE_URL"] == "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"


def test_exposes_the_listen_port(structure: list[Instruction]) -> None:
    assert values(structure, "EXPOSE") == [str(DEFAULTS.listen_port)]


def _requirements() -> dict[str, tuple[str, list[str]]]:
    """``name -> (version, hashes)`` from requirements-image.txt (continuation lines joined)."""
    text = REQUIREMENTS.read_text().replace("\\\n", " ")
    result: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *options = line.split()
        name, sep, version = spec.partition("==")
        assert sep and re.fullmatch(r"[0-9][0-9A-Za-z.]*", version), f"{spec} is not pinned with =="
        hashes = [option.removeprefix("--hash=sha256:") for option in options]
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), f"{name}: malformed --hash"
        result[name.lower()] = (version, hashes)
    return result


def test_image_requirements_are_pinned_with_hashes(structure: list[Instruction]) -> None:
    requirements = _requirements()
    assert all(hashes for _, hashes in requirements.values())
    assert "cryptography" in requirements
    # Every pinned package's own dependencies must be pinned too, or --require-hashes fails the build.
    assert {"cffi", "pycparser"} <= set(requirements)
    install = next(run for run in values(stages(structure)["runtime"], "RUN") if "pip install" in run)
    assert "--require-hashes" in install and "-r /tmp/requirements-image.txt" in install


def test_every_third_party_import_of_the_package_is_in_the_image() -> None:
    imported: set[str] = set()
    for source in PACKAGE.rglob("*.py"):  # subpackages too: the metrics sidecar runs from this image
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"__future__", "pgbouncer"}
    assert third_party <= set(_requirements()), f"not installed in the image: {sorted(third_party)}"
    if "psycopg" in third_party:
        # The slim image has no libpq: psycopg needs the binary wheel, which bundles it.
        assert _requirements()["psycopg-binary"][0] == _requirements()["psycopg"][0]


def test_dockerignore_keeps_what_the_image_needs() -> None:
    patterns = [
        line.strip() for line in (PACKAGE / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    needed = ["requirements-image.txt", *(path.name for path in PACKAGE.glob("*.py"))]
    excluded = [name for name in needed if any(fnmatch.fnmatch(name, p.removeprefix("**/")) for p in patterns)]
    assert excluded == []
    assert any(fnmatch.fnmatch("x/__pycache__", p.replace("**/", "*/")) for p in patterns)
