"""Alarms and a dashboard for the pool: PgBouncer's own figures next to ECS, NLB and RDS.

The PgBouncer figures come from the metrics sidecar (``python -m pgbouncer.metrics``), which prints
them as Embedded Metric Format lines that CloudWatch Logs turns into metrics; the alarms name them
by ``Service`` (a stable name set in the sidecar's ``LIFEGUARD_METRICS_SERVICE``), not by task, so
they outlive every deployment. Everything else is AWS's own metrics.

Self-contained on purpose: every input is a plain value or an ``Output`` (names, ARN suffixes,
``max_connections``), so the program wires it after the pooler, the NLB and RDS exist.
"""

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Required, TypedDict, cast

import pulumi
import pulumi_aws as aws

from lifeguard.aws.component_args import number, whole_number
from lifeguard.aws.naming import CLOUDWATCH_DASHBOARD, stack_name
from lifeguard.aws.pooler_tls import LEAF_EARLY_RENEWAL_HOURS
from lifeguard.aws.type_token import component_type
from lifeguard.aws.types import ALARM_EMAIL, AlarmThresholds, ObservabilityError
from pgbouncer import contract

# Names that go into dashboard SEARCH expressions unquoted: no spaces, quotes or braces.
_METRIC_NAME = re.compile(r"^[A-Za-z0-9_.\-/#:]{1,255}$")
PERIOD_S = 60
# The days left fall by one a day: a few minutes' evidence is enough, and no burst can fake it.
CERTIFICATE_MINUTES = 5
RENEWAL_WINDOW_DAYS = LEAF_EARLY_RENEWAL_HOURS // 24


class AlarmThresholdsArgs(TypedDict, total=False):
    """When each alarm fires (every alarm evaluates 1-minute periods); each field unset keeps its default."""

    clients_waiting: int
    """Clients queued for a server connection in the fleet's busiest task (default 1)..."""
    clients_waiting_minutes: int
    """... in every one of this many consecutive minutes (default 3): a sustained queue, not a burst."""
    max_wait_seconds: float
    """The oldest queued client has waited this long (default 1; below query_wait_timeout, which fails it)."""
    max_wait_minutes: int
    """Consecutive minutes of max_wait_seconds (default 2)."""
    pooler_cpu_percent: float
    """ECS service CPUUtilization (default 80): PgBouncer is single-threaded, so a hot task means more tasks."""
    pooler_cpu_minutes: int
    """Consecutive minutes of pooler_cpu_percent (default 5)."""
    unhealthy_targets: int
    """NLB targets failing health checks (UnHealthyHostCount, default 1)."""
    unhealthy_minutes: int
    """Consecutive minutes of unhealthy_targets (default 2)."""
    db_connections_ratio: float
    """RDS DatabaseConnections at or above this share of max_connections (default 0.8)."""
    db_connections_minutes: int
    """Consecutive minutes of db_connections_ratio (default 3)."""
    certificate_days_left: int
    """Days left on the certificate PgBouncer serves (default 21): any `pulumi up` in its last 30 days renews it."""


class ObservabilityArgs(TypedDict, total=False):
    cluster_name: Required[pulumi.Input[str]]
    """The ECS cluster of the pooler service (dimension ClusterName): `Pooler.cluster_name`."""
    service_name: Required[pulumi.Input[str]]
    """The pooler's ECS service (dimension ServiceName): `Pooler.service_name`."""
    load_balancer_arn_suffix: Required[pulumi.Input[str]]
    """The NLB's `arn_suffix` (`net/<name>/<id>`, dimension LoadBalancer): `Pooler.load_balancer_arn_suffix`."""
    target_group_arn_suffix: Required[pulumi.Input[str]]
    """The target group's `arn_suffix` (`targetgroup/<name>/<id>`): `Pooler.target_group_arn_suffix`."""
    db_instance_identifier: pulumi.Input[str] | None
    """The RDS instance (dimension DBInstanceIdentifier): `Database.identifier`; or give db_cluster_identifier."""
    db_cluster_identifier: pulumi.Input[str] | None
    """An Aurora cluster instead: the connections alarm and graph read its writer's (`Role=WRITER`, after failovers)."""
    max_connections: Required[int]
    """RDS `max_connections` as set in the parameter group: a plain number, known at preview."""
    metric_namespace: str
    """Must equal the sidecar's `LIFEGUARD_METRICS_NAMESPACE` (default `Lifeguard/PgBouncer`)."""
    metric_service: str
    """The `Service` dimension the alarms read: the pooler's `metrics_service` output (default `pgbouncer`)."""
    thresholds: AlarmThresholdsArgs
    """When each alarm fires; unset fields keep their defaults."""
    alarm_topic_arn: pulumi.Input[str] | None
    """An existing SNS topic for alarm and recovery notifications."""
    create_alarm_topic: bool
    """Create a topic for the notifications instead (output `alarm_topic_arn`); default false."""
    alarm_email: str | None
    """Subscribe this address to the created topic (AWS mails a confirmation link first)."""
    dashboard_name: str | None
    """Unique in the account (dashboards are global); default `<project>-<stack>-<component name>-<digest>`."""
    region: pulumi.Input[str] | None
    """The region the dashboard's widgets read; default: the region of this component's AWS provider."""
    tags: Mapping[str, pulumi.Input[str]]
    """Tags for every taggable resource of the component (the alarms and the topic)."""


_THRESHOLD_FIELDS = {f.name: f.type for f in fields(AlarmThresholds)}


def thresholds_args(thresholds: AlarmThresholds) -> AlarmThresholdsArgs:
    """The dataclass (the stack's config) as the component's ``thresholds`` field."""
    return cast(AlarmThresholdsArgs, asdict(thresholds))


def _thresholds(given: Mapping[str, Any] | None) -> AlarmThresholds:
    """The dataclass with its defaults for every field not given; a number of the wrong kind is refused."""
    values: dict[str, Any] = {}
    for key, value in (given or {}).items():
        kind = _THRESHOLD_FIELDS.get(key)
        if kind is None:
            raise ObservabilityError(f"thresholds.{key} is not a threshold; see ObservabilityArgs.thresholds")
        if kind in (int, "int"):
            values[key] = whole_number(value, f"thresholds.{key}", ObservabilityError)
        else:
            values[key] = number(value, f"thresholds.{key}", ObservabilityError)
    thresholds = AlarmThresholds(**values)
    thresholds.validate()
    return thresholds


@dataclass(frozen=True)
class _Settings:
    """The args with their defaults applied and checked, before anything is registered."""

    max_connections: int
    metric_namespace: str
    metric_service: str
    thresholds: AlarmThresholds
    alarm_topic_arn: pulumi.Input[str] | None
    create_alarm_topic: bool
    alarm_email: str | None
    dashboard_name: str | None
    region: pulumi.Input[str] | None
    tags: Mapping[str, pulumi.Input[str]]

    @staticmethod
    def of(args: ObservabilityArgs) -> "_Settings":
        settings = _Settings(
            max_connections=whole_number(args.get("max_connections"), "max_connections", ObservabilityError),
            metric_namespace=args.get("metric_namespace", contract.DEFAULT_NAMESPACE),
            metric_service=args.get("metric_service", contract.DEFAULT_SERVICE),
            thresholds=_thresholds(args.get("thresholds")),
            alarm_topic_arn=args.get("alarm_topic_arn"),
            create_alarm_topic=bool(args.get("create_alarm_topic", False)),
            alarm_email=args.get("alarm_email"),
            dashboard_name=args.get("dashboard_name"),
            region=args.get("region"),
            tags=dict(args.get("tags") or {}),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.max_connections < 1:
            raise ObservabilityError(f"max_connections must be at least 1, got {self.max_connections}")
        namespace = self.metric_namespace
        if not isinstance(namespace, str) or not _METRIC_NAME.match(namespace) or namespace.startswith("AWS/"):
            raise ObservabilityError(
                f"metric_namespace {self.metric_namespace!r} must be letters, digits and _ . - / # : "
                "and must not start with 'AWS/'"
            )
        if not isinstance(self.metric_service, str) or not _METRIC_NAME.match(self.metric_service):
            raise ObservabilityError(
                f"metric_service {self.metric_service!r} must be the sidecar's LIFEGUARD_METRICS_SERVICE: "
                "letters, digits and _ . - / # :"
            )
        if self.alarm_topic_arn is not None and self.create_alarm_topic:
            raise ObservabilityError("give alarm_topic_arn (an existing topic) or create_alarm_topic, not both")
        if self.alarm_email is not None:
            if not self.create_alarm_topic:
                raise ObservabilityError("alarm_email subscribes to the created topic: also set create_alarm_topic")
            if not isinstance(self.alarm_email, str) or not ALARM_EMAIL.match(self.alarm_email):
                raise ObservabilityError("alarm_email is not an e-mail address")
        # The rule the default name is made by (lifeguard.aws.naming): letters, digits, '-' and '_', at most 255.
        rule = CLOUDWATCH_DASHBOARD
        name = self.dashboard_name
        if name is not None and not (isinstance(name, str) and 0 < len(name) <= rule.max_length
                                     and not rule.invalid.search(name)):
            raise ObservabilityError(
                f"dashboard_name may hold only letters, digits, '-' and '_' (at most {rule.max_length} characters)"
            )


class Observability(pulumi.ComponentResource):
    """Alarms and a CloudWatch dashboard for the pool: PgBouncer's figures beside ECS, NLB and RDS metrics."""

    dashboard_name: pulumi.Output[str]
    """The CloudWatch dashboard's name."""
    alarm_arns: pulumi.Output[dict[str, str]]
    """Each alarm's ARN by purpose (clients_waiting, max_wait, pooler_cpu, ..., certificate_expiry)."""
    alarm_topic_arn: pulumi.Output[str] | None
    """The topic notified on alarm and recovery, when there is one."""

    def __init__(self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # Validate before registering anything: a bad threshold must not leave a half-built component.
        settings = _Settings.of(args)
        if args.get("db_instance_identifier") is None and args.get("db_cluster_identifier") is None:
            raise ObservabilityError("give db_instance_identifier (an RDS instance) or db_cluster_identifier (Aurora)")
        super().__init__(component_type(Observability, "observability"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        t = settings.thresholds
        tags = dict(settings.tags)
        cluster_name, service_name = args["cluster_name"], args["service_name"]
        load_balancer_arn_suffix = args["load_balancer_arn_suffix"]
        target_group_arn_suffix = args["target_group_arn_suffix"]
        db_instance_identifier = args.get("db_instance_identifier")
        db_cluster_identifier = args.get("db_cluster_identifier")

        topic_arn: pulumi.Output[str] | None = None
        if settings.create_alarm_topic:
            topic = aws.sns.Topic(f"{name}-alarms", tags=tags, opts=child)
            topic_arn = topic.arn
            if settings.alarm_email is not None:
                aws.sns.TopicSubscription(
                    f"{name}-alarms-email", topic=topic.arn, protocol="email", endpoint=settings.alarm_email,
                    opts=child,
                )
        elif settings.alarm_topic_arn is not None:
            topic_arn = pulumi.Output.from_input(settings.alarm_topic_arn)
        self.alarm_topic_arn = topic_arn
        actions: list[pulumi.Input[str]] = [topic_arn] if topic_arn is not None else []

        pooler = {contract.DIM_SERVICE: settings.metric_service}
        ecs = {"ClusterName": cluster_name, "ServiceName": service_name}
        nlb = {"LoadBalancer": load_balancer_arn_suffix, "TargetGroup": target_group_arn_suffix}
        # An Aurora cluster: its writer's connections (DBClusterIdentifier and Role=WRITER follow a failover).
        rds: Mapping[str, pulumi.Input[str]] = (
            {"DBClusterIdentifier": db_cluster_identifier, "Role": "WRITER"} if db_cluster_identifier is not None
            # Checked above: one of the two is given.
            else {"DBInstanceIdentifier": cast(pulumi.Input[str], db_instance_identifier)})
        db_threshold = math.floor(settings.max_connections * t.db_connections_ratio)

        def alarm(
            key: str, description: str, namespace: str, metric: str, dimensions: Mapping[str, pulumi.Input[str]],
            statistic: str, threshold: float, minutes: int, missing: str,
            comparison: str = "GreaterThanOrEqualToThreshold",
        ) -> aws.cloudwatch.MetricAlarm:
            return aws.cloudwatch.MetricAlarm(
                f"{name}-{key.replace('_', '-')}",
                alarm_description=description,
                namespace=namespace,
                metric_name=metric,
                dimensions=dict(dimensions),
                statistic=statistic,
                period=PERIOD_S,
                evaluation_periods=minutes,
                datapoints_to_alarm=minutes,
                threshold=threshold,
                comparison_operator=comparison,
                treat_missing_data=missing,
                alarm_actions=actions,
                ok_actions=actions,
                tags=tags,
                opts=child,
            )

        self.alarms: dict[str, aws.cloudwatch.MetricAlarm] = {
            "clients_waiting": alarm(
                "clients_waiting",
                f"Clients queued for a PgBouncer server connection (>= {t.clients_waiting}) in each of "
                f"{t.clients_waiting_minutes} consecutive minutes: the pool is too small for the load, or "
                "transactions are held too long. Check `SHOW POOLS`, pool sizing and slow queries.",
                settings.metric_namespace, contract.CLIENTS_WAITING, pooler, "Maximum",
                t.clients_waiting, t.clients_waiting_minutes,
                # No data means no sidecar, not "nobody waits": the ConsoleUp graph shows that case.
                "notBreaching",
            ),
            "max_wait": alarm(
                "max_wait",
                f"A client has waited {t.max_wait_seconds:g} s or more for a server connection; past "
                "query_wait_timeout PgBouncer fails it.",
                settings.metric_namespace, contract.MAX_WAIT, pooler, "Maximum",
                t.max_wait_seconds, t.max_wait_minutes, "notBreaching",
            ),
            "pooler_cpu": alarm(
                "pooler_cpu",
                f"PgBouncer tasks average {t.pooler_cpu_percent:g}% CPU or more for {t.pooler_cpu_minutes} "
                "minutes; PgBouncer uses one core per process: raise poolerMaxTasks (or poolerCpu, up to 1024).",
                "AWS/ECS", "CPUUtilization", ecs, "Average",
                t.pooler_cpu_percent, t.pooler_cpu_minutes, "missing",
            ),
            "unhealthy_targets": alarm(
                "unhealthy_targets",
                f"{t.unhealthy_targets} or more PgBouncer tasks fail the NLB health check.",
                "AWS/NetworkELB", "UnHealthyHostCount", nlb, "Maximum",
                t.unhealthy_targets, t.unhealthy_minutes, "notBreaching",
            ),
            "db_connections": alarm(
                "db_connections",
                f"RDS connections at or above {db_threshold} ({t.db_connections_ratio:.0%} of max_connections "
                f"{settings.max_connections}): check the pool budget (tasks x default_pool_size) and direct clients.",
                "AWS/RDS", "DatabaseConnections", rds, "Maximum",
                db_threshold, t.db_connections_minutes, "missing",
            ),
            "certificate_expiry": alarm(
                "certificate_expiry",
                f"The certificate PgBouncer serves has {t.certificate_days_left} days or fewer left (the oldest "
                "task's). Any `pulumi up` in its last 30 days renews it and rolls the tasks; none has run. Run the "
                "deploy pipeline (or `pulumi up`) before it expires: then the entrypoint refuses to start tasks.",
                settings.metric_namespace, contract.CERTIFICATE_DAYS_LEFT, pooler, "Minimum",
                t.certificate_days_left, CERTIFICATE_MINUTES,
                # No data means no sidecar (the ConsoleUp graph shows it), not an expiring certificate.
                "notBreaching", comparison="LessThanOrEqualToThreshold",
            ),
        }

        region: pulumi.Input[str]
        if settings.region is not None:
            region = settings.region
        else:
            region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        dashboard_name: pulumi.Input[str] = settings.dashboard_name or pulumi.Output.from_input(region).apply(
            lambda region_name: stack_name(CLOUDWATCH_DASHBOARD, name, region=region_name)
        )
        body = pulumi.Output.all(
            region=region,
            cluster=cluster_name,
            service=service_name,
            nlb=load_balancer_arn_suffix,
            target_group=target_group_arn_suffix,
            db=db_cluster_identifier if db_cluster_identifier is not None else db_instance_identifier,
            alarm_arns=[a.arn for a in self.alarms.values()],
        ).apply(lambda v: json.dumps(dashboard_body(
            region=v["region"], namespace=settings.metric_namespace, service=settings.metric_service,
            cluster_name=v["cluster"], service_name=v["service"], load_balancer=v["nlb"],
            target_group=v["target_group"], db_instance=v["db"], max_connections=settings.max_connections,
            thresholds=t, alarm_arns=v["alarm_arns"], db_is_cluster=db_cluster_identifier is not None,
        ), sort_keys=True))
        self.dashboard: aws.cloudwatch.Dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard", dashboard_name=dashboard_name, dashboard_body=body, opts=child
        )
        self.dashboard_name = self.dashboard.dashboard_name
        self.alarm_arns = pulumi.Output.all(**{key: a.arn for key, a in self.alarms.items()})
        self.register_outputs({
            "dashboardName": self.dashboard_name,
            "alarmArns": self.alarm_arns,
            "alarmTopicArn": topic_arn,
        })


def dashboard_body(
    *,
    region: str,
    namespace: str,
    service: str,
    cluster_name: str,
    service_name: str,
    load_balancer: str,
    target_group: str,
    db_instance: str,
    max_connections: int,
    thresholds: AlarmThresholds,
    alarm_arns: Sequence[str],
    db_is_cluster: bool = False,
) -> dict[str, Any]:
    """The dashboard as CloudWatch's dashboard-body JSON structure (plain data, tested as such).
    ``db_instance`` is an Aurora cluster's identifier when ``db_is_cluster`` (its writer is graphed)."""

    def search(metric: str, dims: str, stat: str, ident: str) -> list[Any]:
        # One line per task (or pool): tasks come and go with deployments, SEARCH finds them all.
        query = f'{{{namespace},{dims}}} MetricName="{metric}" {contract.DIM_SERVICE}="{service}"'
        expr = f"SEARCH('{query}', '{stat}', {PERIOD_S})"
        return [{"expression": expr, "id": ident, "region": region}]

    def fleet(metric: str, stat: str, label: str) -> list[Any]:
        return [namespace, metric, contract.DIM_SERVICE, service, {"stat": stat, "label": label}]

    def widget(x: int, y: int, title: str, metrics: list[Any], **extra: Any) -> dict[str, Any]:
        props: dict[str, Any] = {
            "title": title, "region": region, "view": "timeSeries", "stacked": False,
            "period": PERIOD_S, "metrics": metrics,
        }
        props.update(extra)
        return {"type": "metric", "x": x, "y": y, "width": 8, "height": 6, "properties": props}

    def hline(value: float, label: str) -> dict[str, Any]:
        return {"horizontal": [{"value": value, "label": label}]}

    pool_dims = f"{contract.DIM_SERVICE},{contract.DIM_POOL}"
    task_dims = f"{contract.DIM_SERVICE},{contract.DIM_TASK}"
    db_threshold = math.floor(max_connections * thresholds.db_connections_ratio)
    widgets = [
        {
            "type": "alarm", "x": 0, "y": 0, "width": 24, "height": 3,
            "properties": {"title": "Pooler alarms", "alarms": list(alarm_arns), "sortBy": "stateUpdatedTimestamp"},
        },
        widget(0, 3, "Clients waiting for a server (max)", [
            fleet(contract.CLIENTS_WAITING, "Maximum", "busiest task"),
            search(contract.CLIENTS_WAITING, pool_dims, "Maximum", "pools"),
        ], annotations=hline(thresholds.clients_waiting, "alarm")),
        widget(8, 3, "Longest wait (s)", [
            fleet(contract.MAX_WAIT, "Maximum", "max wait"),
        ], annotations=hline(thresholds.max_wait_seconds, "alarm")),
        widget(16, 3, "Clients and servers (per task)", [
            search(contract.CLIENTS_ACTIVE, task_dims, "Average", "clact"),
            search(contract.SERVERS_ACTIVE, task_dims, "Average", "svact"),
            search(contract.SERVERS_IDLE, task_dims, "Average", "svidle"),
        ]),
        widget(0, 9, "Transactions and queries per second (per task)", [
            search(contract.TPS, task_dims, "Average", "tps"),
            search(contract.QPS, task_dims, "Average", "qps"),
        ]),
        widget(8, 9, "Pooler CPU (%)", [
            ["AWS/ECS", "CPUUtilization", "ClusterName", cluster_name, "ServiceName", service_name,
             {"stat": "Average", "label": "average"}],
            ["...", {"stat": "Maximum", "label": "busiest task"}],
        ], annotations=hline(thresholds.pooler_cpu_percent, "alarm"), yAxis={"left": {"min": 0, "max": 100}}),
        widget(16, 9, "NLB targets", [
            ["AWS/NetworkELB", "HealthyHostCount", "LoadBalancer", load_balancer, "TargetGroup", target_group,
             {"stat": "Minimum", "label": "healthy"}],
            [".", "UnHealthyHostCount", ".", ".", ".", ".", {"stat": "Maximum", "label": "unhealthy"}],
        ]),
        widget(0, 15, "RDS connections vs max_connections", [
            ["AWS/RDS", "DatabaseConnections",
             *(("DBClusterIdentifier", db_instance, "Role", "WRITER") if db_is_cluster
               else ("DBInstanceIdentifier", db_instance)),
             {"stat": "Maximum", "label": "connections"}],
        ], annotations={"horizontal": [
            {"value": db_threshold, "label": f"alarm ({thresholds.db_connections_ratio:.0%})"},
            {"value": max_connections, "label": "max_connections"},
        ]}, yAxis={"left": {"min": 0, "max": max_connections}}),
        widget(8, 15, "Connections held by PgBouncer (per task)", [
            search(contract.CLIENT_CONNECTIONS, task_dims, "Maximum", "clients"),
            search(contract.SERVER_CONNECTIONS, task_dims, "Maximum", "servers"),
        ]),
        widget(16, 15, "Metrics sidecar reaching the console", [
            search(contract.CONSOLE_UP, task_dims, "Minimum", "up"),
        ], yAxis={"left": {"min": 0, "max": 1}}),
        widget(0, 21, "Days left on PgBouncer's certificate", [
            fleet(contract.CERTIFICATE_DAYS_LEFT, "Minimum", "oldest task"),
        ], annotations={"horizontal": [
            {"value": thresholds.certificate_days_left, "label": "alarm"},
            {"value": RENEWAL_WINDOW_DAYS, "label": "renewed by the next `pulumi up`"},
        ]}, yAxis={"left": {"min": 0}}),
    ]
    return {"widgets": widgets}
