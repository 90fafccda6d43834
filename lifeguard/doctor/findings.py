"""What ``lifeguard doctor`` reports: findings with a status, what was seen, and what to change."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"

    @property
    def rank(self) -> int:
        return (Status.OK, Status.WARN, Status.FAIL).index(self)


def worst(statuses: Sequence[Status]) -> Status:
    return max(statuses, key=lambda s: s.rank, default=Status.OK)


NOTHING_TO_CHANGE = "nothing to change"


@dataclass(frozen=True)
class Finding:
    check: str
    """``pooling``, ``prepared statements``, ``session state``, ``headroom``, ``tls``, ``pair`` (or ``connect``)."""
    target: str
    """Which URL it is about: ``DATABASE_URL``, ``DATABASE_URL_UNPOOLED``, or ``pair``."""
    status: Status
    summary: str
    """What was seen, in one line."""
    advice: str
    """What to change, in one line (:data:`NOTHING_TO_CHANGE` when ok)."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """The figures behind the finding, for ``--json``."""

    def as_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "target": self.target,
            "status": self.status.value,
            "summary": self.summary,
            "advice": self.advice,
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class Report:
    urls: Mapping[str, str]
    """Target name to its URL, redacted."""
    findings: tuple[Finding, ...]
    elapsed_s: float

    @property
    def status(self) -> Status:
        return worst([f.status for f in self.findings])

    @property
    def exit_code(self) -> int:
        return 1 if self.status is Status.FAIL else 0

    def counts(self) -> dict[str, int]:
        return {s.value: sum(1 for f in self.findings if f.status is s) for s in Status}

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "urls": dict(self.urls),
            "counts": self.counts(),
            "elapsed_s": round(self.elapsed_s, 3),
            "findings": [f.as_json() for f in self.findings],
        }
