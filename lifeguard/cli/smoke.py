"""``lifeguard smoke``: check the deployed functions answer correctly after a deploy.

By default the sample functions, from the stack outputs: a read, a charge with a fresh idempotency
key, its replay and a second read. With ``--function``, one of the user's own functions (a stack
with ``sampleFunctions: false`` has no sample to call): one invocation with ``--payload``, checked
as :mod:`lifeguard.deploy.function_smoke` says. Exit 0 only when every check passes, 1 on any
mismatch or function error, 2 for bad arguments or unusable stack outputs.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from lifeguard.cli.arguments import positive_integer
from lifeguard.cli.deploy_step import EXIT_AWS_REFUSED, EXIT_BAD_OUTPUTS, read_target, status_printer
from lifeguard.deploy import aws
from lifeguard.deploy.function_smoke import (
    ArgumentProblem,
    Expectation,
    FunctionSmoke,
    expectation,
    function_name,
    function_region,
    http_status,
    payload,
    run_function_smoke,
)
from lifeguard.deploy.outputs import SmokeTarget, add_outputs_arguments
from lifeguard.deploy.smoke import SMOKE_AMOUNT, SMOKE_ORG_ID, SmokeReport, run_smoke
from lifeguard.deploy.workflow_commands import neutralise

T = TypeVar("T")


def _argument(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse ``type=`` from a parser raising :class:`ArgumentProblem` (argparse shows its message alone)."""
    @functools.wraps(parse)
    def typed(text: str) -> T:
        try:
            return parse(text)
        except ArgumentProblem as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return typed


class _Expect(argparse.Action):
    """``--expect POINTER JSON``, repeatable: each pair checked whole and appended."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        assert isinstance(values, list) and len(values) == 2  # nargs=2
        try:
            check = expectation(*values)
        except ArgumentProblem as exc:
            raise argparse.ArgumentError(self, str(exc)) from None
        setattr(namespace, self.dest, [*getattr(namespace, self.dest), check])


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        f"Sample functions (--stack/--outputs): read an org's invoices, charge it {SMOKE_AMOUNT} credit with a new "
        "idempotency key, replay the charge, and check the replay answered the same and the balance dropped exactly "
        "once. Your own function (--function, for a stack with sampleFunctions false): invoke it once with --payload "
        "and fail on a function error, on a status that is not 2xx (or --expect-status) in an API-Gateway-style "
        "answer, or on any --expect that does not hold."
    )
    source = add_outputs_arguments(parser)
    source.add_argument(
        "--function", type=_argument(function_name), metavar="NAME_OR_ARN",
        help="invoke this function of yours instead of the sample functions (no stack outputs are read)",
    )
    parser.add_argument(
        "--payload", type=_argument(payload), metavar="JSON|@FILE",
        help="with --function: the event, as JSON or @FILE holding it",
    )
    parser.add_argument(
        "--expect-status", type=_argument(http_status), metavar="N",
        help="with --function: the statusCode the answer must have (default: any 2xx when it has one)",
    )
    parser.add_argument(
        "--expect", nargs=2, action=_Expect, default=[], metavar=("POINTER", "JSON"),
        help="with --function, repeatable: the value at this JSON Pointer (RFC 6901, e.g. /body/status) of the "
             "answer must equal this JSON (e.g. '\"ok\"'); an API-Gateway-style answer's body is parsed as JSON",
    )
    parser.add_argument(
        "--org-id", type=positive_integer, default=None, metavar="ID",
        help=f"sample functions: the org to read and charge (default: {SMOKE_ORG_ID}, the smoke test's own org, "
             "'lifeguard-smoke')",
    )
    parser.add_argument("--region", help="AWS region of the functions (default: a function ARN's, else the AWS "
                                         "configuration's)")
    parser.set_defaults(func=functools.partial(run, parser=parser))


def _argument_problem(args: argparse.Namespace) -> str | None:
    if args.function is None:
        if args.payload is not None or args.expect_status is not None or args.expect:
            return ("--payload, --expect-status and --expect need --function (they describe the call to your "
                    "function); the sample functions' smoke test takes none of them")
        return None
    if args.payload is None:
        return "--function needs --payload JSON|@FILE: the event to invoke it with (e.g. --payload '{}')"
    if args.org_id is not None:
        return "--org-id is for the sample functions' smoke test; --function invokes your function with --payload"
    return None


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    problem = _argument_problem(args)
    if problem:
        parser.error(problem)
    if args.function is not None:
        return _run_function(args)
    target = read_target(args, SmokeTarget.from_outputs, _status)
    if target is None:
        return EXIT_BAD_OUTPUTS
    client = _client(args.region)
    if client is None:
        return EXIT_AWS_REFUSED
    org_id = SMOKE_ORG_ID if args.org_id is None else args.org_id
    return _verdict(run_smoke(client, target, org_id=org_id))


def _run_function(args: argparse.Namespace) -> int:
    client = _client(args.region or function_region(args.function))
    if client is None:
        return EXIT_AWS_REFUSED
    expectations: list[Expectation] = args.expect
    smoke = FunctionSmoke(function=args.function, payload=args.payload, expect_status=args.expect_status,
                          expectations=tuple(expectations))
    return _verdict(run_function_smoke(client, smoke))


def _client(region: str | None) -> Any:
    try:
        return aws.lambda_client(region)
    except aws.AWS_ERRORS as exc:
        _status(f"error: {aws.explain_aws_error(exc)}")
        return None


def _verdict(report: SmokeReport) -> int:
    for check in report.checks:
        # A failed check quotes the function's error, which can carry what the database wrote.
        print(neutralise(check.line()), flush=True)
    if report.failure is None:
        print(f"smoke test passed: {len(report.checks)} checks")
        return 0
    print(f"smoke test FAILED at '{report.failure.name}'; the checks after it did not run")
    return 1


_status = status_printer("smoke")
