"""``lifeguard doctor [URL]``: will this connection string survive a spike? (see :mod:`lifeguard.doctor`)

Exit 0 when nothing failed (warnings allowed), 1 on any fail, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from database_urls import DIRECT_URL_ENV, POOLED_URL_ENV
from lifeguard.cli.arguments import SECRET_URL_HELP, STDIN, positive_integer, url_from_stdin
from lifeguard.doctor import run_doctor
from lifeguard.doctor.headroom import LEAK_AFTER_S
from lifeguard.doctor.render import render


def configure(parser: argparse.ArgumentParser) -> None:
    """The command's arguments (the lazy CLI calls this on the ``doctor`` subparser)."""
    parser.description = (
        "Six checks on any Postgres URL: pooled or direct, prepared statements, session state, "
        "connection headroom, TLS, and whether the pooled and direct URLs reach the same database. "
        "Each is ok, warn or fail with one line on what to change. A few round trips, no load. "
        f"{SECRET_URL_HELP}."
    )
    parser.add_argument("url", nargs="?",
                        help=f"the pooled URL functions use (default: ${POOLED_URL_ENV}; {STDIN}: read it from stdin)")
    parser.add_argument("--unpooled", metavar="URL",
                        help=f"the direct URL migrations use (default: ${DIRECT_URL_ENV}; {STDIN}: read it from stdin)")
    parser.add_argument(
        "--instances", type=positive_integer, metavar="N",
        help="what if N function instances each open one connection at once",
    )
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.add_argument("--leak-after", type=float, default=LEAK_AFTER_S, metavar="SECONDS", help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        given = url_from_stdin(args.url, "URL", sys.stdin), url_from_stdin(args.unpooled, "--unpooled", sys.stdin)
    except ValueError as exc:
        print(f"lifeguard doctor: error: {exc}", file=sys.stderr)
        return 2
    pooled = given[0] or os.environ.get(POOLED_URL_ENV) or None
    direct = given[1] or os.environ.get(DIRECT_URL_ENV) or None
    if pooled is None and direct is None:
        print(f"lifeguard doctor: error: give a URL, --unpooled URL, or set {POOLED_URL_ENV} / {DIRECT_URL_ENV}",
              file=sys.stderr)
        return 2
    report = run_doctor(pooled, direct, instances=args.instances, leak_after_s=args.leak_after)
    print(json.dumps(report.as_json(), indent=2) if args.json else render(report))
    return report.exit_code

