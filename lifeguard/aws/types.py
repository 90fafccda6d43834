"""The types config and components share, at the bottom of infra's imports: nothing here imports
from ``lifeguard.aws.config`` or ``lifeguard.aws``, so imports run one way (types <- config <- components
<- program)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

Architecture = Literal["x86_64", "arm64"]
ApiAccess = Literal["endpoints", "nat", "none"]
ARCHITECTURES: tuple[Architecture, ...] = ("x86_64", "arm64")
API_ACCESS: tuple[ApiAccess, ...] = ("endpoints", "nat", "none")


ALARM_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
"""An address the alarm topic's email subscription can take (``alarmEmail``; ``ObservabilityArgs.alarm_email``)."""


class ObservabilityError(ValueError):
    """A threshold or option is invalid; the message names the field to change."""


@dataclass(frozen=True)
class AlarmThresholds:
    """When each alarm fires. Every alarm evaluates 1-minute periods."""

    clients_waiting: int = 1
    """Clients queued for a server connection (the fleet's busiest task)..."""
    clients_waiting_minutes: int = 3
    """... in every one of this many consecutive minutes: a sustained queue, not a burst."""
    max_wait_seconds: float = 1.0
    """The oldest queued client has waited this long (below query_wait_timeout, which fails it)."""
    max_wait_minutes: int = 2
    pooler_cpu_percent: float = 80.0
    """ECS service CPUUtilization: PgBouncer is single-threaded, so a hot task means more tasks."""
    pooler_cpu_minutes: int = 5
    unhealthy_targets: int = 1
    """NLB targets failing health checks (UnHealthyHostCount)."""
    unhealthy_minutes: int = 2
    db_connections_ratio: float = 0.8
    """RDS DatabaseConnections above this share of max_connections."""
    db_connections_minutes: int = 3
    certificate_days_left: int = 21
    """The certificate PgBouncer serves has this many days left or fewer: any ``pulumi up`` in its last 30
    days renews it, so this means nine days of that window passed without one."""

    def validate(self) -> None:
        counts = {
            "clients_waiting": self.clients_waiting,
            "unhealthy_targets": self.unhealthy_targets,
            "certificate_days_left": self.certificate_days_left,
        }
        for name, value in counts.items():
            if value < 1:
                raise ObservabilityError(f"thresholds.{name} must be at least 1, got {value}")
        minutes = {
            "clients_waiting_minutes": self.clients_waiting_minutes,
            "max_wait_minutes": self.max_wait_minutes,
            "pooler_cpu_minutes": self.pooler_cpu_minutes,
            "unhealthy_minutes": self.unhealthy_minutes,
            "db_connections_minutes": self.db_connections_minutes,
        }
        for name, value in minutes.items():
            # CloudWatch: evaluation periods x period must not exceed one day.
            if not 1 <= value <= 1440:
                raise ObservabilityError(f"thresholds.{name} must be between 1 and 1440 minutes, got {value}")
        if not (math.isfinite(self.max_wait_seconds) and self.max_wait_seconds > 0):
            raise ObservabilityError(f"thresholds.max_wait_seconds must be above 0, got {self.max_wait_seconds}")
        if not 0 < self.pooler_cpu_percent <= 100:
            raise ObservabilityError(
                f"thresholds.pooler_cpu_percent must be above 0 and at most 100, got {self.pooler_cpu_percent}"
            )
        if not 0 < self.db_connections_ratio <= 1:
            raise ObservabilityError(
                f"thresholds.db_connections_ratio must be above 0 and at most 1, got {self.db_connections_ratio}"
            )


class ArgsError(ValueError):
    """A public component's arguments are invalid (checked before it creates anything); ``field`` names the
    argument to change, so a program that fills it from its own settings can name its setting instead."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.detail = message
        super().__init__(f"{field}: {message}")
