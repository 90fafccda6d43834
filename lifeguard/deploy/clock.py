"""What the pipeline's waits need of :mod:`time`: pass the module itself; tests pass a clock that does not sleep."""

from __future__ import annotations

from typing import Protocol


class WaitClock(Protocol):
    """Monotonic time and sleep: a wall-clock jump cannot shorten or stretch a timeout."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...
