"""CPU time the servers spent, read from ``/proc``: where a connection's cost goes.

Postgres forks a backend per connection; when a backend exits, the postmaster reaps it and the
kernel adds its CPU time to the postmaster's ``cutime``/``cstime``. So the postmaster's own and
reaped-children time, plus its live children's time, covers every backend of a run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; everything after its closing ')' is fixed.
    return text.rsplit(")", 1)[1].split()


def process_seconds(pid: int, with_reaped_children: bool = False) -> float:
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # Fields 14-17 of /proc/PID/stat (utime, stime, cutime, cstime) are 11-14 after the name.
    ticks = int(fields[11]) + int(fields[12])
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICKS


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def process_cpu_ns(pid: int) -> int:
    """CPU time of every live thread of ``pid``, in nanoseconds.

    From ``/proc/PID/task/*/schedstat`` (the scheduler's own nanosecond clock): ``/proc/PID/stat``
    counts 10 ms ticks, too coarse for a fraction of a millisecond per login in a short run.
    """
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread exited between listing and reading
    return total


@dataclass(frozen=True)
class CpuSample:
    postgres_s: float
    pgbouncer_s: float


class ServerCpu:
    """Cumulative CPU seconds of one Postgres cluster and some PgBouncer processes."""

    def __init__(self, postmaster_pid: int, pgbouncer_pids: Sequence[int]) -> None:
        self.postmaster_pid = postmaster_pid
        self.pgbouncer_pids = list(pgbouncer_pids)

    @classmethod
    def from_state(cls, postmaster_pid: int | None, pgbouncer_pids: Sequence[int | None]) -> ServerCpu:
        """From :meth:`PostgresCluster.postmaster_pid` (which reads the service user's file safely) and PgBouncer's."""
        if postmaster_pid is None:
            raise ValueError("Postgres is not running: no postmaster.pid names its postmaster")
        return cls(postmaster_pid, [pid for pid in pgbouncer_pids if pid is not None])

    def sample(self) -> CpuSample:
        postgres = process_seconds(self.postmaster_pid, with_reaped_children=True)
        postgres += sum(process_seconds(child) for child in children(self.postmaster_pid))
        pgbouncer = sum(process_seconds(pid) for pid in self.pgbouncer_pids)
        return CpuSample(postgres, pgbouncer)
