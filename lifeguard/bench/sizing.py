"""The capacity arithmetic: PgBouncer CPU per login and per warm query -> tasks for a target load.

On AWS the functions' own CPU is on the Lambda hosts; what bounds a spike is the pooler's CPU. A
PgBouncer process is single-threaded, so a task gives it at most one vCPU however large the task
is, and the autoscaler holds the tasks' average CPU at ``poolerCpuTargetPercent``: that target is
the margin (headroom for a spike to land on before new tasks start).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from lifeguard.aws.keys import whole_default

FARGATE_UNITS_PER_VCPU = 1024
PGBOUNCER_PROCESSES_PER_TASK = 1
"""The pooler image runs one PgBouncer process (PID 1): one vCPU at most per task."""
STACK_DEFAULTS = {name: whole_default(name)
                  for name in ("poolerMinTasks", "poolerMaxTasks", "poolerCpu", "poolerCpuTargetPercent")}
"""The AWS stack's pooler defaults the report sizes with, from the stack's key table (stdlib only:
the local install, where ``lifeguard bench`` runs, has no Pulumi)."""


@dataclass(frozen=True)
class Spread:
    """Repeated measurements of one figure: the median is the figure, min and max its spread."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("a spread needs at least one measurement")
        return cls(statistics.median(values), min(values), max(values), len(values))


@dataclass(frozen=True)
class PoolerCost:
    """PgBouncer CPU per cold start (login) and per warm query, as measured."""

    login_ms: float
    query_us: float

    def __post_init__(self) -> None:
        if self.login_ms <= 0 or self.query_us <= 0:
            raise ValueError(f"CPU costs must be positive, got {self.login_ms} ms per login and "
                             f"{self.query_us} us per query")

    @property
    def cold_starts_per_vcpu(self) -> float:
        """Logins one fully busy vCPU admits per second."""
        return 1000.0 / self.login_ms

    @property
    def queries_per_vcpu(self) -> float:
        """Warm queries one fully busy vCPU passes per second."""
        return 1_000_000.0 / self.query_us


def usable_vcpus(cpu_units: int, processes: int = PGBOUNCER_PROCESSES_PER_TASK) -> float:
    """vCPUs PgBouncer can use in a task of ``cpu_units`` Fargate CPU units (one per process at most)."""
    if cpu_units <= 0 or processes <= 0:
        raise ValueError("cpu_units and processes must be positive")
    return min(cpu_units / FARGATE_UNITS_PER_VCPU, float(processes))


@dataclass(frozen=True)
class TaskEstimate:
    cold_start_tasks: int
    """Tasks for the cold-start rate alone."""
    query_tasks: int
    """Tasks for the warm-query rate alone."""
    tasks: int
    """Tasks for both at once (their CPU adds up)."""
    busy_vcpus: float
    """vCPUs the load keeps busy, before the margin."""


def tasks_needed(cost: PoolerCost, cold_starts_per_s: float, queries_per_s: float, cpu_units: int,
                 target_percent: int) -> TaskEstimate:
    """Tasks that carry the load with each task's CPU at or below ``target_percent`` of what PgBouncer can use."""
    if cold_starts_per_s < 0 or queries_per_s < 0:
        raise ValueError("rates must not be negative")
    if not 0 < target_percent <= 100:
        raise ValueError(f"target_percent must be between 1 and 100, got {target_percent}")
    per_task = usable_vcpus(cpu_units) * target_percent / 100
    cold = cold_starts_per_s * cost.login_ms / 1000
    warm = queries_per_s * cost.query_us / 1_000_000

    def tasks(vcpus: float) -> int:
        # Round away float noise before the ceiling: 2.0000000001 tasks are 2.
        return math.ceil(round(vcpus / per_task, 6))

    return TaskEstimate(tasks(cold), tasks(warm), tasks(cold + warm), round(cold + warm, 4))


def task_capacity(cost: PoolerCost, cpu_units: int, target_percent: int) -> tuple[float, float]:
    """(cold starts/s, warm queries/s) one task carries at ``target_percent``, each on its own."""
    vcpus = usable_vcpus(cpu_units) * target_percent / 100
    return cost.cold_starts_per_vcpu * vcpus, cost.queries_per_vcpu * vcpus
