"""A stack deployed before the components moved into ``lifeguard.aws`` keeps every resource: each URN it
holds is still registered (or aliased) by today's program, with the same inputs (tests/infra/continuity.py)."""

from __future__ import annotations

import pytest

from tests.infra.continuity import added, differences, read
from tests.infra.infra_harness import ProgramRun


def test_every_recorded_resource_is_kept_with_its_inputs(every_run: ProgramRun, variant: str) -> None:
    problems = differences(read(variant), every_run)
    assert not problems, "\n".join(problems)


def test_the_check_sees_a_renamed_resource(example_run: ProgramRun) -> None:
    """The check can fail: a recorded URN nothing answers to is reported as a deletion."""
    recorded = dict(read("example"))
    urn = next(iter(recorded))
    recorded[urn.replace("::lifeguard::", "::lifeguard::renamed$", 1) + "-old"] = recorded.pop(urn)
    assert any("gone" in problem for problem in differences(recorded, example_run))


def test_the_check_sees_a_changed_input(example_run: ProgramRun) -> None:
    recorded = {urn: dict(inputs) for urn, inputs in read("example").items()}
    urn = next(urn for urn, inputs in recorded.items() if inputs)
    key = next(iter(recorded[urn]))
    recorded[urn][key] = "something else"
    assert differences(recorded, example_run) == [f"{urn} (now {urn}): inputs changed: {key}"]


def test_the_check_sees_a_changed_input_of_a_moved_resource(example_run: ProgramRun) -> None:
    """A resource kept by an alias (the functions' group and rules, now the pooled client's) is still compared:
    reading its mock id as the deployed one hides nothing else."""
    recorded = {urn: dict(inputs) for urn, inputs in read("example").items()}
    [urn] = [u for u in recorded if u.endswith("::network-functions-to-nlb-out")]
    recorded[urn]["referencedSecurityGroupId"] = "network-pooler-sg-id"
    [problem] = differences(recorded, example_run)
    assert problem.startswith(f"{urn} (now ") and "functions-to-nlb-out" in problem
    assert problem.endswith("inputs changed: referencedSecurityGroupId")


@pytest.mark.parametrize("variant_name", ["example"])
def test_nothing_is_added_to_a_deployed_stack(example_run: ProgramRun, variant_name: str) -> None:
    """Today's program adds to a deployed stack only the attach unit's own new parts (issue #24): the client
    component (its group and rules are the network's, aliased), its read-the-pooled-secret policy, and that
    policy's attachment to the sample functions' role; and issue #28's second login role and rotation record.
    Anything else would be a change to review."""
    stack = "urn:pulumi:dev::lifeguard::"
    assert added(read(variant_name), example_run) == [
        f"{stack}lifeguard:client:PooledClient$aws:iam/policy:Policy::functions-read-pooled-secret",
        f"{stack}lifeguard:client:PooledClient$aws:iam/rolePolicyAttachment:RolePolicyAttachment::functions-functions-role",
        # Issue #28: the second login role a password rotation alternates with, its password and salt.
        f"{stack}lifeguard:database:AppRoleCredentials$random:index/randomId:RandomId::app-role-b-scram-salt",
        f"{stack}lifeguard:database:AppRoleCredentials$random:index/randomPassword:RandomPassword::app-role-b-password",
        # Issue #28: the migration job's record of the rotation Postgres holds (read before a switch), and the
        # task role that may write exactly it (the task definition's new env and taskRoleArn are in the snapshots).
        f"{stack}lifeguard:migration:MigrationJob$aws:iam/role:Role::migration-task",
        f"{stack}lifeguard:migration:MigrationJob$aws:iam/rolePolicy:RolePolicy::migration-task",
        f"{stack}lifeguard:migration:MigrationJob$aws:ssm/parameter:Parameter::migration-rotation",
        f"{stack}pulumi:pulumi:Stack$lifeguard:client:PooledClient::functions",
    ]
