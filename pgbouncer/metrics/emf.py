"""CloudWatch Embedded Metric Format (EMF) records for the pool figures.

An EMF record is one JSON log line whose ``_aws`` member tells CloudWatch Logs which root members
are metrics and which are dimensions; CloudWatch Logs extracts the metrics from any log event of
this shape, so the awslogs driver's stdout stream suffices: no CloudWatch agent, no PutMetricData
call, no ``monitoring`` VPC endpoint.

Written by hand rather than with ``aws-embedded-metrics``: that library is asyncio-only and, on
ECS, sends to a CloudWatch agent unless forced into its "Local" mode; the format itself is a small
documented JSON shape, checked here against the spec's limits (100 metrics per directive, 30
dimensions per set, the CloudWatch unit names, finite numbers).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pgbouncer.contract import (
    CERTIFICATE_DAYS_LEFT,
    CLIENT_CONNECTIONS,
    CLIENTS_ACTIVE,
    CLIENTS_WAITING,
    CONSOLE_UP,
    DIM_DATABASE,
    DIM_POOL,
    DIM_SERVICE,
    DIM_TASK,
    MAX_WAIT,
    QPS,
    SERVER_CONNECTIONS,
    SERVERS_ACTIVE,
    SERVERS_IDLE,
    TPS,
)
from pgbouncer.metrics.console import ConsoleSample
from pgbouncer.metrics.rates import Rates

# The unit names CloudWatch accepts (MetricDatum.Unit).
UNITS = frozenset({
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second",
    "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second",
    "Count/Second", "None",
})
MAX_METRICS_PER_DIRECTIVE = 100
MAX_DIMENSIONS_PER_SET = 30
MAX_DIMENSION_VALUE_CHARS = 1024


class EmfError(ValueError):
    """A record would break the EMF spec; CloudWatch would drop it silently."""


@dataclass(frozen=True)
class Metric:
    name: str
    value: float
    unit: str


def record(
    namespace: str,
    dimensions: Mapping[str, str],
    dimension_sets: Sequence[Sequence[str]],
    metrics: Sequence[Metric],
    timestamp_ms: int,
) -> dict[str, Any]:
    """One EMF record: the ``_aws`` directive plus the dimension and metric values at the root."""
    if not namespace or namespace.startswith("AWS/"):
        raise EmfError(f"namespace {namespace!r} must be set and must not start with 'AWS/'")
    if not metrics or len(metrics) > MAX_METRICS_PER_DIRECTIVE:
        raise EmfError(f"a record holds 1 to {MAX_METRICS_PER_DIRECTIVE} metrics, got {len(metrics)}")
    for dims in dimension_sets:
        if len(dims) > MAX_DIMENSIONS_PER_SET:
            raise EmfError(f"a dimension set holds at most {MAX_DIMENSIONS_PER_SET} names, got {len(dims)}")
        for dim in dims:
            if dim not in dimensions:
                raise EmfError(f"dimension {dim!r} has no value")
    for dim, value in dimensions.items():
        if not value or len(value) > MAX_DIMENSION_VALUE_CHARS:
            raise EmfError(f"dimension {dim!r} needs a value of 1 to {MAX_DIMENSION_VALUE_CHARS} characters")
    root: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(timestamp_ms),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(dims) for dims in dimension_sets],
                    "Metrics": [{"Name": m.name, "Unit": m.unit} for m in metrics],
                }
            ],
        },
        **dimensions,
    }
    for metric in metrics:
        if metric.unit not in UNITS:
            raise EmfError(f"metric {metric.name}: {metric.unit!r} is not a CloudWatch unit")
        if metric.name in root:
            raise EmfError(f"metric {metric.name!r} collides with another member of the record")
        if not math.isfinite(metric.value):
            raise EmfError(f"metric {metric.name} is {metric.value}; CloudWatch takes finite numbers only")
        root[metric.name] = metric.value
    return root


def sample_records(
    sample: ConsoleSample,
    rates: Mapping[str, Rates],
    *,
    namespace: str,
    service: str,
    task: str,
    timestamp_ms: int | None = None,
) -> list[dict[str, Any]]:
    """The records for one sample: one per pool, one per database (rates), one task total.

    Each carries the fleet-wide dimension set (alarms need names that outlive a task) and the
    per-task set (which task is saturated).
    """
    ts = int(sample.wall * 1000) if timestamp_ms is None else timestamp_ms
    out: list[dict[str, Any]] = []
    for pool in sample.pools:
        out.append(record(
            namespace,
            {DIM_SERVICE: service, DIM_TASK: task, DIM_POOL: pool.name},
            [[DIM_SERVICE, DIM_POOL], [DIM_SERVICE, DIM_TASK, DIM_POOL]],
            [
                Metric(CLIENTS_ACTIVE, pool.cl_active, "Count"),
                Metric(CLIENTS_WAITING, pool.cl_waiting, "Count"),
                Metric(SERVERS_ACTIVE, pool.sv_active, "Count"),
                Metric(SERVERS_IDLE, pool.sv_idle, "Count"),
                Metric(MAX_WAIT, round(pool.maxwait_seconds, 6), "Seconds"),
            ],
            ts,
        ))
    for database, rate in sorted(rates.items()):
        out.append(record(
            namespace,
            {DIM_SERVICE: service, DIM_TASK: task, DIM_DATABASE: database},
            [[DIM_SERVICE, DIM_DATABASE], [DIM_SERVICE, DIM_TASK, DIM_DATABASE]],
            [Metric(TPS, round(rate.tps, 3), "Count/Second"), Metric(QPS, round(rate.qps, 3), "Count/Second")],
            ts,
        ))
    out.append(record(
        namespace,
        {DIM_SERVICE: service, DIM_TASK: task},
        [[DIM_SERVICE], [DIM_SERVICE, DIM_TASK]],
        [
            Metric(CLIENTS_ACTIVE, sum(p.cl_active for p in sample.pools), "Count"),
            Metric(CLIENTS_WAITING, sum(p.cl_waiting for p in sample.pools), "Count"),
            Metric(SERVERS_ACTIVE, sum(p.sv_active for p in sample.pools), "Count"),
            Metric(SERVERS_IDLE, sum(p.sv_idle for p in sample.pools), "Count"),
            Metric(MAX_WAIT, round(max((p.maxwait_seconds for p in sample.pools), default=0.0), 6), "Seconds"),
            Metric(TPS, round(sum(r.tps for r in rates.values()), 3), "Count/Second"),
            Metric(QPS, round(sum(r.qps for r in rates.values()), 3), "Count/Second"),
            Metric(CLIENT_CONNECTIONS, sample.client_connections, "Count"),
            Metric(SERVER_CONNECTIONS, sample.server_connections, "Count"),
            Metric(CONSOLE_UP, 1, "Count"),
        ],
        ts,
    ))
    return out


def down_record(*, namespace: str, service: str, task: str, timestamp_ms: int) -> dict[str, Any]:
    """The record for a failed sample: ``ConsoleUp`` 0, so a dead console shows on the graphs."""
    return record(
        namespace,
        {DIM_SERVICE: service, DIM_TASK: task},
        [[DIM_SERVICE], [DIM_SERVICE, DIM_TASK]],
        [Metric(CONSOLE_UP, 0, "Count")],
        timestamp_ms,
    )


def certificate_record(
    *, namespace: str, service: str, task: str, days_left: float, timestamp_ms: int
) -> dict[str, Any]:
    """The days left on the certificate PgBouncer serves; the fleet set is what the expiry alarm reads."""
    return record(
        namespace,
        {DIM_SERVICE: service, DIM_TASK: task},
        [[DIM_SERVICE], [DIM_SERVICE, DIM_TASK]],
        [Metric(CERTIFICATE_DAYS_LEFT, round(days_left, 3), "None")],
        timestamp_ms,
    )


def dumps(rec: Mapping[str, Any]) -> str:
    """One line: CloudWatch Logs needs the whole JSON object in a single log event."""
    return json.dumps(rec, separators=(",", ":"), allow_nan=False)
