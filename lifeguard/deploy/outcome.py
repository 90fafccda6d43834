"""How a pipeline step ended (``lifeguard migrate``, ``lifeguard verify-rollout``): its exit code and why."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepOutcome:
    """The exit code the pipeline should return and a sentence saying why."""

    exit_code: int
    summary: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0
