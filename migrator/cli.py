"""``python -m migrator``: apply pending migrations (the default), ``status``, or ``--dry-run``.

Reads the direct URL from ``DATABASE_URL_UNPOOLED`` (or the secret named by
``DATABASE_URL_UNPOOLED_SECRET_ARN``), never ``DATABASE_URL``. Logs go to stderr, one line per
migration with its duration; ``status`` and ``--dry-run`` print their table on stdout. Neither
ever shows the URL or password: host, port and database name at most.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from database_urls import DIRECT_URL_ENV, DIRECT_URL_SECRET_ARN_ENV, POOLED_URL_ENV
from migrator import wrapper
from migrator.bookkeeping import tables_from_env
from migrator.contract import (
    APP_ROLE_B_VERIFIER_ENV,
    APP_ROLE_ENV,
    APP_ROLE_VERIFIER_ENV,
    BOOKKEEPING_TABLES_ENV,
    URL_PART_ENVS,
)
from migrator.errors import ExitCode
from migrator.lock import DEFAULT_LOCK_TIMEOUT_S, lock_timeout_arg
from migrator.output import exit_code_of, logging_to_stderr
from migrator.roles import app_role_of_run
from migrator.rotation import record_rotation, rotation_record_from_env
from migrator.runner import DEFAULT_MIGRATIONS_DIR, MigrationReport, StatusReport, migrate, status
from migrator.source import resolve_url
from redaction import Redactor

log = logging.getLogger("migrator")

EPILOG = f"""\
The direct URL comes from {DIRECT_URL_ENV}, or from the Secrets Manager secret whose ARN is in
{DIRECT_URL_SECRET_ARN_ENV}, or from its parts ({", ".join(URL_PART_ENVS)}: the owner's username
and password, injected from the owner secret, composed into a verify-full URL). {POOLED_URL_ENV} (the
pooled URL) is never used. With {APP_ROLE_ENV} (a role name) and {APP_ROLE_VERIFIER_ENV} (its SCRAM
verifier), 'apply' first provisions that DML-only application role (and, with {APP_ROLE_B_VERIFIER_ENV},
the second login role a password rotation alternates with, NAME_b; both members of the NOLOGIN role
NAME_dml that holds the DML rights), under the migration lock, with no privilege on migration tools'
bookkeeping tables (the known tools' and those named in {BOOKKEEPING_TABLES_ENV}).

Another migration tool instead: python -m migrator run [--lock-timeout S] -- COMMAND [ARGS...]
(see python -m migrator run --help).

exit codes:
  0  success            3  refused: the URL goes through a pooler    6  an applied file was edited
  1  unexpected error   4  timed out waiting for the migration lock  7  database or secret unreachable
  2  bad configuration  5  a migration failed (and was rolled back)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m migrator",
        description="Apply the SQL migrations through the direct database URL, never through PgBouncer.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "command", nargs="?", choices=("apply", "status"), default="apply",
        help="apply pending migrations (default), or show which are applied, pending, changed or missing",
    )
    parser.add_argument(
        "--dry-run", action="store_true",
        help="check everything and list what would be applied, without the lock and without changes",
    )
    parser.add_argument(
        "--lock-timeout", type=lock_timeout_arg, default=DEFAULT_LOCK_TIMEOUT_S, metavar="SECONDS",
        help=f"how long to wait for another run's migration lock (default {DEFAULT_LOCK_TIMEOUT_S:g}; 0: do not wait)",
    )
    parser.add_argument(
        "--migrations-dir", type=Path, default=None, metavar="DIR",
        help=f"folder of NNNN_name.sql files (default {DEFAULT_MIGRATIONS_DIR})",
    )
    return parser


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def format_status(report: StatusReport) -> str:
    counts = ", ".join(f"{len(report.having(s))} {s}" for s in ("applied", "pending", "changed", "missing"))
    width = max((len(e.filename) for e in report.entries), default=0)
    lines = [f"{report.target}: {counts}"]
    for e in report.entries:
        notes = []
        if e.applied_at is not None:
            notes.append(f"applied {_when(e.applied_at)} in {e.duration_ms} ms")
        if not e.transactional:
            notes.append("no transaction")
        if e.state == "changed":
            notes.append("file edited since it was applied")
        if e.state == "missing":
            notes.append("no such file")
        lines.append(f"  {e.state:<8} {e.filename:<{width}}  {'; '.join(notes)}".rstrip())
    return "\n".join(lines)


def format_plan(report: MigrationReport) -> str:
    head = f"{report.target}: dry run, nothing changed; {report.already_applied} already applied"
    if not report.pending:
        return f"{head}, nothing to apply"
    return "\n".join([f"{head}; would apply {len(report.pending)}:", *(f"  {name}" for name in report.pending)])


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["run"]:
        return wrapper.main(args_list[1:], environ)
    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.dry_run and args.command == "status":
        parser.error("--dry-run goes with 'apply'; 'status' never changes anything")
    redactor = Redactor()
    env = os.environ if environ is None else environ
    with logging_to_stderr(redactor):
        return exit_code_of(lambda: _main(args, redactor, env))


def _main(args: argparse.Namespace, redactor: Redactor, environ: Mapping[str, str]) -> int:
    resolved = resolve_url(environ)
    redactor.add_url(resolved.url)
    log.info("direct URL from %s", resolved.source)
    if args.command == "status":
        status_report = status(resolved.url, args.migrations_dir)
        print(format_status(status_report), flush=True)
        changed = status_report.having("changed")
        if changed:
            log.error("%d applied migration(s) were edited since they were applied", len(changed))
            return int(ExitCode.CHECKSUM_DRIFT)
        return int(ExitCode.OK)
    app_role = app_role_of_run(environ, redactor)
    record = rotation_record_from_env(environ, app_role)
    report = migrate(resolved.url, args.migrations_dir, args.lock_timeout, dry_run=args.dry_run,
                     app_role=app_role, bookkeeping=tables_from_env(environ))
    if args.dry_run:
        print(format_plan(report), flush=True)
    elif record is not None:
        # Only now: the roles' verifiers and every migration are committed (migrate raised otherwise).
        record_rotation(record)
    return int(ExitCode.OK)
