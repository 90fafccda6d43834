"""An existing database instead of a new instance (#24): an Aurora PostgreSQL cluster, or an RDS PostgreSQL
instance, read at preview; RDS's managed master secret for a new instance. Under Pulumi's mocks (what AWS
would answer to ``getCluster``/``getInstance`` is in tests/infra/variants.py): the resource set, the
security-group rules, the migration task's secrets (references to the owner secret's JSON keys, never its
value), the pool sizing and the alarm's dimensions; and each bad combination refused with the key to change.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest

from lifeguard.aws.config import InfraConfigError, load
from lifeguard.aws.deployed import record
from lifeguard.aws.outputs import DATABASE_OWNER_SECRET_ARN, DATABASE_SETTINGS, DIRECT_SECRET_ARN
from lifeguard.aws.types import ArgsError
from lifeguard.stack.ecs_run import plan_task
from migrator.contract import (
    APP_ROLE_ENV,
    APP_ROLE_VERIFIER_ENV,
    DB_HOST_ENV,
    DB_NAME_ENV,
    DB_PORT_ENV,
    DB_ROOT_CERT_ENV,
    OWNER_PASSWORD_ENV,
    OWNER_USERNAME_ENV,
    ROTATION_ENV,
    ROTATION_PARAMETER_ENV,
)
from pgbouncer.contract import SETTINGS_ENV
from pgbouncer.scram import APP_ITERATIONS
from pgbouncer.settings import PoolerSettings
from pgbouncer.sizing import PoolBudget
from tests.infra.infra_harness import (
    ProgramRun,
    RecordingMonitor,
    StrictMocks,
    example_stack_config,
    last_registrations,
    run_program,
)
from tests.infra.test_infra_deploy_path import example_database
from tests.infra.variants import (
    AURORA_CLUSTER,
    AURORA_MANAGED_SECRET,
    AURORA_WRITER,
    DB_CLUSTERS,
    DB_INSTANCES,
    EXISTING_AURORA,
    EXISTING_DB_SECURITY_GROUP,
    EXISTING_INSTANCE,
    EXISTING_INSTANCE_ADDRESS,
    EXISTING_INSTANCE_CONFIG,
    EXISTING_INSTANCE_PORT,
    EXISTING_OWNER_SECRET,
    EXISTING_SUBNETS,
)
from tests.migrator.support import recorded_versions, run_cli, secrets_of, write_migrations
from tests.support import AppDatabase

# What only a new instance has: an existing database's stack creates none of it.
NEW_INSTANCE_TYPES = ("aws:rds/instance:Instance", "aws:rds/subnetGroup:SubnetGroup",
                      "aws:rds/parameterGroup:ParameterGroup")


def children(run: ProgramRun, component_type: str) -> list[tuple[str, str]]:
    parents = {r.urn for r in run.resources if r.type == component_type}
    return sorted((r.type, r.name) for r in run.resources if r.parent in parents)


def task_container(run: ProgramRun, task: str) -> dict[str, Any]:
    definition = run.one("aws:ecs/taskDefinition:TaskDefinition", task)
    container: dict[str, Any] = json.loads(definition.input("containerDefinitions"))[0]
    return container


def by_name(items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return {item["name"]: item[key] for item in items}


CASES = [("existing-aurora", AURORA_WRITER, 5432, AURORA_MANAGED_SECRET, 1000),
         ("existing-instance", EXISTING_INSTANCE_ADDRESS, EXISTING_INSTANCE_PORT, EXISTING_OWNER_SECRET, 200)]


@pytest.fixture(params=CASES, ids=[case[0] for case in CASES])
def case(request: pytest.FixtureRequest) -> Iterator[tuple[ProgramRun, str, int, str, int]]:
    variant, host, port, secret, max_connections = request.param
    fixture = {"existing-aurora": "existing_aurora_run", "existing-instance": "existing_instance_run"}[variant]
    yield request.getfixturevalue(fixture), host, port, secret, max_connections


def test_the_database_component_makes_only_the_clients_rules(case: tuple[ProgramRun, str, int, str, int]) -> None:
    run, _, port, _, _ = case
    rules = [("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", f"database-client-{i}-out") for i in (0, 1)]
    rules += [("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", f"database-client-{i}-in") for i in (0, 1)]
    assert children(run, "lifeguard:database:Database") == sorted(rules)
    for resource_type in NEW_INSTANCE_TYPES:
        assert not run.of_type(resource_type), resource_type
    assert not [p for p in run.of_type("random:index/randomPassword:RandomPassword") if p.name == "database-password"]
    assert not [g for g in run.of_type("aws:cloudwatch/logGroup:LogGroup") if g.name == "database-postgresql-logs"]
    # Ingress into the database's own group from the pooler's and the migration job's, on its port; egress
    # out of theirs to it.
    pooler = run.one("aws:ec2/securityGroup:SecurityGroup", "network-pooler-sg").id
    migration = run.one("aws:ec2/securityGroup:SecurityGroup", "network-migration-sg").id
    ingress = run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    into_database = {(r.input("referencedSecurityGroupId"), r.input("fromPort"), r.input("toPort"))
                     for r in ingress if r.input("securityGroupId") == EXISTING_DB_SECURITY_GROUP}
    assert into_database == {(pooler, port, port), (migration, port, port)}
    egress = run.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
    to_database = {(r.input("securityGroupId"), r.input("fromPort"))
                   for r in egress if r.input("referencedSecurityGroupId") == EXISTING_DB_SECURITY_GROUP}
    assert to_database == {(pooler, port), (migration, port)}
    # The pooler's tasks wait for those rules (through the address they connect to).
    rule_urns = {r.urn for r in run.resources if r.name.startswith("database-client-")}
    assert rule_urns <= run.one("aws:ecs/taskDefinition:TaskDefinition", "pooler").dependencies


def test_the_pooler_and_the_direct_url_reach_the_existing_database(case: tuple[ProgramRun, str, int, str, int]) -> None:
    run, host, port, _, _ = case
    settings = PoolerSettings.from_json(by_name(task_container(run, "pooler")["environment"], "value")[SETTINGS_ENV])
    assert (settings.upstream.host, settings.upstream.port, settings.upstream.dbname) == (host, port, "app")
    assert (run.outputs["databaseEndpoint"], run.outputs["databasePort"]) == (host, port)
    environment = by_name(task_container(run, "migration")["environment"], "value")
    assert (environment[DB_HOST_ENV], environment[DB_PORT_ENV], environment[DB_NAME_ENV]) == (host, str(port), "app")
    assert environment[DB_ROOT_CERT_ENV] == "/etc/ssl/certs/rds-global-bundle.pem"


def test_the_task_reads_the_owner_secret_at_run_time_and_the_stack_never(case: tuple[ProgramRun, str, int, str, int]
                                                                        ) -> None:
    run, _, _, secret, _ = case
    container = task_container(run, "migration")
    injected = by_name(container["secrets"], "valueFrom")
    assert injected[OWNER_USERNAME_ENV] == f"{secret}:username::"
    assert injected[OWNER_PASSWORD_ENV] == f"{secret}:password::"
    assert "DATABASE_URL_UNPOOLED" not in injected
    assert "DATABASE_URL_UNPOOLED" not in json.dumps(container["environment"])
    assert run.outputs[DATABASE_OWNER_SECRET_ARN] == secret and DIRECT_SECRET_ARN not in run.outputs
    # No direct-URL secret: the stack holds no password of the owner, in any resource or output.
    assert not [s for s in run.of_type("aws:secretsmanager/secret:Secret") if s.name == "connection-direct"]
    # The program never reads a secret's value (the strict mocks would refuse an unknown data source, and
    # these are all it called).
    assert {token for token, _ in run.calls} <= {
        "aws:index/getRegion:getRegion", "aws:index/getCallerIdentity:getCallerIdentity",
        "aws:ec2/getSubnet:getSubnet", "aws:iam/getRoles:getRoles", "pulumi:pulumi:readStackOutputs",
        "aws:ecr/getAuthorizationToken:getAuthorizationToken", "aws:rds/getInstance:getInstance",
        "aws:rds/getCluster:getCluster"}
    assert "postgresql://" not in json.dumps([r.inputs for r in run.resources if r.name != "connection-pooled"],
                                             default=str)


def test_pool_sizing_and_the_connections_alarm_use_the_given_max_connections(
    case: tuple[ProgramRun, str, int, str, int]
) -> None:
    run, _, _, _, max_connections = case
    cfg = load({k: str(v) for k, v in (EXISTING_AURORA if max_connections == 1000 else EXISTING_INSTANCE_CONFIG)
                .items() if ":" not in k})
    budget = PoolBudget(max_connections=max_connections, reserved_connections=5, migration_headroom=2,
                        max_tasks=4, deployment_maximum_percent=200)
    assert run.outputs["poolSize"] == cfg.pooler.pool_size == budget.default_pool_size()
    assert run.outputs["maxConnections"] == max_connections
    alarm = run.one("aws:cloudwatch/metricAlarm:MetricAlarm", "db-connections")
    assert alarm.input("threshold") == math.floor(max_connections * 0.8)
    dashboard = json.loads(run.one("aws:cloudwatch/dashboard:Dashboard").input("dashboardBody"))
    [graph] = [w for w in dashboard["widgets"] if w["properties"].get("title", "").startswith("RDS connections")]
    if max_connections == 1000:  # Aurora: its writer, by cluster and role, which follows a failover
        assert alarm.input("dimensions") == {"DBClusterIdentifier": AURORA_CLUSTER, "Role": "WRITER"}
        assert graph["properties"]["metrics"][0][:6] == [
            "AWS/RDS", "DatabaseConnections", "DBClusterIdentifier", AURORA_CLUSTER, "Role", "WRITER"]
    else:
        assert alarm.input("dimensions") == {"DBInstanceIdentifier": EXISTING_INSTANCE}
        assert graph["properties"]["metrics"][0][:4] == [
            "AWS/RDS", "DatabaseConnections", "DBInstanceIdentifier", EXISTING_INSTANCE]


# -- a new instance with RDS's managed master secret ----------------------------------------------------


MANAGED_SECRET_PREFIX = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-"


def test_manage_master_user_password_keeps_the_password_out_of_the_stack(build_dir: Any) -> None:
    run = run_program({**example_stack_config(), "manageMasterUserPassword": "true"}, build_dir)
    instance = run.one("aws:rds/instance:Instance")
    assert instance.input("manageMasterUserPassword") is True and "password" not in instance.inputs
    assert not [p for p in run.of_type("random:index/randomPassword:RandomPassword") if p.name == "database-password"]
    assert not [s for s in run.of_type("aws:secretsmanager/secret:Secret") if s.name == "connection-direct"]
    secret = run.outputs[DATABASE_OWNER_SECRET_ARN]
    assert secret.startswith(MANAGED_SECRET_PREFIX) and DIRECT_SECRET_ARN not in run.outputs
    injected = by_name(task_container(run, "migration")["secrets"], "valueFrom")
    assert (injected[OWNER_USERNAME_ENV], injected[OWNER_PASSWORD_ENV]) == (f"{secret}:username::",
                                                                            f"{secret}:password::")
    environment = by_name(task_container(run, "migration")["environment"], "value")
    assert environment[DB_HOST_ENV] == instance.state["address"] and environment[DB_PORT_ENV] == "5432"
    policy = run.one("aws:iam/rolePolicy:RolePolicy", "migration-execution").input("policy")
    assert {s["Sid"]: s["Resource"] for s in json.loads(policy)["Statement"]}["ReadDatabaseOwnerSecret"] == [secret]


def test_without_the_flag_the_instance_is_unchanged(example_run: ProgramRun) -> None:
    instance = example_run.one("aws:rds/instance:Instance")
    assert "manageMasterUserPassword" not in instance.inputs and "password" in instance.inputs


# -- refused with the key to change ----------------------------------------------------------------------


def refused(values: dict[str, Any]) -> str:
    with pytest.raises(InfraConfigError) as error:
        load({k: str(v) for k, v in values.items() if ":" not in k})
    return str(error.value)


@pytest.mark.parametrize(("change", "expected"), [
    ({"existingDatabaseInstanceId": EXISTING_INSTANCE},
     "lifeguard:existingAuroraClusterId: set existingDatabaseInstanceId (an RDS PostgreSQL instance) or"),
    ({"existingDatabaseSecurityGroupId": None}, "lifeguard:existingDatabaseSecurityGroupId: is required"),
    ({"existingDatabaseSecurityGroupId": "default"}, "must look like sg-0123456789abcdef0"),
    ({"existingDatabaseMaxConnections": None}, "lifeguard:existingDatabaseMaxConnections: is required"),
    ({"existingVpcId": None, "existingPrivateSubnetIds": None},
     "lifeguard:existingAuroraClusterId: needs existingVpcId and existingPrivateSubnetIds"),
    ({"maxConnections": 500}, "lifeguard:maxConnections: is for a new instance; with existingAuroraClusterId unset "
                              "it and set existingDatabaseMaxConnections"),
    ({"dbInstanceClass": "db.r6g.large"}, "lifeguard:dbInstanceClass: is for a new instance"),
    ({"manageMasterUserPassword": "true"}, "lifeguard:manageMasterUserPassword: is for a new instance"),
    ({"existingAuroraClusterId": "2bad--id"}, "lifeguard:existingAuroraClusterId: must be an RDS identifier"),
    ({"existingDatabaseOwnerSecretArn": "app/owner"}, "must be a Secrets Manager secret ARN"),
])
def test_bad_combinations_are_refused_naming_the_key(change: dict[str, Any], expected: str) -> None:
    values = {k: v for k, v in {**EXISTING_AURORA, **change}.items() if v is not None}
    assert expected in refused(values)


@pytest.mark.parametrize("key", ["existingDatabaseSecurityGroupId", "existingDatabaseMaxConnections",
                                 "existingDatabaseOwnerSecretArn"])
def test_existing_database_keys_without_an_existing_database_are_refused(key: str) -> None:
    value = {"existingDatabaseSecurityGroupId": EXISTING_DB_SECURITY_GROUP, "existingDatabaseMaxConnections": 100,
             "existingDatabaseOwnerSecretArn": EXISTING_OWNER_SECRET}[key]
    assert f"lifeguard:{key}: is only used with existingDatabaseInstanceId or existingAuroraClusterId" in refused(
        {key: value})


def with_instance(**changes: Any) -> StrictMocks:
    return StrictMocks(subnets=EXISTING_SUBNETS, db_instances={EXISTING_INSTANCE: {
        **DB_INSTANCES[EXISTING_INSTANCE], **changes}})


@pytest.mark.parametrize(("mocks", "config", "expected"), [
    (with_instance(engine="mysql"), {}, "lifeguard:existingDatabaseInstanceId: app-postgres runs mysql, not postgres"),
    (with_instance(dbClusterIdentifier="app-aurora"), {},
     "lifeguard:existingDatabaseInstanceId: app-postgres is a member of Aurora cluster app-aurora: give "
     "existing_cluster_identifier"),
    (with_instance(replicateSourceDb="app-primary"), {}, "is a read replica of app-primary: give the primary"),
    (with_instance(vpcSecurityGroups=["sg-0fedcba9876543210"]), {},
     "lifeguard:existingDatabaseSecurityGroupId: sg-0123456789abcdef0 is not attached to app-postgres; give one of "
     "its security groups: sg-0fedcba9876543210"),
    (with_instance(), {"existingDatabaseOwnerSecretArn": None},
     "lifeguard:existingDatabaseOwnerSecretArn: required: app-postgres has no RDS-managed master user secret"),
])
def test_what_aws_answers_is_checked_before_the_database_is_used(
    build_dir: Any, mocks: StrictMocks, config: dict[str, Any], expected: str
) -> None:
    values = {k: v for k, v in {**EXISTING_INSTANCE_CONFIG, **config}.items() if v is not None}
    with pytest.raises(InfraConfigError) as error:
        run_program(values, build_dir, mocks=mocks)
    assert expected in str(error.value)
    # Refused before anything is registered.
    assert last_registrations() == []


def test_a_stack_that_created_its_instance_refuses_an_existing_database(build_dir: Any) -> None:
    mocks = StrictMocks(subnets=EXISTING_SUBNETS, db_clusters=DB_CLUSTERS,
                        deployed_outputs={DATABASE_SETTINGS: record(example_database(), APP_ITERATIONS)})
    with pytest.raises(InfraConfigError) as error:
        run_program(EXISTING_AURORA, build_dir, mocks=mocks)
    assert "lifeguard:existingAuroraClusterId: this stack created its database instance" in str(error.value)
    assert last_registrations() == []


def test_a_stack_on_an_existing_database_records_it_and_may_keep_it(build_dir: Any,
                                                                     existing_aurora_run: ProgramRun) -> None:
    recorded = existing_aurora_run.outputs[DATABASE_SETTINGS]
    assert recorded["existingDatabase"] == AURORA_CLUSTER and "postgresMajorVersion" not in recorded
    again = run_program(EXISTING_AURORA, build_dir, mocks=StrictMocks(
        subnets=EXISTING_SUBNETS, db_clusters=DB_CLUSTERS, deployed_outputs={DATABASE_SETTINGS: recorded}))
    assert again.outputs[DATABASE_OWNER_SECRET_ARN] == AURORA_MANAGED_SECRET


# -- the library's own checks (a program that is not the sample stack) ----------------------------------------


@pytest.fixture
def mocked() -> Iterator[None]:
    pulumi.runtime.set_mocks(StrictMocks(db_clusters=DB_CLUSTERS), project="lifeguard", stack="dev", preview=False)
    yield


BASE = {"security_group_id": EXISTING_DB_SECURITY_GROUP, "client_security_group_ids": ["sg-0aaaaaaaaaaaaaaaa"],
        "max_connections": 100, "existing_cluster_identifier": AURORA_CLUSTER}


@pytest.mark.parametrize(("change", "field", "fragment"), [
    ({"existing_instance_identifier": EXISTING_INSTANCE}, "existing_cluster_identifier", "not both"),
    ({"max_connections": None}, "max_connections", "required with existing_cluster_identifier"),
    ({"max_connections": 0}, "max_connections", "at least 1"),
    ({"client_security_group_ids": None}, "client_security_group_ids", "required with existing_cluster_identifier"),
    ({"instance_class": "db.r6g.large"}, "instance_class", "only for a new instance"),
    ({"security_group_id": None}, "security_group_id", "required"),
    ({"existing_cluster_identifier": None, "subnet_ids": None}, "subnet_ids", "required for a new instance"),
    ({"existing_cluster_identifier": None, "subnet_ids": ["subnet-0123456789abcdef0"],
      "owner_secret_arn": EXISTING_OWNER_SECRET}, "owner_secret_arn", "only for an existing database"),
])
def test_database_args_are_checked_before_anything_is_registered(
    mocked: None, change: dict[str, Any], field: str, fragment: str
) -> None:
    from lifeguard.aws.database import Database, DatabaseArgs

    args: Any = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    typed: DatabaseArgs = args
    with pytest.raises(ArgsError) as error:
        Database("db", typed)
    assert error.value.field == field and fragment in str(error.value)


@pytest.mark.parametrize(("change", "field", "fragment"), [
    ({"owner_secret_arn": None}, "owner_secret_arn", "exactly one"),
    ({"direct_secret_arn": EXISTING_OWNER_SECRET}, "owner_secret_arn", "exactly one"),
    ({"db_name": None}, "db_name", "required with owner_secret_arn"),
    ({"command": ["alembic", ""]}, "command", "empty word"),
    ({"bookkeeping_tables": ["a;drop"]}, "bookkeeping_tables", "is not a table name"),
    ({"architecture": "riscv"}, "architecture", "must be one of x86_64, arm64"),
    ({"image": "docker.io/library/alembic:latest"}, "image", "neither a folder holding a Dockerfile"),
    ({"image": "210987654321.dkr.ecr.eu-west-1.amazonaws.com/tools:v1"}, "image", "push the image to an ECR"),
    ({"rotation_parameter_name": "/aws/rotation"}, "rotation_parameter_name", "must be an SSM parameter name"),
    ({"rotation_parameter_name": "/a/b c"}, "rotation_parameter_name", "must be an SSM parameter name"),
    ({"rotation": -1}, "rotation", "0 or more"),
    ({"rotation": 1, "switched": 2}, "switched", "must not be above rotation (1)"),
])
def test_migration_job_args_are_checked_before_anything_is_registered(
    mocked: None, change: dict[str, Any], field: str, fragment: str
) -> None:
    from lifeguard.aws.migration_job import MigrationJob, MigrationJobArgs

    base = {"subnet_ids": ["subnet-0123456789abcdef0"], "security_group_id": "sg-0aaaaaaaaaaaaaaaa",
            "app_role": "lifeguard_app", "app_role_verifier_secret_arn": EXISTING_OWNER_SECRET,
            "owner_secret_arn": EXISTING_OWNER_SECRET, "database_host": AURORA_WRITER, "database_port": 5432,
            "db_name": "app"}
    args: Any = {k: v for k, v in {**base, **change}.items() if v is not None}
    typed: MigrationJobArgs = args
    with pytest.raises(ArgsError) as error:
        MigrationJob("migration", typed)
    assert error.value.field == field and fragment in str(error.value)


def run_components(make: Any, mocks: StrictMocks) -> list[Any]:
    """Register what ``make()`` builds under strict mocks, as a user's program of its own would."""
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="lifeguard", stack="dev", preview=False, monitor=monitor)

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def run() -> Any:
        make()

    run()
    return [(type_, name, inputs) for (type_, name), inputs in mocks.inputs.items()]


# What AWS lets one tag (the provider's schema has ``tags`` on them), among what the two components create.
TAGGABLE = {"aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
            "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", "aws:ecr/repository:Repository",
            "aws:ecs/cluster:Cluster", "aws:cloudwatch/logGroup:LogGroup", "aws:iam/role:Role",
            "aws:ecs/taskDefinition:TaskDefinition", "aws:rds/instance:Instance", "aws:rds/subnetGroup:SubnetGroup",
            "aws:rds/parameterGroup:ParameterGroup"}


def test_a_program_of_its_own_gets_its_tags_on_every_taggable_child() -> None:
    from lifeguard.aws.database import Database
    from lifeguard.aws.migration_job import MigrationJob

    tags = {"team": "payments", "cost-center": "42"}

    def make() -> None:
        aurora = Database("db", {"security_group_id": EXISTING_DB_SECURITY_GROUP, "max_connections": 500,
                                 "existing_cluster_identifier": AURORA_CLUSTER,
                                 "client_security_group_ids": ["sg-0aaaaaaaaaaaaaaaa"], "tags": tags})
        Database("new", {"security_group_id": "sg-0bbbbbbbbbbbbbbbb", "subnet_ids": ["subnet-0123456789abcdef0"],
                         "tags": tags})
        MigrationJob("job", {"subnet_ids": ["subnet-0123456789abcdef0"], "security_group_id": "sg-0aaaaaaaaaaaaaaaa",
                             "app_role": "app", "app_role_verifier_secret_arn": EXISTING_OWNER_SECRET,
                             "owner_secret_arn": aurora.owner_secret_arn.apply(str), "database_host": aurora.address,
                             "database_port": aurora.port, "db_name": "app", "tags": tags})

    registered = run_components(make, StrictMocks(db_clusters=DB_CLUSTERS))
    taggable = [(type_, name, inputs) for type_, name, inputs in registered if type_ in TAGGABLE]
    assert {type_ for type_, _, _ in taggable} == TAGGABLE
    for type_, name, inputs in taggable:
        assert inputs.get("tags") == tags, (type_, name)


def test_the_rendered_task_migrates_a_real_database_with_the_owner_secret_injected_as_ecs_does(
    app_db: AppDatabase, build_dir: Any, tmp_path: Path
) -> None:
    """From the task definition the program renders, through ECS's injection of the secret's JSON keys
    (``lifeguard.stack.ecs_run``, the image tier's translator), to the migrator composing the URL and
    migrating a real Postgres whose owner's password needs percent-encoding. Run as a process here, not
    in the image (the image tier runs that); only the CA bundle's path is this machine's."""
    local = {EXISTING_INSTANCE: {**DB_INSTANCES[EXISTING_INSTANCE], "address": "localhost",
                                 "port": app_db.cluster.port}}
    run = run_program({**EXISTING_INSTANCE_CONFIG, "dbName": app_db.dbname}, build_dir,
                      mocks=StrictMocks(subnets=EXISTING_SUBNETS, db_instances=local))
    definition = {key: run.one("aws:ecs/taskDefinition:TaskDefinition", "migration").input(key)
                  for key in run.one("aws:ecs/taskDefinition:TaskDefinition", "migration").inputs}
    stand_in = {s.state["arn"]: str(v.input("secretString")) for s in run.of_type("aws:secretsmanager/secret:Secret")
                for v in run.of_type("aws:secretsmanager/secretVersion:SecretVersion") if v.input("secretId") == s.id}
    stand_in[EXISTING_OWNER_SECRET] = json.dumps({"username": app_db.owner, "password": app_db.owner_password})
    architecture = {"X86_64": "amd64", "ARM64": "arm64"}[definition["runtimePlatform"]["cpuArchitecture"]]
    # No AWS call is made here (see below): the task role's stand-in is empty.
    (plan,) = plan_task(definition, images=lambda uri: uri, secrets=stand_in, prefix="t",
                        machine_architecture=architecture, task_role={})
    env = dict(plan.env)
    assert env[OWNER_PASSWORD_ENV] == app_db.owner_password  # injected from the JSON, as ECS would
    env[DB_ROOT_CERT_ENV] = str(app_db.cluster.ca_file)
    # The application role is cluster-wide here: provisioning it, and recording the rotation it was set for
    # (which needs the role), are tested elsewhere (tests/migrator/test_roles.py, test_rotation_record.py).
    for name in (APP_ROLE_ENV, APP_ROLE_VERIFIER_ENV, ROTATION_PARAMETER_ENV, ROTATION_ENV):
        env.pop(name)
    migrations = write_migrations(tmp_path / "migrations", {"0001_widgets.sql": "CREATE TABLE widgets (id int);"})
    proc = run_cli(["apply", "--migrations-dir", str(migrations)], env, secrets_of(app_db))
    assert proc.returncode == 0, proc.stderr
    assert recorded_versions(app_db) == ["0001"]


def test_both_components_are_accepted_by_pulumis_component_analyzer() -> None:
    """What a component provider hosting them needs: the analyzer reads each Args and its outputs."""
    from pulumi.provider.experimental.analyzer import Analyzer

    from lifeguard.aws.database import Database
    from lifeguard.aws.migration_job import MigrationJob

    found = Analyzer("lifeguard").analyze([Database, MigrationJob])["component_definitions"]
    database, job = found["Database"], found["MigrationJob"]
    assert {"existingInstanceIdentifier", "existingClusterIdentifier", "ownerSecretArn", "maxConnections",
            "securityGroupId", "clientSecurityGroupIds", "manageMasterUserPassword", "tags"} <= set(database.inputs)
    assert not database.inputs["securityGroupId"].optional
    assert set(database.outputs) == {"address", "port", "arn", "identifier", "dbName", "maxConnections",
                                     "ownerSecretArn"}
    assert {"image", "command", "directSecretArn", "ownerSecretArn", "databaseHost", "databasePort", "dbName",
            "tags"} <= set(job.inputs)
    assert set(job.outputs) == {"clusterArn", "taskDefinitionArn", "subnetIds", "securityGroupIds", "logGroupName",
                                "executionRoleArn", "taskRoleArn"}
    # Every input and output is described (the schema's documentation comes from these).
    for definition in (database, job):
        for name, spec in {**definition.inputs, **definition.outputs}.items():
            assert spec.description, name
