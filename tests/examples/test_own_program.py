"""examples/own-program: a product's own Pulumi program with an existing VPC and an existing Aurora
PostgreSQL cluster, attaching a zip function and an image function of its own, run with lifeguard
installed from the wheel, outside the repository, under the mocks (#24.5).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from tests.examples.example_runs import (
    AWS_MANAGED,
    EXAMPLES,
    permitted,
    role_of,
    role_policies,
    run_example,
    secret_actions,
)
from tests.examples.installed import Installed
from tests.infra.infra_harness import ProgramRun, Resource

PROJECT = "acme-orders"
CONFIG = yaml.safe_load((EXAMPLES / "own-program" / "Pulumi.example.yaml").read_text())["config"]
VPC_ID = CONFIG[f"{PROJECT}:vpcId"]
SUBNETS = CONFIG[f"{PROJECT}:privateSubnetIds"]
CLUSTER = CONFIG[f"{PROJECT}:auroraClusterIdentifier"]
AURORA_GROUP = CONFIG[f"{PROJECT}:auroraSecurityGroupId"]
OWNER_SECRET = CONFIG[f"{PROJECT}:auroraOwnerSecretArn"]
WRITER = f"{CLUSTER}.cluster-c9akciq32.eu-west-1.rds.amazonaws.com"
OTHER_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:someone-elses-secret-AbCdEf"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("own")


@pytest.fixture(scope="module")
def own(installed: Installed, workdir: Path) -> ProgramRun:
    spec: dict[str, Any] = {
        "project": PROJECT, "stack": "prod",
        # As the engine passes config: strings, objects as JSON.
        "config": {key: value if isinstance(value, str) else json.dumps(value) for key, value in CONFIG.items()},
        "subnets": {subnet: [VPC_ID, f"eu-west-1{zone}"] for subnet, zone in zip(SUBNETS, "ab", strict=False)},
        "clusters": {CLUSTER: {
            "engine": "aurora-postgresql", "endpoint": WRITER,
            "readerEndpoint": WRITER.replace(".cluster-", ".cluster-ro-"), "port": 5432,
            "arn": f"arn:aws:rds:eu-west-1:123456789012:cluster:{CLUSTER}",
            "masterUserSecrets": [{"secretArn": OWNER_SECRET, "secretStatus": "active"}],
            "vpcSecurityGroupIds": [AURORA_GROUP],
        }},
    }
    return run_example(installed, "own-program", workdir, spec)


def functions(run: ProgramRun) -> dict[str, Resource]:
    return {f.name: f for f in run.of_type("aws:lambda/function:Function")}


def pooled_secret_arn(run: ProgramRun) -> str:
    arns = {f.input("environment")["variables"]["DATABASE_URL_SECRET_ARN"] for f in functions(run).values()}
    [arn] = arns
    return str(arn)


def test_it_brings_the_vpc_and_the_cluster_and_creates_neither(own: ProgramRun) -> None:
    for created in ("aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:rds/instance:Instance",
                    "aws:rds/cluster:Cluster", "aws:rds/clusterInstance:ClusterInstance"):
        assert not own.of_type(created), created
    assert ("aws:rds/getCluster:getCluster", {"clusterIdentifier": CLUSTER}) in [
        (token, {k: v for k, v in args.items() if k == "clusterIdentifier"}) for token, args in own.calls]
    # Everything that runs, runs in the VPC's own subnets.
    for function in functions(own).values():
        assert function.input("vpcConfig")["subnetIds"] == SUBNETS


def test_the_cluster_group_gets_one_rule_from_the_pooler_and_one_from_the_migration_job(own: ProgramRun) -> None:
    rules = [r for r in own.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
             if r.input("securityGroupId") == AURORA_GROUP]
    groups = {g.name: g.id for g in own.of_type("aws:ec2/securityGroup:SecurityGroup")}
    sources = sorted(r.input("referencedSecurityGroupId") for r in rules)
    assert sources == sorted([groups["network-pooler-sg"], groups["network-migration-sg"]])
    assert {(r.input("fromPort"), r.input("toPort")) for r in rules} == {(5432, 5432)}
    # Never a rule that opens the cluster to an address range.
    assert not [r for r in rules if r.input("cidrIpv4")]


def test_the_pooler_serves_the_writer_endpoint_and_the_pooled_url_names_the_ca_path(own: ProgramRun) -> None:
    task = own.one("aws:ecs/taskDefinition:TaskDefinition", "pooler")
    assert WRITER in json.dumps(task.inputs)
    [secret] = [s for s in own.of_type("aws:secretsmanager/secret:Secret") if s.state["arn"] == pooled_secret_arn(own)]
    [version] = [v for v in own.of_type("aws:secretsmanager/secretVersion:SecretVersion")
                 if v.input("secretId") == secret.id]
    url = urlsplit(version.input("secretString"))
    client = own.one("lifeguard:client:PooledClient")
    assert parse_qs(url.query)["sslrootcert"] == [client_output(own, client, "caPath")]
    assert parse_qs(url.query)["sslmode"] == ["verify-full"]


def client_output(run: ProgramRun, client: Resource, name: str) -> Any:
    # The client's registered outputs are not recorded by the mock monitor; its children's inputs are.
    if name == "caPath":
        [zip_function] = [f for f in functions(run).values() if f.input("packageType") != "Image"]
        return zip_function.input("environment")["variables"]["NODE_EXTRA_CA_CERTS"]
    raise KeyError(name)


def test_the_zip_function_gets_the_ca_layer_and_the_image_function_the_ca_in_its_image(own: ProgramRun) -> None:
    fns = functions(own)
    orders, reports = fns["orders"], fns["reports"]
    [layer] = own.of_type("aws:lambda/layerVersion:LayerVersion")
    assert orders.input("layers") == [layer.state["arn"]]
    assert reports.input("packageType") == "Image" and not reports.input("layers")
    image = own.one("docker:index/image:Image", "reports")
    assert reports.input("imageUri") == image.state["repoDigest"]
    [ca_cert] = own.of_type("tls:index/selfSignedCert:SelfSignedCert")
    build = image.input("build")
    assert build["args"]["POOLER_CA_PEM"] == ca_cert.state["certPem"]
    assert build["args"]["POOLER_CA_PATH"] == client_output(own, own.one("lifeguard:client:PooledClient"), "caPath")
    # The Dockerfile the image is built from writes that PEM at that path.
    dockerfile = (Path(build["context"]) / "Dockerfile").read_text()
    assert 'printf \'%s\\n\' "$POOLER_CA_PEM" > "$POOLER_CA_PATH"' in dockerfile
    assert reports.input("environment") == orders.input("environment")


@pytest.mark.parametrize("function_name", ["orders", "reports"])
def test_each_function_reads_the_pooled_secret_and_nothing_else(own: ProgramRun, function_name: str) -> None:
    function = functions(own)[function_name]
    documents, managed = role_policies(own, role_of(own, function))
    assert managed <= AWS_MANAGED, f"other managed policies on the role: {managed - AWS_MANAGED}"
    pooled = pooled_secret_arn(own)
    assert permitted(documents, "secretsmanager:GetSecretValue", pooled)
    assert secret_actions(documents) == {"secretsmanager:GetSecretValue"}
    others = [s.state["arn"] for s in own.of_type("aws:secretsmanager/secret:Secret") if s.state["arn"] != pooled]
    assert others, "the pooler's own secrets should be in the run"
    for arn in (*others, OWNER_SECRET, OTHER_SECRET, "*"):
        assert not permitted(documents, "secretsmanager:GetSecretValue", arn), arn
    assert "postgresql://" not in json.dumps(function.inputs)


def test_the_migration_task_reads_the_owner_secret_at_run_time(own: ProgramRun) -> None:
    # The owner's password stays in the cluster's secret: ECS injects it into the task, the program never reads it.
    task = own.one("aws:ecs/taskDefinition:TaskDefinition", "migration")
    injected = [s["valueFrom"] for c in json.loads(task.input("containerDefinitions")) for s in c.get("secrets", [])]
    assert any(value.startswith(OWNER_SECRET) for value in injected), injected
    assert not [call for call in own.calls if call[0].startswith("aws:secretsmanager/")]


def test_lifeguard_images_are_staged_in_the_users_project(own: ProgramRun, workdir: Path, installed: Installed) -> None:
    # The pooler's and the migration job's images build from the installed packages' Dockerfiles, staged
    # under the program's own build/ (a path relative to it, the same on every machine), not site-packages.
    program = workdir / "own-program"
    for image_name, package in (("pooler", "pgbouncer"), ("migration", "migrator")):
        [image] = [i for i in own.of_type("docker:index/image:Image") if i.name.startswith(image_name)]
        context = Path(image.input("build")["context"])
        assert not context.is_absolute() and context.parts[:2] == ("build", "image-contexts"), context
        assert (program / context / "Dockerfile").read_bytes() == (
            installed.site_packages / package / "Dockerfile").read_bytes()
