"""Issue #12: what makes the second `pulumi up` (from CI, another checkout, a revert) work too."""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from lifeguard.aws.config import InfraConfigError, load
from lifeguard.aws.image import build_path, context_tag
from migrator.contract import DEMO_DATA_ENV
from pgbouncer import entrypoint
from pgbouncer.contract import IMAGE_SOCKET_DIR
from pgbouncer.settings import PoolerSettings
from tests.infra.infra_harness import (
    ACCOUNT,
    APP_PASSWORD_RESOURCE,
    REGION,
    REPO_ROOT,
    ProgramRun,
    StrictMocks,
    example_stack_config,
    last_registrations,
    run_program,
)
from tests.infra.test_infra_stack import credentials_versions

# -- #12.1: images ------------------------------------------------------------------------------


def test_image_tags_are_mutable_and_name_the_whole_context_digest(example_run: ProgramRun) -> None:
    # ECR refuses to overwrite an immutable tag even with the same digest, and pulumi-docker pushes
    # again whenever its view of `build` changes: immutable tags break every later `up`.
    repositories = example_run.of_type("aws:ecr/repository:Repository")
    assert {r.input("imageTagMutability") for r in repositories} == {"MUTABLE"}
    for image in example_run.of_type("docker:index/image:Image"):
        tag = image.input("imageName").rsplit(":", 1)[1]
        assert re.fullmatch(r"x86_64-[0-9a-f]{64}", tag), tag
        # The context pulumi-docker builds (the migrator's is staged with the shared packages).
        assert tag == context_tag((Path.cwd() / image.input("build")["context"]).resolve(), "x86_64")


def test_build_paths_are_relative_to_the_programs_working_directory() -> None:
    # Pulumi runs the program in infra/ (main: infra/ in Pulumi.yaml).
    assert build_path(REPO_ROOT / "pgbouncer", REPO_ROOT / "infra") == "../pgbouncer"
    assert build_path(REPO_ROOT / "migrator" / "Dockerfile", REPO_ROOT / "infra") == "../migrator/Dockerfile"
    assert build_path(REPO_ROOT / "pgbouncer", REPO_ROOT) == "pgbouncer"


def test_the_tag_is_the_same_in_another_checkout_and_differs_for_another_build(tmp_path: Path) -> None:
    first, second = tmp_path / "laptop" / "migrator", tmp_path / "ci" / "checkout" / "migrator"
    for copy in (first, second):
        shutil.copytree(REPO_ROOT / "migrator", copy, ignore=shutil.ignore_patterns("__pycache__"))
    # Another umask: read and write bits differ, the executable bit does not.
    for path in second.rglob("*.py"):
        os.chmod(path, 0o600)
    assert context_tag(first, "x86_64") == context_tag(second, "x86_64")
    assert context_tag(first, "x86_64") != context_tag(first, "arm64")
    (second / "runner.py").write_text((second / "runner.py").read_text() + "\n# changed\n")
    assert context_tag(first, "x86_64") != context_tag(second, "x86_64")


# -- #12.2 and #12.13: names built from the project and stack names -----------------------------

ECS_FAMILY = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
DASHBOARD = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
SECRET_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")
LAMBDA_LAYER = re.compile(r"^[A-Za-z0-9_-]{1,140}$")
# The longest stack name Pulumi allows (100), with the characters it allows and some services refuse.
LONG_STACK = ("prod.eu-1_" * 10)[:100]


def names(run: ProgramRun) -> dict[str, str]:
    found = {f"family:{t.name}": t.input("family") for t in run.of_type("aws:ecs/taskDefinition:TaskDefinition")}
    found["dashboard"] = run.one("aws:cloudwatch/dashboard:Dashboard").input("dashboardName")
    found["metrics"] = run.outputs["poolerMetricsService"]
    found["layer"] = run.one("aws:lambda/layerVersion:LayerVersion").input("layerName")
    for secret in run.of_type("aws:secretsmanager/secret:Secret"):
        found[f"secret:{secret.name}"] = secret.input("namePrefix")
    return found


def test_a_stack_name_with_dots_gives_valid_names_within_each_limit(build_dir: Path) -> None:
    run = run_program(example_stack_config(), build_dir, stack=LONG_STACK)
    found = names(run)
    for key, value in found.items():
        if key.startswith("family:"):
            assert ECS_FAMILY.match(value), value
        elif key == "dashboard":
            assert DASHBOARD.match(value), value
        elif key == "layer":
            assert LAMBDA_LAYER.match(value), value
        elif key.startswith("secret:"):
            # The provider appends 26 characters to a name prefix.
            assert SECRET_NAME.match(value + "x" * 26), value
        assert value.startswith("lifeguard-prod"), value  # still readable
    assert run.outputs["poolerTaskDefinitionArn"].split("/")[-1].startswith("lifeguard-prod-eu-1")


def test_names_are_unique_per_organisation_region_and_unsanitised_stack_name(build_dir: Path) -> None:
    config = example_stack_config()
    base = names(run_program(config, build_dir, stack="prod.eu-1"))
    # Sanitised, these two stack names are the same string.
    other_stack = names(run_program(config, build_dir, stack="prod-eu-1"))
    other_org = names(run_program(config, build_dir, stack="prod.eu-1", organization="another-team"))
    other_region = names(run_program(config, build_dir, stack="prod.eu-1", mocks=StrictMocks(
        region="us-east-1", zones=("us-east-1a", "us-east-1b", "us-east-1c"))))
    for other in (other_stack, other_org, other_region):
        for key in ("dashboard", "metrics", "layer", "family:pooler-task", "family:migration-task"):
            assert base[key] != other[key], key


# -- #12.3 (the stack's part): the pooler's task definition is an output ------------------------


def test_the_pooler_task_definition_arn_is_exported(example_run: ProgramRun) -> None:
    task = example_run.one("aws:ecs/taskDefinition:TaskDefinition", "pooler")
    service = example_run.one("aws:ecs/service:Service", "pooler")
    assert example_run.outputs["poolerTaskDefinitionArn"] == task.state["arn"] == service.input("taskDefinition")
    assert "poolerTaskDefinitionArn" not in example_run.secret_outputs


def test_the_database_is_named_for_the_stack_and_its_log_group_is_the_stacks(example_run: ProgramRun) -> None:
    db = example_run.one("aws:rds/instance:Instance")
    identifier = db.input("identifier")
    assert re.fullmatch(r"lifeguard-dev-database-[0-9a-f]{8}", identifier), identifier
    [logs] = [g for g in example_run.of_type("aws:cloudwatch/logGroup:LogGroup")
              if g.input("name") == f"/aws/rds/instance/{identifier}/postgresql"]
    assert logs.input("retentionInDays") == 14  # the example stack's logRetentionDays
    # Created before the instance, or RDS creates it first (no retention, outlives `pulumi destroy`).
    assert logs.urn in example_run.dependencies(db)
    assert db.input("enabledCloudwatchLogsExports") == ["postgresql"]


def test_rds_identifiers_stay_valid_for_any_stack_name(build_dir: Path) -> None:
    run = run_program(example_stack_config(), build_dir, stack="Prod..EU_1")
    identifier = run.one("aws:rds/instance:Instance").input("identifier")
    assert re.fullmatch(r"[a-z](?!.*--)[a-z0-9-]{0,61}[a-z0-9]", identifier), identifier


# -- #12.13: availability zones named by config ------------------------------------------------


def test_config_names_the_availability_zones(build_dir: Path) -> None:
    mocks = StrictMocks(region="ca-central-1", zones=("ca-central-1a", "ca-central-1b", "ca-central-1d"))
    config = {**example_stack_config(), "aws:region": "ca-central-1",
              "availabilityZones": '["ca-central-1a", "ca-central-1b"]'}
    run = run_program(config, build_dir, mocks=mocks)
    assert sorted(s.input("availabilityZone") for s in run.of_type("aws:ec2/subnet:Subnet")) == [
        "ca-central-1a", "ca-central-1b"]


@pytest.mark.parametrize(("config", "message"), [
    ({"availabilityZones": '["eu-west-1a", "eu-west-1q"]'}, "lifeguard:availabilityZones: eu-west-1q is not an "
                                                           "available AZ of this region"),
    ({"availabilityZones": '["eu-west-1a"]'}, "lifeguard:availabilityZones: must name 2 to 6 AZs"),
    ({"availabilityZones": '["eu-west-1a", "eu-west-1a"]'}, "lifeguard:availabilityZones: lists an AZ twice"),
    ({"availabilityZones": '["eu-west-1a", "eu-west-1b"]', "availabilityZoneCount": "3"},
     "lifeguard:availabilityZoneCount: is 3 but availabilityZones names 2"),
])
def test_bad_zone_lists_are_refused_before_anything_exists(build_dir: Path, config: dict[str, str],
                                                           message: str) -> None:
    with pytest.raises(InfraConfigError) as error:
        run_program({**example_stack_config(), **config}, build_dir)
    assert message in str(error.value)
    assert last_registrations() == []


# -- #12.7: database changes do not wait for the maintenance window outside production ----------


def test_database_changes_apply_immediately_outside_production(example_run: ProgramRun) -> None:
    assert example_run.one("aws:rds/instance:Instance").input("applyImmediately") is True


@pytest.mark.parametrize(("config", "expected"), [
    ({}, False),  # production by default: changes wait for the maintenance window
    ({"production": "false"}, True),
    ({"dbApplyImmediately": "true"}, True),
    ({"production": "false", "dbApplyImmediately": "false"}, False),
])
def test_apply_immediately_follows_production_unless_set(config: dict[str, str], expected: bool) -> None:
    assert load(config).database.apply_immediately is expected


# -- #12.10: a new VPC must hold what the stack puts in each subnet ----------------------------


def test_a_24_is_refused_with_the_arithmetic() -> None:
    with pytest.raises(InfraConfigError) as error:
        load({"vpcCidr": "10.7.0.0/24"})
    [problem] = error.value.problems
    assert problem.startswith("lifeguard:vpcCidr: 10.7.0.0/24 is too small")
    # /28 subnets; 5 + 8 + 4 + 2 + 2 + 8 (4 tasks x 200%, in one AZ when the other is lost) + 1 = 30.
    assert "/28 = 16 addresses, but needs 30 (5 AWS reserves + 8 NLB free + 4 interface endpoints" in problem
    assert "use a /23 or larger, e.g. 10.7.0.0/23" in problem


@pytest.mark.parametrize(("config", "fits"), [
    ({"vpcCidr": "10.7.0.0/23"}, True),
    # NAT instead of endpoints: 4 fewer per subnet, 26 still needs a /27 subnet.
    ({"vpcCidr": "10.7.0.0/24", "awsApiAccess": "nat"}, False),
    # Three AZs: the survivors of a lost AZ share the 8 tasks, 4 each: 26.
    ({"vpcCidr": "10.7.0.0/23", "availabilityZoneCount": "3"}, True),
    # 10 tasks x 200% in one surviving AZ: 5 + 8 + 4 + 2 + 2 + 20 + 1 = 42 > 32.
    ({"vpcCidr": "10.7.0.0/23", "poolerMaxTasks": "10", "maxConnections": "400"}, False),
    ({"vpcCidr": "10.7.0.0/22", "poolerMaxTasks": "10", "maxConnections": "400"}, True),
    # An existing VPC's subnets are not the stack's to size.
    ({"vpcCidr": "10.7.0.0/24", "existingVpcId": "vpc-0123456789abcdef0", "awsApiAccess": "none",
      "existingPrivateSubnetIds": '["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]'}, True),
])
def test_the_bound_follows_what_the_subnets_hold(config: dict[str, str], fits: bool) -> None:
    if fits:
        load(config)
    else:
        with pytest.raises(InfraConfigError, match=r"lifeguard:vpcCidr: .* is too small"):
            load(config)


# -- #12.8: the CPU the autoscaler and the alarm read can reach their thresholds ----------------


@pytest.mark.parametrize("cpu", [2048, 4096])
def test_pooler_cpu_above_one_vcpu_is_refused(cpu: int) -> None:
    with pytest.raises(InfraConfigError) as error:
        load({"poolerCpu": str(cpu), "poolerMemoryMb": str(2 * cpu)})
    [problem] = error.value.problems
    assert problem.startswith(f"lifeguard:poolerCpu: must be at most 1024 (one vCPU), got {cpu}")
    assert f"could never pass {100 * 1024 // cpu}%" in problem and "poolerMaxTasks" in problem


def test_one_vcpu_keeps_the_target_and_the_alarm_reachable() -> None:
    cfg = load({"poolerCpu": "1024", "poolerMemoryMb": "2048", "poolerCpuTargetPercent": "90",
                "alarmPoolerCpuPercent": "100"})
    # One busy single-threaded process fills a 1024-unit task: 100% is reachable, so both are.
    assert cfg.pooler.cpu == 1024
    assert cfg.pooler.cpu_target_percent < cfg.alarms.thresholds.pooler_cpu_percent <= 100


# -- #12.12: the pooler service waits for the network path its tasks need ------------------------


def rule_labels(run: ProgramRun, urns: frozenset[str]) -> set[str]:
    return {run.by_urn(u).input("description") for u in urns
            if run.by_urn(u).type.startswith("aws:vpc/securityGroup")}


def test_the_service_waits_for_endpoints_routes_and_rules(example_run: ProgramRun) -> None:
    service = example_run.one("aws:ecs/service:Service")
    waits_for = example_run.dependencies(service)
    endpoints = {e.urn for e in example_run.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")}
    assert len(endpoints) == 5 and endpoints <= waits_for  # four interface endpoints and S3
    for type_ in ("aws:ec2/routeTable:RouteTable", "aws:ec2/routeTableAssociation:RouteTableAssociation"):
        assert {r.urn for r in example_run.of_type(type_)} <= waits_for, type_
    assert {"nlb-to-pooler", "pooler-to-database", "pooler-to-endpoints",
            "ECR image layers from S3 (gateway endpoint)"} <= rule_labels(example_run, waits_for)
    # Only the pooler's own path: not the functions' or the migration job's rules.
    assert not {"functions-to-nlb", "migration-to-database"} & rule_labels(example_run, waits_for)


def test_with_nat_the_service_waits_for_the_nat_gateways_and_their_routes(build_dir: Path) -> None:
    run = run_program({**example_stack_config(), "awsApiAccess": "nat"}, build_dir)
    waits_for = run.dependencies(run.one("aws:ecs/service:Service"))
    nat = {n.urn for n in run.of_type("aws:ec2/natGateway:NatGateway")}
    assert nat and nat <= waits_for
    assert {r.urn for r in run.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")} <= waits_for
    assert "AWS APIs (Secrets Manager, ECR, Logs) over HTTPS through the VPC route" in rule_labels(run, waits_for)


# -- #12.5: roles only for this account; read-only containers that write only to their volumes ---


@pytest.mark.parametrize(("role_name", "condition"), [
    # ECS sets both keys when it assumes a task's roles; Lambda sets neither aws:SourceArn nor, for an
    # execution role, anything narrower than the account.
    ("pooler-execution", {"StringEquals": {"aws:SourceAccount": ACCOUNT},
                          "ArnLike": {"aws:SourceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:*"}}),
    ("migration-execution", {"StringEquals": {"aws:SourceAccount": ACCOUNT},
                             "ArnLike": {"aws:SourceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:*"}}),
    ("functions-role", {"StringEquals": {"aws:SourceAccount": ACCOUNT}}),
])
def test_trust_policies_pin_the_account(example_run: ProgramRun, role_name: str,
                                        condition: dict[str, dict[str, str]]) -> None:
    role = example_run.one("aws:iam/role:Role", role_name)
    [statement] = json.loads(role.input("assumeRolePolicy"))["Statement"]
    assert statement["Condition"] == condition


def task_containers(run: ProgramRun, name: str) -> dict[str, dict[str, Any]]:
    task = run.one("aws:ecs/taskDefinition:TaskDefinition", name)
    return {c["name"]: c for c in json.loads(task.input("containerDefinitions"))}


def test_every_container_has_a_read_only_root_filesystem(example_run: ProgramRun) -> None:
    for name in ("pooler", "migration"):
        for container in task_containers(example_run, name).values():
            assert container["readonlyRootFilesystem"] is True, container["name"]
    assert "mountPoints" not in task_containers(example_run, "migration")["migrator"]


def test_pgbouncer_writes_only_to_its_task_volumes(example_run: ProgramRun) -> None:
    task = example_run.one("aws:ecs/taskDefinition:TaskDefinition", "pooler")
    containers = task_containers(example_run, "pooler")
    assert {v["name"] for v in task.input("volumes")} == {"pgbouncer-run", "pgbouncer-socket"}
    writable = {m["containerPath"] for m in containers["pgbouncer"]["mountPoints"] if not m["readOnly"]}
    assert writable == {"/run/pgbouncer", IMAGE_SOCKET_DIR}
    # Every path the entrypoint and PgBouncer write, from the settings the task runs with.
    settings = PoolerSettings.from_json(containers["pgbouncer"]["environment"][0]["value"])
    written = [settings.auth_file, settings.client_tls_cert_file, settings.client_tls_key_file,
               str(inspect.signature(entrypoint.main).parameters["run_dir"].default / "pgbouncer.ini"),
               settings.unix_socket_dir + "/.s.PGSQL.6432"]
    assert not settings.logfile and not settings.pidfile  # stderr and PID 1: no files
    for path in written:
        assert any(Path(path).is_relative_to(directory) for directory in writable), path
    # The sidecar reads the socket; it cannot write there, and never sees the run volume (userlist.txt).
    assert containers["metrics"]["mountPoints"] == [
        {"sourceVolume": "pgbouncer-socket", "containerPath": IMAGE_SOCKET_DIR, "readOnly": True}]


# -- #12.6: a brand-new account has no ECS service-linked role ---------------------------------


def test_a_new_account_gets_the_ecs_service_linked_role_before_the_service(build_dir: Path) -> None:
    run = run_program(example_stack_config(), build_dir, mocks=StrictMocks(ecs_service_linked_role=False))
    role = run.one("aws:iam/serviceLinkedRole:ServiceLinkedRole")
    assert role.input("awsServiceName") == "ecs.amazonaws.com"
    # The account's, not the stack's: `pulumi destroy` and the next `up` (which finds it) leave it.
    assert role.retain_on_delete
    assert not any(r.retain_on_delete for r in run.resources if r is not role)
    assert role.urn in run.dependencies(run.one("aws:ecs/service:Service"))


def test_an_account_that_has_it_leaves_it_alone(example_run: ProgramRun) -> None:
    # Declaring it again would fail ("has been taken in this account"): the program creates it only
    # when the lookup finds none, and retains it on delete, so the next `up` only forgets it.
    assert not example_run.of_type("aws:iam/serviceLinkedRole:ServiceLinkedRole")
    assert ("aws:iam/getRoles:getRoles", {"nameRegex": "^AWSServiceRoleForECS$",
                                          "pathPrefix": "/aws-service-role/ecs.amazonaws.com/"}) in example_run.calls


# -- #12.14: defaults that work in a new account ------------------------------------------------


def test_no_concurrency_is_reserved_by_default_and_a_reservation_still_caps_clients() -> None:
    # Lambda keeps 10 unreserved; a new account's limit is 10, so any default reservation would fail.
    assert load({}).functions.reserved_concurrency is None
    assert load({"functionReservedConcurrency": "50"}).functions.reserved_concurrency == 50


# -- #12.11: a new password rolls the pooler ---------------------------------------------------


def test_a_new_password_changes_the_pooler_task_definition(example_run: ProgramRun, build_dir: Path) -> None:
    # The task definition names the secrets by ARN, which a new value keeps: without their version
    # ids in it, ECS would not start new tasks, and running ones would keep the old userlist.
    versions = {v.name: v.state["versionId"]
                for v in example_run.of_type("aws:secretsmanager/secretVersion:SecretVersion")}
    assert credentials_versions(example_run) == (
        f"{versions['pooler-credentials']},{versions['pooler-stats-credentials']}")
    rotated = run_program(example_stack_config(), build_dir,
                          mocks=StrictMocks(passwords={APP_PASSWORD_RESOURCE: "An0therGeneratedPassword"}))
    assert credentials_versions(rotated) != credentials_versions(example_run)
    task = task_containers(rotated, "pooler")["pgbouncer"]
    assert {s["valueFrom"] for s in task["secrets"]} == {
        s["valueFrom"] for s in task_containers(example_run, "pooler")["pgbouncer"]["secrets"]}


def migration_environment(run: ProgramRun) -> dict[str, str]:
    return {e["name"]: e["value"] for e in task_containers(run, "migration")["migrator"]["environment"]}


def test_the_migration_job_applies_demo_data_only_outside_production(example_run: ProgramRun,
                                                                      build_dir: Path) -> None:
    assert migration_environment(example_run)[DEMO_DATA_ENV] == "1"  # the example stack: production false
    production = run_program({"aws:region": REGION}, build_dir, stack="prod")
    assert migration_environment(production)[DEMO_DATA_ENV] == "0"
    assert load({"demoData": "true"}).migration.demo_data is True
