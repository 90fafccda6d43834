"""A password rotation on AWS, under the Pulumi mocks, resource by resource (docs/roles.md#rotating-the-password).

Each ``up`` of a rotation is run with the record its previous ``up`` left (``databaseSettings``): which
role's password resource changes (its keeper), what the pooler's secret holds (both verifiers), what
``DATABASE_URL`` logs in as, and what the migration job is given. The refusals themselves are checked
case by case in tests/infra/test_rotation_order.py; here, that the program refuses before any resource.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest

from lifeguard.aws.config import InfraConfigError
from lifeguard.aws.outputs import DATABASE_SETTINGS
from migrator.contract import APP_ROLE_B_VERIFIER_ENV
from pgbouncer.contract import ALTERNATE_PASSWORD_KEY, ALTERNATE_USERNAME_KEY
from pgbouncer.scram import verifies
from tests.infra.infra_harness import (
    APP_PASSWORD_RESOURCE,
    MOCK_APP_PASSWORD,
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


def up(build_dir: Path, rotation: int, switched: int, deployed: tuple[int, int] | None) -> ProgramRun:
    outputs: dict[str, Any] = {"poolerPort": 5432}
    if deployed is not None:
        outputs[DATABASE_SETTINGS] = {"dbName": "app", "scramIterations": "16",
                                      "appPasswordRotation": str(deployed[0]), "appPasswordSwitched": str(deployed[1])}
    config = {**example_stack_config(), "lifeguard:appPasswordRotation": str(rotation),
              "lifeguard:appPasswordSwitched": str(switched)}
    mocks = StrictMocks(passwords={APP_PASSWORD_RESOURCE: MOCK_APP_PASSWORD, B_PASSWORD_RESOURCE: B_PASSWORD},
                        deployed_outputs=outputs)
    return run_program(config, build_dir, mocks=mocks)


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
    # 3. `pulumi up` with appPasswordSwitched 1: DATABASE_URL logs in as the alternate; no password changes.
    switched = up(build_dir, 1, 1, (1, 0))
    assert pooled_login(switched) == ("lifeguard_app_b", B_PASSWORD)
    assert pooler_credentials(switched) == credentials
    # 4. Rotation 2: the application role's password gets its first keeper; DATABASE_URL stays on the alternate.
    second = up(build_dir, 2, 1, (1, 1))
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
    run = up(build_dir, 1, 1, (1, 0))  # DATABASE_URL carries it: the most places it could leak from
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
