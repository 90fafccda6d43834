"""Check that the pooler's ECS service really runs the task definition ``pulumi up`` just gave it.

With the deployment circuit breaker's rollback, a rolling update whose new tasks keep failing
settles back on the *old* task definition, and ``wait_for_steady_state`` then reports success: the
stack says one thing, the service runs another. So after ``up`` the pipeline asks ECS directly.
It passes only when the service's PRIMARY deployment runs the stack's task definition with
``rolloutState`` ``COMPLETED``. A PRIMARY on another task definition (rolled back) or a ``FAILED``
rollout fails at once; ``IN_PROGRESS`` is waited for, up to a timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lifeguard.deploy.clock import WaitClock
from lifeguard.deploy.ecs_task import EXIT_TIMED_OUT, describe_failures
from lifeguard.deploy.outcome import StepOutcome
from lifeguard.deploy.outputs import PoolerRolloutTarget

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_ecs.type_defs import DeploymentTypeDef, ServiceTypeDef

# `pulumi up` has already waited for a steady state, so a rollout still in progress here is
# finishing its last step; ten minutes is far beyond that and well inside the deploy job's hour.
DEFAULT_TIMEOUT_SECONDS = 600.0
DEFAULT_POLL_SECONDS = 10.0
EXIT_FAILED = 1


class RolloutError(Exception):
    """ECS does not know the service as the stack describes it; the message says what ECS answered."""


@dataclass(frozen=True)
class RolloutVerdict:
    """What one DescribeServices answer says: settled (passed or failed) or still rolling out."""

    settled: bool
    passed: bool
    summary: str


@dataclass
class RolloutCheck:
    """Knobs and the status sink for one check; the defaults are the real ones."""

    timeout: float = DEFAULT_TIMEOUT_SECONDS
    poll_interval: float = DEFAULT_POLL_SECONDS
    clock: WaitClock = time
    on_status: Callable[[str], None] = print


def describe_service(ecs: ECSClient, target: PoolerRolloutTarget) -> ServiceTypeDef:
    answer = ecs.describe_services(cluster=target.cluster_name, services=[target.service_name])
    services = answer.get("services", [])
    if not services:
        raise RolloutError(
            f"ECS does not know service {target.service_name!r} in cluster {target.cluster_name!r}: "
            f"{describe_failures(answer.get('failures', []))}; is the stack deployed in this account and region?"
        )
    return services[0]


def judge(service: ServiceTypeDef, task_definition_arn: str) -> RolloutVerdict:
    """The verdict on one DescribeServices answer for the task definition the stack exported."""
    name = service.get("serviceName", "the pooler service")
    if service.get("status") != "ACTIVE":
        return RolloutVerdict(True, False, f"service {name} is {service.get('status', 'in no state')}, not ACTIVE")
    deployments = service.get("deployments", [])
    primaries = [deployment for deployment in deployments if deployment.get("status") == "PRIMARY"]
    if len(primaries) != 1:
        return RolloutVerdict(True, False, f"service {name} has {len(primaries)} PRIMARY deployments, not one")
    primary = primaries[0]
    running = primary.get("taskDefinition", "no task definition")
    if running != task_definition_arn:
        ours = [deployment for deployment in deployments if deployment.get("taskDefinition") == task_definition_arn]
        fate = (
            f"its deployment is {_state(ours[0])}" if ours
            else "no deployment of it is left (ECS rolled it back and drained it)"
        )
        return RolloutVerdict(
            True, False,
            f"service {name} runs {running} (PRIMARY, {_state(primary)}), not the stack's "
            f"{task_definition_arn}: the update was rolled back; {fate}. Look at the service's events "
            "and the stopped tasks' reasons in the ECS console, fix the cause, and deploy again",
        )
    state = primary.get("rolloutState")
    counts = f"{primary.get('runningCount', 0)} of {primary.get('desiredCount', 0)} tasks running"
    if state == "COMPLETED":
        return RolloutVerdict(True, True, f"service {name} runs {running}: deployment COMPLETED, {counts}")
    if state == "FAILED":
        return RolloutVerdict(
            True, False, f"service {name}'s deployment of {running} FAILED: {_reason(primary)} ({counts})"
        )
    if state == "IN_PROGRESS":
        others = len(deployments) - 1
        draining = f", {others} older deployment{'s' if others != 1 else ''} still active" if others else ""
        return RolloutVerdict(
            False, False, f"service {name}'s deployment of {running} is IN_PROGRESS: {counts}{draining}"
        )
    # ECS reports rolloutState only for the rolling-update (ECS) deployment controller.
    return RolloutVerdict(
        True, False,
        f"service {name} reports no rolloutState for its PRIMARY deployment; it must use the rolling-update "
        "(ECS) deployment controller, as lifeguard's infra program sets it",
    )


def verify_rollout(ecs: ECSClient, target: PoolerRolloutTarget, check: RolloutCheck) -> StepOutcome:
    """Ask ECS until the rollout settles or ``check.timeout`` passes.

    Raises :class:`RolloutError` when ECS does not know the service, and botocore's errors when an
    AWS call is refused.
    """
    if check.timeout <= 0 or check.poll_interval <= 0:
        raise ValueError("timeout and poll interval must be positive")
    deadline = check.clock.monotonic() + check.timeout
    last = ""
    while True:
        verdict = judge(describe_service(ecs, target), target.task_definition_arn)
        if verdict.settled:
            return StepOutcome(0 if verdict.passed else EXIT_FAILED, verdict.summary)
        # The outcome carries the final word; progress is reported when it changes.
        if verdict.summary != last:
            check.on_status(verdict.summary)
            last = verdict.summary
        remaining = deadline - check.clock.monotonic()
        if remaining <= 0:
            return StepOutcome(
                EXIT_TIMED_OUT, f"still not COMPLETED after {check.timeout:g} s; last seen: {verdict.summary}"
            )
        check.clock.sleep(min(check.poll_interval, remaining))


def _state(deployment: DeploymentTypeDef) -> str:
    state = deployment.get("rolloutState", "no rolloutState")
    reason = deployment.get("rolloutStateReason")
    return f"{state}: {reason}" if reason else state


def _reason(deployment: DeploymentTypeDef) -> str:
    return deployment.get("rolloutStateReason") or "ECS gave no reason"
