"""The stack takes your migration image and command (#25.3), under the mocks: ``migrationImage`` (a folder
the stack builds, or an ECR URI), ``migrationCommand`` (run through the wrapper) and
``migrationBookkeepingTables``; the job's environment, secrets and execution role stay as they were,
but for pulling the one image the task runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lifeguard.aws.config import InfraConfigError
from tests.infra.infra_harness import ACCOUNT, REGION, ProgramRun, example_stack_config, run_program
from tests.infra.test_infra_iam import permitted

DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "migration-images"
URI = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/team/migrations@sha256:{'ab' * 32}"
COMMAND = ["alembic", "upgrade", "head"]


def migration_container(run: ProgramRun) -> dict[str, Any]:
    task = run.one("aws:ecs/taskDefinition:TaskDefinition", "migration")
    [container] = json.loads(task.input("containerDefinitions"))
    return dict(container)


@pytest.fixture(scope="module")
def folder_run(build_dir: Path) -> ProgramRun:
    return run_program({**example_stack_config(), "migrationImage": "docs/migration-images/base-on-ours",
                        "migrationCommand": json.dumps(COMMAND),
                        "migrationBookkeepingTables": json.dumps(["ops.deploy_log"])}, build_dir)


def test_the_folder_is_built_with_our_image_as_its_base_and_our_package_beside_it(
    folder_run: ProgramRun, example_run: ProgramRun
) -> None:
    ours = folder_run.one("docker:index/image:Image", "migration-image-image")
    users = folder_run.one("docker:index/image:Image", "migration-users-image")
    build = users.input("build")
    assert build["args"] == {"LIFEGUARD_MIGRATOR_IMAGE": ours.state["repoDigest"]}
    assert "base-on-ours" in build["context"]
    # Our package, staged in the user's context for an image that adds it to its own base.
    staged = Path(build["context"]).resolve()
    assert {p.name for p in (staged / "shared").iterdir()} == {"migrator", "redaction", "database_urls"}
    container = migration_container(folder_run)
    assert container["image"] == users.state["repoDigest"]
    assert container["command"] == ["python3", "-m", "migrator", "run", "--", *COMMAND]
    # The environment and secrets are the sample job's, plus the user's bookkeeping tables.
    before = migration_container(example_run)
    assert container["secrets"] == before["secrets"]
    assert sorted(container["environment"], key=lambda e: e["name"]) == sorted(
        [*before["environment"], {"name": "LIFEGUARD_BOOKKEEPING_TABLES", "value": "ops.deploy_log"}],
        key=lambda e: e["name"])
    assert "command" not in before and before["image"] != container["image"]


def test_the_execution_role_may_pull_the_users_image_and_nothing_more(
    folder_run: ProgramRun, example_run: ProgramRun
) -> None:
    repositories = {r.name: r.state["arn"] for r in folder_run.of_type("aws:ecr/repository:Repository")}
    users_repo = repositories["migration-users-image-repo"]
    assert permitted(folder_run, "migration-execution", "ecr:BatchGetImage", users_repo)
    assert not permitted(example_run, "migration-execution", "ecr:BatchGetImage", users_repo)
    assert not permitted(folder_run, "migration-execution", "ecr:PutImage", users_repo)
    assert not permitted(folder_run, "migration-execution", "ecr:BatchGetImage", repositories["pooler-image-repo"])
    for name in ("connection-direct", "pooler-credentials"):
        arn = next(s.state["arn"] for s in folder_run.of_type("aws:secretsmanager/secret:Secret") if s.name == name)
        assert permitted(folder_run, "migration-execution", "secretsmanager:GetSecretValue", arn)


def test_an_ecr_uri_is_run_as_it_is(build_dir: Path) -> None:
    run = run_program({**example_stack_config(), "migrationImage": URI,
                       "migrationCommand": json.dumps(COMMAND)}, build_dir)
    assert migration_container(run)["image"] == URI
    assert not [i for i in run.of_type("docker:index/image:Image") if "users" in i.name]
    repo = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/team/migrations"
    assert permitted(run, "migration-execution", "ecr:BatchGetImage", repo)
    assert not permitted(run, "migration-execution", "ecr:BatchGetImage",
                         f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/team/other")


def test_unset_keys_change_nothing(example_run: ProgramRun) -> None:
    assert not [r for r in example_run.resources if "users-image" in r.name]
    assert "command" not in migration_container(example_run)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"migrationImage": "no/such/folder"}, "is neither a folder holding a Dockerfile"),
        ({"migrationImage": "docker.io/library/alembic:latest"}, "is neither a folder holding a Dockerfile"),
        ({"migrationCommand": '["alembic", ""]'}, "holds an empty word"),
        ({"migrationCommand": '"alembic upgrade head"'}, "must be a JSON list of strings"),
        ({"migrationCommand": '["python3", "-m", "migrator", "run", "--", "alembic"]'}, "give your tool's command"),
        ({"migrationBookkeepingTables": '["a;drop"]'}, "is not a table name"),
        ({"migrationImage": URI.replace(ACCOUNT, "210987654321")}, "push the image to an ECR repository of this"),
    ],
)
def test_bad_values_are_refused_naming_the_key(build_dir: Path, config: dict[str, str], expected: str) -> None:
    with pytest.raises(InfraConfigError) as refused:
        run_program({**example_stack_config(), **config}, build_dir)
    assert expected in str(refused.value)
    assert f"lifeguard:{next(iter(config))}" in str(refused.value)
