"""The attach unit, ``lifeguard.aws.PooledClient``, under Pulumi's mocks: from plain strings (as another stack's
outputs give them), through ``pooled_client_args_from_stack`` from a real run's outputs, and in the sample
stack; its security-group rules exactly, each egress choice, its IAM policy evaluated, and the arguments it
refuses before it registers anything."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest
from moto.iam.access_control import IAMPolicy, PermissionResult

from lifeguard.aws import CA_PATH, PooledClient, PooledClientArgs, PooledClientError, pooled_client_args_from_stack
from tests.infra.infra_harness import ProgramRun, StrictMocks, last_registrations, run_mocked
from tests.infra.test_infra_iam import OTHER_SECRET, allows

ACCOUNT = "123456789012"
POOLED = f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:lifeguard-dev-8ce48526/DATABASE_URL-AbCdEf-Xy12Z3"
DIRECT = f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:lifeguard-dev-8ce48526/DATABASE_URL_UNPOOLED-Zz-Ab12Cd"
POOLER_SG = "sg-0aaaaaaaaaaaaaaa0"
ENDPOINTS_SG = "sg-0eeeeeeeeeeeeeee0"
OWN_SG = "sg-0bbbbbbbbbbbbbbb0"
KEY = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
LAYER = f"arn:aws:lambda:eu-west-1:{ACCOUNT}:layer:lifeguard-dev-pooler-ca-8ce48526:1"


def plain_args(**changes: Any) -> PooledClientArgs:
    """Every argument a plain string or number, as read from another stack's outputs."""
    args: dict[str, Any] = {
        "vpc_id": "vpc-0123456789abcdef0",
        "pooler_security_group_id": POOLER_SG,
        "pooler_port": 6432,
        "pooled_secret_arn": POOLED,
        "ca_layer_arn": LAYER,
        "ca_pem": PEM,
        "prepared_statements": True,
        "query_wait_timeout_seconds": 20,
        "function_timeout_seconds": 30,
    }
    args.update(changes)
    return args  # type: ignore[return-value]


def run_client(
    args: PooledClientArgs, then: Callable[[PooledClient], Mapping[str, Any]] | None = None,
    mocks: StrictMocks | None = None,
) -> ProgramRun:
    def program() -> Mapping[str, Any]:
        client = PooledClient("app", args)
        return {
            "securityGroupId": client.security_group_id, "securityGroupIds": client.security_group_ids,
            "policyArn": client.policy_arn, "environment": client.environment, "caLayerArn": client.ca_layer_arn,
            "caPem": client.ca_pem, "caPath": client.ca_path, **(then(client) if then else {}),
        }

    return run_mocked(program, mocks=mocks)


def rules(run: ProgramRun) -> set[tuple[str, str, str, int, str]]:
    """(direction, group, peer, port, description) for every rule; the client group reads as ``client``."""
    client = run.one("aws:ec2/securityGroup:SecurityGroup").id
    found = set()
    for kind, direction in (("Ingress", "in"), ("Egress", "out")):
        for rule in run.of_type(f"aws:vpc/securityGroup{kind}Rule:SecurityGroup{kind}Rule"):
            assert rule.input("ipProtocol") == "tcp" and rule.input("fromPort") == rule.input("toPort")
            group = "client" if rule.input("securityGroupId") == client else rule.input("securityGroupId")
            referenced = rule.input("referencedSecurityGroupId")
            peer = "client" if referenced == client else (referenced or rule.input("cidrIpv4"))
            found.add((direction, group, peer, int(rule.input("fromPort")), rule.input("description")))
    return found


def policy_document(run: ProgramRun) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(run.one("aws:iam/policy:Policy").input("policy"))
    return document


def reads(run: ProgramRun, secret: str) -> bool:
    return allows([policy_document(run)], "secretsmanager:GetSecretValue", secret)


PAIR_TO_POOLER = {("out", "client", POOLER_SG, 6432, "app-to-nlb"), ("in", POOLER_SG, "client", 6432, "app-to-nlb")}


def test_from_plain_strings_the_group_the_rules_and_the_outputs() -> None:
    run = run_client(plain_args())
    group = run.one("aws:ec2/securityGroup:SecurityGroup")
    assert group.inputs == {"vpcId": "vpc-0123456789abcdef0", "revokeRulesOnDelete": True, "tags": {"Name": "app"},
                            "description": "Clients of the lifeguard pooler: reach it on its port"}
    # Separate rule resources, never inline: the pooler's group gets its ingress from this client only.
    assert "ingress" not in group.inputs and "egress" not in group.inputs
    assert rules(run) == PAIR_TO_POOLER | {
        ("out", "client", "0.0.0.0/0", 443, "AWS APIs (Secrets Manager, ECR, Logs) over HTTPS through the VPC route")}
    outputs = run.outputs
    assert outputs["securityGroupId"] == group.id and outputs["securityGroupIds"] == [group.id]
    assert outputs["environment"] == {"DATABASE_URL_SECRET_ARN": POOLED, "LIFEGUARD_POOLER_PREPARED_STATEMENTS": "1",
                                      "NODE_EXTRA_CA_CERTS": CA_PATH}
    assert (outputs["caLayerArn"], outputs["caPem"], outputs["caPath"]) == (LAYER, PEM, "/opt/lifeguard/pooler-ca.pem")
    assert outputs["policyArn"] == run.one("aws:iam/policy:Policy").state["arn"]
    # Every child is the client's.
    client = run.one("lifeguard:client:PooledClient")
    assert all(r.parent == client.urn for r in run.resources if r.custom)


def test_the_policy_reads_exactly_the_pooled_secret() -> None:
    run = run_client(plain_args())
    assert reads(run, POOLED)
    for other in (DIRECT, OTHER_SECRET, "*", POOLED + "-more"):
        assert not reads(run, other), other
    for action in ("secretsmanager:PutSecretValue", "secretsmanager:DescribeSecret", "secretsmanager:ListSecrets",
                   "kms:Decrypt", "secretsmanager:GetSecretValue"):
        target = KEY if action == "kms:Decrypt" else DIRECT
        assert not allows([policy_document(run)], action, target), action
    assert [s["Sid"] for s in policy_document(run)["Statement"]] == ["ReadPooledDatabaseUrl"]


def test_a_customer_managed_key_is_decryptable_through_secrets_manager_only() -> None:
    run = run_client(plain_args(kms_key_arn=KEY))
    document = policy_document(run)
    assert reads(run, POOLED) and not reads(run, DIRECT)
    [decrypt] = [s for s in document["Statement"] if s["Sid"] == "DecryptPooledDatabaseUrl"]
    assert decrypt["Action"] == ["kms:Decrypt"] and decrypt["Resource"] == [KEY]
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com"}}
    assert not allows([document], "kms:Decrypt", KEY.replace("0f1e2d3c", "99999999"))
    assert not allows([document], "kms:Encrypt", KEY)


def test_own_security_groups_get_no_https_rule_and_are_left_untouched() -> None:
    run = run_client(plain_args(security_group_ids=[OWN_SG]))
    assert rules(run) == PAIR_TO_POOLER
    assert run.outputs["securityGroupIds"] == [run.outputs["securityGroupId"], OWN_SG]
    assert len(run.of_type("aws:ec2/securityGroup:SecurityGroup")) == 1


def test_own_security_groups_and_https_together() -> None:
    run = run_client(plain_args(security_group_ids=[OWN_SG], allow_https_egress=True))
    assert ("out", "client", "0.0.0.0/0", 443) in {rule[:4] for rule in rules(run)}


def test_through_the_vpc_endpoints() -> None:
    run = run_client(plain_args(endpoints_security_group_id=ENDPOINTS_SG))
    assert rules(run) == PAIR_TO_POOLER | {("out", "client", ENDPOINTS_SG, 443, "app-to-endpoints"),
                                           ("in", ENDPOINTS_SG, "client", 443, "app-to-endpoints")}


def test_tags_reach_every_taggable_child_and_name_names_the_group_only() -> None:
    run = run_client(plain_args(tags={"team": "billing", "Name": "billing-clients"}))
    group = run.one("aws:ec2/securityGroup:SecurityGroup")
    assert group.input("tags") == {"Name": "billing-clients", "team": "billing"}
    children = [*run.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"),
                *run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"),
                *run.of_type("aws:iam/policy:Policy")]
    assert children and all(child.input("tags") == {"team": "billing"} for child in children)


def test_grant_attaches_the_policy_to_any_role() -> None:
    def grants(client: PooledClient) -> Mapping[str, Any]:
        role = aws.iam.Role("worker", assume_role_policy="{}")
        client.grant(role)
        client.grant("existing-role-name")
        return {}

    run = run_client(plain_args(), grants)
    client = run.one("lifeguard:client:PooledClient")
    policy_arn = run.one("aws:iam/policy:Policy").state["arn"]
    attachments = {(a.name, a.input("role"), a.input("policyArn"), a.parent)
                   for a in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")}
    role_name = run.one("aws:iam/role:Role").state["name"]
    assert attachments == {("app-worker", role_name, policy_arn, client.urn),
                           ("app-existing-role-name", "existing-role-name", policy_arn, client.urn)}


def test_grant_refuses_what_is_not_a_role() -> None:
    with pytest.raises(PooledClientError, match=r"grant: give an aws\.iam\.Role or a role's name"):
        run_client(plain_args(), lambda client: {"x": client.grant("")})


# (changes, the field the message names, a fragment of the explanation)
BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"vpc_id": None}, "vpc_id", "is required"),
    ({"pooler_security_group_id": ""}, "pooler_security_group_id", "is required"),
    ({"pooled_secret_arn": "DATABASE_URL"}, "pooled_secret_arn", "full ARN"),
    ({"pooled_secret_arn": POOLED.replace("secretsmanager", "ssm")}, "pooled_secret_arn", "full ARN"),
    ({"kms_key_arn": f"arn:aws:kms:eu-west-1:{ACCOUNT}:alias/db"}, "kms_key_arn", "not an alias"),
    ({"pooler_port": 0}, "pooler_port", "TCP port"),
    ({"pooler_port": "6432"}, "pooler_port", "TCP port"),
    ({"query_wait_timeout_seconds": 0}, "query_wait_timeout_seconds", "at least 1"),
    ({"function_timeout_seconds": 20}, "function_timeout_seconds", "must be longer than the pooler's query_wait"),
    ({"function_timeout_seconds": 10}, "function_timeout_seconds", "(10 s) must be longer"),
    ({"security_group_ids": ["default"]}, "security_group_ids", "not a security group ID"),
    ({"allow_https_egress": "yes"}, "allow_https_egress", "true or false"),
    ({"allow_https_egress": False}, "allow_https_egress", "could not reach Secrets Manager"),
]


@pytest.mark.parametrize(("changes", "field", "fragment"), BAD)
def test_bad_arguments_are_refused_before_anything_is_registered(
    changes: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(PooledClientError) as error:
        run_client(plain_args(**changes))
    assert str(error.value).startswith(f"PooledClientArgs.{field}: ") and fragment in str(error.value)
    assert [r.type for r in last_registrations() if r.type != "pulumi:pulumi:Stack"] == []


def test_a_timeout_known_only_at_run_time_is_checked_there() -> None:
    """Outputs (another stack's, a component's) are checked when they resolve: the run fails, with the reason
    (Pulumi wraps it in the ValueError of the output it was resolving)."""
    with pytest.raises(ValueError, match=r"\(20 s\) must be longer than the pooler's query_wait_timeout \(25 s\)"):
        run_client(plain_args(query_wait_timeout_seconds=pulumi.Output.from_input(25), function_timeout_seconds=20))
    # A good pair as Outputs passes; without a function timeout (a client no function of the program attaches
    # yet) there is nothing to check.
    run = run_client(plain_args(query_wait_timeout_seconds=pulumi.Output.from_input(20),
                                function_timeout_seconds=pulumi.Output.from_input(21)))
    assert run.outputs["environment"]["DATABASE_URL_SECRET_ARN"] == POOLED
    shared = plain_args()
    del shared["function_timeout_seconds"]
    assert run_client(shared).outputs["environment"]["DATABASE_URL_SECRET_ARN"] == POOLED


# -- from another stack's outputs (pulumi.StackReference) ---------------------------------------------


REFERENCED = "organization/lifeguard/dev"


def run_from_stack(outputs: Mapping[str, Any], **options: Any) -> ProgramRun:
    def program() -> Mapping[str, Any]:
        stack = pulumi.StackReference(REFERENCED)
        client = PooledClient("app", pooled_client_args_from_stack(stack, **options))
        return {"environment": client.environment, "securityGroupIds": client.security_group_ids,
                "caLayerArn": client.ca_layer_arn, "caPem": client.ca_pem}

    return run_mocked(program, mocks=StrictMocks(stack_references={REFERENCED: outputs}))


def test_from_the_sample_stacks_outputs(example_run: ProgramRun) -> None:
    stack = example_run.outputs
    run = run_from_stack(stack, function_timeout_seconds=30, through_endpoints=True)
    assert rules(run) == {
        ("out", "client", stack["poolerSecurityGroupId"], 6432, "app-to-nlb"),
        ("in", stack["poolerSecurityGroupId"], "client", 6432, "app-to-nlb"),
        ("out", "client", stack["endpointsSecurityGroupId"], 443, "app-to-endpoints"),
        ("in", stack["endpointsSecurityGroupId"], "client", 443, "app-to-endpoints"),
    }
    assert run.one("aws:ec2/securityGroup:SecurityGroup").input("vpcId") == stack["vpcId"]
    assert run.outputs["environment"] == {"DATABASE_URL_SECRET_ARN": stack["pooledSecretArn"],
                                          "LIFEGUARD_POOLER_PREPARED_STATEMENTS": "1", "NODE_EXTRA_CA_CERTS": CA_PATH}
    assert run.outputs["caLayerArn"] == stack["poolerCaLayerArn"]
    assert run.outputs["caPem"] == stack["poolerCaCertificate"]
    # Reads the pooled secret, and neither the direct one nor the pooler's own.
    assert reads(run, stack["pooledSecretArn"])
    for other in ("directSecretArn", "poolerSecretArn", "poolerStatsSecretArn"):
        assert not reads(run, stack[other]), other


def test_from_a_nat_stacks_outputs_https_egress(nat_run: ProgramRun) -> None:
    run = run_from_stack(nat_run.outputs, function_timeout_seconds=30, through_endpoints=False)
    assert ("out", "client", "0.0.0.0/0", 443) in {rule[:4] for rule in rules(run)}
    assert "endpointsSecurityGroupId" not in nat_run.outputs


def test_a_function_timeout_below_the_stacks_query_wait_fails_the_run(example_run: ProgramRun) -> None:
    assert example_run.outputs["poolerQueryWaitTimeoutSeconds"] == 20
    with pytest.raises(ValueError, match=r"\(15 s\) must be longer than the pooler's query_wait_timeout \(20 s\)"):
        run_from_stack(example_run.outputs, function_timeout_seconds=15, through_endpoints=True)


# -- the sample stack's own client -----------------------------------------------------------------


def test_the_stacks_client_is_exported_and_is_what_the_sample_functions_use(every_run: ProgramRun) -> None:
    outputs = every_run.outputs
    group = every_run.one("aws:ec2/securityGroup:SecurityGroup", "functions-sg")
    assert outputs["clientSecurityGroupId"] == group.id
    assert outputs["pooledSecretPolicyArn"] == every_run.one("aws:iam/policy:Policy").state["arn"]
    for function in every_run.of_type("aws:lambda/function:Function"):
        assert function.input("vpcConfig")["securityGroupIds"] == [group.id]
        assert function.input("vpcConfig")["subnetIds"] == outputs["privateSubnetIds"]
        assert function.input("layers") == [outputs["poolerCaLayerArn"]]
    policy = json.loads(every_run.one("aws:iam/policy:Policy").input("policy"))
    assert allows([policy], "secretsmanager:GetSecretValue", outputs["pooledSecretArn"])
    # The direct URL's secret, or the owner secret the migration job reads instead of it.
    owner = outputs.get("directSecretArn") or outputs["databaseOwnerSecretArn"]
    assert not allows([policy], "secretsmanager:GetSecretValue", owner)
    verdict = IAMPolicy(json.dumps(policy)).is_action_permitted("secretsmanager:GetSecretValue",
                                                                outputs["poolerSecretArn"])
    assert verdict != PermissionResult.PERMITTED
