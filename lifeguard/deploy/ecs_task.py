"""One ECS task on Fargate: start it in the stack's private subnets, watch it, stop it, and say how it ended.

ECS reports two different kinds of failure and both must fail the pipeline: the container ran and
exited non-zero (``exitCode``), or it never ran at all (image pull, secret retrieval, capacity),
in which case there is no ``exitCode`` and the reason is in ``stopCode``/``stoppedReason`` and the
container's ``reason``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lifeguard.deploy.outcome import StepOutcome
from lifeguard.deploy.outputs import MigrationTarget

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_ecs.type_defs import FailureTypeDef, TaskTypeDef

# Exit codes for endings that have no container exit code, chosen like `timeout` (124) and
# `docker run` (125: the container could not be run) so they cannot be read as a container's own.
EXIT_TIMED_OUT = 124
EXIT_DID_NOT_RUN = 125

# ECS's rule for startedBy: up to 128 letters, digits, hyphens, slashes and underscores.
STARTED_BY = re.compile(r"^[A-Za-z0-9/_-]{1,128}$")


class EcsTaskError(Exception):
    """ECS refused or lost the task; the message carries ECS's own reason."""


class TaskNotFound(EcsTaskError):
    """DescribeTasks does not know the task (``MISSING``)."""


@dataclass(frozen=True)
class StartedTask:
    arn: str
    cluster_arn: str

    @property
    def task_id(self) -> str:
        # arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/TASK_ID: the id is what the log stream is named after.
        return self.arn.rsplit("/", 1)[-1]


def start_task(ecs: ECSClient, target: MigrationTarget, started_by: str,
               command: Sequence[str] | None = None) -> StartedTask:
    """Start one task of the target's task definition on Fargate, with no public IP.

    ``command`` replaces the container's command for this task only (a ``containerOverrides``
    entry: no new task definition, and no IAM permission beyond ``ecs:RunTask``); its environment,
    secrets and roles stay the task definition's.
    """
    if not STARTED_BY.match(started_by):
        raise ValueError("started_by must be 1-128 letters, digits, '-', '/' or '_'")
    overrides: dict[str, Any] = (
        {} if command is None
        else {"overrides": {"containerOverrides": [{"name": target.container_name, "command": list(command)}]}}
    )
    response = ecs.run_task(
        cluster=target.cluster_arn,
        taskDefinition=target.task_definition_arn,
        launchType="FARGATE",
        count=1,
        startedBy=started_by,
        propagateTags="TASK_DEFINITION",
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": list(target.subnet_ids),
                "securityGroups": list(target.security_group_ids),
                # Private subnets reach ECR, Secrets Manager and Logs through endpoints or NAT.
                "assignPublicIp": "DISABLED",
            }
        },
        **overrides,
    )
    # run_task answers 200 with an empty task list and `failures` when it cannot place the task.
    failures = response.get("failures", [])
    tasks = response.get("tasks", [])
    if failures or not tasks:
        raise EcsTaskError(f"ECS did not start the migration task: {describe_failures(failures)}")
    arn = tasks[0].get("taskArn")
    if not arn:
        raise EcsTaskError("ECS answered RunTask without a task ARN")
    return StartedTask(arn=arn, cluster_arn=target.cluster_arn)


def describe_task(ecs: ECSClient, task: StartedTask) -> TaskTypeDef:
    response = ecs.describe_tasks(cluster=task.cluster_arn, tasks=[task.arn])
    described = response.get("tasks", [])
    if not described:
        reason = describe_failures(response.get("failures", []))
        raise TaskNotFound(f"ECS does not know task {task.task_id}: {reason}")
    return described[0]


def stop_task(ecs: ECSClient, task: StartedTask, reason: str) -> None:
    # The reason shows as the task's stoppedReason in the console; ECS caps it at 255 characters.
    ecs.stop_task(cluster=task.cluster_arn, task=task.arn, reason=reason[:255])


def outcome_of(task: TaskTypeDef, container_name: str) -> StepOutcome:
    """Classify a STOPPED task by the named container's exit code, or ECS's reason when it has none."""
    containers = task.get("containers", [])
    container = next((c for c in containers if c.get("name") == container_name), None)
    if container is None:
        names = ", ".join(repr(c.get("name", "?")) for c in containers) or "none"
        return StepOutcome(
            EXIT_DID_NOT_RUN,
            f"the task has no container named {container_name!r} (it has: {names}); "
            "migrationContainerName must name the container in the task definition",
        )
    reasons = _reasons(task, container.get("reason"))
    exit_code = container.get("exitCode")
    if exit_code is None:
        return StepOutcome(EXIT_DID_NOT_RUN, f"the migration container never ran to completion: {reasons}")
    if exit_code == 0:
        return StepOutcome(0, "the migration container exited with code 0")
    # Container exit codes are 0-255; anything else still must not be mistaken for success by `exit`.
    code = exit_code if 0 < exit_code < 256 else 1
    return StepOutcome(code, f"the migration container exited with code {exit_code}: {reasons}")


def describe_failures(failures: list[FailureTypeDef]) -> str:
    if not failures:
        return "no reason given"
    parts = []
    for failure in failures:
        text = failure.get("reason", "unknown reason")
        if failure.get("detail"):
            text += f" ({failure['detail']})"
        parts.append(text)
    return "; ".join(parts)


def _reasons(task: TaskTypeDef, container_reason: str | None) -> str:
    parts = [
        f"stopCode {task['stopCode']}" if task.get("stopCode") else "",
        task.get("stoppedReason", ""),
        f"container: {container_reason}" if container_reason else "",
    ]
    return "; ".join(part for part in parts if part) or "ECS gave no reason"
