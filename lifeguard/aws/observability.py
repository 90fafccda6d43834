"""Alarms and a dashboard for the pool: PgBouncer's own figures next to ECS, NLB and RDS.

The PgBouncer figures come from the metrics sidecar (``python -m pgbouncer.metrics``), which prints
them as Embedded Metric Format lines that CloudWatch Logs turns into metrics; the alarms name them
by ``Service`` (a stable name set in the sidecar's ``LIFEGUARD_METRICS_SERVICE``), not by task, so
they outlive every deployment. Everything else is AWS's own metrics.

Self-contained on purpose: every input is a plain value or an ``Output`` (names, ARN suffixes,
``max_connections``), so the program wires it after the pooler, the NLB and RDS exist.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from lifeguard.aws.naming import CLOUDWATCH_DASHBOARD, stack_name
from lifeguard.aws.pooler_tls import LEAF_EARLY_RENEWAL_HOURS
from lifeguard.aws.types import ALARM_EMAIL, AlarmThresholds, ObservabilityError
from pgbouncer import contract

# Names that go into dashboard SEARCH expressions unquoted: no spaces, quotes or braces.
_METRIC_NAME = re.compile(r"^[A-Za-z0-9_.\-/#:]{1,255}$")
PERIOD_S = 60
# The days left fall by one a day: a few minutes' evidence is enough, and no burst can fake it.
CERTIFICATE_MINUTES = 5
RENEWAL_WINDOW_DAYS = LEAF_EARLY_RENEWAL_HOURS // 24


@dataclass(frozen=True)
class ObservabilityArgs:
    cluster_name: pulumi.Input[str]
    """The ECS cluster of the pooler service (dimension ClusterName)."""
    service_name: pulumi.Input[str]
    """The pooler's ECS service (dimension ServiceName)."""
    load_balancer_arn_suffix: pulumi.Input[str]
    """The NLB's ``arn_suffix`` (``net/<name>/<id>``, dimension LoadBalancer)."""
    target_group_arn_suffix: pulumi.Input[str]
    """The pooler target group's ``arn_suffix`` (``targetgroup/<name>/<id>``, dimension TargetGroup)."""
    db_instance_identifier: pulumi.Input[str]
    """The RDS instance identifier (dimension DBInstanceIdentifier)."""
    max_connections: int
    """RDS ``max_connections`` as set in the parameter group: a plain number, known at preview."""
    metric_namespace: str = contract.DEFAULT_NAMESPACE
    """Must equal the sidecar's ``LIFEGUARD_METRICS_NAMESPACE``."""
    metric_service: str = contract.DEFAULT_SERVICE
    """The sidecar's ``LIFEGUARD_METRICS_SERVICE``: the ``Service`` dimension the alarms read."""
    thresholds: AlarmThresholds = field(default_factory=AlarmThresholds)
    alarm_topic_arn: pulumi.Input[str] | None = None
    """An existing SNS topic for alarm and recovery notifications."""
    create_alarm_topic: bool = False
    """Create a topic for the notifications instead (exported as ``alarm_topic_arn``)."""
    alarm_email: str | None = None
    """Subscribe this address to the created topic (AWS mails a confirmation link first)."""
    dashboard_name: str | None = None
    """Default ``<project>-<stack>-<component name>-<digest>`` (``lifeguard.aws.naming``); dashboards are global, so
    it must be unique in the account."""
    region: pulumi.Input[str] | None = None
    """The region the dashboard's widgets read; default: the provider's region."""
    tags: Mapping[str, str] = field(default_factory=dict)
    db_cluster_identifier: pulumi.Input[str] | None = None
    """An Aurora cluster: the connections alarm and graph read its writer's ``DatabaseConnections``
    (``DBClusterIdentifier`` and ``Role=WRITER``, which follow a failover) instead of
    ``db_instance_identifier``'s."""

    def validate(self) -> None:
        self.thresholds.validate()
        if isinstance(self.max_connections, bool) or not isinstance(self.max_connections, int):
            raise ObservabilityError("max_connections must be a whole number (the parameter group's value)")
        if self.max_connections < 1:
            raise ObservabilityError(f"max_connections must be at least 1, got {self.max_connections}")
        if not _METRIC_NAME.match(self.metric_namespace) or self.metric_namespace.startswith("AWS/"):
            raise ObservabilityError(
                f"metric_namespace {self.metric_namespace!r} must be letters, digits and _ . - / # : "
                "and must not start with 'AWS/'"
            )
        if not _METRIC_NAME.match(self.metric_service):
            raise ObservabilityError(
                f"metric_service {self.metric_service!r} must be the sidecar's LIFEGUARD_METRICS_SERVICE: "
                "letters, digits and _ . - / # :"
            )
        if self.alarm_topic_arn is not None and self.create_alarm_topic:
            raise ObservabilityError("give alarm_topic_arn (an existing topic) or create_alarm_topic, not both")
        if self.alarm_email is not None:
            if not self.create_alarm_topic:
                raise ObservabilityError("alarm_email subscribes to the created topic: also set create_alarm_topic")
            if not ALARM_EMAIL.match(self.alarm_email):
                raise ObservabilityError("alarm_email is not an e-mail address")
        # The rule the default name is made by (lifeguard.aws.naming): letters, digits, '-' and '_', at most 255.
        rule = CLOUDWATCH_DASHBOARD
        name = self.dashboard_name
        if name is not None and not (0 < len(name) <= rule.max_length and not rule.invalid.search(name)):
            raise ObservabilityError(
                f"dashboard_name may hold only letters, digits, '-' and '_' (at most {rule.max_length} characters)"
            )


class Observability(pulumi.ComponentResource):
    alarms: dict[str, aws.cloudwatch.MetricAlarm]
    """By purpose: clients_waiting, max_wait, pooler_cpu, unhealthy_targets, db_connections, certificate_expiry."""
    dashboard: aws.cloudwatch.Dashboard
    dashboard_name: pulumi.Output[str]
    alarm_topic_arn: pulumi.Output[str] | None
    """The topic notified on alarm and recovery, when there is one."""

    def __init__(self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # Validate before registering anything: a bad threshold must not leave a half-built component.
        args.validate()
        super().__init__("lifeguard:observability:Observability", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        t = args.thresholds
        tags = dict(args.tags)

        topic_arn: pulumi.Output[str] | None = None
        if args.create_alarm_topic:
            topic = aws.sns.Topic(f"{name}-alarms", tags=tags, opts=child)
            topic_arn = topic.arn
            if args.alarm_email is not None:
                aws.sns.TopicSubscription(
                    f"{name}-alarms-email", topic=topic.arn, protocol="email", endpoint=args.alarm_email, opts=child
                )
        elif args.alarm_topic_arn is not None:
            topic_arn = pulumi.Output.from_input(args.alarm_topic_arn)
        self.alarm_topic_arn = topic_arn
        actions: list[pulumi.Input[str]] = [topic_arn] if topic_arn is not None else []

        pooler = {contract.DIM_SERVICE: args.metric_service}
        ecs = {"ClusterName": args.cluster_name, "ServiceName": args.service_name}
        nlb = {"LoadBalancer": args.load_balancer_arn_suffix, "TargetGroup": args.target_group_arn_suffix}
        rds = ({"DBClusterIdentifier": args.db_cluster_identifier, "Role": "WRITER"}
               if args.db_cluster_identifier is not None else {"DBInstanceIdentifier": args.db_instance_identifier})
        db_threshold = math.floor(args.max_connections * t.db_connections_ratio)

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

        self.alarms = {
            "clients_waiting": alarm(
                "clients_waiting",
                f"Clients queued for a PgBouncer server connection (>= {t.clients_waiting}) in each of "
                f"{t.clients_waiting_minutes} consecutive minutes: the pool is too small for the load, or "
                "transactions are held too long. Check `SHOW POOLS`, pool sizing and slow queries.",
                args.metric_namespace, contract.CLIENTS_WAITING, pooler, "Maximum",
                t.clients_waiting, t.clients_waiting_minutes,
                # No data means no sidecar, not "nobody waits": the ConsoleUp graph shows that case.
                "notBreaching",
            ),
            "max_wait": alarm(
                "max_wait",
                f"A client has waited {t.max_wait_seconds:g} s or more for a server connection; past "
                "query_wait_timeout PgBouncer fails it.",
                args.metric_namespace, contract.MAX_WAIT, pooler, "Maximum",
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
                f"{args.max_connections}): check the pool budget (tasks x default_pool_size) and direct clients.",
                "AWS/RDS", "DatabaseConnections", rds, "Maximum",
                db_threshold, t.db_connections_minutes, "missing",
            ),
            "certificate_expiry": alarm(
                "certificate_expiry",
                f"The certificate PgBouncer serves has {t.certificate_days_left} days or fewer left (the oldest "
                "task's). Any `pulumi up` in its last 30 days renews it and rolls the tasks; none has run. Run the "
                "deploy pipeline (or `pulumi up`) before it expires: then the entrypoint refuses to start tasks.",
                args.metric_namespace, contract.CERTIFICATE_DAYS_LEFT, pooler, "Minimum",
                t.certificate_days_left, CERTIFICATE_MINUTES,
                # No data means no sidecar (the ConsoleUp graph shows it), not an expiring certificate.
                "notBreaching", comparison="LessThanOrEqualToThreshold",
            ),
        }

        region: pulumi.Input[str]
        if args.region is not None:
            region = args.region
        else:
            region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        dashboard_name: pulumi.Input[str] = args.dashboard_name or pulumi.Output.from_input(region).apply(
            lambda region_name: stack_name(CLOUDWATCH_DASHBOARD, name, region=region_name)
        )
        body = pulumi.Output.all(
            region=region,
            cluster=args.cluster_name,
            service=args.service_name,
            nlb=args.load_balancer_arn_suffix,
            target_group=args.target_group_arn_suffix,
            db=args.db_cluster_identifier if args.db_cluster_identifier is not None else args.db_instance_identifier,
            alarm_arns=[a.arn for a in self.alarms.values()],
        ).apply(lambda v: json.dumps(dashboard_body(
            region=v["region"], namespace=args.metric_namespace, service=args.metric_service,
            cluster_name=v["cluster"], service_name=v["service"], load_balancer=v["nlb"],
            target_group=v["target_group"], db_instance=v["db"], max_connections=args.max_connections,
            thresholds=t, alarm_arns=v["alarm_arns"], db_is_cluster=args.db_cluster_identifier is not None,
        ), sort_keys=True))
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard", dashboard_name=dashboard_name, dashboard_body=body, opts=child
        )
        self.dashboard_name = self.dashboard.dashboard_name
        self.register_outputs({
            "dashboard_name": self.dashboard_name,
            "alarm_arns": {key: a.arn for key, a in self.alarms.items()},
            "alarm_topic_arn": topic_arn,
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
