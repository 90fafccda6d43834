"""``lifeguard verify-rollout``: fail the pipeline unless the pooler service runs the stack's task definition.

Exit status: 0 when the service's PRIMARY deployment runs ``poolerTaskDefinitionArn`` with
``rolloutState`` ``COMPLETED``; 1 when it was rolled back, its rollout FAILED, ECS does not know the
service, or an AWS call is refused; 124 when the rollout is still in progress at ``--timeout``;
2 for unusable stack outputs.
"""

from __future__ import annotations

import argparse
import time

from lifeguard.cli.arguments import add_wait_arguments
from lifeguard.cli.deploy_step import run_step, status_printer
from lifeguard.deploy import aws
from lifeguard.deploy.clock import WaitClock
from lifeguard.deploy.outcome import StepOutcome
from lifeguard.deploy.outputs import PoolerRolloutTarget, add_outputs_arguments
from lifeguard.deploy.rollout import (
    DEFAULT_POLL_SECONDS,
    DEFAULT_TIMEOUT_SECONDS,
    EXIT_FAILED,
    RolloutCheck,
    RolloutError,
    verify_rollout,
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Fail unless the pooler service's PRIMARY deployment runs the stack's poolerTaskDefinitionArn "
        "with rolloutState COMPLETED: a rolled-back or failed update fails at once, one in progress "
        "is waited for up to --timeout."
    )
    add_outputs_arguments(parser)
    add_wait_arguments(
        parser,
        timeout=DEFAULT_TIMEOUT_SECONDS, timeout_help="fail when the rollout is still in progress after this time",
        poll_interval=DEFAULT_POLL_SECONDS, poll_help="seconds between checks while the rollout is in progress",
    )
    parser.add_argument("--region", help="AWS region (default: the region in poolerTaskDefinitionArn)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, clock: WaitClock = time) -> int:
    """The command; ``clock`` is what its waits use (tests pass one that does not really sleep)."""
    check = RolloutCheck(timeout=args.timeout, poll_interval=args.poll_interval, clock=clock, on_status=_status)

    def verify(target: PoolerRolloutTarget) -> StepOutcome:
        return verify_rollout(aws.ecs_client(args.region or target.region), target, check)

    return run_step(args, PoolerRolloutTarget.from_outputs, verify, _status, step_error=(RolloutError, EXIT_FAILED),
                    verdicts=("rollout verified: ", "rollout FAILED: "))


_status = status_printer("verify-rollout")
