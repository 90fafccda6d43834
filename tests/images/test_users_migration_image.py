"""Your own migration image (#25.3), both supported shapes built from their Dockerfiles in
docs/migration-images/ and run as the stack's migration task definition with ``migrationCommand``
(``python3 -m migrator run -- alembic upgrade head``) against the RDS stand-in:

* ``base-on-ours``: ``FROM`` our migrator image (``LIFEGUARD_MIGRATOR_IMAGE``), plus Alembic;
* ``add-our-package``: a plain Debian base with psycopg and Alembic, plus our wrapper package, staged in
  ``shared/`` as the stack stages it.

Each context holds the Alembic project the suite runs elsewhere (tests/migrator/tools/alembic_project).
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lifeguard.aws.build_context import build_context, shared_packages
from lifeguard.stack.containers import CA_BUNDLE_ARG, BuiltImages, serve_on_loopback
from lifeguard.stack.docker_engine import DockerEngine
from lifeguard.stack.ecs_run import TaskRun, machine_architecture, machine_nofile_ceiling, plan_task
from lifeguard.stack.postgres import PostgresCluster
from migrator.contract import BASE_IMAGE_ARG, wrapped_command
from migrator.contract import CONTAINER_NAME as MIGRATOR_CONTAINER
from tests.images.support import RenderedStack, cache_dir
from tests.infra.infra_harness import REPO_ROOT

SHAPES = ("base-on-ours", "add-our-package")
ALEMBIC_PROJECT = REPO_ROOT / "tests" / "migrator" / "tools" / "alembic_project"


def users_context(shape: str) -> Path:
    """The user's folder as the stack builds it: their Dockerfile and project, our package in shared/."""
    folder = cache_dir() / "users-migration-image" / shape
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "docs" / "migration-images" / shape / "Dockerfile", folder / "Dockerfile")
    shutil.copytree(ALEMBIC_PROJECT, folder / "alembic", ignore=shutil.ignore_patterns("__pycache__"))
    return build_context(folder, (REPO_ROOT / "migrator", *shared_packages()))


@pytest.fixture(scope="module")
def users_images(engine: DockerEngine, images: BuiltImages, rds_cert: tuple[Path, Path]) -> dict[str, str]:
    built = {}
    with serve_on_loopback(rds_cert[0], engine.root / "ca-bundle.port") as ca_url:
        for shape in SHAPES:
            tag = f"users-migrator-{shape}:test"
            engine.build(users_context(shape), tag, {BASE_IMAGE_ARG: images.migrator, CA_BUNDLE_ARG: ca_url})
            built[shape] = tag
    return built


@pytest.fixture
def clean_rds(rds: PostgresCluster, rendered: RenderedStack) -> Iterator[PostgresCluster]:
    """The RDS stand-in without what an earlier shape's Alembic run left."""
    def drop() -> None:
        with rds.connect_superuser(rendered.db_name) as conn:
            conn.execute("DROP TABLE IF EXISTS widgets, alembic_version")
    drop()
    yield rds
    drop()


@pytest.mark.parametrize("shape", SHAPES)
def test_the_users_image_runs_their_tool_behind_the_wrapper(
    shape: str, users_images: dict[str, str], clean_rds: PostgresCluster, rendered: RenderedStack,
    engine: DockerEngine, hosts: dict[str, str], task_role_aws: tuple[dict[str, str], Any],
) -> None:
    task = copy.deepcopy(rendered.task("migration"))
    (container,) = task["containerDefinitions"]
    # What the program renders with migrationCommand ["alembic", "upgrade", "head"] (tests/infra).
    container["command"] = wrapped_command(["alembic", "upgrade", "head"])
    plans = plan_task(task, images=lambda uri: users_images[shape], secrets=rendered.secrets,
                      prefix=f"lg-users-{shape}", hosts=hosts, machine_architecture=machine_architecture(),
                      nofile_ceiling=machine_nofile_ceiling(), task_role=task_role_aws[0])
    run = TaskRun(engine, plans)
    try:
        run.start()
        code = run.wait(MIGRATOR_CONTAINER)
        logs = run.logs(MIGRATOR_CONTAINER)
    finally:
        run.stop()
        run.remove()
    assert code == 0, logs
    assert "holding the migration lock" in logs and "the command exited with 0" in logs
    with clean_rds.connect_superuser(rendered.db_name) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]
        granted = conn.execute(
            "SELECT has_table_privilege(%s, 'widgets', 'INSERT'), has_table_privilege(%s, 'alembic_version', 'SELECT')",
            (rendered.app_role, rendered.app_role)).fetchone()
    assert granted == (True, False)
