"""Two rotations under a sustained charge load through the pooler: no refused login, no failed or doubled charge.

Sized to stay well under a minute; ``python -m lifeguard.bench.rotation`` runs the bigger figure and the
one-step change it replaced (docs/roles.md#rotating-the-password).
"""

from __future__ import annotations

from pathlib import Path

from lifeguard.bench.rotation import POOLER_PROCESSES, run_rotation_load
from lifeguard.stack.stack import LocalStack, StackOptions

DURATION_S = 16.0
"""Rotations start at 1/3 and 2/3 of it; one takes 1-4 s here (the migration job, PgBouncer's reload)."""


def test_two_rotations_under_load_fail_nothing(stack_dir: Path, ports: tuple[int, int]) -> None:
    stack = LocalStack(stack_dir)
    stack.up(StackOptions(pg_port=ports[0], pooler_port=ports[1], durable=False, pooler_processes=POOLER_PROCESSES))
    log: list[str] = []
    result = run_rotation_load(stack, procedure="two-role", instances=200, duration_s=DURATION_S, changes=2,
                               progress=log.append)
    summary = "\n".join(result.lines())
    assert result.rotation_errors == [] and len(result.rotations) == 2, summary
    assert sum("step 4/4" in line for line in log) == 2, summary
    assert max(result.finished_at) < DURATION_S, summary  # both switched while the load ran
    assert result.invocations > 200, summary  # a sustained load: many more calls than instances at once
    assert (result.failed, result.failed_logins, result.secret_rereads) == (0, 0, 0), summary
    assert result.charges == result.distinct_keys == result.ok, summary  # each 200 exactly one charge
    assert result.credits_spent == result.charged_sum == result.ok, summary
    assert result.old_password_refused is True, summary
