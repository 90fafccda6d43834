"""The library's public surface: the sample stack (infra/) is a consumer of ``lifeguard.aws``'s public names and
nothing else; ``Network`` refuses bad arguments before it creates anything; a stack without the sample functions
(``sampleFunctions: false``) is exactly the rest, with the outputs another stack attaches its functions by."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pulumi.provider.experimental.analyzer import Analyzer

import lifeguard.aws
from lifeguard.aws import AwsApiAccess, Network, NetworkArgs, NetworkError, PooledClient
from lifeguard.aws.outputs import (
    DIRECT_SECRET_ARN,
    ENDPOINTS_SECURITY_GROUP_ID,
    SAMPLE_FUNCTION_OUTPUTS,
    STACK_OUTPUTS,
)
from tests.infra.infra_harness import (
    REPO_ROOT,
    ProgramRun,
    example_stack_config,
    last_registrations,
    run_mocked,
    run_program,
)
from tests.infra.test_infra_stack import INVENTORY

INFRA = REPO_ROOT / "infra"


def library_imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, module, name) of every import from ``lifeguard.aws`` (or a module under it) in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lifeguard"):
            found += [(node.lineno, node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, "") for alias in node.names if alias.name.startswith("lifeguard")]
    return found


def test_the_sample_stack_imports_only_public_names() -> None:
    files = sorted(INFRA.glob("*.py"))
    assert {f.name for f in files} >= {"program.py", "samples.py"}
    private = [f"{path.name}:{line}: {module} {name}".strip()
               for path in files for line, module, name in library_imports(path)
               if module != "lifeguard.aws" or name not in lifeguard.aws.__all__]
    assert private == [], "import these through lifeguard.aws's public names (its _EXPORTS)"
    assert any(library_imports(INFRA / "program.py"))


def test_the_check_sees_a_private_import(tmp_path: Path) -> None:
    module = tmp_path / "program.py"
    module.write_text("from lifeguard.aws.pooler import Pooler\nfrom lifeguard.aws import _EXPORTS\n")
    names = [(m, n) for _, m, n in library_imports(module)]
    assert [(m, n) for m, n in names if m != "lifeguard.aws" or n not in lifeguard.aws.__all__] == names


def test_every_public_name_resolves() -> None:
    for name in lifeguard.aws.__all__:
        assert getattr(lifeguard.aws, name) is not None, name
    assert set(dir(lifeguard.aws)) == set(lifeguard.aws.__all__)


def test_the_schema_analyzer_accepts_network_and_pooled_client() -> None:
    schema = Analyzer("lifeguard").analyze([Network, PooledClient])
    client = schema["component_definitions"]["PooledClient"]
    assert {"vpcId", "poolerSecurityGroupId", "pooledSecretArn", "functionTimeoutSeconds"} <= set(client.inputs)
    assert not client.inputs["pooledSecretArn"].optional and client.inputs["kmsKeyArn"].optional
    assert set(client.outputs) == {"securityGroupId", "securityGroupIds", "policyArn", "environment", "caLayerArn",
                                   "caPem", "caPath"}
    assert "endpointsSecurityGroupId" in schema["component_definitions"]["Network"].outputs


BAD_NETWORKS: list[tuple[dict[str, Any], str, str]] = [
    ({"existing_vpc_id": "vpc-0123456789abcdef0", "existing_private_subnet_ids": ["subnet-0a"]},
     "existing_private_subnet_ids", "at least two"),
    ({"existing_vpc_id": "vpc-0123456789abcdef0", "existing_private_subnet_ids": ["subnet-0a", "subnet-0b"],
      "availability_zones": ["eu-west-1a", "eu-west-1b"]}, "availability_zones", "only for a new VPC"),
    ({"existing_vpc_id": "vpc-0123456789abcdef0", "existing_private_subnet_ids": ["subnet-0a", "subnet-0b"],
      "api_access": "nat"}, "api_access", "must be `none`"),
    ({"availability_zones": ["eu-west-1a"]}, "availability_zones", "at least two distinct"),
    ({"availability_zones": ["eu-west-1a", "eu-west-1b"], "api_access": "none"}, "api_access", "only for an existing"),
    ({"availability_zones": ["eu-west-1a", "eu-west-1b"], "api_access": "internet"}, "api_access", "one of"),
    ({"availability_zones": ["eu-west-1a", "eu-west-1b"], "vpc_cidr": "10.0.0.0/26"}, "vpc_cidr", "/16 to /24"),
    ({"availability_zones": ["eu-west-1a", "eu-west-1b"], "existing_private_subnet_ids": ["subnet-0a"]},
     "existing_private_subnet_ids", "only together with existing_vpc_id"),
]


@pytest.mark.parametrize(("args", "field", "fragment"), BAD_NETWORKS)
def test_network_refuses_bad_arguments_before_anything_exists(args: dict[str, Any], field: str, fragment: str) -> None:
    network_args: NetworkArgs = {"region": "eu-west-1", **args}  # type: ignore[typeddict-item]
    with pytest.raises(NetworkError) as error:
        run_mocked(lambda: {"vpc": Network("network", network_args).vpc_id})
    assert str(error.value).startswith(f"NetworkArgs.{field}: ") and fragment in str(error.value)
    assert [r.type for r in last_registrations() if r.type != "pulumi:pulumi:Stack"] == []


def test_network_tags_reach_its_resources() -> None:
    run = run_mocked(lambda: {"vpc": Network("net", {"region": "eu-west-1", "api_access": AwsApiAccess.NAT,
                                                     "availability_zones": ["eu-west-1a", "eu-west-1b"],
                                                     "tags": {"team": "data"}}).vpc_id})
    # Every custom resource but the associations, which EC2 does not tag.
    tagged = [r for r in run.resources if r.custom and r.type != "aws:ec2/routeTableAssociation:RouteTableAssociation"]
    untagged = [r.type for r in tagged if (r.input("tags") or {}).get("team") != "data"]
    assert untagged == [], untagged
    assert run.one("aws:ec2/vpc:Vpc").input("tags") == {"team": "data", "Name": "net-vpc"}


# -- a stack without the sample functions ----------------------------------------------------------

SAMPLE_PARTS = {
    "lifeguard:functions:Functions": 1,
    "aws:lambda/function:Function": 3,
    "aws:cloudwatch/logGroup:LogGroup": 3,
    "aws:iam/role:Role": 1,
    "aws:iam/rolePolicy:RolePolicy": 1,
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": 1,
}


@pytest.fixture(scope="module")
def no_samples_run(build_dir: Path) -> ProgramRun:
    return run_program({**example_stack_config(), "lifeguard:sampleFunctions": "false"}, build_dir / "no-samples")


def test_without_the_sample_functions_the_stack_is_exactly_the_rest(
    no_samples_run: ProgramRun, build_dir: Path
) -> None:
    expected = Counter(INVENTORY)
    expected.subtract(SAMPLE_PARTS)
    assert Counter(r.type for r in no_samples_run.resources) == +expected
    # Nor were their zips built (no wheels downloaded, no npm).
    assert not (build_dir / "no-samples" / "lambda").exists() and not (build_dir / "no-samples" / "node").exists()


def test_without_the_sample_functions_the_outputs_are_what_other_stacks_need(no_samples_run: ProgramRun) -> None:
    outputs = no_samples_run.outputs
    assert set(outputs) == STACK_OUTPUTS | {ENDPOINTS_SECURITY_GROUP_ID, DIRECT_SECRET_ARN}
    assert not set(outputs) & SAMPLE_FUNCTION_OUTPUTS
    client_group = no_samples_run.one("aws:ec2/securityGroup:SecurityGroup", "functions-sg")
    assert outputs["clientSecurityGroupId"] == client_group.id
    nlb_group = no_samples_run.one("aws:ec2/securityGroup:SecurityGroup", "nlb-sg")
    assert outputs["poolerSecurityGroupId"] == nlb_group.id
    assert outputs["privateSubnetIds"] == sorted(s.id for s in no_samples_run.of_type("aws:ec2/subnet:Subnet"))
    assert (outputs["poolerQueryWaitTimeoutSeconds"], outputs["poolerPreparedStatements"], outputs["poolerPort"]) == (
        20, True, 6432)
    # The policy exists for other stacks' roles, attached to none here.
    assert outputs["pooledSecretPolicyArn"] == no_samples_run.one("aws:iam/policy:Policy").state["arn"]
