"""The wiring of the two roles under the Pulumi mocks: which secret holds what, and who gets which.

``DATABASE_URL`` carries the application role and its plain password; the pooler's secret its
SCRAM verifier (computed by ``pgbouncer.scram`` from that password and a salt kept in state);
the migration job the master user's direct URL, the role's name and, from the pooler's secret,
the verifier alone. Real logins with these values are tested in tests/lambdas/test_app_role.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest

from lifeguard.aws import migration_job
from lifeguard.aws.config import InfraConfigError, load
from lifeguard.aws.outputs import DATABASE_SETTINGS
from migrator.contract import APP_ROLE_ENV, APP_ROLE_VERIFIER_ENV, DEMO_DATA_ENV, ROTATION_ENV, ROTATION_PARAMETER_ENV
from pgbouncer.contract import ALTERNATE_PASSWORD_KEY, ALTERNATE_USERNAME_KEY
from pgbouncer.scram import (
    APP_ITERATIONS,
    ITERATIONS,
    MIN_APP_ITERATIONS,
    SALT_BYTES,
    parse_verifier,
    scram_verifier,
    verifies,
)
from tests.infra.infra_harness import (
    APP_PASSWORD_RESOURCE,
    MOCK_APP_PASSWORD,
    MOCK_PASSWORD,
    ProgramRun,
    StrictMocks,
    example_stack_config,
    run_program,
    unwrap,
    walk_plain_strings,
)
from tests.infra.test_infra_rotation import PARAMETER
from tests.infra.test_infra_stack import (
    containers,
    credentials_versions,
    migration_task,
    secret_arn,
    secret_value,
)
from tests.secrecy import assert_no_secret


def pooled_url(run: ProgramRun) -> Any:
    return urlsplit(unwrap(secret_value(run, "connection-pooled")))


def pooler_credentials(run: ProgramRun) -> dict[str, str]:
    credentials: dict[str, str] = json.loads(unwrap(secret_value(run, "pooler-credentials")))
    return credentials


def migration_container(run: ProgramRun) -> dict[str, Any]:
    [container] = containers(migration_task(run))
    return container


def test_each_url_logs_in_as_its_own_role(every_run: ProgramRun) -> None:
    pooled = pooled_url(every_run)
    assert (unquote(pooled.username or ""), unquote(pooled.password or "")) == ("lifeguard_app", MOCK_APP_PASSWORD)
    if "databaseOwnerSecretArn" in every_run.outputs:
        # No direct URL in the stack: the job logs in as the owner secret's user (test_infra_existing_database).
        assert not every_run.of_type("aws:rds/instance:Instance")
        return
    direct = urlsplit(unwrap(secret_value(every_run, "connection-direct")))
    master = every_run.one("aws:rds/instance:Instance").input("username")
    assert (unquote(direct.username or ""), unquote(direct.password or "")) == (master, MOCK_PASSWORD)
    assert master == "lifeguard"


def test_the_pooler_holds_the_verifier_of_the_pooled_urls_password(every_run: ProgramRun) -> None:
    credentials = pooler_credentials(every_run)
    assert credentials["username"] == unquote(pooled_url(every_run).username or "")
    verifier = parse_verifier(credentials["password"])
    assert verifies(credentials["password"], MOCK_APP_PASSWORD)
    salt = every_run.one("random:index/randomId:RandomId", "app-role-scram-salt")
    assert salt.input("byteLength") == SALT_BYTES
    assert verifier.salt == bytes.fromhex(salt.state["hex"])
    # Kept in state and tied to nothing: replacing the password keeps the salt.
    assert "keepers" not in salt.inputs
    # The two login roles of a password rotation are the pooler's database users, and no other: their
    # pools share max_db_connections, so the pool sizing still counts one pool per task.
    assert set(credentials) == {"username", "password", ALTERNATE_USERNAME_KEY, ALTERNATE_PASSWORD_KEY}
    assert credentials[ALTERNATE_USERNAME_KEY] == credentials["username"] + "_b"
    assert verifies(credentials[ALTERNATE_PASSWORD_KEY], MOCK_PASSWORD)


def test_the_migration_job_gets_the_role_name_and_only_the_verifier(example_run: ProgramRun) -> None:
    container = migration_container(example_run)
    environment = {e["name"]: e["value"] for e in container["environment"]}
    # Besides the role: where to record the rotation it sets (a number and a parameter name, no secret).
    assert environment == {APP_ROLE_ENV: "lifeguard_app", DEMO_DATA_ENV: "1", ROTATION_ENV: "0",
                           ROTATION_PARAMETER_ENV: PARAMETER}
    injected = {s["name"]: s["valueFrom"] for s in container["secrets"]}
    pooler_secret = secret_arn(example_run, "pooler-credentials")
    assert injected[APP_ROLE_VERIFIER_ENV] == f"{pooler_secret}:password::"
    # The key ECS injects is the verifier's key in the pooler's secret.
    assert pooler_credentials(example_run)[migration_job.VERIFIER_KEY].startswith(f"SCRAM-SHA-256${APP_ITERATIONS}:")


def test_password_and_verifier_are_only_ever_secret(every_run: ProgramRun) -> None:
    verifier = pooler_credentials(every_run)["password"]
    assert verifier != MOCK_APP_PASSWORD
    forms = (MOCK_APP_PASSWORD, quote(MOCK_APP_PASSWORD, safe=""), verifier)
    for resource in every_run.resources:
        if resource.type == "random:index/randomPassword:RandomPassword":
            continue
        for path, text in walk_plain_strings(resource.inputs):
            for form in forms:
                assert_no_secret(form, text, f"{resource.name}{path}")
    for name, value in every_run.outputs.items():
        for form in forms:
            assert_no_secret(form, json.dumps(value), name)


def test_a_new_password_changes_both_sides_and_nothing_else(example_run: ProgramRun, build_dir: Path) -> None:
    rotated = "Rotated9@pass/word:new#chars%"
    run = run_program(example_stack_config(), build_dir,
                      mocks=StrictMocks(passwords={APP_PASSWORD_RESOURCE: rotated}))
    salt = bytes.fromhex(run.one("random:index/randomId:RandomId", "app-role-scram-salt").state["hex"])
    assert unquote(pooled_url(run).password or "") == rotated
    assert pooler_credentials(run)["password"] == scram_verifier(rotated, salt, APP_ITERATIONS)
    assert pooler_credentials(run)["password"] != pooler_credentials(example_run)["password"]
    # The job reads the verifier from the secret, so its task definition needs no change ...
    assert migration_container(run) == migration_container(example_run)
    # ... while the pooler's names the secret's new version, so `pulumi up` rolls its tasks onto it.
    assert credentials_versions(run) != credentials_versions(example_run)
    credentials_version = run.one("aws:secretsmanager/secretVersion:SecretVersion", "pooler-credentials")
    assert credentials_versions(run).startswith(credentials_version.state["versionId"] + ",")
    # The same password gives the same verifier: an unchanged stack changes no secret.
    again = run_program(example_stack_config(), build_dir)
    assert pooler_credentials(again) == pooler_credentials(example_run)
    assert credentials_versions(again) == credentials_versions(example_run)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Lifeguard_App", "lower-case letter"),
        ("rds_app", "not start with 'rds'"),
        ("lifeguard", "must differ from dbUsername"),
        ("lifeguard_stats", "PgBouncer's console user"),
        ("x" * 60, "at most 59"),  # its rotation partner, <name>_b, must fit Postgres' 63
    ],
)
def test_app_username_is_checked_before_anything_is_created(value: str, message: str) -> None:
    with pytest.raises(InfraConfigError) as error:
        load({"dbAppUsername": value})
    [problem] = [p for p in error.value.problems if p.startswith("lifeguard:dbAppUsername")]
    assert message in problem


def test_app_username_is_configurable() -> None:
    assert load({}).database.app_username == "lifeguard_app"
    assert load({"dbAppUsername": "orders_app"}).database.app_username == "orders_app"


def _verifier_iterations(run: ProgramRun) -> int:
    return parse_verifier(pooler_credentials(run)["password"]).iterations


def _deployed_before(record: dict[str, str] | None) -> StrictMocks:
    """Mocks of a stack deployed before: some outputs, and ``record`` as its database settings (if any)."""
    outputs: dict[str, Any] = {"poolerPort": 5432}
    if record is not None:
        outputs[DATABASE_SETTINGS] = record
    return StrictMocks(deployed_outputs=outputs)


def test_a_new_stack_gets_the_count_for_a_generated_password_and_records_it(example_run: ProgramRun) -> None:
    assert _verifier_iterations(example_run) == APP_ITERATIONS < ITERATIONS
    assert example_run.outputs[DATABASE_SETTINGS]["scramIterations"] == str(APP_ITERATIONS)


@pytest.mark.parametrize(
    ("record", "kept"),
    [(None, ITERATIONS),  # deployed before any record: every verifier then had Postgres' 4096
     ({"dbName": "app"}, ITERATIONS),  # a record from before the count was in it
     ({"dbName": "app", "scramIterations": "64"}, 64)],  # the count it was last deployed with
)
def test_a_deployed_stack_keeps_its_count_when_lifeguard_changes(
    build_dir: Path, record: dict[str, str] | None, kept: int
) -> None:
    # PgBouncer's copy and Postgres' must stay byte-identical: no upgrade may change the verifier by itself.
    run = run_program(example_stack_config(), build_dir, mocks=_deployed_before(record))
    assert _verifier_iterations(run) == kept
    assert verifies(pooler_credentials(run)["password"], MOCK_APP_PASSWORD)
    assert run.outputs[DATABASE_SETTINGS]["scramIterations"] == str(kept)


def test_setting_the_count_is_the_one_way_to_change_it(build_dir: Path) -> None:
    run = run_program({**example_stack_config(), "lifeguard:scramIterations": "32"}, build_dir,
                      mocks=_deployed_before({"dbName": "app", "scramIterations": "4096"}))
    assert _verifier_iterations(run) == 32
    assert run.outputs[DATABASE_SETTINGS]["scramIterations"] == "32"


@pytest.mark.parametrize("value", [str(MIN_APP_ITERATIONS - 1), "0", "-4096", str(2**31)])
def test_a_count_below_the_floor_is_refused_with_the_floor(value: str) -> None:
    with pytest.raises(InfraConfigError) as error:
        load({"scramIterations": value})
    [problem] = [p for p in error.value.problems if p.startswith("lifeguard:scramIterations")]
    assert f"between {MIN_APP_ITERATIONS} and" in problem
