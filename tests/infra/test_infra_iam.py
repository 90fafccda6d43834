"""Least privilege, proven by evaluating each generated IAM policy, and linted with parliament, for
every stack variant (``every_run``: the example stack, production, NAT, an existing VPC on arm64, an
existing Aurora cluster and an existing RDS instance, whose migration job reads the owner secret instead
of a direct URL).

moto's ``IAMPolicy`` evaluator checks actions *and* resources of a policy document (moto's service
mocks do not enforce resource-level permissions for Secrets Manager, so calling them would prove
nothing). A role is permitted exactly what its inline policy and its attached managed policies allow: the
tests also check that the only managed policy is the pooled client's (``lifeguard.aws.PooledClient``),
attached to the sample functions' role alone.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import parliament
import pytest
from moto.iam.access_control import IAMPolicy, PermissionResult

from tests.infra.infra_harness import MOCK_APP_PASSWORD, ProgramRun, Resource

OTHER_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:someone-elses-secret-AbCdEf"
ROLES = ("functions-role", "pooler-execution", "migration-execution", "migration-task")


def role(run: ProgramRun, name: str) -> Resource:
    return next(r for r in run.of_type("aws:iam/role:Role") if r.name == name)


def inline_policies(run: ProgramRun, role_name: str) -> list[dict[str, Any]]:
    role_id = role(run, role_name).id
    return [json.loads(p.input("policy")) for p in run.of_type("aws:iam/rolePolicy:RolePolicy")
            if p.input("role") == role_id]


def attached_policies(run: ProgramRun, role_name: str) -> list[dict[str, Any]]:
    """The documents of the managed policies attached to the role (``RolePolicyAttachment``, by role name)."""
    name = role(run, role_name).state["name"]
    arns = {a.input("policyArn") for a in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
            if a.input("role") == name}
    return [json.loads(p.input("policy")) for p in run.of_type("aws:iam/policy:Policy") if p.state["arn"] in arns]


def allows(documents: list[dict[str, Any]], action: str, resource: str) -> bool:
    """Whether any of ``documents`` allows ``action`` on ``resource`` (and none denies it)."""
    results = [IAMPolicy(json.dumps(doc)).is_action_permitted(action, resource) for doc in documents]
    return PermissionResult.DENIED not in results and PermissionResult.PERMITTED in results


OWNER = "database-owner"
"""An existing database's owner secret (or RDS's managed one): not the stack's, read by the migration job."""


def permitted(run: ProgramRun, role_name: str, action: str, resource: str) -> bool:
    """Whether the role's policies (inline and attached) allow ``action`` on ``resource``."""
    return allows(inline_policies(run, role_name) + attached_policies(run, role_name), action, resource)


def secrets(run: ProgramRun) -> dict[str, str]:
    """The stack's secrets by name, and the owner secret the stack reads instead of holding the password."""
    owner = {OWNER: run.outputs["databaseOwnerSecretArn"]} if "databaseOwnerSecretArn" in run.outputs else {}
    return {**{s.name: s.state["arn"] for s in run.of_type("aws:secretsmanager/secret:Secret")}, **owner}


def direct(run: ProgramRun) -> str:
    """The secret the migration job connects with: the direct URL, or the owner's (``OWNER``)."""
    return OWNER if "databaseOwnerSecretArn" in run.outputs else "connection-direct"


def reads(run: ProgramRun) -> dict[str, set[str]]:
    return {**READS, "migration-execution": {direct(run), "pooler-credentials"}}


def test_the_evaluator_checks_resources_not_just_actions() -> None:
    # The control that makes the denials below mean something.
    own = "arn:aws:secretsmanager:eu-west-1:1:secret:a-AbCdEf"
    doc = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": own}]})
    assert IAMPolicy(doc).is_action_permitted("secretsmanager:GetSecretValue", own) == PermissionResult.PERMITTED
    assert IAMPolicy(doc).is_action_permitted("secretsmanager:GetSecretValue", OTHER_SECRET) != (
        PermissionResult.PERMITTED)
    assert IAMPolicy(doc).is_action_permitted("secretsmanager:PutSecretValue", own) != PermissionResult.PERMITTED


def test_roles_have_one_inline_policy_and_only_the_clients_managed_one(every_run: ProgramRun) -> None:
    assert sorted(r.name for r in every_run.of_type("aws:iam/role:Role")) == sorted(ROLES)
    for resource_type in ("aws:iam/policyAttachment:PolicyAttachment",
                          "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive"):
        assert not every_run.of_type(resource_type), resource_type
    [policy] = every_run.of_type("aws:iam/policy:Policy")
    [attachment] = every_run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert policy.name == "functions-read-pooled-secret"
    assert (attachment.input("role"), attachment.input("policyArn")) == (
        role(every_run, "functions-role").state["name"], policy.state["arn"])
    # Both the client's (its grant), not the role's.
    client = every_run.one("lifeguard:client:PooledClient")
    assert policy.parent == attachment.parent == client.urn
    for name in ROLES:
        assert "managedPolicyArns" not in role(every_run, name).inputs
        assert "inlinePolicies" not in role(every_run, name).inputs
        assert len(inline_policies(every_run, name)) == 1


@pytest.mark.parametrize(
    ("role_name", "service"),
    [("functions-role", "lambda.amazonaws.com"), ("pooler-execution", "ecs-tasks.amazonaws.com"),
     ("migration-execution", "ecs-tasks.amazonaws.com"), ("migration-task", "ecs-tasks.amazonaws.com")],
)
def test_trust_policies_name_one_service(every_run: ProgramRun, role_name: str, service: str) -> None:
    trust = json.loads(role(every_run, role_name).input("assumeRolePolicy"))
    [statement] = trust["Statement"]
    assert {k: v for k, v in statement.items() if k != "Condition"} == {
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"
    }


# Which role may read which secrets: the pooler's tasks their three (the application role's verifier,
# the console user, PgBouncer's TLS key); the migration job the direct URL and that verifier (to set it in Postgres).
READS = {
    "functions-role": {"connection-pooled"},
    "pooler-execution": {"pooler-credentials", "pooler-stats-credentials", "pooler-tls-key"},
    "migration-execution": {"connection-direct", "pooler-credentials"},
    "migration-task": set(),
}


def secret_of(value_from: str) -> str:
    """The secret ARN of an ECS ``valueFrom``, without a ``:<json-key>:<stage>:<version>`` suffix."""
    return ":".join(value_from.split(":")[:7])


@pytest.mark.parametrize("role_name", ROLES)
def test_each_role_reads_exactly_its_secrets(every_run: ProgramRun, role_name: str) -> None:
    arns = secrets(every_run)
    assert set(arns) == set().union(*reads(every_run).values())
    for secret_name, arn in arns.items():
        allowed = permitted(every_run, role_name, "secretsmanager:GetSecretValue", arn)
        assert allowed == (secret_name in reads(every_run)[role_name]), f"{role_name} on {secret_name}"
        for action in ("secretsmanager:PutSecretValue", "secretsmanager:UpdateSecret",
                       "secretsmanager:DeleteSecret", "secretsmanager:ListSecrets"):
            assert not permitted(every_run, role_name, action, arn), f"{role_name} {action}"
    assert not permitted(every_run, role_name, "secretsmanager:GetSecretValue", OTHER_SECRET)
    assert not permitted(every_run, role_name, "secretsmanager:GetSecretValue", "*")


def test_function_role_is_denied_the_direct_and_pooler_secrets(every_run: ProgramRun) -> None:
    arns = secrets(every_run)
    assert permitted(every_run, "functions-role", "secretsmanager:GetSecretValue", arns["connection-pooled"])
    assert not permitted(every_run, "functions-role", "secretsmanager:GetSecretValue", arns[direct(every_run)])
    assert not permitted(every_run, "functions-role", "secretsmanager:GetSecretValue", arns["pooler-credentials"])
    assert not permitted(every_run, "functions-role", "secretsmanager:GetSecretValue",
                         arns["pooler-stats-credentials"])


def test_migration_role_is_denied_the_pooled_url_and_the_console_user(every_run: ProgramRun) -> None:
    arns = secrets(every_run)
    assert permitted(every_run, "migration-execution", "secretsmanager:GetSecretValue", arns[direct(every_run)])
    # The verifier, not a password: with it the job sets the role's password, but cannot log in as it.
    assert permitted(every_run, "migration-execution", "secretsmanager:GetSecretValue", arns["pooler-credentials"])
    for other in ("connection-pooled", "pooler-stats-credentials"):
        assert not permitted(every_run, "migration-execution", "secretsmanager:GetSecretValue", arns[other])


def test_no_secret_a_role_reads_but_the_functions_holds_the_application_password(every_run: ProgramRun) -> None:
    # The plain application password is in DATABASE_URL only; the pooler and the job get its verifier.
    held = ("pooler-credentials", "pooler-stats-credentials")
    for run_secret in (*held, "connection-direct") if direct(every_run) == "connection-direct" else held:
        version = every_run.one("aws:secretsmanager/secretVersion:SecretVersion", run_secret)
        assert MOCK_APP_PASSWORD not in json.dumps(version.input("secretString")), run_secret
        assert quote(MOCK_APP_PASSWORD, safe="") not in json.dumps(version.input("secretString")), run_secret


@pytest.mark.parametrize(("task", "role_name"), [("pooler", "pooler-execution"), ("migration", "migration-execution")])
def test_task_definitions_can_read_exactly_the_secrets_they_inject(
    every_run: ProgramRun, task: str, role_name: str
) -> None:
    definition = every_run.one("aws:ecs/taskDefinition:TaskDefinition", task)
    assert definition.input("executionRoleArn") == role(every_run, role_name).state["arn"]
    injected = {secret_of(s["valueFrom"]) for c in json.loads(definition.input("containerDefinitions"))
                for s in c.get("secrets", [])}
    readable = {arn for arn in secrets(every_run).values()
                if permitted(every_run, role_name, "secretsmanager:GetSecretValue", arn)}
    assert injected == readable and len(injected) == len(reads(every_run)[role_name])


def test_the_migration_task_may_put_exactly_its_rotation_record(every_run: ProgramRun) -> None:
    """The migration job's code records the rotation it set in Postgres (docs/roles.md): its task role may put
    that one parameter, and nothing else (no read, no delete, no other parameter, no secret)."""
    [parameter] = every_run.of_type("aws:ssm/parameter:Parameter")
    arn = parameter.state["arn"]
    assert every_run.one("aws:ecs/taskDefinition:TaskDefinition", "migration").input("taskRoleArn") == \
        role(every_run, "migration-task").state["arn"]
    assert permitted(every_run, "migration-task", "ssm:PutParameter", arn)
    other = arn.rsplit("/", 1)[0] + "/another-parameter"
    for action, resource in (("ssm:PutParameter", other), ("ssm:PutParameter", "*"), ("ssm:GetParameter", arn),
                             ("ssm:DeleteParameter", arn), ("ssm:LabelParameterVersion", arn),
                             ("ssm:AddTagsToResource", arn)):
        assert not permitted(every_run, "migration-task", action, resource), (action, resource)
    # Only the task role: the execution role (ECS's, before the code runs) may not write it.
    assert not permitted(every_run, "migration-execution", "ssm:PutParameter", arn)
    assert not permitted(every_run, "pooler-execution", "ssm:PutParameter", arn)
    assert not permitted(every_run, "functions-role", "ssm:PutParameter", arn)


def test_only_the_pooler_execution_role_reads_the_console_user(every_run: ProgramRun) -> None:
    stats = secrets(every_run)["pooler-stats-credentials"]
    readers = {name for name in ROLES if permitted(every_run, name, "secretsmanager:GetSecretValue", stats)}
    assert readers == {"pooler-execution"}
    # One statement per secret, so a review sees what each grant is for.
    [document] = inline_policies(every_run, "pooler-execution")
    reads = [s for s in document["Statement"] if s["Action"] == ["secretsmanager:GetSecretValue"]]
    grants = {s["Sid"]: s["Resource"] for s in reads}
    assert grants == {"ReadPoolerCredentials": [secrets(every_run)["pooler-credentials"]],
                      "ReadPoolerStatsCredentials": [stats],
                      "ReadPoolerTlsKey": [secrets(every_run)["pooler-tls-key"]]}


def test_the_node_function_reads_only_the_pooled_secret(every_run: ProgramRun) -> None:
    """The Node.js function runs as the functions' role: the pooled secret and nothing else."""
    [node] = [f for f in every_run.of_type("aws:lambda/function:Function") if f.input("runtime") == "nodejs24.x"]
    assert node.input("role") == role(every_run, "functions-role").state["arn"]
    readable = {name for name, arn in secrets(every_run).items()
                if permitted(every_run, "functions-role", "secretsmanager:GetSecretValue", arn)}
    assert readable == {"connection-pooled"}
    assert node.input("environment")["variables"]["DATABASE_URL_SECRET_ARN"] == secrets(every_run)["connection-pooled"]
    # Its own log group, written by that role; no URL anywhere in its settings.
    group = every_run.one("aws:cloudwatch/logGroup:LogGroup", "read-invoices-node")
    assert node.input("loggingConfig")["logGroup"] == group.state["name"]
    assert permitted(every_run, "functions-role", "logs:PutLogEvents", f"{group.state['arn']}:log-stream:x")
    assert "postgresql://" not in json.dumps(node.inputs, default=str)


def test_function_role_can_read_the_secret_in_its_environment(every_run: ProgramRun) -> None:
    for function in every_run.of_type("aws:lambda/function:Function"):
        arn = function.input("environment")["variables"]["DATABASE_URL_SECRET_ARN"]
        assert function.input("role") == role(every_run, "functions-role").state["arn"]
        assert permitted(every_run, "functions-role", "secretsmanager:GetSecretValue", arn)


def test_execution_roles_pull_only_their_own_image_and_write_only_their_own_logs(every_run: ProgramRun) -> None:
    repositories = {r.name.split("-")[0]: r.state["arn"] for r in every_run.of_type("aws:ecr/repository:Repository")}
    log_groups = {g.name.split("-")[0]: g.state["arn"] for g in every_run.of_type("aws:cloudwatch/logGroup:LogGroup")
                  if g.name in ("pooler-logs", "migration-logs")}
    for owner, other in (("pooler", "migration"), ("migration", "pooler")):
        role_name = f"{owner}-execution"
        assert permitted(every_run, role_name, "ecr:BatchGetImage", repositories[owner])
        assert not permitted(every_run, role_name, "ecr:BatchGetImage", repositories[other])
        assert not permitted(every_run, role_name, "ecr:PutImage", repositories[owner])
        assert permitted(every_run, role_name, "logs:PutLogEvents", f"{log_groups[owner]}:log-stream:x")
        assert not permitted(every_run, role_name, "logs:PutLogEvents", f"{log_groups[other]}:log-stream:x")
        assert not permitted(every_run, role_name, "logs:DeleteLogGroup", log_groups[owner])


def test_function_role_writes_only_the_function_log_groups(every_run: ProgramRun) -> None:
    for group in every_run.of_type("aws:cloudwatch/logGroup:LogGroup"):
        allowed = permitted(every_run, "functions-role", "logs:PutLogEvents", f"{group.state['arn']}:log-stream:x")
        assert allowed == group.name.startswith("functions-"), group.name
    # And nothing outside what a VPC function needs.
    for action in ("iam:PassRole", "lambda:InvokeFunction", "ecs:RunTask", "rds:DescribeDBInstances"):
        assert not permitted(every_run, "functions-role", action, "*")


# Parliament reports RESOURCE_STAR on these: AWS documents "*" for a VPC function's network
# interfaces (the AWSLambdaVPCAccessExecutionRole policy), as Lambda picks the interfaces at run time.
ACCEPTED_FINDINGS = {
    "functions-role": {("RESOURCE_STAR", ("ec2:AssignPrivateIpAddresses", "ec2:CreateNetworkInterface",
                                          "ec2:DeleteNetworkInterface", "ec2:UnassignPrivateIpAddresses"))},
}


@pytest.mark.parametrize("role_name", ROLES)
def test_policies_pass_parliament(every_run: ProgramRun, role_name: str) -> None:
    for document in inline_policies(every_run, role_name):
        findings = parliament.analyze_policy_string(json.dumps(document)).findings
        reported = {(f.issue, tuple(f.detail) if isinstance(f.detail, list) else f.detail) for f in findings}
        assert reported == ACCEPTED_FINDINGS.get(role_name, set()), reported


def test_parliament_would_catch_a_wildcard_secret_read() -> None:
    # Control: the lint is not vacuous for the kind of mistake it guards against here.
    document = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"}]}
    assert parliament.analyze_policy_string(json.dumps(document)).findings
