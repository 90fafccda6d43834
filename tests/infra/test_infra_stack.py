"""The whole program, run with the committed example stack: assertions on every registered resource."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from lifeguard.aws.outputs import DIRECT_SECRET_ARN, ENDPOINTS_SECURITY_GROUP_ID, SAMPLE_FUNCTION_OUTPUTS, STACK_OUTPUTS
from pgbouncer.scram import APP_ITERATIONS, scram_verifier
from pgbouncer.settings import PoolerSettings
from pgbouncer.sizing import PoolBudget
from pgbouncer.versions import PINNED
from tests.infra.infra_harness import (
    MOCK_APP_PASSWORD,
    MOCK_PASSWORD,
    REPO_ROOT,
    ROOT_STACK_TYPE,
    ProgramRun,
    Resource,
    is_secret,
    unwrap,
    walk_plain_strings,
)
from tests.infra.variants import EXISTING_DB_SECURITY_GROUP, EXISTING_INSTANCE_PORT
from tests.secrecy import assert_no_secret
from tests.support import NODE

COMPONENTS = {
    "lifeguard:network:Network",
    "lifeguard:database:Database",
    "lifeguard:database:AppRoleCredentials",
    "lifeguard:pooler:Pooler",
    "lifeguard:secrets:ConnectionSecrets",
    "lifeguard:functions:Functions",
    "lifeguard:client:PooledClient",
    "lifeguard:migration:MigrationJob",
    "lifeguard:image:ContainerImage",
    "lifeguard:observability:Observability",
    "lifeguard:tls:PoolerCertificateAuthority",
    "lifeguard:tls:PoolerCertificate",
}


def containers(task_definition: Resource) -> list[dict[str, Any]]:
    definitions: list[dict[str, Any]] = json.loads(task_definition.input("containerDefinitions"))
    return definitions


def pooler_task(run: ProgramRun) -> Resource:
    return run.one("aws:ecs/taskDefinition:TaskDefinition", "pooler")


def pooler_container(run: ProgramRun, name: str = "pgbouncer") -> dict[str, Any]:
    [container] = [c for c in containers(pooler_task(run)) if c["name"] == name]
    return container


def credentials_versions(run: ProgramRun) -> str:
    """The pooler's secrets' version ids, which its task definition names so that a new value rolls the tasks."""
    environment = pooler_container(run)["environment"]
    [value] = [e["value"] for e in environment if e["name"] == "LIFEGUARD_CREDENTIALS_VERSIONS"]
    assert isinstance(value, str)
    return value


def migration_task(run: ProgramRun) -> Resource:
    return run.one("aws:ecs/taskDefinition:TaskDefinition", "migration")


def secret_arn(run: ProgramRun, name: str) -> str:
    arn: str = run.one("aws:secretsmanager/secret:Secret", name).state["arn"]
    return arn


def secret_value(run: ProgramRun, name: str) -> Any:
    return run.one("aws:secretsmanager/secretVersion:SecretVersion", name).inputs["secretString"]


# -- structure ----------------------------------------------------------------------------------


def test_every_child_is_parented_to_its_component(every_run: ProgramRun, variant: str) -> None:
    by_urn = {r.urn: r for r in every_run.resources}
    components = [r for r in every_run.resources if not r.custom]
    assert {c.type for c in components} == COMPONENTS
    for component in components:
        parent_type = component.parent.split("::")[2]
        if component.type == "lifeguard:image:ContainerImage":
            assert by_urn[component.parent].type in ("lifeguard:pooler:Pooler", "lifeguard:migration:MigrationJob")
        elif component.type == "lifeguard:tls:PoolerCertificate":
            assert by_urn[component.parent].type == "lifeguard:pooler:Pooler"
        else:
            assert parent_type == ROOT_STACK_TYPE, component.name
    for resource in every_run.resources:
        if resource.custom:
            assert resource.parent in by_urn, f"{resource.type} {resource.name} is not under a component"
            assert not by_urn[resource.parent].custom
            # The component name prefixes every child's name.
            assert resource.name.startswith(by_urn[resource.parent].name), resource.name

    def owner(type_: str, name: str = "") -> str:
        return by_urn[every_run.one(type_, name).parent].type

    if variant not in EXISTING_VPC_VARIANTS:  # those stacks create no VPC, only their security groups
        assert owner("aws:ec2/vpc:Vpc") == "lifeguard:network:Network"
    if variant in EXISTING_DATABASE_VARIANTS:
        assert not every_run.of_type("aws:rds/instance:Instance")
        # No group of the stack's own for a database it does not create.
        assert not [g for g in every_run.of_type("aws:ec2/securityGroup:SecurityGroup") if "database" in g.name]
        assert owner("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "database-client-0-in") == (
            "lifeguard:database:Database")
    else:
        assert owner("aws:ec2/securityGroup:SecurityGroup", "database-sg") == "lifeguard:network:Network"
        assert owner("aws:rds/instance:Instance") == "lifeguard:database:Database"
        assert owner("aws:secretsmanager/secret:Secret", "direct") == "lifeguard:secrets:ConnectionSecrets"
    assert owner("aws:ecs/service:Service") == "lifeguard:pooler:Pooler"
    assert owner("aws:lb/loadBalancer:LoadBalancer") == "lifeguard:pooler:Pooler"
    assert owner("aws:secretsmanager/secret:Secret", "pooler-credentials") == "lifeguard:pooler:Pooler"
    assert owner("aws:secretsmanager/secret:Secret", "stats-credentials") == "lifeguard:pooler:Pooler"
    assert owner("aws:cloudwatch/metricAlarm:MetricAlarm", "clients-waiting") == "lifeguard:observability:Observability"
    assert owner("aws:cloudwatch/dashboard:Dashboard") == "lifeguard:observability:Observability"
    assert owner("aws:secretsmanager/secret:Secret", "pooled") == "lifeguard:secrets:ConnectionSecrets"
    assert owner("aws:lambda/function:Function", "charge-credits") == "lifeguard:functions:Functions"
    # The functions' group is their client's (it was the network's: aliased, tests/infra/continuity.py).
    assert owner("aws:ec2/securityGroup:SecurityGroup", "functions-sg") == "lifeguard:client:PooledClient"
    assert owner("aws:iam/policy:Policy") == "lifeguard:client:PooledClient"
    assert owner("aws:lambda/function:Function", "read-invoices-node") == "lifeguard:functions:Functions"
    assert owner("aws:ecs/taskDefinition:TaskDefinition", "migration") == "lifeguard:migration:MigrationJob"
    assert owner("docker:index/image:Image", "pooler") == "lifeguard:image:ContainerImage"


# Everything the example stack registers. A resource added or removed shows up here first, and
# every type below is asserted on by at least one test in this folder.
INVENTORY = {
    "aws:appautoscaling/policy:Policy": 1,
    "aws:appautoscaling/target:Target": 1,
    "aws:cloudwatch/dashboard:Dashboard": 1,
    "aws:cloudwatch/logGroup:LogGroup": 6,
    "aws:cloudwatch/metricAlarm:MetricAlarm": 6,
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": 1,
    "aws:ec2/routeTable:RouteTable": 2,
    "aws:ec2/routeTableAssociation:RouteTableAssociation": 2,
    "aws:ec2/securityGroup:SecurityGroup": 6,
    "aws:ec2/subnet:Subnet": 2,
    "aws:ec2/vpc:Vpc": 1,
    "aws:ec2/vpcEndpoint:VpcEndpoint": 5,
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": 2,
    "aws:ecr/repository:Repository": 2,
    "aws:ecs/cluster:Cluster": 2,
    "aws:ecs/service:Service": 1,
    "aws:ecs/taskDefinition:TaskDefinition": 2,
    "aws:iam/policy:Policy": 1,
    "aws:iam/role:Role": 4,  # the functions', the two execution roles, the migration task's (#28)
    "aws:iam/rolePolicy:RolePolicy": 4,
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": 1,
    "aws:lambda/function:Function": 3,
    "aws:lb/listener:Listener": 1,
    "aws:lb/loadBalancer:LoadBalancer": 1,
    "aws:lb/targetGroup:TargetGroup": 1,
    "aws:rds/instance:Instance": 1,
    "aws:rds/parameterGroup:ParameterGroup": 1,
    "aws:rds/subnetGroup:SubnetGroup": 1,
    "aws:lambda/layerVersion:LayerVersion": 1,
    "aws:secretsmanager/secret:Secret": 5,
    "aws:ssm/parameter:Parameter": 1,  # the migration job's record of the password rotation (#28)
    "aws:secretsmanager/secretVersion:SecretVersion": 5,
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": 9,
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": 7,
    "docker:index/image:Image": 2,
    "lifeguard:client:PooledClient": 1,
    "lifeguard:database:AppRoleCredentials": 1,
    "lifeguard:database:Database": 1,
    "lifeguard:functions:Functions": 1,
    "lifeguard:image:ContainerImage": 2,
    "lifeguard:migration:MigrationJob": 1,
    "lifeguard:network:Network": 1,
    "lifeguard:observability:Observability": 1,
    "lifeguard:pooler:Pooler": 1,
    "lifeguard:secrets:ConnectionSecrets": 1,
    "lifeguard:tls:PoolerCertificate": 1,
    "lifeguard:tls:PoolerCertificateAuthority": 1,
    "random:index/randomId:RandomId": 2,  # the SCRAM salts of the two login roles
    "random:index/randomPassword:RandomPassword": 4,
    "tls:index/certRequest:CertRequest": 1,
    "tls:index/locallySignedCert:LocallySignedCert": 1,
    "tls:index/privateKey:PrivateKey": 2,
    "tls:index/selfSignedCert:SelfSignedCert": 1,
}


def test_inventory_of_registered_resources(example_run: ProgramRun) -> None:
    assert dict(Counter(r.type for r in example_run.resources)) == INVENTORY


def test_clusters_and_image_lifecycle(example_run: ProgramRun) -> None:
    for cluster in example_run.of_type("aws:ecs/cluster:Cluster"):
        assert cluster.input("settings") == [{"name": "containerInsights", "value": "enabled"}]
    repositories = {r.state["name"] for r in example_run.of_type("aws:ecr/repository:Repository")}
    for lifecycle in example_run.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy"):
        assert lifecycle.input("repository") in repositories
        [rule] = json.loads(lifecycle.input("policy"))["rules"]
        assert rule["action"] == {"type": "expire"}
        assert rule["selection"]["countType"] == "imageCountMoreThan"


def test_only_expected_data_sources_are_called(example_run: ProgramRun) -> None:
    tokens = {token for token, _ in example_run.calls}
    assert tokens == {
        "aws:index/getRegion:getRegion",
        "aws:index/getAvailabilityZones:getAvailabilityZones",
        "aws:ecr/getAuthorizationToken:getAuthorizationToken",
        # The account the trust policies pin (aws:SourceAccount, aws:SourceArn).
        "aws:index/getCallerIdentity:getCallerIdentity",
        # Whether ECS's service-linked role exists (a brand-new account has none).
        "aws:iam/getRoles:getRoles",
        # The stack's own last outputs, read back for lifeguard.aws.deployed's checks (#27.4, #27.8).
        "pulumi:pulumi:readStackOutputs",
    }
    zones_call = next(args for token, args in example_run.calls if token.endswith("getAvailabilityZones"))
    assert zones_call["state"] == "available"


# -- network ------------------------------------------------------------------------------------


EXISTING_VPC_VARIANTS = ("existing-vpc-arm64", "existing-aurora", "existing-instance")
EXISTING_DATABASE_VARIANTS = ("existing-aurora", "existing-instance")


def sg_roles(run: ProgramRun) -> dict[str, str]:
    """Security group id -> role (functions, nlb, pooler, ...; ``existing-database``: not the stack's own)."""
    return {EXISTING_DB_SECURITY_GROUP: "existing-database",
            **{r.id: r.name.removeprefix("network-").removesuffix("-sg")
               for r in run.of_type("aws:ec2/securityGroup:SecurityGroup")}}


def sg_rules(run: ProgramRun) -> set[tuple[str, str, str, int]]:
    """(direction, group, peer, port) for every rule; peer is a group role, a CIDR or a prefix list."""
    roles = sg_roles(run)
    rules = set()
    for kind, direction in (("Ingress", "in"), ("Egress", "out")):
        for rule in run.of_type(f"aws:vpc/securityGroup{kind}Rule:SecurityGroup{kind}Rule"):
            assert rule.input("ipProtocol") == "tcp"
            assert rule.input("fromPort") == rule.input("toPort"), "a rule opens a port range"
            peer = (roles.get(rule.input("referencedSecurityGroupId") or "")
                    or rule.input("cidrIpv4") or rule.input("prefixListId"))
            assert peer, rule.name
            rules.add((direction, roles[rule.input("securityGroupId")], peer, int(rule.input("fromPort"))))
    return rules


# The whole security-group graph: with VPC endpoints (the example stack, production defaults) AWS's
# APIs are reached through the endpoints and S3's prefix list; through a NAT gateway or in an existing
# VPC, on 443 to the internet.
_CORE_GRAPH = {
    ("out", "functions", "nlb", 6432), ("in", "nlb", "functions", 6432),
    ("out", "nlb", "pooler", 6432), ("in", "pooler", "nlb", 6432),
    ("out", "pooler", "database", 5432), ("in", "database", "pooler", 5432),
    ("out", "migration", "database", 5432), ("in", "database", "migration", 5432),
}
S3_PREFIX_LIST = "pl-6da54004"
ENDPOINTS_GRAPH = _CORE_GRAPH | {
    ("out", "functions", "endpoints", 443), ("in", "endpoints", "functions", 443),
    ("out", "pooler", "endpoints", 443), ("in", "endpoints", "pooler", 443),
    ("out", "migration", "endpoints", 443), ("in", "endpoints", "migration", 443),
    ("out", "pooler", S3_PREFIX_LIST, 443), ("out", "migration", S3_PREFIX_LIST, 443),
}
INTERNET_GRAPH = _CORE_GRAPH | {
    ("out", "functions", "0.0.0.0/0", 443), ("out", "pooler", "0.0.0.0/0", 443),
    ("out", "migration", "0.0.0.0/0", 443),
}


def existing_database_graph(port: int) -> set[tuple[str, str, str, int]]:
    """The Database's rules for an existing database: the pooler and the migration job, to its port."""
    return {("out", "pooler", "existing-database", port), ("in", "existing-database", "pooler", port),
            ("out", "migration", "existing-database", port), ("in", "existing-database", "migration", port)}


# With an existing database the network makes no database group of its own: only the existing one's rules.
_NO_NEW_DATABASE = {rule for rule in _CORE_GRAPH if "database" in rule}
GRAPHS = {"example": ENDPOINTS_GRAPH, "production": ENDPOINTS_GRAPH, "nat": INTERNET_GRAPH,
          "existing-vpc-arm64": INTERNET_GRAPH,
          "existing-aurora": INTERNET_GRAPH - _NO_NEW_DATABASE | existing_database_graph(5432),
          "existing-instance": INTERNET_GRAPH - _NO_NEW_DATABASE | existing_database_graph(EXISTING_INSTANCE_PORT)}


def test_security_group_graph(every_run: ProgramRun, variant: str) -> None:
    assert sg_rules(every_run) == GRAPHS[variant]
    for group in every_run.of_type("aws:ec2/securityGroup:SecurityGroup"):
        # No inline rules that would bypass the graph above (and no default allow-all egress).
        assert "ingress" not in group.inputs and "egress" not in group.inputs
    if variant not in EXISTING_VPC_VARIANTS:  # the stack manages the default group only of a VPC it creates
        default = every_run.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
        assert not default.inputs.get("ingress") and not default.inputs.get("egress")


def assert_ec2_descriptions(run: ProgramRun) -> None:
    """EC2 rejects other characters (an apostrophe, say) at create time, which no mock would notice."""
    allowed = re.compile(r"^[a-zA-Z0-9. _\-:/()#,@\[\]+=;{}!$*]{0,255}$")
    for resource in run.resources:
        if "SecurityGroup" in resource.type and resource.input("description") is not None:
            assert allowed.match(resource.input("description")), (resource.name, resource.input("description"))


def test_security_group_descriptions_use_only_characters_ec2_accepts(every_run: ProgramRun) -> None:
    assert_ec2_descriptions(every_run)


def test_nothing_but_pooler_and_migration_reach_the_database(every_run: ProgramRun, variant: str) -> None:
    rules = sg_rules(every_run)
    databases = ("existing-database",) if variant in EXISTING_DATABASE_VARIANTS else ("database",)
    for database in databases:
        assert {peer for d, group, peer, _ in rules if d == "in" and group == database} == {"pooler", "migration"}
        assert {group for d, group, peer, _ in rules if d == "out" and peer == database} == {"pooler", "migration"}
    # The functions reach the NLB (the pooler) and AWS APIs, never the database.
    aws_apis = ("endpoints", 443) if GRAPHS[variant] is ENDPOINTS_GRAPH else ("0.0.0.0/0", 443)
    assert {(peer, port) for d, group, peer, port in rules if d == "out" and group == "functions"} == {
        ("nlb", 6432), aws_apis}
    if variant not in EXISTING_DATABASE_VARIANTS:
        db = every_run.one("aws:rds/instance:Instance")
        assert [sg_roles(every_run)[sg] for sg in db.input("vpcSecurityGroupIds")] == ["database"]


def test_private_subnets_span_two_azs_with_endpoints(example_run: ProgramRun) -> None:
    vpc = example_run.one("aws:ec2/vpc:Vpc")
    assert vpc.input("enableDnsHostnames") is True and vpc.input("enableDnsSupport") is True
    subnets = example_run.of_type("aws:ec2/subnet:Subnet")
    assert len(subnets) == 2
    assert len({s.input("availabilityZone") for s in subnets}) == 2
    assert all(s.input("mapPublicIpOnLaunch") is False for s in subnets)
    assert not example_run.of_type("aws:ec2/internetGateway:InternetGateway")
    assert not example_run.of_type("aws:ec2/natGateway:NatGateway")
    endpoints = {e.input("serviceName"): e for e in example_run.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")}
    assert set(endpoints) == {f"com.amazonaws.eu-west-1.{s}" for s in ("secretsmanager", "ecr.api", "ecr.dkr",
                                                                        "logs", "s3")}
    subnet_ids = {s.id for s in subnets}
    for service, endpoint in endpoints.items():
        if service.endswith(".s3"):
            assert endpoint.input("vpcEndpointType") == "Gateway"
            tables = {example_run.by_id(a.input("routeTableId")).id: a.input("subnetId")
                      for a in example_run.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")}
            assert {tables[t] for t in endpoint.input("routeTableIds")} == subnet_ids
        else:
            assert endpoint.input("vpcEndpointType") == "Interface"
            assert endpoint.input("privateDnsEnabled") is True
            assert set(endpoint.input("subnetIds")) == subnet_ids
            assert [sg_roles(example_run)[g] for g in endpoint.input("securityGroupIds")] == ["endpoints"]


# -- database -----------------------------------------------------------------------------------


def test_database_is_private_encrypted_and_backed_up(example_run: ProgramRun) -> None:
    db = example_run.one("aws:rds/instance:Instance")
    assert db.input("engine") == "postgres"
    assert int(db.input("engineVersion")) >= 16
    assert db.input("storageEncrypted") is True
    assert db.input("publiclyAccessible") is False
    assert db.input("backupRetentionPeriod") >= 1
    assert db.input("caCertIdentifier") == "rds-ca-rsa2048-g1"
    # The example stack is not production: no Multi-AZ, no deletion protection, no final snapshot.
    assert db.input("multiAz") is False
    assert db.input("deletionProtection") is False
    assert db.input("skipFinalSnapshot") is True
    assert db.input("dbName") == "app" and db.input("username") == "lifeguard"
    subnet_group = example_run.one("aws:rds/subnetGroup:SubnetGroup")
    assert db.input("dbSubnetGroupName") == subnet_group.state["name"]
    assert set(subnet_group.input("subnetIds")) == {s.id for s in example_run.of_type("aws:ec2/subnet:Subnet")}


def test_parameter_group_sets_max_connections_and_forces_tls(example_run: ProgramRun) -> None:
    db = example_run.one("aws:rds/instance:Instance")
    group = example_run.one("aws:rds/parameterGroup:ParameterGroup")
    assert db.input("parameterGroupName") == group.state["name"]
    assert group.input("family") == f"postgres{db.input('engineVersion')}"
    parameters = {p["name"]: p for p in group.input("parameters")}
    assert parameters["max_connections"]["value"] == "100"
    assert parameters["max_connections"]["applyMethod"] == "pending-reboot"
    assert parameters["rds.force_ssl"]["value"] == "1"


def test_password_is_generated_and_only_ever_secret(every_run: ProgramRun, variant: str) -> None:
    # The database's and the console user's: both generated, neither with characters to quote.
    for password in every_run.of_type("random:index/randomPassword:RandomPassword"):
        assert password.input("length") >= 32
        assert password.input("special") is False
    if variant in EXISTING_DATABASE_VARIANTS:
        # The owner's password is the existing database's: the stack neither makes nor holds one.
        assert not [p for p in every_run.of_type("random:index/randomPassword:RandomPassword")
                    if p.name == "database-password"]
    else:
        assert is_secret(every_run.one("aws:rds/instance:Instance").inputs["password"])
    quoted = MOCK_PASSWORD.replace("@", "%40")  # as it would appear in a URL
    for resource in every_run.resources:
        if resource.type == "random:index/randomPassword:RandomPassword":
            continue
        for path, text in walk_plain_strings(resource.inputs):
            assert_no_secret(MOCK_PASSWORD, text, f"{resource.name}{path}")
            assert_no_secret(quoted, text, f"{resource.name}{path}")
    for name, value in every_run.outputs.items():
        assert_no_secret(MOCK_PASSWORD, json.dumps(value), name)
        assert "postgresql://" not in json.dumps(value), name


# -- secrets ------------------------------------------------------------------------------------


def test_five_secrets_each_with_its_own_value(example_run: ProgramRun) -> None:
    secrets = example_run.of_type("aws:secretsmanager/secret:Secret")
    assert sorted(s.name for s in secrets) == [
        "connection-direct", "connection-pooled", "pooler-credentials", "pooler-stats-credentials", "pooler-tls-key"]
    assert len({s.state["arn"] for s in secrets}) == 5
    versions = example_run.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    assert {v.input("secretId") for v in versions} == {s.id for s in secrets}
    for version in versions:
        assert is_secret(version.inputs["secretString"]), version.name
    # A dev stack can be destroyed and recreated at once.
    assert {s.input("recoveryWindowInDays") for s in secrets} == {0}


def test_pooled_url_goes_through_the_nlb(example_run: ProgramRun) -> None:
    url = urlsplit(unwrap(secret_value(example_run, "connection-pooled")))
    nlb = example_run.one("aws:lb/loadBalancer:LoadBalancer")
    assert url.scheme == "postgresql"
    assert url.hostname == nlb.state["dnsName"]
    assert url.port == 6432
    assert url.path == "/app"
    # The functions log in as the DML-only application role, never as the master user.
    assert unquote(url.username or "") == "lifeguard_app"
    assert unquote(url.password or "") == MOCK_APP_PASSWORD
    # Verified: PgBouncer's certificate names the NLB and chains to the CA in the functions' layer.
    assert parse_qs(url.query) == {"sslmode": ["verify-full"], "sslrootcert": ["/opt/lifeguard/pooler-ca.pem"]}


def test_direct_url_goes_to_rds_with_verify_full(example_run: ProgramRun) -> None:
    url = urlsplit(unwrap(secret_value(example_run, "connection-direct")))
    db = example_run.one("aws:rds/instance:Instance")
    assert url.hostname == db.state["address"]
    assert url.port == 5432
    assert url.path == "/app"
    assert unquote(url.username or "") == "lifeguard"
    assert unquote(url.password or "") == MOCK_PASSWORD
    query = parse_qs(url.query)
    assert query["sslmode"] == ["verify-full"]
    assert query["sslrootcert"] == ["/etc/ssl/certs/rds-global-bundle.pem"]


def test_pooler_credentials_secret_is_json(example_run: ProgramRun) -> None:
    credentials = json.loads(unwrap(secret_value(example_run, "pooler-credentials")))
    # The application role's SCRAM verifier, from its password and the stack's stable salt.
    salt = bytes.fromhex(example_run.one("random:index/randomId:RandomId", "app-role-scram-salt").state["hex"])
    verifier = scram_verifier(MOCK_APP_PASSWORD, salt, APP_ITERATIONS)
    # ... and the second login role's, which a password rotation switches DATABASE_URL to (docs/roles.md).
    second_salt = bytes.fromhex(example_run.one("random:index/randomId:RandomId", "app-role-b-scram-salt").state["hex"])
    assert credentials == {"username": "lifeguard_app", "password": verifier,
                           "alternate_username": "lifeguard_app_b",
                           "alternate_password": scram_verifier(MOCK_PASSWORD, second_salt, APP_ITERATIONS)}


# -- pooler -------------------------------------------------------------------------------------


def test_pooler_container_gets_rendered_settings_and_secret_credentials(example_run: ProgramRun) -> None:
    container = pooler_container(example_run)
    # PgBouncer's container comes first: tools (and older tests) that read "the" container find it.
    assert containers(pooler_task(example_run))[0]["name"] == "pgbouncer"
    assert container["essential"] is True
    assert "entryPoint" not in container and "command" not in container  # the image's entrypoint
    # The versions only make a new password roll the tasks (#12.11); the certificate is public. No
    # secret value is in the environment.
    assert [e["name"] for e in container["environment"]] == [
        "LIFEGUARD_PGBOUNCER_SETTINGS", "LIFEGUARD_CREDENTIALS_VERSIONS", "POOLER_TLS_CERT"]
    assert container["secrets"] == [
        {"name": "POOLER_CREDENTIALS", "valueFrom": secret_arn(example_run, "pooler-credentials")},
        {"name": "POOLER_STATS_CREDENTIALS", "valueFrom": secret_arn(example_run, "pooler-stats-credentials")},
        {"name": "POOLER_TLS_KEY", "valueFrom": secret_arn(example_run, "pooler-tls-key")},
    ]
    settings = PoolerSettings.from_json(container["environment"][0]["value"])
    db = example_run.one("aws:rds/instance:Instance")
    assert settings.pool_mode == "transaction"
    assert "pool_mode = transaction" in settings.render_ini()
    assert settings.upstream.host == db.state["address"]
    assert settings.upstream.dbname == "app"
    assert settings.version == PINNED
    assert settings.max_client_conn == 10000
    function = example_run.one("aws:lambda/function:Function", "charge")
    assert settings.query_wait_timeout == 20 < function.input("timeout")
    # Derived from the database, counting the doubled tasks of a rolling deploy: (100-5-2) // (4*2).
    expected = PoolBudget(max_connections=100, reserved_connections=5, migration_headroom=2, max_tasks=4,
                          deployment_maximum_percent=200).default_pool_size()
    assert settings.default_pool_size == expected == 11 == example_run.outputs["poolSize"]
    assert container["portMappings"] == [{"containerPort": 6432, "protocol": "tcp"}]


def test_pooler_container_limits_and_shutdown(example_run: ProgramRun) -> None:
    container = pooler_container(example_run)
    settings = PoolerSettings.from_json(container["environment"][0]["value"])
    [nofile] = [u for u in container["ulimits"] if u["name"] == "nofile"]
    assert nofile["softLimit"] == nofile["hardLimit"] >= max(65535, settings.required_open_files())
    assert 0 < container["stopTimeout"] <= 120
    assert "@sha256:" in container["image"]
    logs = container["logConfiguration"]
    assert logs["logDriver"] == "awslogs"
    pooler_logs = example_run.one("aws:cloudwatch/logGroup:LogGroup", "pooler")
    assert logs["options"]["awslogs-group"] == pooler_logs.state["name"]
    assert logs["options"]["awslogs-region"] == "eu-west-1"
    assert logs["options"]["awslogs-stream-prefix"] == "pgbouncer"


def test_pooler_task_definition(example_run: ProgramRun) -> None:
    task = pooler_task(example_run)
    assert task.input("requiresCompatibilities") == ["FARGATE"]
    assert task.input("networkMode") == "awsvpc"
    assert task.input("runtimePlatform") == {"operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64"}
    assert task.input("executionRoleArn") == example_run.one("aws:iam/role:Role", "pooler").state["arn"]
    assert "taskRoleArn" not in task.inputs
    assert (task.input("cpu"), task.input("memory")) == ("512", "1024")


def test_pooler_service_spreads_at_least_two_tasks(example_run: ProgramRun) -> None:
    service = example_run.one("aws:ecs/service:Service")
    subnets = {s.id: s.input("availabilityZone") for s in example_run.of_type("aws:ec2/subnet:Subnet")}
    assert service.input("desiredCount") >= 2
    network = service.input("networkConfiguration")
    assert len({subnets[s] for s in network["subnets"]}) >= 2
    assert network["assignPublicIp"] is False
    assert [sg_roles(example_run)[g] for g in network["securityGroups"]] == ["pooler"]
    assert service.input("availabilityZoneRebalancing") == "ENABLED"
    assert service.input("deploymentMaximumPercent") == 200
    assert service.input("deploymentMinimumHealthyPercent") == 100
    assert service.input("deploymentCircuitBreaker") == {"enable": True, "rollback": True}
    assert service.input("taskDefinition") == pooler_task(example_run).state["arn"]
    target_group = example_run.one("aws:lb/targetGroup:TargetGroup")
    assert service.input("loadBalancers") == [
        {"targetGroupArn": target_group.state["arn"], "containerName": "pgbouncer", "containerPort": 6432}
    ]


def test_pooler_autoscales_on_cpu_between_configured_bounds(example_run: ProgramRun) -> None:
    target = example_run.one("aws:appautoscaling/target:Target")
    service = example_run.one("aws:ecs/service:Service")
    cluster = example_run.one("aws:ecs/cluster:Cluster", "pooler")
    assert (target.input("minCapacity"), target.input("maxCapacity")) == (2, 4)
    assert target.input("resourceId") == f"service/{cluster.state['name']}/{service.state['name']}"
    assert target.input("scalableDimension") == "ecs:service:DesiredCount"
    policy = example_run.one("aws:appautoscaling/policy:Policy")
    assert policy.input("policyType") == "TargetTrackingScaling"
    config = policy.input("targetTrackingScalingPolicyConfiguration")
    assert config["predefinedMetricSpecification"]["predefinedMetricType"] == "ECSServiceAverageCPUUtilization"
    assert config["targetValue"] == 60


def test_nlb_is_internal_tcp_with_health_checks(example_run: ProgramRun) -> None:
    nlb = example_run.one("aws:lb/loadBalancer:LoadBalancer")
    assert nlb.input("internal") is True
    assert nlb.input("loadBalancerType") == "network"
    assert set(nlb.input("subnets")) == {s.id for s in example_run.of_type("aws:ec2/subnet:Subnet")}
    assert [sg_roles(example_run)[g] for g in nlb.input("securityGroups")] == ["nlb"]
    listener = example_run.one("aws:lb/listener:Listener")
    target_group = example_run.one("aws:lb/targetGroup:TargetGroup")
    assert (listener.input("protocol"), listener.input("port")) == ("TCP", 6432)
    assert listener.input("loadBalancerArn") == nlb.state["arn"]
    assert listener.input("defaultActions") == [{"type": "forward", "targetGroupArn": target_group.state["arn"]}]
    assert (target_group.input("protocol"), target_group.input("port"), target_group.input("targetType")) == (
        "TCP", 6432, "ip")
    health = target_group.input("healthCheck")
    assert health["enabled"] is True and health["protocol"] == "TCP"
    assert target_group.input("deregistrationDelay") == 30


# -- functions ----------------------------------------------------------------------------------


def test_functions_get_the_pooled_secret_arn_never_a_url(example_run: ProgramRun) -> None:
    functions = {f.input("handler"): f for f in example_run.of_type("aws:lambda/function:Function")}
    runtimes = {"lambdas.read_invoices.handler": "python3.13", "lambdas.charge_credits.handler": "python3.13",
                "read_invoices.handler": "nodejs24.x"}
    assert set(functions) == set(runtimes)
    pooled = secret_arn(example_run, "connection-pooled")
    subnets = {s.id for s in example_run.of_type("aws:ec2/subnet:Subnet")}
    for handler, function in functions.items():
        # The image's PgBouncer (PINNED, max_prepared_statements 200) tracks prepared statements; Node.js
        # trusts the CA layer's certificate (what sslrootcert names) for clients that read no sslrootcert.
        assert function.input("environment") == {
            "variables": {"DATABASE_URL_SECRET_ARN": pooled, "LIFEGUARD_POOLER_PREPARED_STATEMENTS": "1",
                          "NODE_EXTRA_CA_CERTS": "/opt/lifeguard/pooler-ca.pem"}
        }
        assert function.input("layers") == [example_run.one("aws:lambda/layerVersion:LayerVersion").state["arn"]]
        assert function.input("runtime") == runtimes[handler]
        assert function.input("architectures") == ["arm64"]  # functionArchitecture in Pulumi.dev.yaml
        assert function.input("timeout") == 30
        assert "reservedConcurrentExecutions" not in function.inputs  # -1 in the example stack
        vpc = function.input("vpcConfig")
        assert set(vpc["subnetIds"]) == subnets
        assert [sg_roles(example_run)[g] for g in vpc["securityGroupIds"]] == ["functions"]
        assert function.input("role") == example_run.one("aws:iam/role:Role", "functions").state["arn"]


def test_functions_deploy_the_deterministic_zip(example_run: ProgramRun) -> None:
    for function in example_run.of_type("aws:lambda/function:Function"):
        archive = Path(function.inputs["code"].path)
        # Python's holds Linux wheels for the architecture; the Node.js one is plain JavaScript.
        expected = "lambdas-node.zip" if function.input("runtime") == "nodejs24.x" else "lambdas-arm64.zip"
        assert archive.name == expected
        digest = base64.b64encode(hashlib.sha256(archive.read_bytes()).digest()).decode()
        assert function.input("sourceCodeHash") == digest
        group = function.input("loggingConfig")["logGroup"]
        assert group in {g.state["name"] for g in example_run.of_type("aws:cloudwatch/logGroup:LogGroup")}


# -- migration job ------------------------------------------------------------------------------


def test_migration_task_holds_the_direct_secret_and_the_app_role_verifier(example_run: ProgramRun) -> None:
    task = migration_task(example_run)
    [container] = containers(task)
    assert container["name"] == example_run.outputs["migrationContainerName"] == "migrator"
    # The verifier alone (one JSON key of the pooler's secret), never the functions' plain password.
    assert container["secrets"] == [
        {"name": "DATABASE_URL_UNPOOLED", "valueFrom": secret_arn(example_run, "connection-direct")},
        {"name": "LIFEGUARD_APP_ROLE_VERIFIER",
         "valueFrom": secret_arn(example_run, "pooler-credentials") + ":password::"},
        {"name": "LIFEGUARD_APP_ROLE_B_VERIFIER",
         "valueFrom": secret_arn(example_run, "pooler-credentials") + ":alternate_password::"},
    ]
    # No secret in the environment: the role's name, whether to apply the demo-data migrations (#12.14), and
    # where to record the password rotation the run sets (#28: a number, no secret).
    assert container["environment"] == [
        {"name": "LIFEGUARD_APP_ROLE", "value": "lifeguard_app"}, {"name": "LIFEGUARD_DEMO_DATA", "value": "1"},
        {"name": "LIFEGUARD_ROTATION_PARAMETER", "value": "/lifeguard/lifeguard-dev-8ce48526/app-password-rotation"},
        {"name": "LIFEGUARD_ROTATION", "value": "0"}]
    assert "@sha256:" in container["image"]
    options = container["logConfiguration"]["options"]
    assert options["awslogs-group"] == example_run.outputs["migrationLogGroupName"]
    assert options["awslogs-stream-prefix"] == example_run.outputs["migrationLogStreamPrefix"]
    assert task.input("executionRoleArn") == example_run.one("aws:iam/role:Role", "migration-execution").state["arn"]
    # Its code's role may only record the rotation (tests/infra/test_infra_iam.py); it is exported for PassRole.
    assert task.input("taskRoleArn") == example_run.one("aws:iam/role:Role", "migration-task").state["arn"] \
        == example_run.outputs["migrationTaskRoleArn"]
    assert task.state["arn"] == example_run.outputs["migrationTaskDefinitionArn"]


def test_pooler_task_holds_no_connection_url_secret(every_run: ProgramRun, variant: str) -> None:
    held = {s["valueFrom"].split(":username::")[0].split(":password::")[0]
            for c in containers(pooler_task(every_run)) for s in c["secrets"]}
    assert secret_arn(every_run, "connection-pooled") not in held
    if variant in EXISTING_DATABASE_VARIANTS:
        assert every_run.outputs["databaseOwnerSecretArn"] not in held
    else:
        assert secret_arn(every_run, "connection-direct") not in held


# -- images and logs ----------------------------------------------------------------------------


def test_images_are_built_for_an_explicit_platform_and_pushed_to_ecr(example_run: ProgramRun) -> None:
    images = {
        Path(i.input("build")["context"]).name.split("-")[0]: i for i in example_run.of_type("docker:index/image:Image")
    }
    assert set(images) == {"pgbouncer", "migrator"}
    for folder, image in images.items():
        build = image.input("build")
        # Relative to the working directory, so every checkout sends pulumi-docker the same inputs.
        assert not Path(build["context"]).is_absolute() and not Path(build["dockerfile"]).is_absolute()
        context = (Path.cwd() / build["context"]).resolve()
        assert (Path.cwd() / build["dockerfile"]).resolve() == context / "Dockerfile"
        if folder == "pgbouncer":
            assert context == REPO_ROOT / folder
        else:
            # The migrator's folder, staged (under build/, named by content) with the shared packages
            # under shared/ (the image copies them to /app).
            assert context.parent == REPO_ROOT / "build" / "image-contexts"
            for shared in ("redaction", "database_urls"):
                assert (context / "shared" / shared / "__init__.py").read_bytes() == (
                    REPO_ROOT / shared / "__init__.py"
                ).read_bytes()
            assert (context / "runner.py").read_bytes() == (REPO_ROOT / "migrator" / "runner.py").read_bytes()
        assert build["platform"] == "linux/amd64"
        assert is_secret(image.inputs["registry"])  # holds the ECR token
    for repository in example_run.of_type("aws:ecr/repository:Repository"):
        assert repository.input("imageTagMutability") == "MUTABLE"
        assert repository.input("imageScanningConfiguration") == {"scanOnPush": True}
    assert len(example_run.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy")) == 2


def test_every_log_group_has_retention(example_run: ProgramRun) -> None:
    groups = example_run.of_type("aws:cloudwatch/logGroup:LogGroup")
    assert len(groups) == 6  # pooler, migration, three functions, the database's postgresql log
    assert {g.input("retentionInDays") for g in groups} == {14}


# -- outputs ------------------------------------------------------------------------------------


def test_stack_outputs_for_the_pipeline_and_users(example_run: ProgramRun) -> None:
    outputs = example_run.outputs
    assert set(outputs) >= STACK_OUTPUTS
    # ... and nothing that is not in the contract: the pipeline and the README read these names.
    assert set(outputs) - STACK_OUTPUTS == SAMPLE_FUNCTION_OUTPUTS | {ENDPOINTS_SECURITY_GROUP_ID, DIRECT_SECRET_ARN}
    assert not example_run.secret_outputs  # nothing secret is exported, so nothing needs masking
    assert all(value is not None for value in outputs.values())
    subnets = [s.id for s in example_run.of_type("aws:ec2/subnet:Subnet")]
    assert sorted(outputs["migrationSubnetIds"]) == sorted(subnets)
    assert [sg_roles(example_run)[g] for g in outputs["migrationSecurityGroupIds"]] == ["migration"]
    assert outputs["migrationClusterArn"] == example_run.one("aws:ecs/cluster:Cluster", "migration").state["arn"]
    assert outputs["poolerEndpoint"] == example_run.one("aws:lb/loadBalancer:LoadBalancer").state["dnsName"]
    assert outputs["databaseEndpoint"] == example_run.one("aws:rds/instance:Instance").state["address"]
    assert outputs["databaseIdentifier"] == example_run.one("aws:rds/instance:Instance").state["identifier"]
    for key, secret in (("pooledSecretArn", "connection-pooled"), ("directSecretArn", "connection-direct"),
                        ("poolerSecretArn", "pooler-credentials"),
                        ("poolerStatsSecretArn", "pooler-stats-credentials")):
        assert outputs[key] == secret_arn(example_run, secret)
    dashboard = example_run.one("aws:cloudwatch/dashboard:Dashboard")
    assert outputs["dashboardName"] == dashboard.input("dashboardName") == "lifeguard-dev-observability-8ce48526"
    assert outputs["poolerMetricsService"] == "lifeguard-dev-pgbouncer-8ce48526"
    assert "alarmTopicArn" not in outputs  # the example stack sets neither alarmEmail nor alarmTopicArn
    assert outputs["maxConnections"] == 100
    functions = {f.input("handler"): f.state["name"] for f in example_run.of_type("aws:lambda/function:Function")}
    assert outputs["readInvoicesFunctionName"] == functions["lambdas.read_invoices.handler"]
    assert outputs["chargeCreditsFunctionName"] == functions["lambdas.charge_credits.handler"]
    assert outputs["readInvoicesNodeFunctionName"] == functions["read_invoices.handler"]
    assert outputs["vpcId"] == example_run.one("aws:ec2/vpc:Vpc").id


@pytest.mark.parametrize("token", ["aws:ec2/getVpc:getVpc", "aws:index/getPartition:getPartition"])
def test_mocks_are_strict(token: str) -> None:
    from pulumi.runtime import MockCallArgs

    from tests.infra.infra_harness import StrictMocks, UnmockedCall

    with pytest.raises(UnmockedCall):
        StrictMocks().call(MockCallArgs(token=token, args={}, provider=""))


def test_entry_point_reads_the_engines_config(build_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``infra/__main__.py`` as the Python language host runs it: config arrives in PULUMI_CONFIG."""
    import runpy

    import pulumi

    from tests.infra.infra_harness import PROJECT, RecordingMonitor, StrictMocks, example_stack_config

    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({**example_stack_config(), "lifeguard:poolerMaxTasks": "3"}))
    monkeypatch.setenv("LIFEGUARD_BUILD_DIR", str(build_dir))
    monkeypatch.setenv("LIFEGUARD_NODE", str(NODE))  # the node whose npm builds the Node.js function
    mocks = StrictMocks()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack="dev", preview=False, monitor=monitor)
    pulumi.runtime.set_all_config({})

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def run() -> None:
        runpy.run_path(str(REPO_ROOT / "infra" / "__main__.py"), run_name="__main__")

    run()
    types = [urn.split("::")[2].split("$")[-1] for urn in monitor.get_registered_resources()]
    assert types.count("aws:lambda/function:Function") == 3
    [task] = [r.state for urn, r in monitor.get_registered_resources().items() if urn.endswith("::pooler-task")]
    [container] = [c for c in json.loads(task["containerDefinitions"]) if c["name"] == "pgbouncer"]
    settings = PoolerSettings.from_json(container["environment"][0]["value"])
    assert settings.default_pool_size == (100 - 5 - 2) // 6  # poolerMaxTasks 3 from PULUMI_CONFIG
