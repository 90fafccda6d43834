"""PNG charts of backend connections over time (matplotlib, Agg: no display needed)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Series:
    label: str
    samples: Sequence[tuple[float, int]]
    color: str


def backends_chart(
    path: Path,
    series: Sequence[Series],
    *,
    max_connections: int,
    pool_size: int,
    title: str,
) -> Path:
    """Plot each run's backend connections against ``max_connections`` and the pool size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.4), dpi=110)
    try:
        longest = 0.0
        for s in series:
            if not s.samples:
                continue
            xs = [t for t, _ in s.samples]
            ys = [n for _, n in s.samples]
            longest = max(longest, xs[-1])
            ax.step(xs, ys, where="post", color=s.color, linewidth=2, label=s.label)
        ax.axhline(max_connections, color="#b00020", linestyle="--", linewidth=1.2,
                   label=f"max_connections = {max_connections}")
        ax.axhline(pool_size, color="#1b5e20", linestyle=":", linewidth=1.2,
                   label=f"PgBouncer pool size = {pool_size}")
        ax.set_xlim(0, max(longest, 1.0))
        ax.set_ylim(0, max(max_connections, pool_size) * 1.15)
        ax.set_xlabel("seconds since the spike started")
        ax.set_ylabel("Postgres client backends")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        # Below the plot: inside it would hide a line whichever corner it took.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=9, frameon=False)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader never sees half a PNG.
        tmp = path.with_name(path.name + ".tmp")
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
    return path
