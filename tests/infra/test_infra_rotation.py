"""A password rotation on AWS, under the Pulumi mocks, resource by resource (docs/roles.md#rotating-the-password).

Each ``up`` of a rotation is run with the record its previous ``up`` left (``databaseSettings``): which
role's password resource changes (its keeper), what the pooler's secret holds (both verifiers), what
``DATABASE_URL`` logs in as, and what the migration job is given. The refusals themselves are checked
case by case in tests/infra/test_rotation_order.py; here, that the program refuses before any resource.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest

from lifeguard.aws.config import InfraConfigError
from lifeguard.aws.outputs import DATABASE_SETTINGS
from migrator.contract import APP_ROLE_B_VERIFIER_ENV, ROTATION_ENV, ROTATION_PARAMETER_ENV
from pgbouncer.contract import ALTERNATE_PASSWORD_KEY, ALTERNATE_USERNAME_KEY
from pgbouncer.scram import verifies
from tests.infra.infra_harness import (
    ACCOUNT,
    APP_PASSWORD_RESOURCE,
    MOCK_APP_PASSWORD,
    REGION,
    ProgramRun,
    StrictMocks,
    example_stack_config,
    last_registrations,
    run_program,
    unwrap,
    walk_plain_strings,
)
from tests.infra.test_infra_stack import containers, migration_task, secret_value
from tests.secrecy import assert_no_secret

B_PASSWORD = "Bp9@second/pass:odd#chars%"
B_PASSWORD_RESOURCE = "app-role-b-password"
# The stack's record of the rotation Postgres holds: derived from organization, project, stack and region.
PARAMETER = ("/lifeguard/lifeguard-dev-"
             + hashlib.sha256(f"organization/lifeguard/dev/{REGION}".encode()).hexdigest()[:8]
             + "/app-password-rotation")


def up(build_dir: Path, rotation: int, switched: int, deployed: tuple[int, int] | None,
       recorded: str | None = None, mocks: StrictMocks | None = None) -> ProgramRun:
    """``recorded``: what the migration job last wrote into the stack's parameter (``None``: no parameter)."""
    config = {**example_stack_config(), "lifeguard:appPasswordRotation": str(rotation),
              "lifeguard:appPasswordSwitched": str(switched)}
    return run_program(config, build_dir, mocks=mocks or mocks_for(deployed, recorded))


def mocks_for(deployed: tuple[int, int] | None, recorded: str | None = None) -> StrictMocks:
    outputs: dict[str, Any] = {"poolerPort": 5432}
    if deployed is not None:
        outputs[DATABASE_SETTINGS] = {"dbName": "app", "scramIterations": "16",
                                      "appPasswordRotation": str(deployed[0]), "appPasswordSwitched": str(deployed[1])}
    return StrictMocks(passwords={APP_PASSWORD_RESOURCE: MOCK_APP_PASSWORD, B_PASSWORD_RESOURCE: B_PASSWORD},
                       deployed_outputs=outputs, parameters={} if recorded is None else {PARAMETER: recorded})


def keepers(run: ProgramRun, name: str) -> Any:
    return run.one("random:index/randomPassword:RandomPassword", name).inputs.get("keepers")


def pooled_login(run: ProgramRun) -> tuple[str, str]:
    url = urlsplit(unwrap(secret_value(run, "connection-pooled")))
    return unquote(url.username or ""), unquote(url.password or "")


def pooler_credentials(run: ProgramRun) -> dict[str, str]:
    credentials: dict[str, str] = json.loads(unwrap(secret_value(run, "pooler-credentials")))
    return credentials


def test_rotation_one_then_its_switch_then_rotation_two(build_dir: Path) -> None:
    # 1. `pulumi up` with appPasswordRotation 1: the alternate role's password (its keeper), both
    #    verifiers in the pooler's secret, DATABASE_URL unchanged; the record says rotation 1, switched 0.
    started = up(build_dir, 1, 0, (0, 0))
    assert keepers(started, APP_PASSWORD_RESOURCE) is None  # the application role's password stays
    assert keepers(started, B_PASSWORD_RESOURCE) == {"rotation": "1"}
    credentials = pooler_credentials(started)
    assert credentials["username"] == "lifeguard_app" and verifies(credentials["password"], MOCK_APP_PASSWORD)
    assert credentials[ALTERNATE_USERNAME_KEY] == "lifeguard_app_b"
    assert verifies(credentials[ALTERNATE_PASSWORD_KEY], B_PASSWORD)
    assert pooled_login(started) == ("lifeguard_app", MOCK_APP_PASSWORD)
    assert started.outputs[DATABASE_SETTINGS]["appPasswordRotation"] == "1"
    assert started.outputs[DATABASE_SETTINGS]["appPasswordSwitched"] == "0"
    # 2. The migration job (the pipeline, after every up) is given both verifiers, from the pooler's secret.
    [container] = containers(migration_task(started))
    injected = {s["name"]: s["valueFrom"] for s in container["secrets"]}
    assert injected[APP_ROLE_B_VERIFIER_ENV].endswith(f":{ALTERNATE_PASSWORD_KEY}::")
    # 3. `pulumi up` with appPasswordSwitched 1, once the job recorded rotation 1: DATABASE_URL logs in as the
    #    alternate; no password changes.
    switched = up(build_dir, 1, 1, (1, 0), recorded="1")
    assert pooled_login(switched) == ("lifeguard_app_b", B_PASSWORD)
    assert pooler_credentials(switched) == credentials
    # 4. Rotation 2: the application role's password gets its first keeper; DATABASE_URL stays on the alternate.
    second = up(build_dir, 2, 1, (1, 1), recorded="1")
    assert keepers(second, APP_PASSWORD_RESOURCE) == {"rotation": "2"}
    assert keepers(second, B_PASSWORD_RESOURCE) == {"rotation": "1"}
    assert pooled_login(second) == ("lifeguard_app_b", B_PASSWORD)


def test_a_stack_from_before_rotation_keeps_its_password_and_gains_the_second_role(build_dir: Path) -> None:
    run = up(build_dir, 0, 0, None)
    assert keepers(run, APP_PASSWORD_RESOURCE) is None
    assert pooled_login(run) == ("lifeguard_app", MOCK_APP_PASSWORD)
    assert pooler_credentials(run)[ALTERNATE_USERNAME_KEY] == "lifeguard_app_b"


@pytest.mark.parametrize(
    ("rotation", "switched", "deployed", "refusal"),
    [(1, 1, (0, 0), "in the same `pulumi up` that generates"), (2, 0, (0, 0), "jumps by more than one"),
     (2, 1, (1, 0), "rotation 1 is not switched yet")],
)
def test_a_breaking_order_is_refused_before_any_resource(
    build_dir: Path, rotation: int, switched: int, deployed: tuple[int, int], refusal: str
) -> None:
    with pytest.raises(InfraConfigError) as error:
        up(build_dir, rotation, switched, deployed)
    assert any(refusal in problem for problem in error.value.problems)
    assert last_registrations() == []


def test_the_second_roles_password_and_verifier_are_only_ever_secret(build_dir: Path) -> None:
    run = up(build_dir, 1, 1, (1, 0), recorded="1")  # DATABASE_URL carries it: the most places it could leak from
    forms = (B_PASSWORD, quote(B_PASSWORD, safe=""), pooler_credentials(run)[ALTERNATE_PASSWORD_KEY])
    for resource in run.resources:
        if resource.type == "random:index/randomPassword:RandomPassword":
            continue
        for path, text in walk_plain_strings(resource.inputs):
            for form in forms:
                assert_no_secret(form, text, f"{resource.name}{path}")
    for name, value in run.outputs.items():
        for form in forms:
            assert_no_secret(form, json.dumps(value), name)


@pytest.mark.parametrize(("recorded", "says"), [
    (None, "could not be read: invoke of aws:ssm/getParameter:getParameter failed: ParameterNotFound"),
     ("0", "says rotation 0"), ("", "holds no rotation")])
def test_a_switch_the_migration_job_has_not_recorded_is_refused_before_any_resource(
    build_dir: Path, recorded: str | None, says: str
) -> None:
    # The job failed (or never ran) after the `up` that started rotation 1: Postgres lacks its verifier.
    with pytest.raises(InfraConfigError) as error:
        up(build_dir, 1, 1, (1, 0), recorded=recorded)
    [problem] = error.value.problems
    assert problem.startswith("lifeguard:appPasswordSwitched 1: the migration job has not recorded")
    assert PARAMETER in problem and says in problem
    assert "`lifeguard migrate`" in problem and "keep lifeguard:appPasswordSwitched at 0" in problem
    assert last_registrations() == []


def test_the_record_is_read_only_for_a_switch(build_dir: Path) -> None:
    # Starting a rotation, or an `up` that changes nothing about it, needs no record (a new stack has none).
    for rotation, switched, deployed in ((1, 0, (0, 0)), (1, 1, (1, 1)), (0, 0, None)):
        mocks = mocks_for(deployed)
        up(build_dir, rotation, switched, deployed, mocks=mocks)
        assert "aws:ssm/getParameter:getParameter" not in {token for token, _ in mocks.calls}
    mocks = mocks_for((1, 0), "1")
    up(build_dir, 1, 1, (1, 0), mocks=mocks)
    assert ("aws:ssm/getParameter:getParameter", {"name": PARAMETER}) in mocks.calls


def test_the_stack_creates_the_record_and_lets_the_migration_job_write_it(build_dir: Path) -> None:
    run = up(build_dir, 1, 0, (0, 0))
    [parameter] = run.of_type("aws:ssm/parameter:Parameter")
    # Created with the rotation DATABASE_URL uses (Postgres holds it), then the job's alone: Pulumi never
    # writes it again, or an `up` would claim a rotation no job set.
    assert (parameter.input("name"), parameter.input("type"), parameter.input("value")) == (PARAMETER, "String", "0")
    assert parameter.ignore_changes == ("value",)
    task = migration_task(run)
    [container] = containers(task)
    environment = {e["name"]: e["value"] for e in container["environment"]}
    assert environment[ROTATION_PARAMETER_ENV] == PARAMETER and environment[ROTATION_ENV] == "1"
    [role] = [r for r in run.of_type("aws:iam/role:Role") if r.name == "migration-task"]
    assert task.input("taskRoleArn") == role.state["arn"]
    assert parameter.state["arn"] == f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{PARAMETER}"
