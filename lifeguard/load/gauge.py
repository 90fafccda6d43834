"""The live line a spike shows while it runs: progress and a gauge of backends against max_connections.

On a terminal the line redraws in place about ten times a second; otherwise (CI logs, pipes) one
line is printed per phase, so logs stay short.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from lifeguard.load.spike import SpikeProgress

GAUGE_WIDTH = 30


def gauge(backends: int, limit: int, width: int = GAUGE_WIDTH) -> str:
    filled = min(width, round(width * backends / limit)) if limit > 0 else 0
    return "[" + "#" * filled + "." * (width - filled) + "]"


class SpikeDisplay:
    def __init__(self, max_connections: int, out: TextIO | None = None, interval: float | None = None) -> None:
        self.max_connections = max_connections
        self.out = out or sys.stderr
        self.live = self.out.isatty()
        # Redraw ten times a second on a terminal; in a log, a line every few seconds is enough.
        self.interval = interval if interval is not None else (0.1 if self.live else 5.0)
        self._last_draw = 0.0
        self._last_phase: tuple[str, str] | None = None
        self._pending: SpikeProgress | None = None

    def line(self, p: SpikeProgress) -> str:
        full = " FULL" if p.backends >= self.max_connections - 3 else ""
        what = "cold starts" if p.phase == "cold" else "warm calls "
        return (
            f"  {p.label:<7} {what} {p.done:>6}/{p.instances:<6} ok {p.ok:>6}  failed {p.failed:>6}  "
            f"backends {gauge(p.backends, self.max_connections)} {p.backends:>3}/{self.max_connections}"
            f"{full}  peak {p.peak_backends:>3}  {p.elapsed_s:5.1f}s"
        )

    def __call__(self, p: SpikeProgress) -> None:
        key = (p.label, p.phase)
        if self.live:
            now = time.monotonic()
            if key != self._last_phase and self._last_phase is not None and self._pending is not None:
                self.out.write("\r" + self.line(self._pending) + "\n")
            if now - self._last_draw >= self.interval or key != self._last_phase:
                self.out.write("\r" + self.line(p) + "\x1b[K")
                self.out.flush()
                self._last_draw = now
        else:
            now = time.monotonic()
            if key != self._last_phase and self._pending is not None and self._last_phase is not None:
                self.out.write(self.line(self._pending) + "\n")
                self.out.flush()
                self._last_draw = now
            elif self._last_phase is None:
                self._last_draw = now
            elif now - self._last_draw >= self.interval:
                self.out.write(self.line(p) + "\n")
                self.out.flush()
                self._last_draw = now
        self._last_phase = key
        self._pending = p

    def finish(self) -> None:
        """End the current line (call after each run)."""
        if self._pending is not None:
            self.out.write(("\r" if self.live else "") + self.line(self._pending) + ("\x1b[K\n" if self.live else "\n"))
            self.out.flush()
        self._pending = None
        self._last_phase = None
