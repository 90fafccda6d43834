"""``lifeguard smoke``: check the deployed sample functions answer correctly after a deploy.

A read, a charge with a fresh idempotency key, its replay and a second read; exit 0 only when every
check passes, 1 on any mismatch or function error, 2 for unusable stack outputs.
"""

from __future__ import annotations

import argparse

from lifeguard.cli.arguments import positive_integer
from lifeguard.cli.deploy_step import EXIT_AWS_REFUSED, EXIT_BAD_OUTPUTS, read_target, status_printer
from lifeguard.deploy import aws
from lifeguard.deploy.outputs import SmokeTarget, add_outputs_arguments
from lifeguard.deploy.smoke import SMOKE_AMOUNT, SMOKE_ORG_ID, run_smoke
from lifeguard.deploy.workflow_commands import neutralise


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        f"Read an org's invoices, charge it {SMOKE_AMOUNT} credit with a new idempotency key, replay "
        "the charge, and check the replay answered the same and the balance dropped exactly once."
    )
    add_outputs_arguments(parser)
    parser.add_argument(
        "--org-id", type=positive_integer, default=SMOKE_ORG_ID, metavar="ID",
        help="the org to read and charge (default: %(default)s, the smoke test's own org, 'lifeguard-smoke')",
    )
    parser.add_argument("--region", help="AWS region of the functions (default: the AWS configuration's)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    target = read_target(args, SmokeTarget.from_outputs, _status)
    if target is None:
        return EXIT_BAD_OUTPUTS
    try:
        client = aws.lambda_client(args.region)
    except aws.AWS_ERRORS as exc:
        _status(f"error: {aws.explain_aws_error(exc)}")
        return EXIT_AWS_REFUSED
    report = run_smoke(client, target, org_id=args.org_id)
    for check in report.checks:
        # A failed check quotes the function's error, which can carry what the database wrote.
        print(neutralise(check.line()), flush=True)
    if report.failure is None:
        print(f"smoke test passed: {len(report.checks)} checks")
        return 0
    print(f"smoke test FAILED at '{report.failure.name}'; the checks after it did not run")
    return 1


_status = status_printer("smoke")

