"""Run the migration task once and wait for it: what ``lifeguard migrate`` does after ``pulumi up``.

The task's log lines are printed as they arrive, interleaved with the polling, so a CI log shows
the migrator's own output; the result is the container's exit code, or a pipeline code for a task
that never ran or ran out of time (see :mod:`lifeguard.deploy.ecs_task`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lifeguard.deploy.aws import AWS_ERRORS, explain_aws_error
from lifeguard.deploy.clock import WaitClock
from lifeguard.deploy.ecs_task import (
    EXIT_TIMED_OUT,
    StartedTask,
    TaskNotFound,
    describe_task,
    outcome_of,
    start_task,
    stop_task,
)
from lifeguard.deploy.log_follower import LogFollower
from lifeguard.deploy.outcome import StepOutcome
from lifeguard.deploy.outputs import MigrationTarget
from redaction import redact

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_logs import CloudWatchLogsClient

DEFAULT_TIMEOUT_SECONDS = 1800.0
# DescribeTasks is cheap, but a Fargate task takes tens of seconds to start; 5 s keeps logs timely.
DEFAULT_POLL_SECONDS = 5.0
# The awslogs driver can deliver the last lines a moment after ECS reports the task stopped.
LOG_GRACE_SECONDS = 3.0
# The ECS API is eventually consistent: DescribeTasks may not know a task RunTask just started.
NOT_FOUND_GRACE_SECONDS = 30.0


@dataclass
class MigrationSettings:
    """Knobs and sinks for one run; the defaults are the real ones."""

    timeout: float = DEFAULT_TIMEOUT_SECONDS
    started_by: str = "lifeguard-migrate"
    poll_interval: float = DEFAULT_POLL_SECONDS
    log_grace: float = LOG_GRACE_SECONDS
    clock: WaitClock = time
    # Where the task's own log lines go, and where the pipeline's status lines go.
    on_log_line: Callable[[str], None] = print
    on_status: Callable[[str], None] = print
    command: Sequence[str] | None = None
    """The container's command for this run only (None: the task definition's)."""


def run_migration(
    ecs: ECSClient, logs: CloudWatchLogsClient, target: MigrationTarget, run: MigrationSettings
) -> StepOutcome:
    """Start the migration task, follow its logs until it stops (or time runs out), and classify the end.

    Raises :class:`~lifeguard.deploy.ecs_task.EcsTaskError` when ECS does not start the task, and
    botocore's errors when an AWS call is refused.
    """
    if run.timeout <= 0:
        raise ValueError("timeout must be positive")
    task = start_task(ecs, target, run.started_by, run.command)
    run.on_status(f"started migration task {task.task_id} on {target.cluster_arn}")
    relay = _LogRelay(LogFollower(logs, target.log_group_name, target.log_stream_name(task.task_id)), run)
    started = run.clock.monotonic()
    deadline = started + run.timeout
    last_status = ""
    try:
        while True:
            relay.relay()
            try:
                described = describe_task(ecs, task)
            except TaskNotFound:
                if last_status or run.clock.monotonic() - started >= NOT_FOUND_GRACE_SECONDS:
                    raise
                status = ""
            else:
                status = described.get("lastStatus", "UNKNOWN")
            if status and status != last_status:
                run.on_status(f"task {task.task_id} is {status}")
                last_status = status
            if status == "STOPPED":
                break
            remaining = deadline - run.clock.monotonic()
            if remaining <= 0:
                return _time_out(ecs, task, relay, run)
            run.clock.sleep(min(run.poll_interval, remaining))
    except KeyboardInterrupt:
        # A cancelled CI job must not leave a migration running unwatched.
        if _stop(ecs, task, "lifeguard migrate was interrupted", run):
            run.on_status(f"interrupted: asked ECS to stop task {task.task_id}")
        raise
    relay.relay()
    run.clock.sleep(run.log_grace)
    relay.relay()
    if relay.error is None and not relay.follower.stream_seen:
        run.on_status(
            f"no log stream {relay.follower.stream} appeared in log group {relay.follower.group}; "
            "check migrationLogGroupName and migrationLogStreamPrefix against the task definition's awslogs options"
        )
    return outcome_of(described, target.container_name)


def _time_out(ecs: ECSClient, task: StartedTask, relay: _LogRelay, run: MigrationSettings) -> StepOutcome:
    stopped = _stop(ecs, task, f"lifeguard migrate timed out after {run.timeout:g} s", run)
    relay.relay()
    if not stopped:
        return StepOutcome(
            EXIT_TIMED_OUT,
            f"the migration task {task.task_id} did not finish within {run.timeout:g} s, and it could not be "
            "stopped: stop it in the ECS console before running migrations again.",
        )
    return StepOutcome(
        EXIT_TIMED_OUT,
        f"the migration task {task.task_id} did not finish within {run.timeout:g} s and was asked to stop; "
        "Postgres rolls back the migration transaction that was open. Raise --timeout if migrations need longer.",
    )


def _stop(ecs: ECSClient, task: StartedTask, reason: str, run: MigrationSettings) -> bool:
    # Reported rather than raised: the reason for stopping is what the user must see first.
    try:
        stop_task(ecs, task, reason)
    except AWS_ERRORS as exc:
        run.on_status(f"could not stop task {task.task_id}: {explain_aws_error(exc)}")
        return False
    return True


class _LogRelay:
    """Prints the task's new log lines; a refused log read costs the logs, never the wait for the task."""

    def __init__(self, follower: LogFollower, run: MigrationSettings) -> None:
        self.follower = follower
        self.run = run
        self.error: str | None = None

    def relay(self) -> None:
        if self.error is not None:
            return
        try:
            lines = self.follower.poll()
        except AWS_ERRORS as exc:
            # Aborting here would leave the task running unwatched over a missing logs:GetLogEvents.
            self.error = explain_aws_error(exc)
            self.run.on_status(f"cannot read the task's logs; waiting for the task without them: {self.error}")
            return
        for line in lines:
            self.run.on_log_line(redact(line))
