"""One step of the deploy pipeline as its commands run it: stack outputs -> target -> the step on AWS -> exit code.

``lifeguard migrate`` and ``lifeguard verify-rollout`` run this whole; ``lifeguard smoke`` reads its
target here and reports its checks itself. Exit status: 2 for unusable stack outputs, 1 when an AWS
call is refused, otherwise what the step's error or outcome says.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from lifeguard.deploy import aws
from lifeguard.deploy.outcome import StepOutcome
from lifeguard.deploy.outputs import OutputsError, outputs_from_args
from lifeguard.deploy.workflow_commands import neutralise

EXIT_BAD_OUTPUTS = 2
EXIT_AWS_REFUSED = 1

Say = Callable[[str], None]
Target = TypeVar("Target")


def status_printer(command: str) -> Say:
    """Status lines on stderr, ``lifeguard COMMAND: ...``, flushed: in CI stderr is a pipe.

    Neutralised (:mod:`lifeguard.deploy.workflow_commands`): a message can quote a task's or a
    function's text over several lines."""
    def say(message: str) -> None:
        print(neutralise(f"lifeguard {command}: {message}"), file=sys.stderr, flush=True)
    return say


def read_target(
    args: argparse.Namespace, from_outputs: Callable[[Mapping[str, Any], str], Target], say: Say
) -> Target | None:
    """The target read from the outputs ``--stack``/``--outputs`` name; None, with the problems said, if unusable."""
    try:
        outputs, source = outputs_from_args(args)
        return from_outputs(outputs, source)
    except OutputsError as exc:
        say(f"error: {exc}")
        return None


def run_step(
    args: argparse.Namespace,
    from_outputs: Callable[[Mapping[str, Any], str], Target],
    step: Callable[[Target], StepOutcome],
    say: Say,
    *,
    step_error: tuple[type[Exception], int],
    verdicts: tuple[str, str],
) -> int:
    """Read the target, run ``step`` on it, say how it went and return the exit code.

    ``step_error``: the step's own error and the exit code it means; ``verdicts``: what the last line
    starts with when the outcome is ok, and when it is not.
    """
    target = read_target(args, from_outputs, say)
    if target is None:
        return EXIT_BAD_OUTPUTS
    error, error_exit = step_error
    try:
        outcome = step(target)
    except error as exc:
        say(f"error: {exc}")
        return error_exit
    except aws.AWS_ERRORS as exc:
        say(f"error: {aws.explain_aws_error(exc)}")
        return EXIT_AWS_REFUSED
    passed, failed = verdicts
    say((passed if outcome.ok else failed) + outcome.summary)
    return outcome.exit_code
