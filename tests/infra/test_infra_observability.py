"""The pool-observability wiring of the whole program: metrics sidecar, console user, alarms, dashboard.

Runs on the example stack (``example_run``, strict mocks, every output resolved). Beyond the
shape of each resource, the contract tests feed the task definition's environment and secrets,
resolved as ECS would inject them, to the image's own code (the entrypoint's secret handling and
the publisher's configuration), and check that the alarms name the resources the stack created.
"""

from __future__ import annotations

import json
import math
from typing import Any

from lifeguard.aws.types import AlarmThresholds
from pgbouncer.contract import CLIENTS_WAITING, DEFAULT_NAMESPACE, DIM_SERVICE, IMAGE_SOCKET_DIR, MAX_WAIT, STATS_USER
from pgbouncer.entrypoint import credentials_from_env
from pgbouncer.metrics import PublisherConfig
from pgbouncer.settings import PoolerSettings
from tests.infra.infra_harness import MOCK_PASSWORD, ProgramRun, Resource, is_secret, unwrap
from tests.infra.test_infra_stack import containers, pooler_container, pooler_task, secret_arn

# <project>-<stack>-pgbouncer-<digest of organization/project/stack/region> (lifeguard.aws.naming)
SERVICE = "lifeguard-dev-pgbouncer-8ce48526"


def injected_env(run: ProgramRun, container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as ECS builds it: ``environment`` plus each secret's value."""
    values = {
        unwrap(version.inputs["secretId"]): unwrap(version.inputs["secretString"])
        for version in run.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    }
    by_arn = {s.state["arn"]: values[s.id] for s in run.of_type("aws:secretsmanager/secret:Secret")}
    env = {item["name"]: item["value"] for item in container.get("environment", [])}
    env.update({item["name"]: by_arn[item["valueFrom"]] for item in container.get("secrets", [])})
    return env


def alarms(run: ProgramRun) -> dict[str, Resource]:
    return {a.name.removeprefix("observability-"): a for a in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}


# -- the metrics sidecar ------------------------------------------------------------------------


def test_sidecar_runs_the_publisher_from_the_pooler_image(example_run: ProgramRun) -> None:
    assert [c["name"] for c in containers(pooler_task(example_run))] == ["pgbouncer", "metrics"]
    pgbouncer, metrics = pooler_container(example_run), pooler_container(example_run, "metrics")
    assert metrics["image"] == pgbouncer["image"]
    assert "@sha256:" in metrics["image"]
    # The image's ENTRYPOINT starts PgBouncer; the sidecar replaces it, and runs as the image's user.
    assert metrics["entryPoint"] == ["python", "-m", "pgbouncer.metrics"]
    assert "command" not in metrics and "user" not in metrics
    assert metrics["essential"] is False
    assert metrics["dependsOn"] == [{"containerName": "pgbouncer", "condition": "START"}]
    assert 32 <= metrics["memoryReservation"] <= 128
    assert "portMappings" not in metrics
    logs, own = metrics["logConfiguration"], pgbouncer["logConfiguration"]
    assert logs["logDriver"] == "awslogs"
    # The same log group (the EMF lines become metrics there), in streams of its own.
    assert logs["options"]["awslogs-group"] == own["options"]["awslogs-group"]
    assert logs["options"]["awslogs-region"] == own["options"]["awslogs-region"]
    assert logs["options"]["awslogs-stream-prefix"] == "metrics" != own["options"]["awslogs-stream-prefix"]
    # Fargate: the sum of reservations must fit the task.
    assert metrics["memoryReservation"] < int(pooler_task(example_run).input("memory"))


def test_both_containers_share_the_socket_volume_at_the_settings_socket_dir(example_run: ProgramRun) -> None:
    task = pooler_task(example_run)
    # Fargate bind mounts: no host path, no EFS or Docker volume configuration.
    assert task.input("volumes") == [{"name": "pgbouncer-run"}, {"name": "pgbouncer-socket"}]
    pgbouncer, metrics = pooler_container(example_run), pooler_container(example_run, "metrics")
    assert {"sourceVolume": "pgbouncer-socket", "containerPath": IMAGE_SOCKET_DIR, "readOnly": False} in (
        pgbouncer["mountPoints"])
    # Connecting to a Unix socket needs no write access to the mount.
    assert metrics["mountPoints"] == [
        {"sourceVolume": "pgbouncer-socket", "containerPath": IMAGE_SOCKET_DIR, "readOnly": True}]
    settings = PoolerSettings.from_json(pgbouncer["environment"][0]["value"])
    assert settings.unix_socket_dir == IMAGE_SOCKET_DIR
    assert settings.stats_users == (STATS_USER,)
    assert f"unix_socket_dir = {IMAGE_SOCKET_DIR}" in settings.render_ini()
    assert f"stats_users = {STATS_USER}" in settings.render_ini()


def test_sidecar_environment_is_what_the_publisher_reads(example_run: ProgramRun) -> None:
    pgbouncer, metrics = pooler_container(example_run), pooler_container(example_run, "metrics")
    environment = {e["name"]: e["value"] for e in metrics["environment"]}
    assert environment == {
        # The very settings JSON PgBouncer gets: socket directory and port come from it.
        "LIFEGUARD_PGBOUNCER_SETTINGS": pgbouncer["environment"][0]["value"],
        "LIFEGUARD_METRICS_SERVICE": SERVICE,
        "LIFEGUARD_METRICS_NAMESPACE": DEFAULT_NAMESPACE,
        # The certificate PgBouncer serves, for its days left (#27.9).
        "POOLER_TLS_CERT": {e["name"]: e["value"] for e in pgbouncer["environment"]}["POOLER_TLS_CERT"],
    }
    assert metrics["secrets"] == [
        {"name": "LIFEGUARD_METRICS_CREDENTIALS", "valueFrom": secret_arn(example_run, "pooler-stats-credentials")}]

    config = PublisherConfig.from_env(injected_env(example_run, metrics))
    assert (config.target.host, config.target.port) == (IMAGE_SOCKET_DIR, 6432)
    assert config.target.user == STATS_USER
    assert config.target.password == MOCK_PASSWORD
    assert (config.namespace, config.service) == (DEFAULT_NAMESPACE, SERVICE)
    assert config.interval_s == 15


def test_pgbouncer_renders_the_console_user_the_sidecar_logs_in_as(example_run: ProgramRun) -> None:
    pgbouncer, metrics = pooler_container(example_run), pooler_container(example_run, "metrics")
    env = injected_env(example_run, pgbouncer)
    settings = PoolerSettings.from_json(env["LIFEGUARD_PGBOUNCER_SETTINGS"])
    # The entrypoint's own parsing: it refuses a stats user missing from stats_users.
    users = credentials_from_env(env, settings)
    target = PublisherConfig.from_env(injected_env(example_run, metrics)).target
    assert set(users) == {"lifeguard_app", "lifeguard_app_b", STATS_USER}
    assert users[STATS_USER] == target.password
    assert target.user in settings.stats_users and target.user not in settings.admin_users


def test_console_user_secret_is_generated_json_and_only_in_the_pooler_task(example_run: ProgramRun) -> None:
    version = example_run.one("aws:secretsmanager/secretVersion:SecretVersion", "stats-credentials")
    assert is_secret(version.inputs["secretString"])
    assert json.loads(unwrap(version.inputs["secretString"])) == {"username": STATS_USER, "password": MOCK_PASSWORD}
    password = example_run.one("random:index/randomPassword:RandomPassword", "stats")
    assert password.input("length") >= 32
    secret = example_run.one("aws:secretsmanager/secret:Secret", "stats-credentials")
    assert secret.input("namePrefix") == "lifeguard-dev-8ce48526/POOLER_STATS_CREDENTIALS-"
    assert secret.input("recoveryWindowInDays") == 0

    arn = secret.state["arn"]
    holders = {
        task.name for task in example_run.of_type("aws:ecs/taskDefinition:TaskDefinition")
        if arn in {s["valueFrom"] for c in containers(task) for s in c.get("secrets", [])}
    }
    assert holders == {"pooler-task"}
    for function in example_run.of_type("aws:lambda/function:Function"):
        assert arn not in json.dumps(function.input("environment"))
    # Nowhere else in plain sight either: no other resource's inputs name it.
    elsewhere = {r.name for r in example_run.resources
                 if r.type not in ("aws:ecs/taskDefinition:TaskDefinition", "aws:iam/rolePolicy:RolePolicy")
                 and arn in json.dumps(unwrap(r.inputs), default=str)}
    assert elsewhere == set()


# -- alarms ----------------------------------------------------------------------------------------


def test_six_alarms_name_the_stacks_own_resources(example_run: ProgramRun) -> None:
    # The sixth, certificate-expiry, is checked against the sidecar's EMF in test_infra_deploy_path.py.
    found = alarms(example_run)
    assert set(found) == {"clients-waiting", "max-wait", "pooler-cpu", "unhealthy-targets", "db-connections",
                          "certificate-expiry"}
    cluster = example_run.one("aws:ecs/cluster:Cluster", "pooler")
    service = example_run.one("aws:ecs/service:Service")
    nlb = example_run.one("aws:lb/loadBalancer:LoadBalancer")
    target_group = example_run.one("aws:lb/targetGroup:TargetGroup")
    db = example_run.one("aws:rds/instance:Instance")
    # CloudWatch's dimensions are the ARN suffixes after ":loadbalancer/" and the target group's "targetgroup/...".
    nlb_suffix = nlb.state["arn"].split(":loadbalancer/", 1)[1]
    tg_suffix = "targetgroup/" + target_group.state["arn"].split(":targetgroup/", 1)[1]
    expected = {
        "clients-waiting": (DEFAULT_NAMESPACE, CLIENTS_WAITING, {DIM_SERVICE: SERVICE}, "Maximum", 1, 3),
        "max-wait": (DEFAULT_NAMESPACE, MAX_WAIT, {DIM_SERVICE: SERVICE}, "Maximum", 1.0, 2),
        "pooler-cpu": ("AWS/ECS", "CPUUtilization",
                       {"ClusterName": cluster.state["name"], "ServiceName": service.state["name"]},
                       "Average", 80.0, 5),
        "unhealthy-targets": ("AWS/NetworkELB", "UnHealthyHostCount",
                              {"LoadBalancer": nlb_suffix, "TargetGroup": tg_suffix}, "Maximum", 1, 2),
        # 80 % of the parameter group's max_connections (100).
        "db-connections": ("AWS/RDS", "DatabaseConnections", {"DBInstanceIdentifier": db.state["identifier"]},
                           "Maximum", 80, 3),
    }
    for key, (namespace, metric, dimensions, statistic, threshold, minutes) in expected.items():
        alarm = found[key]
        assert (alarm.input("namespace"), alarm.input("metricName")) == (namespace, metric), key
        assert alarm.input("dimensions") == dimensions, key
        assert all(value for value in dimensions.values()), key
        assert (alarm.input("statistic"), alarm.input("threshold")) == (statistic, threshold), key
        assert alarm.input("period") == 60, key
        assert alarm.input("evaluationPeriods") == alarm.input("datapointsToAlarm") == minutes, key
        assert alarm.input("comparisonOperator") == "GreaterThanOrEqualToThreshold", key
        # No topic in the example stack: the alarms change state, and notify nobody.
        assert not alarm.input("alarmActions") and not alarm.input("okActions"), key
    group = example_run.one("aws:rds/parameterGroup:ParameterGroup")
    params = {p["name"]: p["value"] for p in group.input("parameters")}
    assert found["db-connections"].input("threshold") == math.floor(int(params["max_connections"]) * 0.8)
    # A queue the sidecar cannot see is not a queue: missing PgBouncer data does not alarm.
    assert found["clients-waiting"].input("treatMissingData") == "notBreaching"


def test_sidecar_service_and_alarms_agree(example_run: ProgramRun) -> None:
    metrics = pooler_container(example_run, "metrics")
    service = {e["name"]: e["value"] for e in metrics["environment"]}["LIFEGUARD_METRICS_SERVICE"]
    for key in ("clients-waiting", "max-wait"):
        assert alarms(example_run)[key].input("dimensions") == {DIM_SERVICE: service}
    assert example_run.outputs["poolerMetricsService"] == service
    # A plain name, not the ECS service's generated one (which would be a dependency cycle).
    assert service != example_run.one("aws:ecs/service:Service").state["name"]


def test_default_thresholds_are_the_components_defaults(example_run: ProgramRun) -> None:
    defaults = AlarmThresholds()
    found = alarms(example_run)
    assert found["clients-waiting"].input("threshold") == defaults.clients_waiting
    assert found["max-wait"].input("threshold") == defaults.max_wait_seconds
    assert found["pooler-cpu"].input("threshold") == defaults.pooler_cpu_percent


# -- dashboard ---------------------------------------------------------------------------------------


def test_dashboard_is_valid_json_about_this_stack(example_run: ProgramRun) -> None:
    dashboard = example_run.one("aws:cloudwatch/dashboard:Dashboard")
    body = json.loads(dashboard.input("dashboardBody"))
    text = json.dumps(body)
    assert DEFAULT_NAMESPACE in text and f'Service=\\"{SERVICE}\\"' in text
    [alarm_widget] = [w for w in body["widgets"] if w["type"] == "alarm"]
    listed = alarm_widget["properties"]["alarms"]
    assert None not in listed
    registered = example_run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert sorted(listed) == sorted(a.state["arn"] for a in registered)
    assert all(arn.startswith("arn:aws:cloudwatch:eu-west-1:") for arn in listed)
    metric_widgets = {w["properties"]["title"]: w["properties"] for w in body["widgets"] if w["type"] == "metric"}
    assert {p["region"] for p in metric_widgets.values()} == {"eu-west-1"}
    db = example_run.one("aws:rds/instance:Instance")
    rds = metric_widgets["RDS connections vs max_connections"]
    assert rds["metrics"][0][:4] == ["AWS/RDS", "DatabaseConnections", "DBInstanceIdentifier", db.state["identifier"]]
    assert {a["value"] for a in rds["annotations"]["horizontal"]} == {80, 100}
    cpu = metric_widgets["Pooler CPU (%)"]["metrics"][0]
    assert cpu[3] == example_run.one("aws:ecs/cluster:Cluster", "pooler").state["name"]
    assert cpu[5] == example_run.one("aws:ecs/service:Service").state["name"]
    nlb = metric_widgets["NLB targets"]["metrics"][0]
    assert nlb[3] == example_run.one("aws:lb/loadBalancer:LoadBalancer").state["arnSuffix"]
    assert nlb[5] == example_run.one("aws:lb/targetGroup:TargetGroup").state["arnSuffix"]
    # Nothing in the body is unresolved.
    assert "null" not in dashboard.input("dashboardBody")
