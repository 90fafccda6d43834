"""Issue #27: what a real account would hit on the deploy path, checked under the mocks."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from moto.iam.access_control import IAMPolicy, PermissionResult

from lifeguard.aws.config import DatabaseConfig, InfraConfigError, load
from lifeguard.aws.deployed import record, refused_changes
from lifeguard.aws.outputs import DATABASE_SETTINGS
from lifeguard.aws.types import AlarmThresholds
from pgbouncer.contract import CERT_ENV, CERTIFICATE_DAYS_LEFT, DEFAULT_NAMESPACE, DIM_SERVICE
from pgbouncer.metrics import Publisher, PublisherConfig, PublisherConfigError
from pgbouncer.scram import APP_ITERATIONS
from tests.infra.infra_harness import (
    REPO_ROOT,
    ProgramRun,
    StrictMocks,
    example_stack_config,
    last_registrations,
    run_program,
)
from tests.infra.test_infra_observability import alarms, injected_env
from tests.infra.test_infra_rotation import PARAMETER
from tests.infra.test_infra_rotation import up as rotation_up
from tests.infra.test_infra_stack import pooler_container
from tests.observability.emf_check import parse_emf


@pytest.fixture(scope="module")
def new_account_run(build_dir: Path) -> ProgramRun:
    """The example stack in a brand-new account: no ``AWSServiceRoleForECS`` yet."""
    return run_program(example_stack_config(), build_dir, mocks=StrictMocks(ecs_service_linked_role=False))


# -- #27.2: CreateCluster races the stack for ECS's service-linked role -------------------------


def test_every_ecs_cluster_waits_for_the_service_linked_role(new_account_run: ProgramRun) -> None:
    # CreateCluster creates AWSServiceRoleForECS itself when it is missing; a cluster created first
    # makes the stack's own create fail ("has been taken in this account").
    role = new_account_run.one("aws:iam/serviceLinkedRole:ServiceLinkedRole")
    clusters = new_account_run.of_type("aws:ecs/cluster:Cluster")
    assert {cluster.name for cluster in clusters} == {"pooler-cluster", "migration-cluster"}
    for cluster in clusters:
        assert role.urn in new_account_run.dependencies(cluster), f"{cluster.name} does not wait for {role.name}"


# -- #27.6: the CA layer's name ------------------------------------------------------------------


def test_existing_stacks_keep_their_ca_layer_name(example_run: ProgramRun) -> None:
    # The layer's old name, `pooler-ca-<stack>`, was valid wherever a stack exists: keeping it keeps
    # poolerCaLayerArn (no new layer version under the users' own functions).
    layer = example_run.one("aws:lambda/layerVersion:LayerVersion")
    assert layer.input("layerName").startswith("lifeguard-dev-pooler-ca-")
    assert "layerName" in layer.ignore_changes


# -- #27.7: `pulumi destroy` never stops half-way ------------------------------------------------

PROTECTED = ("aws:rds/instance:Instance", "aws:lb/loadBalancer:LoadBalancer")


@pytest.fixture(scope="module")
def production_run(build_dir: Path) -> ProgramRun:
    """The defaults (a production stack: deletion protection on)."""
    return run_program({"aws:region": "eu-west-1"}, build_dir, stack="prod")


@pytest.fixture(scope="module")
def unprotected_production_run(build_dir: Path) -> ProgramRun:
    """A production stack after the documented first teardown step (deletionProtection false, `up`)."""
    return run_program({"aws:region": "eu-west-1", "deletionProtection": "false"}, build_dir, stack="prod")


def test_a_protected_stack_refuses_destroy_before_deleting_anything(production_run: ProgramRun) -> None:
    # AWS's deletion protection alone fails the destroy at the database, after everything that
    # depends on it is gone; Pulumi's `protect` fails it while planning, before the first delete.
    for type_ in PROTECTED:
        resource = production_run.one(type_)
        assert resource.protect, f"{resource.name} is not protected"
    assert production_run.one("aws:rds/instance:Instance").input("deletionProtection") is True
    assert {r.name for r in production_run.resources if r.protect} == {
        production_run.one(type_).name for type_ in PROTECTED}
    # Nothing will reach the repositories, so they may keep their images.
    assert {r.input("forceDelete") for r in production_run.of_type("aws:ecr/repository:Repository")} == {False}


def test_an_unprotected_stack_destroys_its_repositories_with_their_images(
    unprotected_production_run: ProgramRun, example_run: ProgramRun
) -> None:
    # Images are never deleted by the stack (pushed on every `up`): a repository that refuses to go
    # stopped `pulumi destroy` of a production stack after its database was already deleted.
    for run in (unprotected_production_run, example_run):
        assert not any(r.protect for r in run.resources)
        repositories = run.of_type("aws:ecr/repository:Repository")
        assert len(repositories) == 2
        assert {r.input("forceDelete") for r in repositories} == {True}


# -- #27.4 and #27.8: database changes AWS cannot make in place --------------------------------


def example_database() -> DatabaseConfig:
    short = {key.split(":", 1)[1]: value for key, value in example_stack_config().items()
             if key.startswith("lifeguard:")}
    return load(short).database


def deployed(**changes: str) -> StrictMocks:
    """Mocks whose stack was last deployed with the example's database settings, but for ``changes``."""
    return StrictMocks(deployed_outputs={DATABASE_SETTINGS: {**record(example_database(), APP_ITERATIONS), **changes}})


def refusal(build_dir: Path, mocks: StrictMocks, **config: str) -> str:
    with pytest.raises(InfraConfigError) as raised:
        run_program({**example_stack_config(), **config}, build_dir, mocks=mocks)
    # Refused before the first resource: nothing of the stack is touched.
    assert last_registrations() == []
    return str(raised.value)


def test_every_up_records_the_database_settings_and_reads_its_own(example_run: ProgramRun) -> None:
    assert example_run.outputs[DATABASE_SETTINGS] == {
        "postgresMajorVersion": "17", "dbName": example_database().db_name, "dbUsername": example_database().username,
        "scramIterations": str(APP_ITERATIONS), "appPasswordRotation": "0", "appPasswordSwitched": "0"}
    assert DATABASE_SETTINGS not in example_run.secret_outputs
    # Its own stack, fully qualified (a self-managed backend's organization is `organization`).
    assert ("pulumi:pulumi:readStackOutputs", {"name": "organization/lifeguard/dev"}) in example_run.calls


@pytest.mark.parametrize("key", ["dbName", "dbUsername"])
def test_a_change_that_would_replace_the_database_is_refused_at_preview(build_dir: Path, key: str) -> None:
    # Both force a new RDS instance: a new, empty database that the pipeline would then migrate.
    message = refusal(build_dir, deployed(**{key: "olddata"}))
    assert f"lifeguard:{key}: the deployed database has 'olddata'" in message
    assert f"Set lifeguard:{key} back to 'olddata'" in message


def test_a_major_upgrade_waiting_for_the_maintenance_window_is_refused(build_dir: Path) -> None:
    # The old family's parameter group would still be attached when Pulumi deletes it.
    message = refusal(build_dir, deployed(postgresMajorVersion="16"), **{"lifeguard:dbApplyImmediately": "false"})
    assert "lifeguard:postgresMajorVersion: 16 -> 17 is a major upgrade" in message
    assert "Set dbApplyImmediately to true" in message


def test_a_downgrade_is_refused(build_dir: Path) -> None:
    message = refusal(build_dir, deployed(postgresMajorVersion="18"))
    assert "RDS cannot downgrade it to 17" in message


def test_a_major_upgrade_applied_immediately_goes_ahead(build_dir: Path) -> None:
    run = run_program({**example_stack_config(), "lifeguard:dbApplyImmediately": "true"}, build_dir,
                      mocks=deployed(postgresMajorVersion="16"))
    assert run.one("aws:rds/parameterGroup:ParameterGroup").input("family") == "postgres17"
    assert run.outputs[DATABASE_SETTINGS]["postgresMajorVersion"] == "17"


def test_what_may_change_in_place_is_not_refused() -> None:
    cfg = example_database()
    assert refused_changes(None, cfg) == []  # a new stack, or one deployed before the record existed
    assert refused_changes(record(cfg, APP_ITERATIONS), cfg) == []
    assert refused_changes({}, cfg) == []


# -- #27.5: a new NLB needs a new target group ---------------------------------------------------


def test_the_target_group_is_replaced_with_the_nlb(example_run: ProgramRun) -> None:
    # ELB attaches a target group to one load balancer only: the replaced NLB's new listener could
    # not forward to the old NLB's group, and the replacement would never complete.
    nlb = example_run.one("aws:lb/loadBalancer:LoadBalancer")
    target_group = example_run.one("aws:lb/targetGroup:TargetGroup")
    assert target_group.replace_with == {nlb.urn}
    # Auto-named, so the new group is created before the old one goes (no name to collide on).
    assert "name" not in target_group.inputs and "namePrefix" not in target_group.inputs
    listener = example_run.one("aws:lb/listener:Listener")
    assert listener.input("loadBalancerArn") == nlb.state["arn"]
    assert listener.input("defaultActions")[0]["targetGroupArn"] == target_group.state["arn"]


# -- #27.3: the documented preview role can preview ----------------------------------------------

# Each data source the program calls, and the IAM actions AWS checks for it.
PREVIEW_ACTIONS: dict[str, tuple[str, ...]] = {
    "aws:index/getRegion:getRegion": (),  # the provider's own configuration: no API call
    "aws:index/getCallerIdentity:getCallerIdentity": (),  # sts:GetCallerIdentity needs no permission
    "aws:index/getAvailabilityZones:getAvailabilityZones": ("ec2:DescribeAvailabilityZones",),
    "aws:ec2/getSubnet:getSubnet": ("ec2:DescribeSubnets",),
    "aws:ecr/getAuthorizationToken:getAuthorizationToken": ("ecr:GetAuthorizationToken",),
    "aws:iam/getRoles:getRoles": ("iam:ListRoles",),
    # An existing database (the tags come in the describe call's TagList).
    "aws:rds/getInstance:getInstance": ("rds:DescribeDBInstances",),
    "aws:rds/getCluster:getCluster": ("rds:DescribeDBClusters",),
    "pulumi:pulumi:readStackOutputs": (),  # Pulumi's backend, with the preview's Pulumi token
    # Before a password rotation's switch: the migration job's record of the rotation Postgres holds.
    "aws:ssm/getParameter:getParameter": ("ssm:GetParameter",),
}
# Actions AWS checks on a resource of the stack's (the rest are granted on "*" only).
PREVIEW_RESOURCES = {"ssm:GetParameter": f"arn:aws:ssm:eu-west-1:123456789012:parameter{PARAMETER}"}
EXISTING_VPC = "vpc-0123456789abcdef0"
EXISTING_SUBNETS = {"subnet-0123456789abcdef0": (EXISTING_VPC, "eu-west-1a"),
                    "subnet-0123456789abcdef1": (EXISTING_VPC, "eu-west-1b")}


def documented_preview_policy() -> dict[str, Any]:
    text = (REPO_ROOT / "docs" / "pipeline.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```json\n(.*?)```", text, re.DOTALL) if "LifeguardPreviewLookups" in b]
    document = json.loads(block)
    assert isinstance(document, dict)
    return document


def test_the_documented_preview_role_allows_every_lookup_the_program_makes(
    example_run: ProgramRun, existing_aurora_run: ProgramRun, existing_instance_run: ProgramRun, build_dir: Path
) -> None:
    existing_vpc = run_program(
        {"aws:region": "eu-west-1", "production": "false", "existingVpcId": EXISTING_VPC, "awsApiAccess": "none",
         "existingPrivateSubnetIds": json.dumps(sorted(EXISTING_SUBNETS))},
        build_dir, mocks=StrictMocks(subnets=EXISTING_SUBNETS))
    switch = rotation_up(build_dir, 1, 1, (1, 0), recorded="1")
    runs = (example_run, existing_vpc, existing_aurora_run, existing_instance_run, switch)
    tokens = {token for run in runs for token, _ in run.calls}
    assert {"aws:ec2/getSubnet:getSubnet", "aws:iam/getRoles:getRoles", "aws:rds/getInstance:getInstance",
            "aws:rds/getCluster:getCluster", "aws:ssm/getParameter:getParameter"} <= tokens
    unmapped = tokens - set(PREVIEW_ACTIONS)
    assert not unmapped, f"map each new data source to its IAM action, and add it to docs/pipeline.md: {unmapped}"
    policy = IAMPolicy(json.dumps(documented_preview_policy()))
    for token in sorted(tokens):
        for action in PREVIEW_ACTIONS[token]:
            resource = PREVIEW_RESOURCES.get(action, "*")
            assert policy.is_action_permitted(action, resource) == PermissionResult.PERMITTED, (
                f"docs/pipeline.md's preview role lacks {action} on {resource} (the program calls {token})")


def test_the_documented_preview_role_only_reads() -> None:
    statements = documented_preview_policy()["Statement"]
    for statement in statements:
        assert statement["Effect"] == "Allow"
        for action in statement["Action"]:
            assert re.fullmatch(r"[a-z0-9]+:(Describe|List|Get)[A-Za-z]+", action), action
    policy = IAMPolicy(json.dumps(documented_preview_policy()))
    # The rotation record only: no other parameter (they may hold secrets), nor the record's writer's action.
    assert policy.is_action_permitted("ssm:GetParameter", "*") != PermissionResult.PERMITTED
    other = "arn:aws:ssm:eu-west-1:123456789012:parameter/app/db-password"
    assert policy.is_action_permitted("ssm:GetParameter", other) != PermissionResult.PERMITTED
    assert policy.is_action_permitted("ssm:PutParameter", PREVIEW_RESOURCES["ssm:GetParameter"]) \
        != PermissionResult.PERMITTED
    for forbidden in ("iam:PassRole", "secretsmanager:GetSecretValue", "ec2:CreateVpc", "iam:CreateServiceLinkedRole"):
        assert policy.is_action_permitted(forbidden, "*") != PermissionResult.PERMITTED, forbidden


# -- #27.9: the pooler certificate's expiry is watched --------------------------------------------


@dataclass
class FixedClock:
    now: float

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


def days_left_lines(config: PublisherConfig, at: dt.datetime, socket_dir: Path) -> list[dict[str, Any]]:
    """What the sidecar prints for one sample at ``at``, with PgBouncer's console unreachable."""
    config = replace(config, target=replace(config.target, host=str(socket_dir)))
    out = io.StringIO()
    Publisher(config, "task-1", out, io.StringIO(), FixedClock(at.timestamp())).publish_once()
    return [rec for rec in parse_emf(out.getvalue()) if CERTIFICATE_DAYS_LEFT in rec]


def test_the_sidecar_publishes_the_days_left_that_the_expiry_alarm_reads(
    example_run: ProgramRun, tmp_path: Path
) -> None:
    pgbouncer, metrics = pooler_container(example_run), pooler_container(example_run, "metrics")
    env = injected_env(example_run, metrics)
    # The very certificate PgBouncer serves (public: the environment, not a secret).
    assert env[CERT_ENV] == {e["name"]: e["value"] for e in pgbouncer["environment"]}[CERT_ENV]
    config = PublisherConfig.from_env(env)
    expiry = dt.datetime.fromisoformat(example_run.outputs["poolerCertificateExpiry"])
    assert config.certificate_expiry == expiry

    # Ten days before expiry; the console being down does not silence it.
    (line,) = days_left_lines(config, expiry - dt.timedelta(days=10), tmp_path)
    alarm = alarms(example_run)["certificate-expiry"]
    (directive,) = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == alarm.input("namespace")
    assert {"Name": alarm.input("metricName"), "Unit": "None"} in directive["Metrics"]
    # The alarm's dimensions are one of the record's sets, with the record's values.
    assert sorted(alarm.input("dimensions")) in [sorted(dims) for dims in directive["Dimensions"]]
    assert all(line[name] == value for name, value in alarm.input("dimensions").items())
    assert line[CERTIFICATE_DAYS_LEFT] == 10.0

    threshold = alarm.input("threshold")
    assert threshold == AlarmThresholds().certificate_days_left
    assert alarm.input("comparisonOperator") == "LessThanOrEqualToThreshold"
    assert alarm.input("statistic") == "Minimum"  # the task with the oldest certificate
    assert alarm.input("treatMissingData") == "notBreaching"  # no sidecar: the ConsoleUp graph shows it
    assert line[CERTIFICATE_DAYS_LEFT] <= threshold
    # Before the renewal window the figure is far above it: a fresh stack does not alarm.
    (fresh,) = days_left_lines(config, expiry - dt.timedelta(days=364), tmp_path)
    assert fresh[CERTIFICATE_DAYS_LEFT] > threshold


def test_the_dashboard_shows_the_days_left(example_run: ProgramRun) -> None:
    body = json.loads(example_run.one("aws:cloudwatch/dashboard:Dashboard").input("dashboardBody"))
    (widget,) = [w["properties"] for w in body["widgets"]
                 if w["type"] == "metric" and any(CERTIFICATE_DAYS_LEFT in m for m in w["properties"]["metrics"])]
    (metric,) = widget["metrics"]
    assert metric[:4] == [DEFAULT_NAMESPACE, CERTIFICATE_DAYS_LEFT, DIM_SERVICE,
                          example_run.outputs["poolerMetricsService"]]
    assert {a["value"] for a in widget["annotations"]["horizontal"]} == {AlarmThresholds().certificate_days_left, 30}
    assert alarms(example_run)["certificate-expiry"].state["arn"] in next(
        w["properties"]["alarms"] for w in body["widgets"] if w["type"] == "alarm")


def test_a_certificate_the_sidecar_cannot_read_is_named_not_quoted() -> None:
    with pytest.raises(PublisherConfigError) as raised:
        PublisherConfig.from_env({CERT_ENV: "not a certificate", "LIFEGUARD_METRICS_USER": "pgbouncer"})
    assert CERT_ENV in str(raised.value) and "not a certificate" not in str(raised.value)
