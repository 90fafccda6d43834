"""Pool sizing: derive PgBouncer's ``default_pool_size`` from the database, never guess it.

    server_budget          = max_connections - reserved_connections - migration_headroom
    max_pooler_tasks_alive = ceil(max_tasks * deployment_maximum_percent / 100)
    default_pool_size      = floor(server_budget / max_pooler_tasks_alive)

During an ECS rolling deploy the old and the new tasks are alive at the same time, so the
budget is divided by the peak number of tasks, not the steady one. Every failure names the
knob to change, because this runs at ``pulumi preview`` before anything is created.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class SizingError(ValueError):
    """The connection budget does not fit; the message names the setting to change."""


@dataclass(frozen=True)
class PoolBudget:
    max_connections: int
    """Postgres ``max_connections``, set explicitly in the RDS parameter group."""
    reserved_connections: int = 3
    """Backends kept for superusers and admin sessions (``superuser_reserved_connections``)."""
    migration_headroom: int = 2
    """Direct connections the migration job may hold (one lock session plus one spare)."""
    max_tasks: int = 1
    """Most pooler tasks (processes) at steady state: the autoscaling maximum."""
    deployment_maximum_percent: int = 100
    """ECS ``maximumPercent``: 200 means a rolling deploy doubles the tasks for a while."""
    min_pool_size: int = 2
    """Refuse budgets that would leave each pooler task with fewer server connections."""

    @property
    def server_budget(self) -> int:
        return self.max_connections - self.reserved_connections - self.migration_headroom

    @property
    def max_pooler_tasks_alive(self) -> int:
        return math.ceil(self.max_tasks * self.deployment_maximum_percent / 100)

    def default_pool_size(self) -> int:
        """The per-task pool size; raises :class:`SizingError` naming the knob when it does not fit."""
        self._validate()
        size = self.server_budget // self.max_pooler_tasks_alive
        if size < self.min_pool_size:
            raise SizingError(
                f"the connection budget does not fit: {self.server_budget} server connections "
                f"(maxConnections {self.max_connections} - reservedConnections {self.reserved_connections}"
                f" - migrationHeadroom {self.migration_headroom}) shared by up to "
                f"{self.max_pooler_tasks_alive} pooler tasks ({self.max_tasks} tasks x "
                f"{self.deployment_maximum_percent}% during a deploy) gives {size} per task, below the "
                f"minimum of {self.min_pool_size}. Raise maxConnections, or lower poolerMaxTasks or "
                f"deploymentMaximumPercent."
            )
        return size

    def _validate(self) -> None:
        if self.max_connections < 1:
            raise SizingError(f"maxConnections must be a positive number, got {self.max_connections}")
        if self.reserved_connections < 0 or self.migration_headroom < 0:
            raise SizingError("reservedConnections and migrationHeadroom cannot be negative")
        if self.max_tasks < 1:
            raise SizingError(f"poolerMaxTasks must be at least 1, got {self.max_tasks}")
        if not 100 <= self.deployment_maximum_percent <= 200:
            raise SizingError(
                "deploymentMaximumPercent must be between 100 and 200 (ECS rolling deploys), "
                f"got {self.deployment_maximum_percent}"
            )
        if self.server_budget < 1:
            raise SizingError(
                f"maxConnections {self.max_connections} leaves no server connections after "
                f"reservedConnections {self.reserved_connections} and migrationHeadroom "
                f"{self.migration_headroom}; raise maxConnections."
            )
