"""examples/attach-from-another-stack: a separate stack attaches its own function through the sample
stack's outputs (``pulumi.StackReference``), with lifeguard installed from the wheel (#24.5).

The referenced outputs are the sample stack's own, from a run of infra/program.py under the mocks (with
``sampleFunctions: false``, as a team bringing only its own functions deploys it), so an output this stack
needs and the sample stack stops exporting fails here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lifeguard.aws import outputs as names
from tests.examples.example_runs import (
    AWS_MANAGED,
    EXAMPLES,
    permitted,
    role_of,
    role_policies,
    run_example,
    secret_actions,
)
from tests.examples.installed import REPO_ROOT, Installed
from tests.infra.infra_harness import ProgramRun, example_stack_config, run_program

LIFEGUARD_STACK = "acme/lifeguard/prod"
OTHER_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:someone-elses-secret-AbCdEf"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> ProgramRun:
    config = {**example_stack_config(), "lifeguard:sampleFunctions": "false"}
    return run_program(config, tmp_path_factory.mktemp("sample-build"), stack="prod")


@pytest.fixture(scope="module")
def attached(installed: Installed, sample: ProgramRun, tmp_path_factory: pytest.TempPathFactory) -> ProgramRun:
    spec: dict[str, Any] = {
        "project": "audit", "stack": "prod",
        "config": {"audit:lifeguardStack": LIFEGUARD_STACK},
        "stack_references": {LIFEGUARD_STACK: sample.outputs},
    }
    return run_example(installed, "attach-from-another-stack", tmp_path_factory.mktemp("attach"), spec)


def test_it_creates_only_what_it_attaches(attached: ProgramRun) -> None:
    # The pooler, the database and every secret stay the lifeguard stack's.
    for foreign in ("aws:secretsmanager/secret:Secret", "aws:ecs/service:Service", "aws:rds/instance:Instance",
                    "aws:ec2/vpc:Vpc", "aws:lb/loadBalancer:LoadBalancer"):
        assert not attached.of_type(foreign), foreign
    [reference] = attached.of_type("pulumi:pulumi:StackReference")
    assert reference.name == LIFEGUARD_STACK


def test_the_function_gets_the_pooled_secret_arn_the_ca_and_the_client_group(
    attached: ProgramRun, sample: ProgramRun
) -> None:
    [function] = attached.of_type("aws:lambda/function:Function")
    client = attached.one("lifeguard:client:PooledClient")
    [group] = [g for g in attached.of_type("aws:ec2/securityGroup:SecurityGroup") if g.parent == client.urn]
    variables = function.input("environment")["variables"]
    assert variables["DATABASE_URL_SECRET_ARN"] == sample.outputs[names.POOLED_SECRET_ARN]
    assert variables["NODE_EXTRA_CA_CERTS"] == sample.outputs[names.POOLER_CA_PATH]
    assert function.input("layers") == [sample.outputs[names.POOLER_CA_LAYER_ARN]]
    assert function.input("vpcConfig")["subnetIds"] == sample.outputs[names.PRIVATE_SUBNET_IDS]
    assert group.id in function.input("vpcConfig")["securityGroupIds"]
    # The URL's value never leaves its secret: not in the function's settings, not in this stack's outputs.
    assert "postgresql://" not in json.dumps(function.inputs) + json.dumps(attached.outputs)


def test_the_client_group_is_let_into_the_pooler_on_its_port(attached: ProgramRun, sample: ProgramRun) -> None:
    client = attached.one("lifeguard:client:PooledClient")
    [group] = [g for g in attached.of_type("aws:ec2/securityGroup:SecurityGroup") if g.parent == client.urn]
    pooler_group = sample.outputs[names.POOLER_SECURITY_GROUP_ID]
    port = sample.outputs[names.POOLER_PORT]
    ingress = [r for r in attached.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
               if r.input("securityGroupId") == pooler_group]
    assert [(r.input("referencedSecurityGroupId"), r.input("fromPort"), r.input("toPort")) for r in ingress] == [
        (group.id, port, port)]
    egress = {(r.input("referencedSecurityGroupId") or r.input("cidrIpv4"), r.input("fromPort"))
              for r in attached.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
              if r.input("securityGroupId") == group.id}
    assert (pooler_group, port) in egress


def test_the_function_reads_the_pooled_secret_and_nothing_else(attached: ProgramRun, sample: ProgramRun) -> None:
    [function] = attached.of_type("aws:lambda/function:Function")
    documents, managed = role_policies(attached, role_of(attached, function))
    assert managed <= AWS_MANAGED, f"other managed policies on the function's role: {managed - AWS_MANAGED}"
    pooled = sample.outputs[names.POOLED_SECRET_ARN]
    assert permitted(documents, "secretsmanager:GetSecretValue", pooled)
    assert secret_actions(documents) == {"secretsmanager:GetSecretValue"}
    for other in (names.DIRECT_SECRET_ARN, names.POOLER_SECRET_ARN, names.POOLER_STATS_SECRET_ARN):
        assert not permitted(documents, "secretsmanager:GetSecretValue", sample.outputs[other]), other
    for arn in (OTHER_SECRET, "*"):
        assert not permitted(documents, "secretsmanager:GetSecretValue", arn)


def test_the_check_would_see_a_broader_grant() -> None:
    # Control: a role that could read every secret fails each of the checks above.
    broad = [{"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "secretsmanager:ListSecrets"],
         "Resource": "*"}]}]
    assert permitted(broad, "secretsmanager:GetSecretValue", OTHER_SECRET)
    assert secret_actions(broad) != {"secretsmanager:GetSecretValue"}


def test_the_example_is_copied_from_the_repository(attached: ProgramRun) -> None:
    # What ran is the committed example: its function's code is the folder next to its program.
    [function] = attached.of_type("aws:lambda/function:Function")
    path = Path(function.inputs["code"]["FileArchive"])
    assert path.name == "audit" and (path / "index.mjs").read_bytes() == (
        EXAMPLES / "attach-from-another-stack" / "functions" / "audit" / "index.mjs").read_bytes()
    assert not path.is_relative_to(REPO_ROOT)
