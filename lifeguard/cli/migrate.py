"""``lifeguard migrate``: run the stack's migration task on ECS after ``pulumi up`` and wait for it.

Exit status: the migration container's own exit code (0 = every migration applied); 124 when it
ran out of time (the task is stopped); 125 when the task never ran the container (ECS's reason is
printed); 2 for unusable stack outputs; 1 when an AWS call is refused.
"""

from __future__ import annotations

import argparse
import time

from lifeguard.cli.arguments import add_wait_arguments, command_words
from lifeguard.cli.deploy_step import run_step, status_printer
from lifeguard.deploy import aws
from lifeguard.deploy.clock import WaitClock
from lifeguard.deploy.ecs_task import EXIT_DID_NOT_RUN, STARTED_BY, EcsTaskError
from lifeguard.deploy.migration import DEFAULT_POLL_SECONDS, DEFAULT_TIMEOUT_SECONDS, MigrationSettings, run_migration
from lifeguard.deploy.outcome import StepOutcome
from lifeguard.deploy.outputs import MigrationTarget, add_outputs_arguments
from lifeguard.deploy.workflow_commands import neutralise
from migrator.contract import runner_command, wrapped_command


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Start the migration task (its own command, or --command/--status/--dry-run for this run) on the "
        "stack's ECS cluster, print its log lines as they arrive, and exit with the container's exit code."
    )
    add_outputs_arguments(parser)
    add_wait_arguments(
        parser,
        timeout=DEFAULT_TIMEOUT_SECONDS, timeout_help="stop the task and fail when it has not finished in this time",
        poll_interval=DEFAULT_POLL_SECONDS, poll_help="seconds between checks of the task and its logs",
    )
    parser.add_argument(
        "--started-by", type=_started_by, default="lifeguard-migrate", metavar="TAG",
        help="the task's startedBy tag, e.g. the CI run id (default: %(default)s)",
    )
    parser.add_argument("--region", help="AWS region (default: the region in migrationClusterArn)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--command", metavar="'CMD ARGS'", type=command_words,
        help="run CMD ARGS (a tool in the job's image, e.g. 'alembic current') through the migration wrapper "
        "(python3 -m migrator run -- CMD ARGS: direct URL only, migration lock, application role) instead of "
        "the job's own command",
    )
    what.add_argument("--status", action="store_true",
                      help="the sample runner's status (python3 -m migrator status): applied, pending, edited")
    what.add_argument("--dry-run", action="store_true",
                      help="the sample runner's dry run (python3 -m migrator --dry-run): what would be applied")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, clock: WaitClock = time) -> int:
    """The command; ``clock`` is what its waits use (tests pass one that does not really sleep)."""
    settings = MigrationSettings(
        timeout=args.timeout,
        started_by=args.started_by,
        poll_interval=args.poll_interval,
        clock=clock,
        on_log_line=_log_line,
        on_status=_status,
        command=_container_command(args),
    )

    def migrate(target: MigrationTarget) -> StepOutcome:
        region = args.region or target.region
        return run_migration(aws.ecs_client(region), aws.logs_client(region), target, settings)

    return run_step(args, MigrationTarget.from_outputs, migrate, _status, step_error=(EcsTaskError, EXIT_DID_NOT_RUN),
                    verdicts=("migrations applied: ", "migration FAILED: "))


_status = status_printer("migrate")


def _log_line(line: str) -> None:
    # Flushed per line: in CI stdout is a pipe, and a buffered log is useless while the task runs.
    # Neutralised: the line carries what the database wrote, and CI runs workflow commands.
    print(neutralise(line), flush=True)


def _container_command(args: argparse.Namespace) -> list[str] | None:
    """The command this run overrides the task definition's with, or None."""
    if args.command:
        return wrapped_command(args.command)
    if args.status:
        return runner_command("status")
    if args.dry_run:
        return runner_command("--dry-run")
    return None


def _started_by(text: str) -> str:
    if not STARTED_BY.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a valid startedBy: use 1-128 letters, digits, '-', '/' or '_'"
        )
    return text
