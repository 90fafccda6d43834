"""Transactions and queries per second from ``SHOW STATS`` totals between two samples.

``total_xact_count``/``total_query_count`` only grow while PgBouncer runs and restart from zero
with it. A rate is the difference over the time between samples; where there is no usable
previous sample (the first one, a counter that went down because PgBouncer restarted, or a sample
after a failed one) the rate is PgBouncer's own ``avg_*`` figure, its per-second average over the
last ``stats_period``, rather than a negative or made-up number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pgbouncer.metrics.console import ConsoleSample, DatabaseTotals

RateSource = Literal["delta", "average"]

# Two samples closer than this give a rate dominated by timing noise.
MIN_INTERVAL_S = 0.05


@dataclass(frozen=True)
class Rates:
    tps: float
    qps: float
    source: RateSource
    """``delta``: measured between two samples; ``average``: PgBouncer's stats_period average."""


class RateTracker:
    """Keeps the previous totals per database; one tracker per console being sampled."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, DatabaseTotals]] = {}

    def reset(self) -> None:
        """Forget the previous sample (call it when a sample failed: PgBouncer may have restarted)."""
        self._last.clear()

    def update(self, sample: ConsoleSample) -> dict[str, Rates]:
        rates: dict[str, Rates] = {}
        current: dict[str, tuple[float, DatabaseTotals]] = {}
        for totals in sample.databases:
            current[totals.database] = (sample.monotonic, totals)
            previous = self._last.get(totals.database)
            rates[totals.database] = _rates(previous, sample.monotonic, totals)
        # Databases gone from SHOW STATS (a reload dropped them) are forgotten with the rest.
        self._last = current
        return rates


def _rates(previous: tuple[float, DatabaseTotals] | None, at: float, totals: DatabaseTotals) -> Rates:
    average = Rates(totals.avg_xact_per_s, totals.avg_query_per_s, "average")
    if previous is None:
        return average
    then, before = previous
    elapsed = at - then
    xacts = totals.xact_count - before.xact_count
    queries = totals.query_count - before.query_count
    if elapsed < MIN_INTERVAL_S or xacts < 0 or queries < 0:
        # A counter went down: PgBouncer restarted between the samples.
        return average
    return Rates(xacts / elapsed, queries / elapsed, "delta")
