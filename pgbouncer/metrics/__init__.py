"""PgBouncer pool metrics: read the admin console, publish CloudWatch EMF lines.

Ships inside the pooler image (its build context is ``pgbouncer/``), so it depends only on
``pgbouncer.settings``, ``pgbouncer.contract`` (the names the stack's alarms read too), psycopg and
cryptography (the days left on PgBouncer's certificate).
Run the publisher with ``python -m pgbouncer.metrics``.
"""

from pgbouncer.metrics.console import (
    ConsoleError,
    ConsoleSample,
    ConsoleTarget,
    DatabaseTotals,
    PoolFigures,
    read_console,
    sample_console,
)
from pgbouncer.metrics.emf import down_record, sample_records
from pgbouncer.metrics.publisher import Publisher, PublisherConfig, PublisherConfigError, main, task_identity
from pgbouncer.metrics.rates import Rates, RateTracker

__all__ = [
    "ConsoleError",
    "ConsoleSample",
    "ConsoleTarget",
    "DatabaseTotals",
    "PoolFigures",
    "Publisher",
    "PublisherConfig",
    "PublisherConfigError",
    "RateTracker",
    "Rates",
    "down_record",
    "main",
    "read_console",
    "sample_console",
    "sample_records",
    "task_identity",
]
