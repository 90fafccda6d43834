"""The alarms, dashboard and topic, registered under strict Pulumi mocks (no AWS, no CLI).

``set_mocks(..., preview=False)`` runs in every test before the component is built, so every
``apply`` runs; ``call`` raises on any data source it does not know; and the assertions read the
inputs recorded by the mocks, in plain code after the program finished, not inside applies.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any, cast

import pulumi
import pytest
from pulumi.runtime import MockCallArgs, MockResourceArgs, Mocks
from pulumi.runtime.mocks import MockMonitor

from lifeguard.aws.observability import Observability, ObservabilityArgs
from lifeguard.aws.types import ObservabilityError
from pgbouncer.metrics import ConsoleSample, DatabaseTotals, PoolFigures, RateTracker, sample_records

REGION = "eu-west-1"
ACCOUNT = "123456789012"
CLUSTER, SERVICE = "lifeguard-cluster-0a1b", "pgbouncer-svc-9f8e"
NLB = "net/lifeguard-nlb/0123456789abcdef"
TARGET_GROUP = "targetgroup/pgbouncer-tg/fedcba9876543210"
DB = "lifeguard-db"


@dataclass
class Registered:
    type: str
    name: str
    urn: str
    inputs: dict[str, Any]


@dataclass
class StrictMocks(Mocks):
    resources: list[Registered] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, args: MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        with self.lock:
            self.calls.append(args.token)
        if args.token == "aws:index/getRegion:getRegion":
            return {"id": REGION, "region": REGION, "name": REGION}  # camelCase keys, as the engine sends
        raise AssertionError(f"unmocked data source {args.token}")

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        urn = f"urn:pulumi:test::lifeguard::{args.typ}::{args.name}"
        with self.lock:
            self.resources.append(Registered(args.typ, args.name, urn, dict(args.inputs)))
        outputs: dict[str, Any] = {}
        if args.typ == "aws:cloudwatch/metricAlarm:MetricAlarm":
            outputs = {"arn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{args.name}-a1b2"}
        elif args.typ == "aws:sns/topic:Topic":
            outputs = {"arn": f"arn:aws:sns:{REGION}:{ACCOUNT}:{args.name}-c3d4"}
        elif args.typ == "aws:sns/topicSubscription:TopicSubscription":
            outputs = {"arn": f"arn:aws:sns:{REGION}:{ACCOUNT}:sub-{args.name}"}
        elif args.typ == "aws:cloudwatch/dashboard:Dashboard":
            outputs = {"dashboardArn": f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/{args.inputs['dashboardName']}"}
        return f"{args.name}-id", {**args.inputs, **outputs}


@dataclass
class Run:
    mocks: StrictMocks
    monitor: MockMonitor
    outputs: dict[str, Any]

    def of_type(self, typ: str) -> list[Registered]:
        return [r for r in self.mocks.resources if r.type == typ]

    @property
    def alarms(self) -> dict[str, dict[str, Any]]:
        return {r.name: r.inputs for r in self.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}

    @property
    def dashboard(self) -> dict[str, Any]:
        [board] = self.of_type("aws:cloudwatch/dashboard:Dashboard")
        return board.inputs


def base_args(**overrides: Any) -> ObservabilityArgs:
    fields: dict[str, Any] = {
        "cluster_name": CLUSTER,
        "service_name": pulumi.Output.from_input(SERVICE),  # Outputs and plain values both work
        "load_balancer_arn_suffix": NLB,
        "target_group_arn_suffix": TARGET_GROUP,
        "db_instance_identifier": DB,
        "max_connections": 100,
    }
    fields.update(overrides)
    return cast(ObservabilityArgs, fields)


def build(args_factory: Any, name: str = "obs") -> Run:
    mocks = StrictMocks()
    monitor = MockMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="lifeguard", stack="test", preview=False, monitor=monitor)
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def program() -> pulumi.Output[Any]:
        component = Observability(name, args_factory())
        return pulumi.Output.all(
            board=component.dashboard_name,
            topic=component.alarm_topic_arn,
            alarms={k: a.arn for k, a in component.alarms.items()},
        ).apply(outputs.update)

    program()
    return Run(mocks, monitor, outputs)


def test_six_alarms_on_the_right_metrics() -> None:
    run = build(lambda: base_args(create_alarm_topic=True, alarm_email="ops@example.com"))
    alarms = run.alarms
    assert set(alarms) == {
        "obs-clients-waiting", "obs-max-wait", "obs-pooler-cpu", "obs-unhealthy-targets", "obs-db-connections",
        "obs-certificate-expiry",
    }
    expected = {
        # name: (namespace, metric, dimensions, statistic, threshold, periods, missing data)
        "obs-clients-waiting": ("Lifeguard/PgBouncer", "ClientsWaiting", {"Service": "pgbouncer"}, "Maximum", 1, 3,
                                "notBreaching"),
        "obs-max-wait": ("Lifeguard/PgBouncer", "MaxWait", {"Service": "pgbouncer"}, "Maximum", 1.0, 2,
                         "notBreaching"),
        "obs-pooler-cpu": ("AWS/ECS", "CPUUtilization", {"ClusterName": CLUSTER, "ServiceName": SERVICE}, "Average",
                           80.0, 5, "missing"),
        "obs-unhealthy-targets": ("AWS/NetworkELB", "UnHealthyHostCount",
                                  {"LoadBalancer": NLB, "TargetGroup": TARGET_GROUP}, "Maximum", 1, 2, "notBreaching"),
        "obs-db-connections": ("AWS/RDS", "DatabaseConnections", {"DBInstanceIdentifier": DB}, "Maximum", 80, 3,
                               "missing"),
    }
    topic_arn = run.outputs["topic"]
    assert topic_arn.startswith("arn:aws:sns:")
    for name, (namespace, metric, dims, stat, threshold, periods, missing) in expected.items():
        alarm = alarms[name]
        assert (alarm["namespace"], alarm["metricName"], alarm["dimensions"]) == (namespace, metric, dims), name
        assert (alarm["statistic"], alarm["threshold"], alarm["period"]) == (stat, threshold, 60), name
        assert alarm["evaluationPeriods"] == alarm["datapointsToAlarm"] == periods, name
        assert alarm["comparisonOperator"] == "GreaterThanOrEqualToThreshold", name
        assert alarm["treatMissingData"] == missing, name
        assert alarm["alarmActions"] == alarm["okActions"] == [topic_arn], name
        assert alarm["alarmDescription"], name
    [sub] = run.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert (sub.inputs["protocol"], sub.inputs["endpoint"]) == ("email", "ops@example.com")
    assert sub.inputs["topic"] == topic_arn
    # Every child is parented to the component (URN type chain), so it moves and deletes with it.
    urns = list(run.monitor.get_registered_resources())
    children = [urn for urn in urns if "::obs-" in urn]
    assert len(children) == 9  # 6 alarms, topic, subscription, dashboard
    assert all("lifeguard:observability:Observability$aws:" in urn for urn in children)
    assert run.mocks.calls == ["aws:index/getRegion:getRegion"]


def test_thresholds_flow_into_the_alarms() -> None:
    thresholds = {"clients_waiting": 5, "clients_waiting_minutes": 10, "max_wait_seconds": 2.5,
                  "pooler_cpu_percent": 65, "db_connections_ratio": 0.9}
    run = build(lambda: base_args(max_connections=415, thresholds=thresholds, metric_service="lg-prod",
                                  metric_namespace="Acme/Pooler"))
    alarms = run.alarms
    assert alarms["obs-clients-waiting"]["threshold"] == 5
    assert alarms["obs-clients-waiting"]["evaluationPeriods"] == 10
    assert alarms["obs-clients-waiting"]["namespace"] == "Acme/Pooler"
    assert alarms["obs-clients-waiting"]["dimensions"] == {"Service": "lg-prod"}
    assert alarms["obs-max-wait"]["threshold"] == 2.5
    assert alarms["obs-pooler-cpu"]["threshold"] == 65
    assert alarms["obs-db-connections"]["threshold"] == 373  # floor(415 * 0.9)


def test_existing_topic_or_none() -> None:
    existing = f"arn:aws:sns:{REGION}:{ACCOUNT}:oncall"
    run = build(lambda: base_args(alarm_topic_arn=existing))
    assert not run.of_type("aws:sns/topic:Topic")
    assert all(a["alarmActions"] == [existing] for a in run.alarms.values())
    assert run.outputs["topic"] == existing

    quiet = build(base_args)
    assert not quiet.of_type("aws:sns/topic:Topic") and quiet.outputs["topic"] is None
    assert all(not a.get("alarmActions") for a in quiet.alarms.values())


def test_dashboard_body() -> None:
    run = build(base_args)
    board = run.dashboard
    # <project>-<stack>-<name>-<digest of organization/project/stack/region> (lifeguard.aws.naming)
    assert board["dashboardName"] == run.outputs["board"] == "lifeguard-test-obs-c8be29ef"
    body = json.loads(board["dashboardBody"])
    widgets = body["widgets"]
    alarm_widget = next(w for w in widgets if w["type"] == "alarm")
    assert sorted(alarm_widget["properties"]["alarms"]) == sorted(run.outputs["alarms"].values())
    metric_widgets = [w for w in widgets if w["type"] == "metric"]
    assert all(w["properties"]["region"] == REGION for w in metric_widgets)  # from getRegion
    cells: set[tuple[int, int]] = set()
    for w in widgets:  # a 24-column grid, no two widgets on the same cell
        assert w["x"] >= 0 and w["x"] + w["width"] <= 24
        area = {(x, y) for x in range(w["x"], w["x"] + w["width"]) for y in range(w["y"], w["y"] + w["height"])}
        assert not area & cells, w["properties"]["title"]
        cells |= area
    text = json.dumps(body)
    for figure in ("ClientsWaiting", "MaxWait", "ClientsActive", "ServersActive", "ServersIdle",
                   "TransactionsPerSecond", "QueriesPerSecond", "CPUUtilization", "UnHealthyHostCount",
                   "HealthyHostCount", "DatabaseConnections", "ConsoleUp"):
        assert figure in text, figure
    by_title = {w["properties"]["title"]: w["properties"] for w in metric_widgets}
    rds = by_title["RDS connections vs max_connections"]
    assert rds["metrics"][0][:4] == ["AWS/RDS", "DatabaseConnections", "DBInstanceIdentifier", DB]
    assert {a["value"] for a in rds["annotations"]["horizontal"]} == {80, 100}
    cpu = by_title["Pooler CPU (%)"]
    assert cpu["metrics"][0][:6] == ["AWS/ECS", "CPUUtilization", "ClusterName", CLUSTER, "ServiceName", SERVICE]
    waiting = by_title["Clients waiting for a server (max)"]["metrics"]
    assert waiting[0][:4] == ["Lifeguard/PgBouncer", "ClientsWaiting", "Service", "pgbouncer"]
    assert waiting[1][0]["expression"] == (
        "SEARCH('{Lifeguard/PgBouncer,Service,Pool} MetricName=\"ClientsWaiting\" Service=\"pgbouncer\"', "
        "'Maximum', 60)"
    )


def test_explicit_region_and_dashboard_name_need_no_lookup() -> None:
    run = build(lambda: base_args(region="us-east-2", dashboard_name="pooler-prod"))
    assert run.mocks.calls == []
    assert run.dashboard["dashboardName"] == "pooler-prod"
    body = json.loads(run.dashboard["dashboardBody"])
    assert {w["properties"]["region"] for w in body["widgets"] if w["type"] == "metric"} == {"us-east-2"}


def test_alarms_read_metrics_the_publisher_emits() -> None:
    """The contract between sidecar and stack: same namespace, metric names and dimension set."""
    run = build(base_args)
    pool = PoolFigures("app", "app_user", 1, 3, 1, 0, 1, 0, 2.0)
    sample = ConsoleSample(1.0, 1_800_000_000.0, (pool,), (DatabaseTotals("app", 1, 1, 0, 1.0, 1.0),), {})
    records = sample_records(sample, RateTracker().update(sample), namespace="Lifeguard/PgBouncer",
                             service="pgbouncer", task="t1")
    for name in ("obs-clients-waiting", "obs-max-wait"):
        alarm = run.alarms[name]
        matching = [
            rec for rec in records
            for directive in rec["_aws"]["CloudWatchMetrics"]
            if directive["Namespace"] == alarm["namespace"]
            and sorted(alarm["dimensions"]) in [sorted(d) for d in directive["Dimensions"]]
            and alarm["metricName"] in [m["Name"] for m in directive["Metrics"]]
            and all(rec[k] == v for k, v in alarm["dimensions"].items())
        ]
        assert len(matching) == 1, name  # exactly one series per task feeds the alarm


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_connections": 0}, "max_connections must be at least 1"),
        ({"thresholds": {"clients_waiting": 0}}, "thresholds.clients_waiting"),
        ({"thresholds": {"max_wait_seconds": 0}}, "thresholds.max_wait_seconds"),
        ({"thresholds": {"pooler_cpu_percent": 120}}, "thresholds.pooler_cpu_percent"),
        ({"thresholds": {"db_connections_ratio": 1.5}}, "thresholds.db_connections_ratio"),
        ({"thresholds": {"unhealthy_minutes": 0}}, "thresholds.unhealthy_minutes"),
        ({"metric_namespace": "AWS/ECS"}, "metric_namespace"),
        ({"metric_service": "my service"}, "metric_service"),
        ({"alarm_topic_arn": "arn:aws:sns:x", "create_alarm_topic": True}, "not both"),
        ({"alarm_email": "ops@example.com"}, "also set create_alarm_topic"),
        ({"create_alarm_topic": True, "alarm_email": "not-an-address"}, "not an e-mail address"),
        ({"dashboard_name": "has space"}, "dashboard_name"),
        # Through the provider every number is a double: a whole one is fine, a fraction is not.
        ({"max_connections": 100.5}, "max_connections must be a whole number"),
        ({"thresholds": {"clients_waiting": 1.5}}, "thresholds.clients_waiting must be a whole number"),
        ({"thresholds": {"clients_wait": 1}}, "thresholds.clients_wait is not a threshold"),
    ],
)
def test_bad_options_fail_before_anything_is_registered(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ObservabilityError, match=message):
        build(lambda: base_args(**overrides))
