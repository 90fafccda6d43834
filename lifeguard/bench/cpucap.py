"""A CPU cap for the processes the cold-start benchmark starts: a Lambda function's share of a core.

Lambda gives a function CPU in proportion to its memory: 1,769 MB is one vCPU, so 128 MB gets
about 0.072 of one. The Linux CFS bandwidth controller caps a cgroup the same way (a quota of CPU
time per period), which is how this module stands in for it:

* cgroup v1 (a ``cpu`` hierarchy, e.g. ``/sys/fs/cgroup/cpu``): a child group of ours with
  ``cpu.cfs_period_us`` and ``cpu.cfs_quota_us``;
* cgroup v2 (one unified hierarchy at ``/sys/fs/cgroup``): a child group with ``cpu.max`` ("quota
  period"), made under the root, the one group that may hold processes and enable controllers for
  its children at once.

It needs the right to make groups: root on the host, or a delegated subtree (rootless containers,
systemd's ``Delegate=``). Where that is missing, :func:`make_caps` says why and the benchmark runs
uncapped (a cold start on a whole core). A process joins its group between fork and exec
(:meth:`CpuCap.join`), so the cap holds from the interpreter's first instruction.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

LAMBDA_MB_PER_VCPU = 1769
PERIOD_US = 100_000
"""CFS' default period; the quota is the share of it. A capped process that spends its quota early
in a period waits for the next one, so the period sets how coarsely the cap slices time."""
MIN_QUOTA_US = 1_000
"""The kernel's smallest quota (1 ms): 0.072 of a CPU needs a period of at least 14 ms."""
CGROUP_ROOT = Path("/sys/fs/cgroup")


def cpu_share(memory_mb: int) -> float:
    """The vCPU share Lambda gives a function of ``memory_mb``."""
    return memory_mb / LAMBDA_MB_PER_VCPU


@dataclass(frozen=True)
class CpuCap:
    """One cgroup capping its processes at ``share`` of a CPU."""

    path: Path
    share: float
    version: int
    period_us: int = PERIOD_US

    @property
    def quota_us(self) -> int:
        return max(MIN_QUOTA_US, round(self.share * self.period_us))

    def join(self) -> None:
        """Move the calling process into the group (run in the child between fork and exec)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def remove(self) -> None:
        """Remove the group (its processes have exited); a group that is gone already is fine."""
        with contextlib.suppress(FileNotFoundError):
            self.path.rmdir()


def _v1_cpu_dir(root: Path) -> Path | None:
    """Our own group in the v1 ``cpu`` hierarchy, from /proc/self/cgroup."""
    for mount in (root / "cpu", root / "cpu,cpuacct"):
        if (mount / "cpu.cfs_quota_us").exists():
            try:
                lines = Path("/proc/self/cgroup").read_text().splitlines()
            except OSError:
                return mount
            for line in lines:
                _, controllers, path = line.split(":", 2)
                if "cpu" in controllers.split(","):
                    own = mount / path.lstrip("/")
                    return own if own.is_dir() else mount
            return mount
    return None


def make_caps(shares: Sequence[tuple[float, int]], name: str,
              root: Path = CGROUP_ROOT) -> tuple[list[CpuCap], str | None]:
    """One group per (share, period in µs), or none and the reason no group could be made (then run uncapped)."""
    made: list[CpuCap] = []
    try:
        if (root / "cgroup.controllers").exists():
            controllers = (root / "cgroup.subtree_control").read_text().split()
            if "cpu" not in controllers:
                (root / "cgroup.subtree_control").write_text("+cpu")
            for i, (share, period) in enumerate(shares):
                cap = CpuCap(root / f"{name}-{i}", share, 2, period)
                cap.path.mkdir()
                made.append(cap)
                (cap.path / "cpu.max").write_text(f"{cap.quota_us} {cap.period_us}")
        else:
            parent = _v1_cpu_dir(root)
            if parent is None:
                return [], f"no cgroup cpu controller under {root} (neither v2's cpu.max nor v1's cpu.cfs_quota_us)"
            for i, (share, period) in enumerate(shares):
                cap = CpuCap(parent / f"{name}-{i}", share, 1, period)
                cap.path.mkdir()
                made.append(cap)
                (cap.path / "cpu.cfs_period_us").write_text(str(cap.period_us))
                (cap.path / "cpu.cfs_quota_us").write_text(str(cap.quota_us))
        for cap in made:
            # A group can exist and still refuse members (v2's rule against processes in inner groups).
            subprocess.run(["true"], preexec_fn=cap.join, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        for cap in made:
            cap.remove()
        why = "not root" if os.geteuid() != 0 else getattr(exc, "strerror", None) or str(exc)
        return [], f"could not make a CPU-capped cgroup under {root} ({why}); running uncapped, on a whole core"
    return made, None
