"""``python -m migrator run -- COMMAND...``: any migration tool, behind the migrator's guard, lock and role.

What the job does around the user's tool (Alembic, node-pg-migrate, dbmate, Prisma, Flyway, ...),
none of which refuses a pooler or holds a lock the application role cannot take:

1. reads the direct URL as ``python -m migrator`` does (:mod:`migrator.source`; never
   ``DATABASE_URL``), and refuses it if it goes through a pooler (:mod:`migrator.guard`);
2. takes the migration lock (:mod:`migrator.lock`) on a direct connection of its own and holds it
   until the command has ended; a second run waits up to ``--lock-timeout``, then stops (exit 4)
   without starting its command;
3. provisions the application role (:mod:`migrator.roles`) before the command, with its default
   privileges off, so a bookkeeping table the tool creates is never granted; and again after it
   (whatever the command's outcome), which grants the tables it created and restores the defaults.
   The tools' bookkeeping tables (:mod:`migrator.bookkeeping`) get no privilege;
4. runs the command with ``DATABASE_URL_UNPOOLED`` *and* ``DATABASE_URL`` set to the direct URL (most
   tools read ``DATABASE_URL``), in the command's environment only; the application role's
   verifier is not passed on. stdin is closed (a tool that asks a question fails rather than hangs);
5. forwards SIGTERM, SIGINT, SIGHUP and SIGQUIT to the command (it runs in its own session, so a
   terminal's Ctrl-C reaches it once, through us), and copies its output line by line, masked;
6. exits with the command's exit code (128 + N when signal N ended it). Its own failures keep the
   migrator's codes (2 configuration, 3 pooler, 4 lock timeout, 7 unreachable); 126 and 127 mean the
   command could not be started.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import IO

from database_urls import DIRECT_URL_ENV, POOLED_URL_ENV
from migrator.bookkeeping import KNOWN_TABLES, BookkeepingTable, parse_table, tables_from_env
from migrator.connection import direct_connection
from migrator.contract import (
    APP_ROLE_B_VERIFIER_ENV,
    APP_ROLE_ENV,
    APP_ROLE_SECRET_ENVS,
    APP_ROLE_VERIFIER_ENV,
    BOOKKEEPING_TABLES_ENV,
    OWNER_PASSWORD_ENV,
)
from migrator.errors import Unavailable
from migrator.lock import DEFAULT_LOCK_TIMEOUT_S, LOCK_VIEW, MigrationLock, lock_timeout_arg, migration_lock
from migrator.output import exit_code_of, logging_to_stderr
from migrator.roles import AppRole, app_role_of_run, provision_app_role
from migrator.rotation import record_rotation, rotation_record_from_env
from migrator.source import resolve_url
from redaction import Redactor

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
LOCK_CHECK_INTERVAL_S = 5.0
"""How often the lock session is checked while the command runs."""
NOT_EXECUTABLE, NOT_FOUND = 126, 127
"""The shell's codes for a command that exists but cannot run, and one that does not exist."""
OWN_BOOKKEEPING = "lifeguard_schema_migrations"
"""``python -m migrator``'s own table (:data:`migrator.runner.TABLE_NAME`): a wrapped run may follow one."""

log = logging.getLogger("migrator")

EPILOG = f"""\
The command gets {DIRECT_URL_ENV} and {POOLED_URL_ENV}, both set to the direct URL (for it only), and
never {APP_ROLE_VERIFIER_ENV}, {APP_ROLE_B_VERIFIER_ENV} or {OWNER_PASSWORD_ENV}. With {APP_ROLE_ENV} and
{APP_ROLE_VERIFIER_ENV} set, the application role is provisioned before and after the command, with no
privilege on the tools' bookkeeping tables
({", ".join(str(table) for table in KNOWN_TABLES)}, and those in {BOOKKEEPING_TABLES_ENV}).

exit codes: the command's own (128 + N if signal N ended it); before or after it, the migrator's:
  2 bad configuration   3 refused: the URL goes through a pooler   4 timed out waiting for the lock
  7 database or secret unreachable   126 command not executable   127 command not found
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m migrator run",
        description="Run a migration command through the direct URL, holding the migration lock, with the "
        "application role provisioned before and after it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--lock-timeout", type=lock_timeout_arg, default=DEFAULT_LOCK_TIMEOUT_S, metavar="SECONDS",
        help=f"how long to wait for another run's migration lock (default {DEFAULT_LOCK_TIMEOUT_S:g}; 0: do not wait)",
    )
    parser.add_argument(
        "--bookkeeping-table", action="append", default=[], metavar="[SCHEMA.]NAME",
        type=lambda text: parse_table(text, "--bookkeeping-table"),
        help="another table the application role must not touch (repeatable; the known tools' are always "
        "excluded)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the migration command, after '--'")
    return parser


def main(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        parser.error("no command to run: give it after '--', e.g. python -m migrator run -- alembic upgrade head")
    redactor = Redactor()
    env = os.environ if environ is None else environ
    with logging_to_stderr(redactor):
        return exit_code_of(lambda: run(command, env, args.lock_timeout,
                                        (*tables_from_env(env), *args.bookkeeping_table), redactor))


def run(command: Sequence[str], environ: Mapping[str, str], lock_timeout_s: float,
        bookkeeping: Sequence[BookkeepingTable], redactor: Redactor) -> int:
    """Run ``command`` under the lock, between two provisionings; its exit code."""
    resolved = resolve_url(environ)
    redactor.add_url(resolved.url)
    log.info("direct URL from %s", resolved.source)
    app_role = app_role_of_run(environ, redactor)
    record = rotation_record_from_env(environ, app_role)
    tables = (*bookkeeping, BookkeepingTable(OWN_BOOKKEEPING))
    with migration_lock(resolved.url, lock_timeout_s) as lock:
        _provision(resolved.url, app_role, lock, tables, default_privileges=False)
        log.info("running %s on %s, holding the migration lock", redactor(" ".join(command)), lock.target)
        code = _run_child(command, _child_env(environ, resolved.url), lock, redactor)
        # Whatever the outcome: a tool that failed halfway may have created tables, and the
        # default privileges are off until this runs.
        lock.check_held()
        _provision(resolved.url, app_role, lock, tables, default_privileges=True)
    log.info("the command exited with %d", code)
    if code == 0 and record is not None:
        # After a whole successful run only (the roles' verifiers are committed by then): see migrator.rotation.
        record_rotation(record)
    return code


def _provision(url: str, role: AppRole | None, lock: MigrationLock, tables: Sequence[BookkeepingTable], *,
               default_privileges: bool) -> None:
    if role is None:
        return
    with direct_connection(url) as direct:
        lock.check_held()
        provision_app_role(direct.conn, role, lock.schema, [], bookkeeping=(*tables, BookkeepingTable(LOCK_VIEW)),
                           default_privileges=default_privileges)


def _child_env(environ: Mapping[str, str], url: str) -> dict[str, str]:
    # The command gets the URL, not its secret parts: no verifier, nor the owner's password alone.
    env = {k: v for k, v in environ.items() if k not in (*APP_ROLE_SECRET_ENVS, OWNER_PASSWORD_ENV)}
    env[DIRECT_URL_ENV] = url
    env[POOLED_URL_ENV] = url
    return env


def _pump(source: IO[bytes], sink: IO[str], redactor: Redactor) -> None:
    """Copy the command's output line by line, masked (a tool's error may quote the URL)."""
    for raw in iter(source.readline, b""):
        sink.write(redactor(raw.decode("utf-8", "replace")))
        sink.flush()
    source.close()


def _run_child(command: Sequence[str], env: Mapping[str, str], lock: MigrationLock, redactor: Redactor) -> int:
    try:
        child = subprocess.Popen(
            list(command), env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True,
        )
    except FileNotFoundError:
        log.error("command not found: %s (is it installed in this image, on PATH?)", redactor(command[0]))
        return NOT_FOUND
    except PermissionError:
        log.error("command not executable: %s", redactor(command[0]))
        return NOT_EXECUTABLE
    pumps = [threading.Thread(target=_pump, args=(stream, sink, redactor), daemon=True)
             for stream, sink in ((child.stdout, sys.stdout), (child.stderr, sys.stderr))]
    for pump in pumps:
        pump.start()

    def forward(signum: int, _frame: FrameType | None) -> None:
        log.info("got signal %d: passing it to the command", signum)
        if child.poll() is None:
            child.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED_SIGNALS}
    try:
        while True:
            try:
                code = child.wait(LOCK_CHECK_INTERVAL_S)
                break
            except subprocess.TimeoutExpired:
                pass
            try:
                lock.check_held()
            except Unavailable:
                # Another run could take the lock now: stop the tool (each migration's transaction
                # rolls back) rather than let two run side by side.
                log.error("lost the migration lock's connection: stopping the command")
                child.terminate()
                child.wait()
                raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for pump in pumps:
            pump.join(timeout=5)
    return 128 - code if code < 0 else code
