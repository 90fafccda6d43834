"""``lifeguard smoke``: check the deployed sample functions answer correctly after a deploy.

A read, a charge with a fresh idempotency key, its replay and a second read; exit 0 only when every
check passes, 1 on any mismatch or function error, 2 for unusable stack outputs.
"""

from __future__ import annotations

import argparse
import sys

from lifeguard.deploy import aws
from lifeguard.deploy.outputs import OutputsError, SmokeTarget, add_outputs_arguments, outputs_from_args
from lifeguard.deploy.smoke import SMOKE_AMOUNT, SMOKE_ORG_ID, run_smoke


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        f"Read an org's invoices, charge it {SMOKE_AMOUNT} credit with a new idempotency key, replay "
        "the charge, and check the replay answered the same and the balance dropped exactly once."
    )
    add_outputs_arguments(parser)
    parser.add_argument(
        "--org-id", type=_org_id, default=SMOKE_ORG_ID, metavar="ID",
        help="the org to read and charge (default: %(default)s, the smoke test's own org, 'lifeguard-smoke')",
    )
    parser.add_argument("--region", help="AWS region of the functions (default: the AWS configuration's)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        outputs, source = outputs_from_args(args)
        target = SmokeTarget.from_outputs(outputs, source)
    except OutputsError as exc:
        print(f"lifeguard smoke: error: {exc}", file=sys.stderr)
        return 2
    try:
        client = aws.lambda_client(args.region)
    except aws.AWS_ERRORS as exc:
        print(f"lifeguard smoke: error: {aws.explain_aws_error(exc)}", file=sys.stderr)
        return 1
    report = run_smoke(client, target, org_id=args.org_id)
    for check in report.checks:
        print(check.line(), flush=True)
    if report.failure is None:
        print(f"smoke test passed: {len(report.checks)} checks")
        return 0
    print(f"smoke test FAILED at '{report.failure.name}'; the checks after it did not run")
    return 1


def _org_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive org id")
    return value
