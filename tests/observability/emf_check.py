"""Parse EMF lines and check them against the spec, as CloudWatch Logs would before extracting."""

from __future__ import annotations

import json
import math
from typing import Any

# CloudWatch's units (the StandardUnit values of its API reference), written out here rather than
# read from pgbouncer.metrics.emf, so a wrong unit in the publisher's own table fails the check.
CLOUDWATCH_UNITS = frozenset({
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
    "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
    "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
    "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
})


def parse_emf(text: str) -> list[dict[str, Any]]:
    """Every line must be one complete EMF JSON object (one log event each)."""
    records = []
    for line in text.splitlines():
        rec = json.loads(line)
        check_emf(rec)
        records.append(rec)
    return records


def check_emf(rec: dict[str, Any]) -> None:
    meta = rec["_aws"]
    assert isinstance(meta["Timestamp"], int) and meta["Timestamp"] > 1_600_000_000_000
    directives = meta["CloudWatchMetrics"]
    assert isinstance(directives, list) and directives
    for directive in directives:
        assert set(directive) == {"Namespace", "Dimensions", "Metrics"}
        assert isinstance(directive["Namespace"], str) and directive["Namespace"]
        for dims in directive["Dimensions"]:
            assert 1 <= len(dims) <= 30
            for dim in dims:
                assert isinstance(rec[dim], str) and 0 < len(rec[dim]) <= 1024
        assert 1 <= len(directive["Metrics"]) <= 100
        for metric in directive["Metrics"]:
            assert set(metric) <= {"Name", "Unit", "StorageResolution"}
            assert metric["Unit"] in CLOUDWATCH_UNITS, metric
            value = rec[metric["Name"]]
            assert isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def find(records: list[dict[str, Any]], **dims: str) -> dict[str, Any]:
    """The one record whose dimension members are exactly ``dims`` (plus Service and Task)."""
    wanted = [
        rec for rec in records
        if all(rec.get(k) == v for k, v in dims.items())
        and not ({"Pool", "Database"} - set(dims)) & set(rec)
    ]
    assert len(wanted) == 1, f"{len(wanted)} records match {sorted(dims)}"
    return wanted[0]


def dimension_sets(rec: dict[str, Any]) -> list[list[str]]:
    return [list(dims) for dims in rec["_aws"]["CloudWatchMetrics"][0]["Dimensions"]]


def units(rec: dict[str, Any]) -> dict[str, str]:
    return {m["Name"]: m["Unit"] for m in rec["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
